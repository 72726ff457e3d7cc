//! What a settle and an enqueue read from the store: the writer answers from what it holds
//! (the sink's bitmaps, the group's staged writes and what it read earlier in the group), so
//! settling N readings costs a bounded number of point reads for fresh entries and one per
//! retried entry (its own value), not several per reading; and the answers stay exact.

use std::sync::Arc;

use time::OffsetDateTime;

use super::test_store::HookedStore;
use super::{Queue, QueueOptions, Settle};
use crate::queue::tests::reading;
use crate::queue::tests::{ehr, far_future, file};
use crate::reading::{Reading, ReadingId, SinkId};

const N: i64 = 300;

fn open(store: &Arc<HookedStore>, sinks: Vec<SinkId>) -> Queue {
    let mut opts = QueueOptions::new(sinks);
    opts.max_group = 10_000;
    Queue::with_store(store.clone(), opts).unwrap()
}

fn batch(first: i64) -> Vec<Reading> {
    (0..N).map(|i| reading("cuff", first + i)).collect()
}

fn ids(rs: &[Reading]) -> Vec<ReadingId> {
    rs.iter().filter_map(|r| r.id).collect()
}

/// Hands out every due entry of `sink` (as a delivery loop does: this fills the hints).
fn take_all(q: &Queue, sink: &SinkId) -> Vec<ReadingId> {
    q.pending(sink, 10_000, far_future())
        .unwrap()
        .into_iter()
        .filter_map(|p| p.reading.id)
        .collect()
}

fn all(ids: &[ReadingId], s: &Settle) -> Vec<(ReadingId, Settle)> {
    ids.iter().map(|id| (*id, s.clone())).collect()
}

/// Point reads (`get`) of the store while `f` runs.
async fn gets_of<F: std::future::Future<Output = ()>>(store: &HookedStore, f: F) -> u64 {
    let before = store.gets();
    f.await;
    store.gets() - before
}

#[tokio::test]
async fn settling_fresh_entries_reads_a_bounded_number_of_keys() {
    let store = Arc::new(HookedStore::new());
    let q = open(&store, vec![ehr()]);
    let rs = batch(0);
    let enqueue = gets_of(&store, async {
        q.enqueue(rs.clone()).await.unwrap();
    })
    .await;
    assert!(enqueue <= 8, "{enqueue} point reads to store {N} readings");
    let sent = take_all(&q, &ehr());
    assert_eq!(sent, ids(&rs));
    let settle = gets_of(&store, async {
        q.settle(&ehr(), all(&sent, &Settle::Delivered))
            .await
            .unwrap();
    })
    .await;
    // Before: a read for the retried entry, another for the dead entry, per reading.
    assert!(settle <= 8, "{settle} point reads to settle {N} readings");
    let audited = {
        let rs = batch(N);
        q.enqueue(rs).await.unwrap();
        let sent = take_all(&q, &ehr());
        gets_of(&store, async {
            q.settle_audited(&ehr(), all(&sent, &Settle::Delivered))
                .await
                .unwrap();
        })
        .await
    };
    assert!(audited <= 8, "{audited} point reads for an audited settle");
    let s = q.stats().unwrap();
    assert_eq!((s.readings, s.sinks[0].pending, s.sinks[0].dead), (0, 0, 0));
    assert!(take_all(&q, &ehr()).is_empty());
}

#[tokio::test]
async fn settling_retried_entries_reads_each_entry_once() {
    let store = Arc::new(HookedStore::new());
    let q = open(&store, vec![ehr()]);
    let rs = batch(0);
    q.enqueue(rs.clone()).await.unwrap();
    let sent = take_all(&q, &ehr());
    let retry = Settle::Retry {
        at: OffsetDateTime::UNIX_EPOCH,
        reason: "503".into(),
    };
    q.settle(&ehr(), all(&sent, &retry)).await.unwrap();
    let again = take_all(&q, &ehr());
    assert_eq!(again.len(), sent.len(), "every entry is due again");
    let settle = gets_of(&store, async {
        q.settle_audited(&ehr(), all(&again, &Settle::Delivered))
            .await
            .unwrap();
    })
    .await;
    // The retried entry itself (its attempts and due key) is read; nothing else per reading.
    let n = u64::try_from(N).unwrap();
    assert!(
        settle <= n + 8,
        "{settle} point reads to settle {N} retried entries"
    );
    let s = q.stats().unwrap();
    assert_eq!((s.readings, s.sinks[0].pending), (0, 0));
    assert_eq!(
        s.undelivered_bytes, 0,
        "the byte counters follow the removals"
    );
}

#[tokio::test]
async fn a_reading_stays_while_another_sink_refers_to_it_and_goes_with_the_last() {
    let store = Arc::new(HookedStore::new());
    let q = open(&store, vec![ehr(), file()]);
    let rs = batch(0);
    q.enqueue(rs.clone()).await.unwrap();
    let to_ehr = take_all(&q, &ehr());
    let first = gets_of(&store, async {
        q.settle(&ehr(), all(&to_ehr, &Settle::Delivered))
            .await
            .unwrap();
    })
    .await;
    assert!(first <= 8, "{first} point reads (the file sink's bitmap)");
    assert_eq!(q.stats().unwrap().readings, u64::try_from(N).unwrap());
    // The file sink dead-letters one and delivers the rest: that one stays stored.
    let to_file = take_all(&q, &file());
    assert_eq!(to_file, ids(&rs), "still pending for the file sink");
    let dead = Settle::Dead {
        reason: "rejected".into(),
    };
    let mut results = all(&to_file[1..], &Settle::Delivered);
    results.insert(0, (to_file[0], dead));
    let last = gets_of(&store, async {
        q.settle(&file(), results).await.unwrap();
    })
    .await;
    assert!(last <= 8, "{last} point reads for the last sink's settle");
    let s = q.stats().unwrap();
    assert_eq!(s.readings, 1, "the dead-lettered reading stays");
    let dead = q.dead(Some(&file()), 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reading, rs[0]);
    // A settle of entries already settled changes nothing.
    q.settle(&ehr(), all(&to_ehr, &Settle::Delivered))
        .await
        .unwrap();
    q.settle(&file(), all(&to_file, &Settle::Delivered))
        .await
        .unwrap();
    let again = q.stats().unwrap();
    assert_eq!(again.readings, 1);
    let by_sink: Vec<(u64, u64)> = again.sinks.iter().map(|s| (s.pending, s.dead)).collect();
    assert_eq!(by_sink, vec![(0, 0), (0, 1)]);
    // Purging the dead entry releases the reading: no sink refers to it any more.
    assert_eq!(
        q.purge_dead(Some(&file()), Some(to_file[0])).await.unwrap(),
        1
    );
    assert_eq!(q.stats().unwrap().readings, 0);
    assert_eq!(q.stats().unwrap().undelivered_bytes, 0);
}

#[tokio::test]
async fn a_reading_dead_for_one_sink_stays_when_the_other_delivers_it() {
    let store = Arc::new(HookedStore::new());
    let q = open(&store, vec![ehr(), file()]);
    let rs = batch(0);
    q.enqueue(rs.clone()).await.unwrap();
    let to_file = take_all(&q, &file());
    let dead = Settle::Dead {
        reason: "rejected".into(),
    };
    q.settle(&file(), all(&to_file[..1], &dead)).await.unwrap();
    let to_ehr = take_all(&q, &ehr());
    q.settle(&ehr(), all(&to_ehr, &Settle::Delivered))
        .await
        .unwrap();
    let s = q.stats().unwrap();
    assert_eq!(
        s.readings,
        u64::try_from(N).unwrap(),
        "the file sink holds all"
    );
    // A retry of the dead entry makes it pending again; delivered, the reading goes.
    assert_eq!(q.retry_dead(&file(), Some(to_file[0])).await.unwrap(), 1);
    let to_file = take_all(&q, &file());
    q.settle(&file(), all(&to_file, &Settle::Delivered))
        .await
        .unwrap();
    let s = q.stats().unwrap();
    assert_eq!((s.readings, s.undelivered_bytes), (0, 0));
}
