//! The dedupe index: resends found within a group and after a restart, full chunks followed by
//! new ones, pruning by the window.

use std::cell::Cell;
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

thread_local! {
    /// Chunks binary-searched by claims on this thread (see `find`).
    pub static SEARCHES: Cell<u64> = const { Cell::new(0) };
}

fn searches() -> u64 {
    SEARCHES.with(Cell::get)
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

#[test]
fn a_claim_searches_a_bounded_number_of_chunks_however_long_its_hour() {
    // One fast device: 20 full chunks of one device-hour, committed 50 claims at a time.
    let store = HookedStore::new().count_scans(|prefix| prefix.len() == 13 && prefix[0] == BUCKET);
    let h = Index::open(&store).unwrap();
    let n = 20 * CHUNK_ENTRIES;
    let all: Vec<Reading> = (0..n)
        .map(|i| reading("cuff", 1_800_000_000 + i as i64 / 10, i as i64))
        .collect();
    let before = searches();
    for group in all.chunks(50) {
        let mut tx = Txn::new(&store, Counters::default());
        for r in group {
            assert_eq!(claim(&mut tx, &h, r, r.id.unwrap(), NOW).unwrap(), None);
        }
        h.apply(&store, tx.take_batch(false)).unwrap();
    }
    // Each new reading: the group's staged chunk(s) only, never the hour's committed chunks
    // (a scan of all of them costs up to 20 searches a claim here, 1,060 at 50/s).
    let per_claim = (searches() - before) as f64 / n as f64;
    assert!(
        per_claim <= 2.0,
        "{per_claim} chunk searches per new reading"
    );
    // Resends, after a restart (a new index: the hashes come from the store again), within
    // groups that also store new readings.
    let cold = Index::open(&store).unwrap();
    let scans = store.counted_scans();
    let before = searches();
    for (g, group) in all.chunks(50).enumerate() {
        let mut tx = Txn::new(&store, Counters::default());
        for r in group {
            let mut again = r.clone();
            again.id = Some(ReadingId::new());
            assert_eq!(
                claim(&mut tx, &cold, &again, again.id.unwrap(), NOW).unwrap(),
                r.id
            );
        }
        let new = reading("cuff", 1_800_000_000 + 3_000 + g as i64, 7);
        assert_eq!(
            claim(&mut tx, &cold, &new, new.id.unwrap(), NOW).unwrap(),
            None
        );
        cold.apply(&store, tx.take_batch(false)).unwrap();
    }
    let per_claim = (searches() - before) as f64 / (n + n / 50) as f64;
    assert!(per_claim <= 3.0, "{per_claim} chunk searches per resend");
    assert_eq!(store.counted_scans() - scans, 1, "the bucket was read once");
    assert_eq!(cold.bucket_loads(), 1);
}

#[test]
fn early_pruning_of_some_chunks_of_a_cached_hour_forgets_exactly_their_readings() {
    let store = Arc::new(MemoryStore::new());
    let h = Index::open(&*store).unwrap();
    let all: Vec<Reading> = (0..3 * CHUNK_ENTRIES + 10)
        .map(|i| reading("cuff", 1_800_000_000 + i as i64, 120))
        .collect();
    for group in all.chunks(100) {
        let mut tx = Txn::new(&*store, Counters::default());
        for r in group {
            claim_at(&mut tx, &h, r, r.id.unwrap()).unwrap();
        }
        commit(&h, &store, tx);
    }
    // The oldest chunk of the (cached) bucket goes, as early pruning removes the oldest keys.
    let chunks = store.scan_prefix(&[BUCKET], None, 100).unwrap();
    assert_eq!(chunks.len(), 4);
    let first: std::collections::HashSet<[u8; 8]> = entries(&chunks[0].1)
        .chunks_exact(ENTRY)
        .map(|e| e[..8].try_into().unwrap())
        .collect();
    let mut batch = Batch::new();
    batch.remove(chunks[0].0.clone());
    h.apply(&*store, batch).unwrap();
    let mut tx = Txn::new(&*store, Counters::default());
    let (mut forgotten, mut found) = (0, 0);
    for r in &all {
        let (_, hash) = locate(&h.hasher, r, r.id.unwrap());
        let got = claim_at(&mut tx, &h, r, ReadingId::new()).unwrap();
        if first.contains(&hash) {
            assert_eq!(got, None, "pruned: stored again");
            forgotten += 1;
        } else {
            assert_eq!(got, r.id);
            found += 1;
        }
    }
    assert_eq!((forgotten, found), (CHUNK_ENTRIES, 2 * CHUNK_ENTRIES + 10));
    // The readings stored again went into the last chunk (or a new one), not chunk 0.
    commit(&h, &store, tx);
    let keys: Vec<u16> = store
        .scan_prefix(&[BUCKET], None, 100)
        .unwrap()
        .iter()
        .map(|(k, _)| chunk_no(k))
        .collect();
    assert_eq!(keys, vec![1, 2, 3, 4]);
}
