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

use std::collections::{BTreeMap, HashMap};
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

#[derive(Debug)]
struct Bucket {
    chunks: Chunks,
    bytes: usize,
    used: u64,
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

    /// Calls `f` with the committed chunks under `prefix`, read from `store` when the bucket
    /// is not cached.
    pub fn with_bucket<R>(
        &self,
        store: &dyn Store,
        prefix: &[u8],
        f: impl FnOnce(&Chunks) -> R,
    ) -> Result<R, StoreError> {
        let mut g = self.lock();
        g.clock += 1;
        let now = g.clock;
        if !g.buckets.contains_key(prefix) {
            let chunks: Chunks = store
                .scan_prefix(prefix, None, usize::MAX)?
                .into_iter()
                .collect();
            let bytes = chunks.iter().map(|(k, v)| cost(k, v)).sum();
            g.bytes += bytes;
            g.loads += 1;
            g.buckets.insert(
                prefix.to_vec(),
                Bucket {
                    chunks,
                    bytes,
                    used: now,
                },
            );
        }
        let out = match g.buckets.get_mut(prefix) {
            Some(b) => {
                b.used = now;
                f(&b.chunks)
            }
            None => f(&Chunks::new()),
        };
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
                    if let Some(old) = b.chunks.insert(k.clone(), v) {
                        b.bytes -= cost(&k, &old);
                    }
                    b.bytes += add;
                }
                Op::Remove(k) => {
                    if let Some(old) = b.chunks.remove(&k) {
                        b.bytes -= cost(&k, &old);
                    }
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
