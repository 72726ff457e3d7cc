//! The segment layout seen through the queue: one key per group, settling without hints,
//! rolled-back requests, unreadable segments and stores from the layout before segments.

use std::sync::Arc;

use time::macros::datetime;

use super::txn::{Counters, Txn};
use super::*;
use crate::queue::tests::far_future;
use crate::queue::tests::reading;
use crate::reading::{Reading, ReadingId, SinkId};

fn sinks(names: &[&str]) -> Vec<SinkId> {
    names.iter().map(|n| SinkId::new(*n)).collect()
}

fn count(store: &dyn Store, tag: u8) -> usize {
    store.scan_prefix(&[tag], None, usize::MAX).unwrap().len()
}

#[tokio::test]
async fn a_group_of_readings_is_one_segment_one_live_bitmap_and_one_bitmap_per_sink() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let q = Queue::with_store(
        Arc::clone(&store),
        QueueOptions::new(sinks(&["ehr", "file"])),
    )
    .unwrap();
    let rs: Vec<_> = (0..200).map(|n| reading("cuff", n)).collect();
    q.enqueue(rs.clone()).await.unwrap();
    assert_eq!(count(&*store, keys::SEGMENT), 1);
    assert_eq!(count(&*store, keys::LIVE), 1);
    assert_eq!(count(&*store, keys::PENDING), 2);
    // The dedupe index: one device-hour, two chunks (170 entries each at most).
    assert_eq!(count(&*store, keys::DEDUPE), 0);
    assert_eq!(count(&*store, b'w'), 2);
    let s = q.stats().unwrap();
    assert_eq!(s.readings, 200);
    assert!(s.sinks.iter().all(|x| x.pending == 200));
    // Listed in the order they were stored.
    let p = q.pending(&SinkId::new("ehr"), 500, far_future()).unwrap();
    let want: Vec<_> = rs.iter().map(|r| r.id).collect();
    assert_eq!(p.iter().map(|p| p.reading.id).collect::<Vec<_>>(), want);
    assert_eq!(p[7].reading, rs[7]);
}

#[tokio::test]
async fn a_large_enqueue_is_split_into_segments_of_bounded_size() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let q = Queue::with_store(Arc::clone(&store), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    let n = 2 * segment::MAX_ENTRIES as i64 + 10;
    let rs: Vec<_> = (0..n).map(|i| reading("cuff", i)).collect();
    q.enqueue(rs.clone()).await.unwrap();
    assert_eq!(count(&*store, keys::SEGMENT), 3);
    assert_eq!(count(&*store, keys::PENDING), 3);
    let p = q.pending(&SinkId::new("ehr"), 1000, far_future()).unwrap();
    assert_eq!(p.len(), rs.len());
    assert_eq!(p.last().map(|p| p.reading.id), rs.last().map(|r| r.id));
}

#[tokio::test]
async fn entries_are_settled_after_a_reopen_without_listing_them_first() {
    let dir = tempfile::tempdir().unwrap();
    let rs: Vec<_> = (0..30).map(|n| reading("cuff", n)).collect();
    {
        let q = Queue::open(dir.path(), QueueOptions::new(sinks(&["ehr"]))).unwrap();
        for chunk in rs.chunks(10) {
            q.enqueue(chunk.to_vec()).await.unwrap();
        }
        q.close().await.unwrap();
    }
    let q = Queue::open(dir.path(), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    // No hints after a reopen: each id is found by looking through the bitmaps.
    let done: Vec<_> = rs[5..25]
        .iter()
        .map(|r| (r.id.unwrap(), Settle::Delivered))
        .collect();
    q.settle(&SinkId::new("ehr"), done).await.unwrap();
    let left = q.pending(&SinkId::new("ehr"), 100, far_future()).unwrap();
    let want: Vec<_> = rs[..5].iter().chain(&rs[25..]).map(|r| r.id).collect();
    assert_eq!(left.iter().map(|p| p.reading.id).collect::<Vec<_>>(), want);
    assert_eq!(q.stats().unwrap().readings, 10);
    // The middle segment had nothing left: it is gone with its bitmaps.
    let store = &*q.core.shared.store;
    assert_eq!(store.get(&keys::segment(1)).unwrap(), None);
    assert_eq!(store.get(&keys::live(1)).unwrap(), None);
    assert_eq!(
        store.get(&keys::pending(&SinkId::new("ehr"), 1)).unwrap(),
        None
    );
    // A new segment is numbered after every segment ever written while open.
    q.enqueue(vec![reading("cuff", 99)]).await.unwrap();
    assert!(store.get(&keys::segment(3)).unwrap().is_some());
}

#[test]
fn a_rolled_back_request_leaves_nothing_in_the_group_segment() {
    let store = MemoryStore::new();
    let mut tx = Txn::with_seq(&store, Counters::default(), 4);
    let ehr = SinkId::new("ehr");
    let (a, b) = (ReadingId::new(), ReadingId::new());
    tx.savepoint();
    let first = tx.append(a, b"{\"a\":1}");
    assert!(tx.set_fresh(&ehr, first));
    tx.savepoint();
    let second = tx.append(b, b"{\"b\":2}");
    tx.set_fresh(&ehr, second);
    // Enough to start two more segments, all rolled back with the request.
    for _ in 0..(2 * segment::MAX_ENTRIES) {
        let s = tx.append(ReadingId::new(), b"{}");
        tx.set_fresh(&ehr, s);
    }
    assert_eq!(tx.next_seq(), 6);
    tx.rollback();
    let batch = tx.take_batch(false);
    store.apply(batch).unwrap();
    let raw = store.get(&keys::segment(4)).unwrap().unwrap();
    let seg = segment::Segment::parse(&raw).unwrap();
    assert_eq!(seg.len(), 1);
    assert_eq!(seg.get(0).map(|(id, _)| id), Some(a));
    let bits = store.get(&keys::pending(&ehr, 4)).unwrap().unwrap();
    assert_eq!(segment::ones(&bits).collect::<Vec<_>>(), [0]);
    let live = store.get(&keys::live(4)).unwrap().unwrap();
    assert_eq!(segment::ones(&live).collect::<Vec<_>>(), [0]);
    // Nothing else was written, and the next group's segment gets the next number.
    assert_eq!(count(&store, keys::SEGMENT), 1);
    assert_eq!(tx.next_seq(), 5);
}

#[tokio::test]
async fn a_segment_that_cannot_be_read_does_not_block_the_sink() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let q = Queue::with_store(Arc::clone(&store), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    q.enqueue(vec![reading("cuff", 1), reading("cuff", 2)])
        .await
        .unwrap();
    let later = reading("cuff", 3);
    q.enqueue(vec![later.clone()]).await.unwrap();
    let mut b = Batch::new();
    b.put(keys::segment(0), vec![1, 0xde, 0xad]);
    store.apply(b).unwrap();
    let p = q.pending(&SinkId::new("ehr"), 10, far_future()).unwrap();
    assert_eq!(
        p.iter().map(|p| p.reading.id).collect::<Vec<_>>(),
        [later.id]
    );
    // The drop goes through the writer; a later request commits after it.
    q.enqueue(vec![reading("cuff", 4)]).await.unwrap();
    let s = q.stats().unwrap();
    assert_eq!(s.sinks[0].pending, 2);
    assert_eq!(
        store.get(&keys::pending(&SinkId::new("ehr"), 0)).unwrap(),
        None
    );
}

#[test]
fn a_store_from_the_layout_before_segments_is_refused_at_open() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut b = Batch::new();
    let mut old = vec![keys::OLD_READING];
    old.extend_from_slice(&[7; 16]);
    b.put(old, b"{}".to_vec());
    store.apply(b).unwrap();
    let err = Queue::with_store(store, QueueOptions::new(sinks(&["ehr"])))
        .err()
        .unwrap();
    assert!(matches!(err, QueueError::OldLayout), "{err}");
    assert!(err.to_string().contains("earlier development build"));
}

#[tokio::test]
async fn a_drained_store_from_before_segments_is_taken_over_and_one_with_entries_refused() {
    let drained: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut b = Batch::new();
    b.put(keys::META_COUNTERS, b"1".to_vec());
    b.put(keys::counter_readings(), 0u64.to_be_bytes().to_vec());
    b.put(
        keys::dedupe("cuff|heart_rate|1|x=1"),
        keys::dedupe_value(ReadingId::new(), 1),
    );
    drained.apply(b).unwrap();
    let q = Queue::with_store(Arc::clone(&drained), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    assert_eq!(
        drained.get(keys::META_LAYOUT).unwrap().as_deref(),
        Some(keys::layout_marker().as_slice())
    );
    q.enqueue(vec![reading("cuff", 1)]).await.unwrap();
    assert_eq!(
        q.pending(&SinkId::new("ehr"), 10, far_future())
            .unwrap()
            .len(),
        1
    );

    let with_dead: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut b = Batch::new();
    b.put(keys::META_COUNTERS, b"1".to_vec());
    b.put(
        keys::dead(&SinkId::new("ehr"), ReadingId::new()),
        br#"{"why":"HTTP 400","at":1,"n":0}"#.to_vec(),
    );
    with_dead.apply(b).unwrap();
    let err = Queue::with_store(with_dead, QueueOptions::new(sinks(&["ehr"])))
        .err()
        .unwrap();
    assert!(matches!(err, QueueError::OldLayout), "{err}");
}

#[tokio::test]
async fn settled_readings_are_audited_one_entry_each_and_a_packed_entry_reads_too() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let q = Queue::with_store(Arc::clone(&store), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    let rs: Vec<_> = (0..3).map(|n| reading("cuff", n)).collect();
    q.enqueue(rs.clone()).await.unwrap();
    let done = rs
        .iter()
        .map(|r| (r.id.unwrap(), Settle::Delivered))
        .collect();
    q.settle_audited(&SinkId::new("ehr"), done).await.unwrap();
    assert_eq!(count(&*store, super::audit::AUDIT), 3);
    assert_eq!(q.audit().entries(None, 100).unwrap().len(), 3);
    assert_eq!(q.audit().entries(None, 2).unwrap().len(), 2);
    // A value holding several entries reads as each of them.
    let held = crate::model::audit::AuditEntry {
        at: datetime!(2026-11-27 13:00 UTC),
        event: crate::model::audit::AuditEvent::Held {
            reading: ReadingId::new(),
            room: None,
        },
    };
    let mut b = Batch::new();
    let mut k = vec![super::audit::AUDIT];
    k.extend_from_slice(uuid::Uuid::now_v7().as_bytes());
    b.put(k, serde_json::to_vec(&[held.clone(), held]).unwrap());
    store.apply(b).unwrap();
    assert_eq!(q.audit().entries(None, 100).unwrap().len(), 5);
}

/// Rewrites every entry of every segment in `store` in the JSON form that versions before the
/// binary stored form wrote (the segment envelope did not change); returns how many.
fn rewrite_as_earlier_version(store: &dyn Store) -> usize {
    let mut n = 0;
    for (k, raw) in store
        .scan_prefix(&[keys::SEGMENT], None, usize::MAX)
        .unwrap()
    {
        let seg = segment::Segment::parse(&raw).unwrap();
        let mut w = segment::Writer::default();
        for (_, id, stored) in seg.iter() {
            assert_eq!(stored[0], segment_entry::BINARY_V1);
            let r = segment_entry::decode(stored).unwrap();
            w.push(id, &segment_entry::encode_json(&r));
            n += 1;
        }
        let mut b = Batch::new();
        b.put(k, w.into_bytes());
        store.apply(b).unwrap();
    }
    n
}

/// The stored form of every entry of every segment: (first byte, count).
fn forms(store: &dyn Store) -> std::collections::BTreeMap<u8, usize> {
    let mut out = std::collections::BTreeMap::new();
    for (_, raw) in store
        .scan_prefix(&[keys::SEGMENT], None, usize::MAX)
        .unwrap()
    {
        for (_, _, stored) in segment::Segment::parse(&raw).unwrap().iter() {
            *out.entry(stored[0]).or_default() += 1;
        }
    }
    out
}

#[tokio::test]
async fn a_store_of_json_readings_from_an_earlier_version_is_delivered_verified_and_salvaged() {
    upgrade_from_json(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn an_encrypted_store_of_json_readings_from_an_earlier_version_reads_the_same() {
    let key = cipher::StoreKey::from_bytes([7; 32], "test key".to_string());
    upgrade_from_json(Arc::new(
        cipher::Sealed::open(MemoryStore::new(), &key).unwrap(),
    ))
    .await;
}

/// A store whose readings an earlier version wrote as JSON, then this version's own: both are
/// listed, delivered, dead-lettered, verified and salvaged exactly.
async fn upgrade_from_json(store: Arc<dyn Store>) {
    use crate::model::fixtures;
    use crate::reading::{Kind, Lead, Waveform};
    let two = sinks(&["ehr", "file"]);
    let mut old: Vec<_> = (0..300).map(|n| reading("cuff", n)).collect();
    old.push(
        fixtures::reading(Kind::Ecg)
            .patient("MRN0012345", "urn:oid:1.2.3")
            .waveform(Waveform {
                fs_hz: 130.0,
                t0: datetime!(2026-11-27 11:59:50.5 +01:00),
                leads: vec![Lead {
                    mdc: 131_329,
                    name: "ecg".into(),
                    scale_uv: 1.0,
                    samples: (0..500).map(|i| i % 97 - 48).collect(),
                }],
                r_peaks: vec![3, 90],
                rr_ms: vec![669],
            })
            .build(),
    );
    {
        let q = Queue::with_store(Arc::clone(&store), QueueOptions::new(two.clone())).unwrap();
        q.enqueue(old.clone()).await.unwrap();
        q.close().await.unwrap();
    }
    assert_eq!(rewrite_as_earlier_version(&*store), old.len());
    assert_eq!(forms(&*store).get(&b'{'), Some(&old.len()));
    // This version opens the store, adds readings in its own form, and reads both.
    let q = Queue::with_store(Arc::clone(&store), QueueOptions::new(two.clone())).unwrap();
    let new: Vec<_> = (1000..1100).map(|n| reading("cuff", n)).collect();
    q.enqueue(new.clone()).await.unwrap();
    let f = forms(&*store);
    assert_eq!(
        (f.get(&b'{'), f.get(&segment_entry::BINARY_V1)),
        (Some(&old.len()), Some(&new.len()))
    );
    let rep = repair::verify::check(&*store).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    let all: Vec<Reading> = old.iter().chain(&new).cloned().collect();
    let ehr = SinkId::new("ehr");
    let p = q.pending(&ehr, 1000, far_future()).unwrap();
    assert_eq!(p.len(), all.len());
    for r in &all {
        let got = p.iter().find(|p| p.reading.id == r.id).expect("listed");
        assert_eq!(&got.reading, r);
        assert_eq!(
            segment_entry::encode(&got.reading),
            segment_entry::encode(r)
        );
    }
    // Delivered, dead-lettered and still pending readings of both forms.
    let (first_old, ecg, first_new) =
        (old[0].id.unwrap(), old[300].id.unwrap(), new[0].id.unwrap());
    let results = all
        .iter()
        .filter_map(|r| r.id)
        .map(|id| {
            let s = if id == first_old || id == first_new {
                Settle::Dead {
                    reason: "refused".into(),
                }
            } else {
                Settle::Delivered
            };
            (id, s)
        })
        .collect();
    q.settle(&ehr, results).await.unwrap();
    let dead = q.dead(Some(&ehr), 10).unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().any(|d| d.reading == old[0]));
    assert!(dead.iter().any(|d| d.reading == new[0]));
    let on_file = q.pending(&SinkId::new("file"), 1000, far_future()).unwrap();
    assert_eq!(on_file.len(), all.len());
    assert!(on_file
        .iter()
        .any(|p| p.reading.id == Some(ecg) && p.reading == old[300]));
    q.close().await.unwrap();
    drop(q);
    let rep = repair::verify::check(&*store).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    // Salvage copies both forms as they are; the copy verifies clean and delivers the same.
    let copy: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let out = repair::salvage::salvage(&*store, &*copy, 0).unwrap();
    assert!(out.quarantined.is_empty() && out.lost.is_empty() && out.unreadable.is_empty());
    assert_eq!(out.readings, all.len() as u64);
    let rep = repair::verify::check(&*copy).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    let q = Queue::with_store(copy, QueueOptions::new(two)).unwrap();
    let again = q.pending(&SinkId::new("file"), 1000, far_future()).unwrap();
    assert_eq!(again.len(), all.len());
    for r in &all {
        assert!(again.iter().any(|p| &p.reading == r));
    }
}
