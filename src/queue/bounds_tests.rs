//! The cap counts undelivered readings only; retained history has its own bound; the byte
//! counters match the store; a store with per-reading dedupe keys of an earlier version.

use std::sync::Arc;
use std::time::Duration;

use super::bytes::StoreBytes;
use super::tests::reading;
use super::txn::{Counters, Txn};
use super::*;
use crate::reading::{ReadingId, SinkId};
use time::OffsetDateTime;

fn opts(max_bytes: u64, history_max_bytes: u64) -> QueueOptions {
    let mut o = QueueOptions::new(vec![SinkId::new("out")]);
    o.max_bytes = max_bytes;
    o.history_max_bytes = history_max_bytes;
    o
}

async fn deliver_all(q: &Queue) {
    let sink = SinkId::new("out");
    let far = OffsetDateTime::now_utc() + time::Duration::days(1);
    loop {
        let p = q.pending(&sink, 500, far).unwrap();
        if p.is_empty() {
            return;
        }
        let done = p
            .iter()
            .map(|p| (p.reading.id.unwrap(), Settle::Delivered))
            .collect();
        q.settle_audited(&sink, done).await.unwrap();
    }
}

#[tokio::test]
async fn delivered_readings_never_count_against_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap());
    // Room for a few hundred undelivered readings; 6,000 go through.
    let q = Queue::with_store(Arc::clone(&store), opts(200_000, 256 << 20)).unwrap();
    for round in 0..30 {
        let batch: Vec<_> = (0..200).map(|n| reading("cuff", round * 200 + n)).collect();
        let out = q.enqueue(batch).await.unwrap();
        assert!(out.iter().all(|o| *o == EnqueueOutcome::Stored));
        deliver_all(&q).await;
    }
    // The size on disk is refreshed every 250 ms: the old check would refuse now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.enqueue(vec![reading("cuff", 999_999)]).await.unwrap();
    let s = q.stats().unwrap();
    assert!(
        s.disk_bytes > s.max_bytes,
        "the test must run past the cap: {s:?}"
    );
    assert!(s.undelivered_bytes < 2_000, "{s:?}");
    assert!(
        s.history.dedupe_bytes > 0 && s.history.audit_bytes > 0,
        "{s:?}"
    );
    assert_eq!(s.free_bytes, s.max_bytes - s.undelivered_bytes);
    assert_eq!(
        s.history.total_bytes,
        s.history.dedupe_bytes + s.history.audit_bytes + s.history.rejected_bytes
    );
}

#[tokio::test]
async fn undelivered_readings_still_fill_the_cap() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts(50_000, 256 << 20)).unwrap();
    let mut stored = 0;
    let err = loop {
        match q.enqueue(vec![reading("cuff", stored)]).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 10_000, "never full");
    };
    assert!(matches!(err, QueueError::Full { max: 50_000, .. }), "{err}");
    let s = q.stats().unwrap();
    assert_eq!(s.readings, u64::try_from(stored).unwrap());
    assert!(s.undelivered_bytes > 50_000);
    assert_eq!(s.free_bytes, 0);
    // Delivering gives the room back.
    deliver_all(&q).await;
    q.enqueue(vec![reading("cuff", stored + 1)]).await.unwrap();
}

#[tokio::test]
async fn history_over_its_bound_is_pruned_oldest_first_and_ingest_goes_on() {
    let bound = 60_000;
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts(1 << 20, bound)).unwrap();
    let mut last = Vec::new();
    for round in 0..40 {
        last = (0..50).map(|n| reading("cuff", round * 50 + n)).collect();
        q.enqueue(last.clone()).await.unwrap();
        deliver_all(&q).await;
    }
    let s = q.stats().unwrap();
    assert!(s.history.pruned > 0, "{s:?}");
    // At most one group's history over the bound (pruning runs at the start of each group).
    assert!(s.history.total_bytes < bound + 40_000, "{s:?}");
    // The newest history is kept: the last readings are still known, their audit is there.
    let again = q.enqueue(vec![last[49].clone()]).await.unwrap();
    assert_eq!(again, [EnqueueOutcome::Duplicate(last[49].id.unwrap())]);
    let audit = q.audit().entries(None, 100_000).unwrap();
    assert!(
        audit.len() < 2000,
        "oldest audit entries pruned: {}",
        audit.len()
    );
    let newest = audit.last().unwrap();
    assert!(
        matches!(&newest.event, crate::model::audit::AuditEvent::Delivery { reading, .. } if *reading == last[49].id.unwrap()),
        "{newest:?}"
    );
}

#[tokio::test]
async fn byte_counters_match_a_scan_after_mixed_work_and_reopen() {
    let store = Arc::new(MemoryStore::new());
    let sink = SinkId::new("out");
    let q = Queue::with_store(store.clone(), opts(1 << 30, 1 << 30)).unwrap();
    let rs: Vec<_> = (0..300).map(|n| reading("cuff", n)).collect();
    q.enqueue(rs.clone()).await.unwrap();
    let far = OffsetDateTime::now_utc() + time::Duration::days(1);
    let p = q.pending(&sink, 100, far).unwrap();
    let mut results = Vec::new();
    for (i, p) in p.iter().enumerate() {
        let id = p.reading.id.unwrap();
        results.push(match i % 3 {
            0 => (id, Settle::Delivered),
            1 => (
                id,
                Settle::Retry {
                    at: far,
                    reason: "busy".into(),
                },
            ),
            _ => (
                id,
                Settle::Dead {
                    reason: "refused".into(),
                },
            ),
        });
    }
    q.settle_audited(&sink, results).await.unwrap();
    q.purge_dead(Some(&sink), None).await.unwrap();
    q.enqueue(rs[..10].to_vec()).await.unwrap();
    let counted = q.stats().unwrap();
    let measured = StoreBytes::measure(&*store).unwrap();
    assert_eq!(counted.undelivered_bytes, measured.undelivered);
    assert_eq!(counted.history.dedupe_bytes, measured.dedupe);
    assert_eq!(counted.history.audit_bytes, measured.audit);
    q.close().await.unwrap();
    drop(q);
    let q = Queue::with_store(store.clone(), opts(1 << 30, 1 << 30)).unwrap();
    assert_eq!(q.stats().unwrap().undelivered_bytes, measured.undelivered);
}

#[tokio::test]
async fn a_store_of_an_earlier_version_is_measured_and_its_dedupe_keys_still_answer() {
    let store = Arc::new(MemoryStore::new());
    let r = reading("cuff", 7);
    let first = ReadingId::new();
    let now = super::ops::to_ms(OffsetDateTime::now_utc());
    // What an earlier version left: a per-reading dedupe key, counters without byte counts.
    let mut tx = Txn::new(&*store, Counters::default());
    tx.put(
        keys::dedupe(&r.dedupe_key()),
        keys::dedupe_value(first, now),
    );
    let mut batch = tx.take_batch(false);
    Counters::default().write_to(&mut batch);
    batch.remove(super::bytes::META_BYTES);
    batch.put(keys::META_COUNTERS, b"1".to_vec());
    batch.put(keys::META_LAYOUT, keys::layout_marker());
    store.apply(batch).unwrap();
    let q = Queue::with_store(store.clone(), opts(1 << 30, 1 << 30)).unwrap();
    let s = q.stats().unwrap();
    assert_eq!(
        s.history.dedupe_bytes,
        StoreBytes::measure(&*store).unwrap().dedupe
    );
    assert!(s.history.dedupe_bytes > 0);
    let out = q.enqueue(vec![r]).await.unwrap();
    assert_eq!(out, [EnqueueOutcome::Duplicate(first)]);
}
