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

use super::chunk_cache::{Bucket, ChunkCache};
use super::keys;

use super::store::{Batch, Store, StoreError};
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

/// The dedupe index of one open store: its hashing key, whether per-reading keys of an
/// earlier version (`k`) are still there to be looked up, and the chunks of recently used
/// buckets (see `chunk_cache`: every batch that may write chunks is applied through
/// [`Index::apply`]).
#[derive(Debug)]
pub struct Index {
    pub hasher: Hasher,
    old_keys: AtomicBool,
    cache: ChunkCache,
}

impl Index {
    pub fn open(store: &dyn Store) -> Result<Index, QueueError> {
        let old = !store.scan_prefix(&[keys::DEDUPE], None, 1)?.is_empty();
        Ok(Index {
            hasher: Hasher::load_or_create(store)?,
            old_keys: AtomicBool::new(old),
            cache: ChunkCache::default(),
        })
    }

    /// The same index with a cache of at most `max_bytes`.
    #[cfg(test)]
    pub fn with_cache_bytes(mut self, max_bytes: usize) -> Index {
        self.cache = ChunkCache::new(max_bytes);
        self
    }

    /// Applies `batch` to `store`, keeping the cached chunks equal to the store's.
    pub fn apply(&self, store: &dyn Store, batch: Batch) -> Result<(), StoreError> {
        self.cache.apply(store, batch)
    }

    /// Forgets the cached chunks: the store was swapped for a rewritten one.
    pub fn forget(&self) {
        self.cache.forget();
    }

    /// How many buckets claims read from the store so far (the others came from the cache).
    #[cfg(test)]
    pub fn bucket_loads(&self) -> u64 {
        self.cache.loads()
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
    #[cfg(test)]
    tests::SEARCHES.with(|n| n.set(n.get() + 1));
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
    index: &Index,
    r: &Reading,
    id: ReadingId,
    now_ms: u64,
) -> Result<Option<ReadingId>, QueueError> {
    let (prefix, hash) = locate(&index.hasher, r, id);
    let minute = minute_of(now_ms);
    // The bucket's committed chunks (cached, with the index of their hashes), with the group's
    // staged writes over them. Early pruning (history over its bound) may have removed some
    // chunks: numbers need not be contiguous.
    let step = index.cache.with_bucket(tx.store(), &prefix, |committed| {
        let staged: Vec<(&[u8], Option<&[u8]>)> = tx.staged(&prefix).collect();
        decide(committed, &staged, &prefix, &hash, id, minute)
    })?;
    match step {
        Step::Found(first) => Ok(Some(first)),
        Step::Insert(key, value) => {
            tx.put(key, value);
            Ok(None)
        }
    }
}

/// What a claim found: the first id, or the chunk to write with the new entry in it.
enum Step {
    Found(ReadingId),
    Insert(Vec<u8>, Vec<u8>),
}

/// The claim's decision over the `committed` bucket with `staged` writes (key order) over it.
///
/// Searches the staged chunks (the group's writes: one or two per bucket) and the one
/// committed chunk the bucket's index names for `hash`, unless the group rewrote or removed
/// that chunk (its staged value was searched then): a claim's cost does not grow with the
/// chunks of its hour.
fn decide(
    committed: &Bucket,
    staged: &[(&[u8], Option<&[u8]>)],
    prefix: &[u8],
    hash: &[u8; 8],
    id: ReadingId,
    minute: u32,
) -> Step {
    let is_staged = |k: &[u8]| staged.iter().any(|(s, _)| *s == k);
    for (_, v) in staged {
        if let Some(first) = v.and_then(readable).and_then(|v| find(v, hash)) {
            return Step::Found(first);
        }
    }
    if let Some(n) = committed.holder(hash) {
        let key = chunk_key(prefix, n);
        if !is_staged(&key) {
            let found = committed
                .chunks
                .get(&key)
                .and_then(|v| readable(v))
                .and_then(|v| find(v, hash));
            if let Some(first) = found {
                return Step::Found(first);
            }
        }
    }
    // The last visible chunk: the last staged put, or the last committed chunk the group did
    // not touch, whichever has the higher number.
    let staged_last = staged
        .iter()
        .filter_map(|(k, v)| Some((*k, (*v)?)))
        .next_back();
    let committed_last = committed
        .chunks
        .iter()
        .rev()
        .find(|(k, _)| !is_staged(k))
        .map(|(k, v)| (k.as_slice(), v.as_slice()));
    let last = match (staged_last, committed_last) {
        (Some(s), Some(c)) => Some(if s.0 > c.0 { s } else { c }),
        (s, c) => s.or(c),
    };
    let (n, v): (u16, &[u8]) = match last {
        Some((k, v)) => {
            let n = chunk_no(k);
            match readable(v) {
                Some(v) if entries(v).len() / ENTRY < CHUNK_ENTRIES => (n, v),
                // Full or unreadable (left for verify): a new chunk after it.
                _ => (n.saturating_add(1), &[]),
            }
        }
        None => (0, &[]),
    };
    Step::Insert(chunk_key(prefix, n), insert(v, hash, id, minute))
}

/// The entry hashes (as big-endian `u64`, in the chunk's order: ascending) of a chunk this
/// version reads; none for another format.
pub struct ChunkHashes<'a>(std::slice::ChunksExact<'a, u8>);

/// See [`ChunkHashes`].
pub fn chunk_hashes(v: &[u8]) -> ChunkHashes<'_> {
    ChunkHashes(readable(v).map_or(&[][..], entries).chunks_exact(ENTRY))
}

impl Iterator for ChunkHashes<'_> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        let e = self.0.next()?;
        let mut h = [0u8; 8];
        h.copy_from_slice(&e[..8]);
        Some(u64::from_be_bytes(h))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for ChunkHashes<'_> {}

impl ChunkHashes<'_> {
    /// Whether every hash left is also in the chunk `v` (both sorted: one merge pass).
    pub fn all_in(self, v: &[u8]) -> bool {
        let mut other = chunk_hashes(v).peekable();
        let mut mine = self;
        mine.all(|h| {
            while other.peek().is_some_and(|o| *o < h) {
                other.next();
            }
            other.peek() == Some(&h)
        })
    }
}

/// `v` when it is a chunk this version reads.
fn readable(v: &[u8]) -> Option<&[u8]> {
    (v.first() == Some(&FORMAT) && v.len() >= HEAD).then_some(v)
}

/// The chunk number at the end of a `w` key.
pub fn chunk_no(key: &[u8]) -> u16 {
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
#[path = "dedupe_tests.rs"]
mod tests;
