//! Queue behaviour across reopen, counters, dedupe pruning and unreadable entries.

use std::sync::Arc;

use time::OffsetDateTime;

use super::test_store::HookedStore;
use super::tests::reading;
use super::txn::{Counters, Txn};
use super::*;
use crate::reading::{Reading, ReadingId, SinkId};

fn sinks(names: &[&str]) -> Vec<SinkId> {
    names.iter().map(|n| SinkId::new(*n)).collect()
}

#[tokio::test]
async fn reopening_keeps_pending_dead_counters_and_unconfigured_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (reading("cuff", 1), reading("cuff", 2));
    {
        let q = Queue::open(dir.path(), QueueOptions::new(sinks(&["ehr", "old"]))).unwrap();
        q.enqueue(vec![a.clone(), b.clone()]).await.unwrap();
        let dead = Settle::Dead {
            reason: "HTTP 400".into(),
        };
        q.settle(&SinkId::new("ehr"), vec![(a.id.unwrap(), dead)])
            .await
            .unwrap();
        q.close().await.unwrap();
    }
    // "old" is no longer configured: its entries stay and show.
    let q = Queue::open(dir.path(), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    let s = q.stats().unwrap();
    let view: Vec<_> = s
        .sinks
        .iter()
        .map(|s| (s.sink.as_str(), s.pending, s.dead, s.configured))
        .collect();
    assert_eq!(view, vec![("ehr", 1, 1, true), ("old", 2, 0, false)]);
    assert_eq!(s.readings, 2);
    let far = OffsetDateTime::now_utc() + time::Duration::days(1);
    let p = q.pending(&SinkId::new("ehr"), 10, far).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].reading, b);
    assert_eq!(q.dead(None, 10).unwrap()[0].reason, "HTTP 400");
    // New readings only go to configured sinks.
    q.enqueue(vec![reading("cuff", 3)]).await.unwrap();
    assert_eq!(q.stats().unwrap().sinks[1].pending, 2);
}

#[tokio::test]
async fn set_sinks_gives_later_readings_entries_for_exactly_the_new_sinks() {
    let q = Queue::with_store(
        Arc::new(MemoryStore::new()),
        QueueOptions::new(sinks(&["ehr"])),
    )
    .unwrap();
    q.enqueue(vec![reading("cuff", 1)]).await.unwrap();
    q.set_sinks(sinks(&["lis", "lis"])).await.unwrap();
    q.enqueue(vec![reading("cuff", 2)]).await.unwrap();
    let view: Vec<_> = q
        .stats()
        .unwrap()
        .sinks
        .iter()
        .map(|s| (s.sink.as_str().to_string(), s.pending, s.configured))
        .collect();
    assert_eq!(
        view,
        vec![("ehr".to_string(), 1, false), ("lis".to_string(), 1, true)]
    );
    assert!(q.set_sinks(sinks(&[""])).await.is_err());
}

#[tokio::test]
async fn queue_open_names_the_path_when_the_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _q = Queue::open(dir.path(), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    let err = Queue::open(dir.path(), QueueOptions::new(sinks(&["ehr"])))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&dir.path().display().to_string()) && err.contains("locked"),
        "{err}"
    );
}

#[test]
fn a_sink_id_with_a_nul_byte_is_refused() {
    let err = Queue::with_store(
        Arc::new(MemoryStore::new()),
        QueueOptions::new(sinks(&["a\0b"])),
    )
    .err()
    .unwrap();
    assert!(matches!(err, QueueError::BadSinkId(_)), "{err}");
}

#[tokio::test]
async fn counters_match_a_full_recount_after_mixed_work() {
    let store = Arc::new(MemoryStore::new());
    let q = Queue::with_store(store.clone(), QueueOptions::new(sinks(&["ehr", "file"]))).unwrap();
    let rs: Vec<Reading> = (0..30).map(|n| reading("ox", n)).collect();
    q.enqueue(rs.clone()).await.unwrap();
    let (ehr, file) = (SinkId::new("ehr"), SinkId::new("file"));
    let now = OffsetDateTime::now_utc();
    let mut results = Vec::new();
    for (i, r) in rs.iter().enumerate() {
        let id = r.id.unwrap();
        results.push(match i % 3 {
            0 => (id, Settle::Delivered),
            1 => (
                id,
                Settle::Retry {
                    at: now,
                    reason: "timeout".into(),
                },
            ),
            _ => (
                id,
                Settle::Dead {
                    reason: "HTTP 422".into(),
                },
            ),
        });
    }
    q.settle(&ehr, results).await.unwrap();
    let delivered: Vec<_> = rs
        .iter()
        .take(10)
        .map(|r| (r.id.unwrap(), Settle::Delivered))
        .collect();
    q.settle(&file, delivered).await.unwrap();
    q.retry_dead(&ehr, rs[2].id).await.unwrap();
    q.purge_dead(None, None).await.unwrap();
    // Three quarantined: one released, one discarded, one left.
    let mut bad: Vec<Reading> = (100..103).map(|n| reading("ox", n)).collect();
    for r in &mut bad {
        r.flags
            .push(crate::reading::Flag::new("rejected:heart_rate 0 /min <= 0"));
    }
    q.enqueue(bad.clone()).await.unwrap();
    let release = crate::queue::ReleaseRequest {
        by: "dr".into(),
        reason: "checked".into(),
        patient: None,
        require_patient: false,
    };
    q.quarantine()
        .release(bad[0].id.unwrap(), release)
        .await
        .unwrap();
    q.quarantine()
        .discard(bad[1].id.unwrap(), "ma".into(), "fault".into())
        .await
        .unwrap();
    let recount = Counters::recount(&*store).unwrap();
    let s = q.stats().unwrap();
    assert_eq!(s.readings, recount.readings);
    assert_eq!((s.quarantined, recount.quarantined), (1, 1));
    for sink in &s.sinks {
        let c = recount.sinks.get(&sink.sink).copied().unwrap_or_default();
        assert_eq!(
            (sink.pending, sink.dead),
            (c.pending, c.dead),
            "{}",
            sink.sink
        );
    }
    // ehr: 10 delivered, 10 retried, 10 dead → 1 retried back, 9 purged. file: 20 left. Plus
    // the released reading on both.
    assert_eq!((s.sinks[0].pending, s.sinks[0].dead), (12, 0));
    assert_eq!((s.sinks[1].pending, s.sinks[1].dead), (21, 0));
    // Gone: 0, 3, 6, 9 (delivered to both) and 5, 8 (purged from ehr, delivered to file); the
    // released and the quarantined one are stored, the discarded one is gone.
    assert_eq!(s.readings, 30 - 6 + 2);
}

#[test]
fn dedupe_keys_older_than_the_window_are_pruned_and_newer_ones_kept() {
    let store = MemoryStore::new();
    let mut tx = Txn::new(&store, Counters::default());
    let id = ReadingId::new();
    for (ms, key) in [(1_000u64, "a-old"), (5_000, "b-new"), (2_000, "c-old")] {
        tx.put(keys::dedupe(key), keys::dedupe_value(id, ms));
    }
    store.apply(tx.take_batch(false)).unwrap();
    let now = 3_000 + keys::DEDUPE_WINDOW_MS;
    // Two keys per pass: the cursor goes on where the last pass stopped, then starts over.
    let mut tx = Txn::new(&store, Counters::default());
    let (n, next) = super::prune::prune_dedupe(&mut tx, now, None, 2).unwrap();
    assert_eq!((n, next.clone()), (1, Some(keys::dedupe("b-new"))));
    store.apply(tx.take_batch(false)).unwrap();
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(
        super::prune::prune_dedupe(&mut tx, now, next.as_deref(), 2).unwrap(),
        (1, None)
    );
    store.apply(tx.take_batch(false)).unwrap();
    assert_eq!(store.get(&keys::dedupe("a-old")).unwrap(), None);
    assert_eq!(store.get(&keys::dedupe("c-old")).unwrap(), None);
    assert!(store.get(&keys::dedupe("b-new")).unwrap().is_some());
}

#[tokio::test]
async fn a_pending_entry_with_an_unreadable_reading_moves_to_dead_letter() {
    let store = Arc::new(MemoryStore::new());
    let q = Queue::with_store(store.clone(), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    let (bad, good) = (reading("a", 1), reading("a", 2));
    q.enqueue(vec![bad.clone(), good.clone()]).await.unwrap();
    // Both are in segment 0: rewrite it with the first entry damaged.
    let mut seg = super::segment::Writer::default();
    seg.push(bad.id.unwrap(), b"{not json");
    seg.push(good.id.unwrap(), &serde_json::to_vec(&good).unwrap());
    let mut b = Batch::new();
    b.put(keys::segment(0), seg.into_bytes());
    store.apply(b).unwrap();
    let p = q
        .pending(
            &SinkId::new("ehr"),
            10,
            OffsetDateTime::now_utc() + time::Duration::days(1),
        )
        .unwrap();
    assert_eq!(
        p.iter().filter_map(|p| p.reading.id).collect::<Vec<_>>(),
        vec![good.id.unwrap()]
    );
    // The quarantine goes through the writer's channel; a later enqueue commits after it.
    q.enqueue(vec![reading("a", 3)]).await.unwrap();
    let s = q.stats().unwrap();
    assert_eq!((s.sinks[0].pending, s.sinks[0].dead), (2, 1));
}

#[test]
fn audit_entries_older_than_the_retention_are_pruned_oldest_first() {
    let store = MemoryStore::new();
    let mut tx = Txn::new(&store, Counters::default());
    let key = |ms: u64| {
        let mut k = vec![super::audit::AUDIT];
        k.extend_from_slice(&ms.to_be_bytes()[2..]);
        k.extend_from_slice(&[7; 10]);
        k
    };
    for ms in [1_000u64, 2_000, 3_000, 9_000] {
        tx.put(key(ms), b"{}".to_vec());
    }
    store.apply(tx.take_batch(false)).unwrap();
    // At most two per pass; entries at or after the cutoff stay.
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(super::audit::prune(&mut tx, 5_000, 2).unwrap(), 2);
    store.apply(tx.take_batch(false)).unwrap();
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(super::audit::prune(&mut tx, 5_000, 2).unwrap(), 1);
    store.apply(tx.take_batch(false)).unwrap();
    let left: Vec<_> = store
        .scan_prefix(&[super::audit::AUDIT], None, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, vec![key(9_000)]);
}

#[tokio::test]
async fn after_a_failed_sync_a_resent_reading_is_not_answered_as_a_stored_duplicate() {
    let store = Arc::new(HookedStore::new());
    let q = Queue::with_store(store.clone(), QueueOptions::new(sinks(&["ehr"]))).unwrap();
    store.fail_syncs(true);
    let r = reading("cuff", 1);
    // Applied (visible to the next lookup) but not durable: the caller must not acknowledge.
    assert!(q.enqueue(vec![r.clone()]).await.is_err());
    // The same reading sent again finds its dedupe key; answering "duplicate" would let the
    // sender drop a reading that is on no disk.
    assert!(q.enqueue(vec![r.clone()]).await.is_err());
    // Nothing is trusted until the store is reopened, even once syncs work again.
    store.fail_syncs(false);
    assert!(q.enqueue(vec![reading("cuff", 2)]).await.is_err());
}
