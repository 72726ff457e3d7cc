//! The dedupe chunks of recently used device-hours, decrypted, as the store holds them.
//!
//! Receives: from a claim, the bucket prefix (`'w' hour device`) it looks in and the store to
//! read the bucket from when it is not cached; every batch the writer applies to the store
//! ([`ChunkCache::apply`] applies it), and [`ChunkCache::forget`] when the store below changed
//! in a way the cache did not see (it was rewritten and swapped in).
//!
//! Promises:
//! - a cached bucket holds exactly the chunk keys and plain values the store answers for its
//!   prefix after the last applied batch: it is filled from one store scan, changed only by
//!   the puts and removes of a batch the store accepted, and emptied (every bucket) when an
//!   apply fails, since the store's state is then not known here;
//! - it never holds staged writes: a claim looks at the writer's transaction first, so a
//!   request that is rolled back, or a group whose apply fails, leaves nothing behind;
//! - at most [`MAX_BYTES`] of chunk keys and values, or twice the largest cached bucket when
//!   that is more, and never more than [`CEILING_BYTES`] (the least recently used buckets go
//!   first; the bucket used last is kept unless it alone is over the ceiling, and a bucket
//!   alone over the ceiling is dropped before any other).
//!
//! Without it a claim reads and decrypts every chunk of its device-hour: the cost grows with
//! the readings a device sent in that hour (docs/throughput.md). The bound follows the largest
//! bucket because one fast device fills one bucket an hour: at 50 readings/s a device-hour
//! holds about 1,060 chunks (4.3 MB), more than [`MAX_BYTES`]; with a fixed bound every claim
//! of that device read and decrypted its whole hour again (docs/store-bounds.md, "The dedupe
//! chunk cache").
//!
//! Each cached bucket also keeps an index of its entries' hashes (hash → number of the chunk
//! holding it), built once from the chunks when the bucket is read and updated by every applied
//! batch, so a claim looks at one chunk instead of binary-searching all of them: at 50
//! readings/s a device-hour is about 1,060 chunks, and a claim that searched each of them spent
//! most of the writer's time there (docs/store-bounds.md, "The hash index of a cached
//! device-hour"). The index is derived from the chunks, never stored: a new cache (a restart, a
//! swapped store) builds it again from what the store holds. Its bytes count against the
//! cache's bound.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::{Mutex, MutexGuard};

use super::store::{Batch, Op, Store, StoreError};

/// The bound on cached chunks while no bucket is larger than half of it: about 20
/// device-hours of one reading a second.
pub const MAX_BYTES: usize = 2 << 20;

/// The bound however large the buckets: a device-hour of up to about 95 readings a second
/// stays cached beside as much of others (docs/store-bounds.md).
pub const CEILING_BYTES: usize = 16 << 20;

/// Chunk keys and plain values of one bucket.
pub type Chunks = BTreeMap<Vec<u8>, Vec<u8>>;

/// Length of a bucket prefix: `'w'`, hour (4), device (8).
const PREFIX: usize = 13;

/// The hashes of a bucket's readable entries: the 8-byte entry hash (as a big-endian `u64`) →
/// the number of the first chunk, in key order, holding it.
type HashIndex = HashMap<u64, u16, BuildHasherDefault<Identity>>;

/// The entry hashes are keyed HMAC outputs, uniformly spread and not chosen by a sender:
/// they are used as their own hash.
#[derive(Default)]
struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Bytes an index of `capacity` takes: a `(u64, u16)` slot (16 bytes) and a control byte per
/// slot, with hashbrown's 7/8 load factor.
fn index_bytes(capacity: usize) -> usize {
    capacity * 17 * 8 / 7
}

/// One cached bucket: its committed chunks and the index of their hashes.
#[derive(Debug, Default)]
pub struct Bucket {
    /// The chunk keys and plain values the store holds under the bucket's prefix.
    pub chunks: Chunks,
    hashes: HashIndex,
    /// A chunk was removed or lost entries: the index is rebuilt before the next use.
    stale: bool,
    bytes: usize,
    used: u64,
}

impl Bucket {
    fn read(chunks: Chunks, used: u64) -> Bucket {
        let mut b = Bucket {
            chunks,
            used,
            ..Bucket::default()
        };
        b.reindex();
        b
    }

    /// The number of the first chunk holding an entry with `hash`, if any does.
    pub fn holder(&self, hash: &[u8; 8]) -> Option<u16> {
        self.hashes.get(&u64::from_be_bytes(*hash)).copied()
    }

    /// Builds the index from the chunks, in key order (the first chunk holding a hash wins).
    fn reindex(&mut self) {
        let entries = self
            .chunks
            .values()
            .map(|v| super::dedupe::chunk_hashes(v).len())
            .sum();
        let mut hashes =
            HashIndex::with_capacity_and_hasher(entries, BuildHasherDefault::default());
        for (k, v) in &self.chunks {
            let n = super::dedupe::chunk_no(k);
            for h in super::dedupe::chunk_hashes(v) {
                hashes.entry(h).or_insert(n);
            }
        }
        self.hashes = hashes;
        self.stale = false;
        self.measure();
    }

    fn measure(&mut self) {
        self.bytes = self.chunks.iter().map(|(k, v)| cost(k, v)).sum::<usize>()
            + index_bytes(self.hashes.capacity());
    }

    /// Takes the store's new value of chunk `k`.
    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        let n = super::dedupe::chunk_no(&k);
        let kept = match self.chunks.get(&k) {
            Some(old) => super::dedupe::chunk_hashes(old).all_in(&v),
            None => true,
        };
        if kept && !self.stale {
            for h in super::dedupe::chunk_hashes(&v) {
                self.hashes
                    .entry(h)
                    .and_modify(|m| *m = (*m).min(n))
                    .or_insert(n);
            }
        } else {
            // Entries left the chunk (not something a claim does): rebuilt before next use.
            self.stale = true;
        }
        self.chunks.insert(k, v);
    }

    /// Drops chunk `k` (pruned): its hashes may be gone, the index is rebuilt before next use.
    fn remove(&mut self, k: &[u8]) {
        if self.chunks.remove(k).is_some() {
            self.stale = true;
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    buckets: HashMap<Vec<u8>, Bucket>,
    bytes: usize,
    clock: u64,
    /// Buckets read from the store (misses), for tests and benchmarks.
    loads: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct ChunkCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
    ceiling: usize,
}

impl Default for ChunkCache {
    fn default() -> Self {
        Self::bounded(MAX_BYTES, CEILING_BYTES)
    }
}

fn cost(k: &[u8], v: &[u8]) -> usize {
    k.len() + v.len()
}

/// The bucket prefix of a chunk key (`'w'` keys of 15 bytes only).
fn bucket_of(key: &[u8]) -> Option<&[u8]> {
    (key.len() == PREFIX + 2 && key.first() == Some(&super::dedupe::BUCKET)).then(|| &key[..PREFIX])
}

impl ChunkCache {
    /// A cache of at most `max_bytes`, whatever the buckets' sizes (tests).
    #[cfg(test)]
    pub fn new(max_bytes: usize) -> Self {
        Self::bounded(max_bytes, max_bytes)
    }

    /// A cache of at most `max_bytes` or twice its largest bucket, never above `ceiling`.
    pub fn bounded(max_bytes: usize, ceiling: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_bytes,
            ceiling: ceiling.max(max_bytes),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls `f` with the committed chunks under `prefix` and their index, read from `store`
    /// when the bucket is not cached.
    pub fn with_bucket<R>(
        &self,
        store: &dyn Store,
        prefix: &[u8],
        f: impl FnOnce(&Bucket) -> R,
    ) -> Result<R, StoreError> {
        let mut g = self.lock();
        g.clock += 1;
        let now = g.clock;
        if !g.buckets.contains_key(prefix) {
            let chunks: Chunks = store
                .scan_prefix(prefix, None, usize::MAX)?
                .into_iter()
                .collect();
            let b = Bucket::read(chunks, now);
            g.bytes += b.bytes;
            g.loads += 1;
            g.buckets.insert(prefix.to_vec(), b);
        }
        let mut delta = None;
        let out = match g.buckets.get_mut(prefix) {
            Some(b) => {
                b.used = now;
                if b.stale {
                    let before = b.bytes;
                    b.reindex();
                    delta = Some((before, b.bytes));
                }
                f(b)
            }
            None => f(&Bucket::default()),
        };
        if let Some((before, after)) = delta {
            g.bytes = g.bytes - before + after;
        }
        self.evict(&mut g);
        Ok(out)
    }

    /// Applies `batch` to `store`; on success the cached buckets take its chunk puts and
    /// removes, on failure every bucket is forgotten.
    pub fn apply(&self, store: &dyn Store, batch: Batch) -> Result<(), StoreError> {
        let mut g = self.lock();
        // Only the writes to cached buckets are kept (copied: the batch goes to the store).
        let seen: Vec<Op> = if g.buckets.is_empty() {
            Vec::new()
        } else {
            batch
                .ops
                .iter()
                .filter(|op| {
                    let (Op::Put(k, _) | Op::Remove(k)) = op;
                    bucket_of(k).is_some_and(|b| g.buckets.contains_key(b))
                })
                .cloned()
                .collect()
        };
        if let Err(e) = store.apply(batch) {
            g.buckets.clear();
            g.bytes = 0;
            return Err(e);
        }
        for op in seen {
            let (Op::Put(k, _) | Op::Remove(k)) = &op;
            let Some(b) = bucket_of(k).and_then(|p| g.buckets.get_mut(p)) else {
                continue;
            };
            let before = b.bytes;
            match op {
                Op::Put(k, v) => {
                    let add = cost(&k, &v);
                    if let Some(old) = b.chunks.get(&k) {
                        b.bytes -= cost(&k, old);
                    }
                    b.bytes += add;
                    let index = index_bytes(b.hashes.capacity());
                    b.put(k, v);
                    b.bytes = b.bytes - index + index_bytes(b.hashes.capacity());
                }
                Op::Remove(k) => {
                    if let Some(old) = b.chunks.get(&k) {
                        b.bytes -= cost(&k, old);
                    }
                    b.remove(&k);
                }
            }
            let after = b.bytes;
            g.bytes = g.bytes - before + after;
        }
        self.evict(&mut g);
        Ok(())
    }

    /// Forgets every bucket (the store below was swapped for a rewritten one).
    pub fn forget(&self) {
        let mut g = self.lock();
        g.buckets.clear();
        g.bytes = 0;
    }

    /// How many buckets were read from the store so far.
    #[cfg(test)]
    pub fn loads(&self) -> u64 {
        self.lock().loads
    }

    /// The bytes of the cached buckets, for tests and benchmarks.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Drops the least recently used buckets while over the bound (see the module docs): the
    /// bucket used last goes only when it alone is over the ceiling.
    fn evict(&self, g: &mut Inner) {
        if g.bytes <= self.max_bytes {
            return;
        }
        // A bucket alone over the ceiling is never kept (the others stay).
        let ceiling = self.ceiling;
        let before = g.buckets.len();
        g.buckets.retain(|_, b| b.bytes <= ceiling);
        if g.buckets.len() != before {
            g.bytes = g.buckets.values().map(|b| b.bytes).sum();
        }
        let largest = g.buckets.values().map(|b| b.bytes).max().unwrap_or(0);
        let bound = largest
            .saturating_mul(2)
            .clamp(self.max_bytes, self.ceiling);
        let newest = g.clock;
        while g.bytes > bound {
            let oldest = g
                .buckets
                .iter()
                .filter(|(_, b)| b.used != newest)
                .min_by_key(|(_, b)| b.used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else {
                return;
            };
            if let Some(b) = g.buckets.remove(&oldest) {
                g.bytes -= b.bytes;
            }
        }
    }
}

#[cfg(test)]
#[path = "chunk_cache_tests.rs"]
mod tests;
