//! The cached dedupe chunks never change a claim's answer: rolled-back requests, failed
//! applies, a swapped store, a restart and long device-hours are answered as the store says,
//! and a cached bucket is not read from the store again.

use std::sync::Arc;
use std::time::Duration;

use super::super::dedupe::{claim, Index, BUCKET, CHUNK_ENTRIES};
use super::super::test_store::HookedStore;
use super::super::txn::{Counters, Txn};
use super::super::{EnqueueOutcome, Queue, QueueOptions, Store};
use super::{ChunkCache, CEILING_BYTES, MAX_BYTES};
use crate::reading::{Reading, ReadingId, SinkId};

/// A memory store that counts bucket scans (a prefix of 13 bytes starting with [`BUCKET`]).
fn faulty() -> HookedStore {
    HookedStore::new().count_scans(|prefix| prefix.len() == 13 && prefix[0] == BUCKET)
}

const NOW: u64 = 1_800_000_000_000;

/// A reading of `device` at second `s` of 2026-11-27 12:00 with value `60 + v % 100`.
fn reading(device: &str, s: i64, v: i64) -> Reading {
    let mut r = super::super::tests::reading(device, s);
    r.values[0].value = Some(crate::reading::Decimal::from_int(v));
    r
}

fn claim_new(tx: &mut Txn, index: &Index, r: &Reading) -> Option<ReadingId> {
    claim(tx, index, r, r.id.unwrap(), NOW).unwrap()
}

/// A resend: the same measurement under a new id.
fn resend(r: &Reading) -> Reading {
    let mut r = r.clone();
    r.id = Some(ReadingId::new());
    r
}

#[test]
fn a_cached_bucket_is_not_read_again_and_follows_every_applied_batch() {
    let store = faulty();
    let index = Index::open(&store).unwrap();
    let a = reading("cuff", 0, 120);
    let b = reading("cuff", 1, 121);
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(claim_new(&mut tx, &index, &a), None);
    index.apply(&store, tx.take_batch(false)).unwrap();
    let scans = store.counted_scans();
    for _ in 0..3 {
        let mut tx = Txn::new(&store, Counters::default());
        assert_eq!(claim_new(&mut tx, &index, &resend(&a)), a.id);
        assert_eq!(claim_new(&mut tx, &index, &b), None);
        assert_eq!(claim_new(&mut tx, &index, &resend(&b)), b.id);
        drop(tx);
    }
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(claim_new(&mut tx, &index, &b), None);
    index.apply(&store, tx.take_batch(false)).unwrap();
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(claim_new(&mut tx, &index, &resend(&b)), b.id);
    assert_eq!(
        store.counted_scans(),
        scans,
        "the bucket came from the cache"
    );
}

#[test]
fn a_rolled_back_insert_is_not_remembered() {
    let store = faulty();
    let index = Index::open(&store).unwrap();
    let a = reading("cuff", 0, 120);
    let b = reading("cuff", 1, 121);
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(claim_new(&mut tx, &index, &a), None);
    index.apply(&store, tx.take_batch(false)).unwrap();
    // A request that inserted b into a's chunk, then failed.
    let mut tx = Txn::new(&store, Counters::default());
    tx.savepoint();
    assert_eq!(claim_new(&mut tx, &index, &b), None);
    assert_eq!(claim_new(&mut tx, &index, &resend(&b)), b.id, "staged");
    tx.rollback();
    let b2 = resend(&b);
    assert_eq!(claim_new(&mut tx, &index, &b2), None, "b is new again");
    assert_eq!(claim_new(&mut tx, &index, &resend(&a)), a.id);
    index.apply(&store, tx.take_batch(false)).unwrap();
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(claim_new(&mut tx, &index, &resend(&b)), b2.id);
}

#[test]
fn a_failed_apply_leaves_nothing_of_its_batch() {
    let store = faulty();
    let index = Index::open(&store).unwrap();
    let a = reading("cuff", 0, 120);
    let b = reading("cuff", 1, 121);
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(claim_new(&mut tx, &index, &a), None);
    index.apply(&store, tx.take_batch(false)).unwrap();
    store.fail_applies(true);
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(claim_new(&mut tx, &index, &b), None);
    assert!(index.apply(&store, tx.take_batch(false)).is_err());
    store.fail_applies(false);
    let mut tx = Txn::new(&store, Counters::default());
    let b2 = resend(&b);
    assert_eq!(claim_new(&mut tx, &index, &b2), None, "b was never stored");
    assert_eq!(claim_new(&mut tx, &index, &resend(&a)), a.id);
    index.apply(&store, tx.take_batch(false)).unwrap();
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(claim_new(&mut tx, &index, &resend(&b)), b2.id);
}

#[test]
fn a_long_hour_keeps_every_chunk_searchable_with_and_without_the_cache() {
    // 3 × 170 + 40 readings of one device-hour, one group commit per 50, then every one
    // resent: found, whether the bucket is cached, evicted, or read by a new index.
    let store = faulty();
    let index = Index::open(&store).unwrap();
    let n = 3 * CHUNK_ENTRIES + 40;
    let all: Vec<Reading> = (0..n as i64).map(|i| reading("cuff", i, i)).collect();
    for group in all.chunks(50) {
        let mut tx = Txn::new(&store, Counters::default());
        for r in group {
            assert_eq!(claim_new(&mut tx, &index, r), None);
        }
        index.apply(&store, tx.take_batch(false)).unwrap();
    }
    let chunks = store.scan_prefix(&[BUCKET], None, 100).unwrap();
    assert_eq!(chunks.len(), 4);
    assert!(chunks
        .iter()
        .all(|(k, v)| super::super::dedupe::valid_chunk(k, v)));
    let cold = Index::open(&store).unwrap();
    // A cache smaller than the bucket: read from the store at every claim, same answers.
    let tiny = Index::open(&store).unwrap().with_cache_bytes(1024);
    let mut tx = Txn::new(&store, Counters::default());
    for r in &all {
        assert_eq!(claim_new(&mut tx, &index, &resend(r)), r.id);
        assert_eq!(claim_new(&mut tx, &cold, &resend(r)), r.id);
    }
    let loads = tiny.bucket_loads();
    for r in all.iter().step_by(37) {
        assert_eq!(claim_new(&mut tx, &tiny, &resend(r)), r.id);
    }
    assert!(tiny.bucket_loads() - loads >= 15, "evicted, read again");
    assert_eq!(cold.bucket_loads(), 1);
}

fn fast_queue(store: Arc<dyn Store>) -> Queue {
    Queue::with_store(store, QueueOptions::new(vec![SinkId::new("out")])).unwrap()
}

#[tokio::test]
async fn through_the_queue_a_failed_write_then_a_restart_answer_as_the_store() {
    let store = Arc::new(faulty());
    let q = fast_queue(store.clone());
    let a = reading("cuff", 0, 120);
    let b = reading("cuff", 1, 121);
    assert_eq!(
        q.enqueue(vec![a.clone()]).await.unwrap(),
        vec![EnqueueOutcome::Stored]
    );
    store.fail_applies(true);
    assert!(q.enqueue(vec![b.clone()]).await.is_err());
    store.fail_applies(false);
    let b2 = resend(&b);
    assert_eq!(
        q.enqueue(vec![b2.clone(), resend(&a)]).await.unwrap(),
        vec![
            EnqueueOutcome::Stored,
            EnqueueOutcome::Duplicate(a.id.unwrap())
        ]
    );
    q.close().await.unwrap();
    // Replays after a restart: the same store, a new queue (and a new, empty cache).
    let q = fast_queue(store.clone());
    assert_eq!(
        q.enqueue(vec![resend(&a), resend(&b)]).await.unwrap(),
        vec![
            EnqueueOutcome::Duplicate(a.id.unwrap()),
            EnqueueOutcome::Duplicate(b2.id.unwrap())
        ]
    );
    q.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_before_and_after_a_store_swap_are_recognised() {
    use super::super::cipher::{Sealed, StoreKey};
    use super::super::reclaim::ReclaimOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue");
    let key = StoreKey::from_bytes([5; 32], "test");
    let mut opts = QueueOptions::new(vec![SinkId::new("out")]);
    let mut reclaim = ReclaimOptions::new(path.clone(), 1 << 20, key.clone());
    reclaim.slack_bytes = 0;
    reclaim.every = Duration::ZERO;
    opts.reclaim = Some(reclaim);
    let store = Sealed::open(super::super::SledStore::open(&path, 1 << 20).unwrap(), &key).unwrap();
    let q = Queue::with_store(Arc::new(store), opts).unwrap();
    let before: Vec<Reading> = (0..20).map(|i| reading("cuff", i, i)).collect();
    q.enqueue(before.clone()).await.unwrap();
    // Writes go on until the writer rewrote and swapped the store at least once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = 100;
    while q.stats().unwrap().reclaims == 0 && std::time::Instant::now() < deadline {
        q.enqueue(vec![reading("oxi", i, i)]).await.unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(q.stats().unwrap().reclaims >= 1, "no swap happened");
    let after = reading("cuff", 50, 50);
    let mut batch: Vec<Reading> = before.iter().map(resend).collect();
    batch.push(after.clone());
    batch.push(resend(&after));
    let out = q.enqueue(batch).await.unwrap();
    let mut want: Vec<EnqueueOutcome> = before
        .iter()
        .map(|r| EnqueueOutcome::Duplicate(r.id.unwrap()))
        .collect();
    want.push(EnqueueOutcome::Stored);
    want.push(EnqueueOutcome::Duplicate(after.id.unwrap()));
    assert_eq!(out, want);
    q.close().await.unwrap();
}

/// The bucket prefix of `device` (one byte standing for the 8-byte device hash) in hour 1000.
fn prefix(device: u8) -> Vec<u8> {
    let mut p = vec![BUCKET];
    p.extend_from_slice(&1000u32.to_be_bytes());
    p.extend_from_slice(&[device; 8]);
    p
}

fn chunk(device: u8, n: u16) -> (Vec<u8>, Vec<u8>) {
    let mut k = prefix(device);
    k.extend_from_slice(&n.to_be_bytes());
    (k, vec![n.to_be_bytes()[1]; 5 + 24 * CHUNK_ENTRIES])
}

/// One device at 50 readings/s for an hour (1,060 chunks, about 4.3 MB) and three slow devices
/// beside it; `groups` group commits, each claiming in all four buckets and rewriting their
/// last chunks. Returns how many buckets `cache` read from the store.
fn fast_device_hour(cache: &ChunkCache, groups: u16) -> u64 {
    let store = faulty();
    let mut b = super::super::store::Batch::new();
    for n in 0..1060 {
        let (k, v) = chunk(1, n);
        b.put(k, v);
    }
    for d in 2..5 {
        let (k, v) = chunk(d, 0);
        b.put(k, v);
    }
    store.apply(b).unwrap();
    for g in 0..groups {
        for d in 1..5 {
            let n = cache
                .with_bucket(&store, &prefix(d), |b| b.chunks.len())
                .unwrap();
            assert!(n >= 1);
        }
        let mut b = super::super::store::Batch::new();
        for d in 1..5 {
            let (k, v) = chunk(d, if d == 1 { 1060 + g / 4 } else { 0 });
            b.put(k, v);
        }
        cache.apply(&store, b).unwrap();
    }
    cache.loads()
}

#[test]
fn a_fast_devices_hour_stays_cached_beside_slow_devices() {
    // The 2 MiB bound alone (as before): the fast bucket is read at every group.
    let fixed = ChunkCache::new(MAX_BYTES);
    assert_eq!(
        fast_device_hour(&fixed, 40),
        40 + 3,
        "fixed bound: reread each group"
    );
    // The bound that follows the largest bucket: each bucket read once.
    let cache = ChunkCache::default();
    assert_eq!(fast_device_hour(&cache, 40), 4);
    assert!(cache.bytes() > MAX_BYTES && cache.bytes() <= CEILING_BYTES);
}

#[test]
fn the_ceiling_still_bounds_the_cache() {
    // A ceiling below the fast bucket: it is dropped after each use, the others stay.
    let cache = ChunkCache::bounded(64 << 10, 1 << 20);
    assert_eq!(fast_device_hour(&cache, 10), 10 + 3);
    assert!(cache.bytes() <= 1 << 20);
    // Buckets smaller than half the ceiling: twice the largest is kept, no more.
    let cache = ChunkCache::bounded(16 << 10, 64 << 20);
    let store = faulty();
    let mut b = super::super::store::Batch::new();
    for d in 1..=20u8 {
        for n in 0..8 {
            let (k, v) = chunk(d, n);
            b.put(k, v);
        }
    }
    store.apply(b).unwrap();
    for d in 1..=20u8 {
        cache.with_bucket(&store, &prefix(d), |_| ()).unwrap();
    }
    // One bucket as the cache counts it: its chunks and the index of their hashes.
    let one = ChunkCache::bounded(16 << 10, 64 << 20);
    one.with_bucket(&store, &prefix(1), |_| ()).unwrap();
    let bucket = one.bytes();
    assert!(bucket >= 8 * (15 + 5 + 24 * CHUNK_ENTRIES));
    assert!(
        cache.bytes() <= 2 * bucket,
        "{} > {}",
        cache.bytes(),
        2 * bucket
    );
    assert_eq!(cache.loads(), 20);
    // The two most recent are the ones kept.
    cache.with_bucket(&store, &prefix(20), |_| ()).unwrap();
    cache.with_bucket(&store, &prefix(19), |_| ()).unwrap();
    assert_eq!(cache.loads(), 20);
}
