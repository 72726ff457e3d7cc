//! The dedupe index: resends found within a group and after a restart, full chunks followed by
//! new ones, pruning by the window.

use std::sync::Arc;

use super::*;
use crate::queue::test_store::HookedStore;
use crate::queue::txn::Counters;
use crate::queue::MemoryStore;

fn reading(device: &str, t_s: i64, value: i64) -> Reading {
    let mut r = crate::queue::tests::reading(device, 1);
    r.device_time = Some(time::OffsetDateTime::from_unix_timestamp(t_s).unwrap());
    r.values[0].value = Some(crate::reading::Decimal::from_int(value));
    r.id = Some(ReadingId::new());
    r
}

/// Stored on 2027-01-15 (the test readings' device times are in 2027).
const NOW: u64 = 1_800_000_000_000;

fn claim_at(
    tx: &mut Txn,
    h: &Index,
    r: &Reading,
    id: ReadingId,
) -> Result<Option<ReadingId>, QueueError> {
    claim(tx, h, r, id, NOW)
}

fn commit(h: &Index, store: &MemoryStore, tx: Txn) {
    let mut tx = tx;
    h.apply(store, tx.take_batch(false)).unwrap();
}

#[test]
fn a_resend_is_found_in_the_same_group_and_after_a_restart() {
    let store = Arc::new(MemoryStore::new());
    let h = Index::open(&*store).unwrap();
    let a = reading("cuff", 1_800_000_000, 120);
    let b = reading("cuff", 1_800_000_000, 121);
    let mut tx = Txn::new(&*store, Counters::default());
    assert_eq!(claim_at(&mut tx, &h, &a, a.id.unwrap()).unwrap(), None);
    assert_eq!(claim_at(&mut tx, &h, &b, b.id.unwrap()).unwrap(), None);
    let mut resend = a.clone();
    resend.id = Some(ReadingId::new());
    assert_eq!(
        claim_at(&mut tx, &h, &resend, resend.id.unwrap()).unwrap(),
        a.id
    );
    commit(&h, &store, tx);
    // Reopened: the same store key, the same buckets.
    let h = Index::open(&*store).unwrap();
    let mut tx = Txn::new(&*store, Counters::default());
    assert_eq!(
        claim_at(&mut tx, &h, &resend, resend.id.unwrap()).unwrap(),
        a.id
    );
    assert_eq!(claim_at(&mut tx, &h, &b, ReadingId::new()).unwrap(), b.id);
    let other = reading("oxi", 1_800_000_000, 120);
    assert_eq!(
        claim_at(&mut tx, &h, &other, other.id.unwrap()).unwrap(),
        None
    );
}

#[test]
fn a_full_chunk_is_followed_by_another_and_both_are_searched() {
    let store = Arc::new(MemoryStore::new());
    let h = Index::open(&*store).unwrap();
    let mut tx = Txn::new(&*store, Counters::default());
    let all: Vec<Reading> = (0..CHUNK_ENTRIES + 30)
        .map(|i| reading("cuff", 1_800_000_000 + i as i64, 120))
        .collect();
    for r in &all {
        assert_eq!(claim_at(&mut tx, &h, r, r.id.unwrap()).unwrap(), None);
    }
    commit(&h, &store, tx);
    let chunks = store.scan_prefix(&[BUCKET], None, 100).unwrap();
    assert_eq!(chunks.len(), 2);
    assert!(chunks.iter().all(|(k, v)| valid_chunk(k, v)));
    let mut tx = Txn::new(&*store, Counters::default());
    for r in &all {
        assert_eq!(claim_at(&mut tx, &h, r, ReadingId::new()).unwrap(), r.id);
    }
}

#[test]
fn buckets_older_than_the_cutoff_are_pruned_and_younger_ones_kept() {
    let store = Arc::new(MemoryStore::new());
    let h = Index::open(&*store).unwrap();
    let old = reading("cuff", 1_800_000_000, 120);
    let young = reading("cuff", 1_800_000_000 + 8 * 24 * 3600, 120);
    let mut tx = Txn::new(&*store, Counters::default());
    claim_at(&mut tx, &h, &old, old.id.unwrap()).unwrap();
    claim_at(&mut tx, &h, &young, young.id.unwrap()).unwrap();
    commit(&h, &store, tx);
    // Stored at NOW: within the window both stay, whatever their device times.
    let mut tx = Txn::new(&*store, Counters::default());
    assert_eq!(prune(&mut tx, hour_of(NOW - WINDOW_MS), 100).unwrap(), 0);
    // A week and a day later, the bucket of the older device time goes.
    let later = NOW + WINDOW_MS + 24 * 3_600_000;
    let removed = prune(&mut tx, hour_of(later - WINDOW_MS), 100).unwrap();
    assert_eq!(removed, 1);
    commit(&h, &store, tx);
    let mut tx = Txn::new(&*store, Counters::default());
    assert_eq!(
        claim_at(&mut tx, &h, &old, ReadingId::new()).unwrap(),
        None,
        "forgotten"
    );
    assert_eq!(
        claim_at(&mut tx, &h, &young, ReadingId::new()).unwrap(),
        young.id
    );
}

#[test]
fn a_bucket_of_old_device_times_is_kept_for_the_window_after_its_last_insert() {
    // A memory recall: measured a month before it was stored.
    let store = Arc::new(MemoryStore::new());
    let h = Index::open(&*store).unwrap();
    let recalled = reading("cuff", 1_800_000_000 - 30 * 24 * 3600, 120);
    let mut tx = Txn::new(&*store, Counters::default());
    claim_at(&mut tx, &h, &recalled, recalled.id.unwrap()).unwrap();
    commit(&h, &store, tx);
    let mut tx = Txn::new(&*store, Counters::default());
    assert_eq!(prune(&mut tx, hour_of(NOW - WINDOW_MS), 100).unwrap(), 0);
    assert_eq!(
        claim_at(&mut tx, &h, &recalled, ReadingId::new()).unwrap(),
        recalled.id,
        "a second recall within the window is a duplicate"
    );
    let later = NOW + WINDOW_MS + 3_600_000;
    assert_eq!(prune(&mut tx, hour_of(later - WINDOW_MS), 100).unwrap(), 1);
}

#[test]
fn a_reading_without_device_time_is_found_by_its_id_only() {
    let store = Arc::new(MemoryStore::new());
    let h = Index::open(&*store).unwrap();
    let mut a = reading("oxi", 0, 97);
    a.device_time = None;
    let mut b = a.clone();
    b.id = Some(ReadingId::new());
    let mut tx = Txn::new(&*store, Counters::default());
    assert_eq!(claim_at(&mut tx, &h, &a, a.id.unwrap()).unwrap(), None);
    assert_eq!(claim_at(&mut tx, &h, &b, b.id.unwrap()).unwrap(), None);
    assert_eq!(claim_at(&mut tx, &h, &a, a.id.unwrap()).unwrap(), a.id);
}

#[test]
fn chunks_stay_sorted() {
    let mut v = Vec::new();
    for x in [5u8, 1, 9, 3] {
        v = insert(&v, &[x; 8], ReadingId::from_bytes([x; 16]), 7);
    }
    assert_eq!(touched(&v), Some(7));
    assert!(valid_chunk(&[0; 15], &v));
    assert_eq!(find(&v, &[9; 8]), Some(ReadingId::from_bytes([9; 16])));
    assert_eq!(find(&v, &[4; 8]), None);
}

#[test]
fn pruning_reads_a_page_past_the_old_hours_not_every_young_chunk() {
    // A backlog: 300 hours of young chunks after 40 hours of old ones.
    let store = HookedStore::new();
    let h = Index::open(&store).unwrap();
    let mut tx = Txn::new(&store, Counters::default());
    for hour in 0..340i64 {
        let r = reading("cuff", 1_800_000_000 + hour * 3600, 120);
        claim(
            &mut tx,
            &h,
            &r,
            r.id.unwrap(),
            NOW + u64::try_from(hour).unwrap() * 3_600_000,
        )
        .unwrap();
    }
    h.apply(&store, tx.take_batch(false)).unwrap();
    store.reset_widest_scan();
    let mut tx = Txn::new(&store, Counters::default());
    let cutoff = hour_of(1_800_000_000_000 + 40 * 3_600_000);
    let later = hour_of(NOW + 40 * 3_600_000);
    assert_eq!(prune(&mut tx, cutoff.min(later), 10_000).unwrap(), 40);
    let widest = store.widest_scan();
    assert!(widest <= PRUNE_PAGE, "one scan returned {widest} chunks");
    // With a small limit it stops there and goes on from the oldest next time.
    let mut tx = Txn::new(&store, Counters::default());
    assert_eq!(prune(&mut tx, cutoff.min(later), 5).unwrap(), 5);
}
