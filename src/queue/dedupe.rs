//! The dedupe index: which measurements were stored in the last [`WINDOW_MS`], compactly.
//!
//! Receives the dedupe key of every reading the queue stores (`Reading::dedupe_key`); promises
//! that a reading whose key was stored within the window is answered with the first reading's
//! id, and that the index costs a bounded, small number of bytes per reading (see
//! `docs/store-bounds.md`).
//!
//! # Layout
//! ```text
//! 'w' hour device chunk       → 1 (format) ++ touched (u32 BE minutes since 1970 of the last insert)
//!                               ++ sorted entries of 24 bytes: hash (8) ++ id (16)
//! 'm' "dedupe-key"            → the store's 32-byte random key for the hashes
//! ```
//! `hour` = u32 big-endian hours since 1970 of the reading's device time (of its id's capture
//! time when it has no device time: then its dedupe key is its id); `device` = the first 8
//! bytes of HMAC-SHA-256(store key, configured device id); `chunk` = u16 big-endian, from 0, a
//! new one once the last holds [`CHUNK_ENTRIES`]; `hash` = the first 8 bytes of
//! HMAC-SHA-256(store key, dedupe key). A resend carries the same device time (or the same id),
//! so it lands in the same bucket: a lookup reads the chunks of ONE (hour, device).
//!
//! A bucket is kept while its hour OR its last insert is within the window: a device that
//! recalls old measurements from its memory (device times weeks back) has them remembered for
//! the window from when they were stored, so a second recall is still recognised. Keys sort by
//! hour first, so pruning by age (and pruning the oldest early when history is over its bound)
//! walks from the start of the prefix and stops at the first young bucket.
//! The hash is keyed with a per-store random key so that nobody can craft two readings that
//! collide; with 8 bytes, a false match between two different measurements of one device-hour
//! is about n²/2⁶⁵ for n readings in that bucket (below 10⁻¹² for 10,000).

use std::sync::atomic::{AtomicBool, Ordering};

use ring::hmac;

use super::keys;

use super::store::{Store, StoreError};
use super::txn::{corrupt, Txn};
use super::types::QueueError;
use crate::reading::{Reading, ReadingId};

pub const BUCKET: u8 = b'w';
const META_KEY: &[u8] = b"mdedupe-key";
const FORMAT: u8 = 1;
/// Format byte and touched hour.
const HEAD: usize = 5;
const ENTRY: usize = 24;
/// Entries per chunk: a chunk value stays near 4 KiB, so a group commit rewrites at most
/// that much per device-hour it touches.
pub const CHUNK_ENTRIES: usize = 170;
const HOUR_MS: u64 = 3_600_000;
/// How long a stored reading's dedupe key is remembered, by its device time (7 days).
pub const WINDOW_MS: u64 = 7 * 24 * HOUR_MS;

/// The store's hashing key.
pub struct Hasher(hmac::Key);

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher")
    }
}

impl Hasher {
    /// The store's key, created (random, persisted and synced) on first use.
    pub fn load_or_create(store: &dyn Store) -> Result<Hasher, QueueError> {
        if let Some(v) = store.get(META_KEY)? {
            if v.len() != 32 {
                return Err(corrupt(META_KEY, "dedupe key is not 32 bytes"));
            }
            return Ok(Hasher::new(&v));
        }
        let mut k = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
            .map_err(|_| StoreError::Io("no random bytes for the dedupe key".into()))?;
        let mut batch = super::store::Batch::new();
        batch.put(META_KEY, k.to_vec());
        store.apply(batch)?;
        store.sync()?;
        Ok(Hasher::new(&k))
    }

    pub fn new(key: &[u8]) -> Hasher {
        Hasher(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    fn h8(&self, domain: u8, s: &[u8]) -> [u8; 8] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(&[domain]);
        ctx.update(s);
        let tag = ctx.sign();
        let mut out = [0u8; 8];
        out.copy_from_slice(&tag.as_ref()[..8]);
        out
    }
}

/// The dedupe index of one open store: its hashing key, and whether per-reading keys of an
/// earlier version (`k`) are still there to be looked up.
#[derive(Debug)]
pub struct Index {
    pub hasher: Hasher,
    old_keys: AtomicBool,
}

impl Index {
    pub fn open(store: &dyn Store) -> Result<Index, QueueError> {
        let old = !store.scan_prefix(&[keys::DEDUPE], None, 1)?.is_empty();
        Ok(Index {
            hasher: Hasher::load_or_create(store)?,
            old_keys: AtomicBool::new(old),
        })
    }

    /// Whether `k` keys may remain (an upgraded store, until pruning removed the last one).
    pub fn has_old_keys(&self) -> bool {
        self.old_keys.load(Ordering::Relaxed)
    }

    /// Called once no `k` key is left (they are never written again).
    pub fn old_keys_gone(&self) {
        self.old_keys.store(false, Ordering::Relaxed);
    }
}

/// The bucket prefix (`'w' hour device`) and the entry hash of a reading with id `id`.
fn locate(h: &Hasher, r: &Reading, id: ReadingId) -> (Vec<u8>, [u8; 8]) {
    let ms = match r.device_time {
        Some(t) => super::ops::to_ms(t),
        None => super::ops::id_ms(id),
    };
    let hour = u32::try_from(ms / HOUR_MS).unwrap_or(u32::MAX);
    let mut k = Vec::with_capacity(15);
    k.push(BUCKET);
    k.extend_from_slice(&hour.to_be_bytes());
    k.extend_from_slice(&h.h8(b'd', r.device.id.as_str().as_bytes()));
    (k, h.h8(b'k', r.dedupe_key().as_bytes()))
}

fn chunk_key(prefix: &[u8], n: u16) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The hour of a `w` key, if it is one.
pub fn key_hour(key: &[u8]) -> Option<u32> {
    (key.first() == Some(&BUCKET))
        .then(|| Some(u32::from_be_bytes(key.get(1..5)?.try_into().ok()?)))
        .flatten()
}

/// Whether a chunk value is well formed (verify).
pub fn valid_chunk(key: &[u8], v: &[u8]) -> bool {
    key.len() == 15
        && v.len() >= HEAD
        && v.first() == Some(&FORMAT)
        && (v.len() - HEAD).is_multiple_of(ENTRY)
        && v[HEAD..]
            .chunks_exact(ENTRY)
            .zip(v[HEAD..].chunks_exact(ENTRY).skip(1))
            .all(|(a, b)| a[..8] <= b[..8])
}

/// The minute (since 1970) of a chunk's last insert.
fn touched(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(1..HEAD)?.try_into().ok()?))
}

/// Unix ms from which a chunk is kept for the window: its hour, or its last insert (the end
/// of that minute) if later.
pub fn kept_from_ms(key: &[u8], v: &[u8]) -> u64 {
    let hour = key_hour(key).map_or(0, hour_ms);
    hour.max(touched(v).map_or(0, |m| (u64::from(m) + 1) * 60_000 - 1))
}

fn minute_of(ms: u64) -> u32 {
    u32::try_from(ms / 60_000).unwrap_or(u32::MAX)
}

fn entries(v: &[u8]) -> &[u8] {
    v.get(HEAD..).unwrap_or_default()
}

/// The id stored with `hash` in a chunk, by binary search.
fn find(v: &[u8], hash: &[u8; 8]) -> Option<ReadingId> {
    let entries = entries(v);
    let n = entries.len() / ENTRY;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let e = &entries[mid * ENTRY..(mid + 1) * ENTRY];
        match e[..8].cmp(hash) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let id: [u8; 16] = e[8..].try_into().ok()?;
                return Some(ReadingId::from_bytes(id));
            }
        }
    }
    None
}

/// `v` with the entry `(hash, id)` inserted in order, touched at `minute`.
fn insert(v: &[u8], hash: &[u8; 8], id: ReadingId, minute: u32) -> Vec<u8> {
    let entries = entries(v);
    let at = entries
        .chunks_exact(ENTRY)
        .position(|e| e[..8] > hash[..])
        .unwrap_or(entries.len() / ENTRY);
    let mut out = Vec::with_capacity(HEAD + entries.len() + ENTRY);
    out.push(FORMAT);
    out.extend_from_slice(&minute.to_be_bytes());
    out.extend_from_slice(&entries[..at * ENTRY]);
    out.extend_from_slice(hash);
    out.extend_from_slice(&id.to_bytes());
    out.extend_from_slice(&entries[at * ENTRY..]);
    out
}

/// Looks the reading up in its bucket (staged writes included): the first id when it is
/// there, else records it (under `id`) and answers `None`.
pub fn claim(
    tx: &mut Txn,
    h: &Hasher,
    r: &Reading,
    id: ReadingId,
    now_ms: u64,
) -> Result<Option<ReadingId>, QueueError> {
    let (prefix, hash) = locate(h, r, id);
    // The bucket's chunks, staged ones included. Early pruning (history over its bound) may
    // have removed some of them: numbers need not be contiguous.
    let chunks = tx.scan(&prefix)?;
    for v in chunks.values() {
        if let Some(first) = readable(v).and_then(|v| find(v, &hash)) {
            return Ok(Some(first));
        }
    }
    let last = chunks.iter().next_back();
    let (n, v) = match last {
        Some((k, v)) => {
            let n = chunk_no(k);
            match readable(v) {
                Some(v) if entries(v).len() / ENTRY < CHUNK_ENTRIES => (n, v.to_vec()),
                // Full or unreadable (left for verify): a new chunk after it.
                _ => (n.saturating_add(1), Vec::new()),
            }
        }
        None => (0, Vec::new()),
    };
    tx.put(
        chunk_key(&prefix, n),
        insert(&v, &hash, id, minute_of(now_ms)),
    );
    Ok(None)
}

/// `v` when it is a chunk this version reads.
fn readable(v: &[u8]) -> Option<&[u8]> {
    (v.first() == Some(&FORMAT) && v.len() >= HEAD).then_some(v)
}

/// The chunk number at the end of a `w` key.
fn chunk_no(key: &[u8]) -> u16 {
    key.get(13..15)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

/// Chunks [`prune`] reads at a time: it stops at the first hour that is not old, so a store
/// full of young chunks (a backlog) costs one page, not `limit` chunks of ~4 KiB each in memory.
const PRUNE_PAGE: usize = 32;

/// Stages the removal of buckets whose hour and last insert are both before `before_hour`,
/// looking at up to `limit` keys from the oldest hour on, [`PRUNE_PAGE`] at a time. Returns
/// how many it removed.
pub fn prune(tx: &mut Txn, before_hour: u32, limit: usize) -> Result<usize, QueueError> {
    let mut n = 0;
    let mut seen = 0;
    let mut after: Option<Vec<u8>> = None;
    while seen < limit {
        let page =
            tx.store()
                .scan_prefix(&[BUCKET], after.as_deref(), PRUNE_PAGE.min(limit - seen))?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        seen += page.len();
        for (key, v) in page {
            match key_hour(&key) {
                Some(hour) if hour < before_hour => {
                    // An unreadable chunk goes with its hour (verify reports it meanwhile).
                    if touched(&v).is_none_or(|t| u64::from(t) < u64::from(before_hour) * 60) {
                        tx.remove(key);
                        n += 1;
                    }
                }
                Some(_) => return Ok(n),
                None => continue,
            }
        }
    }
    Ok(n)
}

/// The hour (since 1970) of `ms`.
pub fn hour_of(ms: u64) -> u32 {
    u32::try_from(ms / HOUR_MS).unwrap_or(u32::MAX)
}

/// Unix ms at the start of `hour`.
pub fn hour_ms(hour: u32) -> u64 {
    u64::from(hour) * HOUR_MS
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
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
        h: &Hasher,
        r: &Reading,
        id: ReadingId,
    ) -> Result<Option<ReadingId>, QueueError> {
        claim(tx, h, r, id, NOW)
    }

    fn commit(store: &MemoryStore, tx: Txn) {
        let mut tx = tx;
        store.apply(tx.take_batch(false)).unwrap();
    }

    #[test]
    fn a_resend_is_found_in_the_same_group_and_after_a_restart() {
        let store = Arc::new(MemoryStore::new());
        let h = Hasher::load_or_create(&*store).unwrap();
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
        commit(&store, tx);
        // Reopened: the same store key, the same buckets.
        let h = Hasher::load_or_create(&*store).unwrap();
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
        let h = Hasher::load_or_create(&*store).unwrap();
        let mut tx = Txn::new(&*store, Counters::default());
        let all: Vec<Reading> = (0..CHUNK_ENTRIES + 30)
            .map(|i| reading("cuff", 1_800_000_000 + i as i64, 120))
            .collect();
        for r in &all {
            assert_eq!(claim_at(&mut tx, &h, r, r.id.unwrap()).unwrap(), None);
        }
        commit(&store, tx);
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
        let h = Hasher::load_or_create(&*store).unwrap();
        let old = reading("cuff", 1_800_000_000, 120);
        let young = reading("cuff", 1_800_000_000 + 8 * 24 * 3600, 120);
        let mut tx = Txn::new(&*store, Counters::default());
        claim_at(&mut tx, &h, &old, old.id.unwrap()).unwrap();
        claim_at(&mut tx, &h, &young, young.id.unwrap()).unwrap();
        commit(&store, tx);
        // Stored at NOW: within the window both stay, whatever their device times.
        let mut tx = Txn::new(&*store, Counters::default());
        assert_eq!(prune(&mut tx, hour_of(NOW - WINDOW_MS), 100).unwrap(), 0);
        // A week and a day later, the bucket of the older device time goes.
        let later = NOW + WINDOW_MS + 24 * 3_600_000;
        let removed = prune(&mut tx, hour_of(later - WINDOW_MS), 100).unwrap();
        assert_eq!(removed, 1);
        commit(&store, tx);
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

    /// A store that remembers the most entries one scan returned.
    struct Widest {
        inner: MemoryStore,
        widest: std::sync::atomic::AtomicUsize,
    }

    impl Store for Widest {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, crate::queue::StoreError> {
            self.inner.get(key)
        }
        fn scan_prefix(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<crate::queue::store::Entry>, crate::queue::StoreError> {
            let page = self.inner.scan_prefix(prefix, after, limit)?;
            self.widest
                .fetch_max(page.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(page)
        }
        fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, crate::queue::StoreError> {
            self.inner.last_key(prefix)
        }
        fn apply(&self, batch: crate::queue::store::Batch) -> Result<(), crate::queue::StoreError> {
            self.inner.apply(batch)
        }
        fn sync(&self) -> Result<(), crate::queue::StoreError> {
            self.inner.sync()
        }
        fn size_on_disk(&self) -> Result<u64, crate::queue::StoreError> {
            self.inner.size_on_disk()
        }
        fn sync_count(&self) -> u64 {
            self.inner.sync_count()
        }
    }

    #[test]
    fn pruning_reads_a_page_past_the_old_hours_not_every_young_chunk() {
        // A backlog: 300 hours of young chunks after 40 hours of old ones.
        let store = Widest {
            inner: MemoryStore::new(),
            widest: std::sync::atomic::AtomicUsize::new(0),
        };
        let h = Hasher::load_or_create(&store).unwrap();
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
        commit(&store.inner, tx);
        store.widest.store(0, std::sync::atomic::Ordering::Relaxed);
        let mut tx = Txn::new(&store, Counters::default());
        let cutoff = hour_of(1_800_000_000_000 + 40 * 3_600_000);
        let later = hour_of(NOW + 40 * 3_600_000);
        assert_eq!(prune(&mut tx, cutoff.min(later), 10_000).unwrap(), 40);
        let widest = store.widest.load(std::sync::atomic::Ordering::Relaxed);
        assert!(widest <= PRUNE_PAGE, "one scan returned {widest} chunks");
        // With a small limit it stops there and goes on from the oldest next time.
        let mut tx = Txn::new(&store, Counters::default());
        assert_eq!(prune(&mut tx, cutoff.min(later), 5).unwrap(), 5);
    }

    #[test]
    fn a_bucket_of_old_device_times_is_kept_for_the_window_after_its_last_insert() {
        // A memory recall: measured a month before it was stored.
        let store = Arc::new(MemoryStore::new());
        let h = Hasher::load_or_create(&*store).unwrap();
        let recalled = reading("cuff", 1_800_000_000 - 30 * 24 * 3600, 120);
        let mut tx = Txn::new(&*store, Counters::default());
        claim_at(&mut tx, &h, &recalled, recalled.id.unwrap()).unwrap();
        commit(&store, tx);
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
        let h = Hasher::load_or_create(&*store).unwrap();
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
}
