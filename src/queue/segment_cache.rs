//! The segments the readers used last, decrypted and indexed.
//!
//! Receives: from a reader (the delivery's due read, the next due time, the dead-letter
//! listing), a segment number and the function that reads it from the store on a miss.
//!
//! Promises:
//! - a cached segment is exactly what the store held under its number when it was read. That
//!   cannot go stale while the queue is open: a segment value is written once, by the group
//!   commit that allocated its number, and never rewritten; a number whose segment reached the
//!   store is never handed out again by this writer (not even after a failed apply); and the
//!   store rewrite that gives space back copies every value under the same key. The cache is
//!   emptied anyway on a failed apply and on that rewrite, and starts empty after a restart
//!   (a new writer may reuse the number of a segment that was removed before);
//! - which entries are still pending is never cached: every read takes the sink's bitmaps
//!   from the store, so a settle, a retry or a released held reading is seen at once;
//! - at most [`MAX_BYTES`] of segment values and [`MAX_SEGMENTS`] segments (the least
//!   recently used go first).
//!
//! Without it a delivery read loaded (decrypted and indexed) each segment once for every
//! batch that looked at it: the read passes over the segments of the batches in flight, and
//! the one-segment cache it had lost them to the next segment each time (docs/throughput.md).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::segment::Loaded;

/// The bound on cached segment values: 4 full segments (a drain's batches in flight span one or
/// two), or up to [`MAX_SEGMENTS`] small ones. At 4 MiB the 1,000,000 draining peak went over
/// its 64 MB bound (docs/throughput.md).
pub const MAX_BYTES: usize = 1 << 20;
/// The bound on cached segments (the lookup is a linear search from the most recent).
pub const MAX_SEGMENTS: usize = 64;

#[derive(Debug, Default)]
struct Inner {
    /// Most recently used last.
    segments: VecDeque<(u64, Arc<Loaded>)>,
    bytes: usize,
    /// Segments read from the store (misses), for tests and benchmarks.
    loads: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct SegmentCache {
    inner: Mutex<Inner>,
}

impl SegmentCache {
    /// Segment `seq`, from the cache or from `load` (whose answer is then kept).
    pub fn get_or_load<E>(
        &self,
        seq: u64,
        load: impl FnOnce() -> Result<Loaded, E>,
    ) -> Result<Arc<Loaded>, E> {
        {
            let mut inner = self.lock();
            if let Some(at) = inner.segments.iter().rposition(|(s, _)| *s == seq) {
                let hit = inner.segments.remove(at).expect("position is in range");
                let found = Arc::clone(&hit.1);
                inner.segments.push_back(hit);
                return Ok(found);
            }
        }
        // Read outside the lock: another reader may load the same segment meanwhile, and the
        // second copy replaces the first (both are the same bytes).
        let loaded = Arc::new(load()?);
        let mut inner = self.lock();
        inner.loads += 1;
        if let Some(at) = inner.segments.iter().position(|(s, _)| *s == seq) {
            let (_, old) = inner.segments.remove(at).expect("position is in range");
            inner.bytes -= old.size();
        }
        inner.bytes += loaded.size();
        inner.segments.push_back((seq, Arc::clone(&loaded)));
        while inner.segments.len() > 1
            && (inner.bytes > MAX_BYTES || inner.segments.len() > MAX_SEGMENTS)
        {
            if let Some((_, old)) = inner.segments.pop_front() {
                inner.bytes -= old.size();
            }
        }
        Ok(loaded)
    }

    /// Drops every cached segment (a failed apply, a store rewritten and swapped in): not
    /// needed for correctness (see the module docs), but what is cached then follows the
    /// store that is open now.
    pub fn forget(&self) {
        let mut inner = self.lock();
        inner.segments.clear();
        inner.bytes = 0;
    }

    /// How many segments were read from the store since the queue opened.
    pub fn loads(&self) -> u64 {
        self.lock().loads
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change keeps `bytes` equal to the sum of the segments' sizes before it can
        // panic, so a poisoned value is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::segment::Writer;
    use crate::reading::ReadingId;

    fn segment(n: u8, bytes: usize) -> Loaded {
        let mut w = Writer::default();
        w.push(ReadingId::from_bytes([n; 16]), &vec![b'x'; bytes]);
        Loaded::new(w.into_bytes()).unwrap()
    }

    #[test]
    fn a_segment_is_loaded_once_while_it_stays_recent() {
        let cache = SegmentCache::default();
        for round in 0..3 {
            for n in 0..10u8 {
                let got = cache
                    .get_or_load(u64::from(n), || Ok::<_, ()>(segment(n, 100)))
                    .unwrap();
                assert_eq!(got.get(0).unwrap().0, ReadingId::from_bytes([n; 16]));
            }
            assert_eq!(cache.loads(), 10, "round {round}");
        }
    }

    #[test]
    fn the_least_recently_used_go_first_within_the_bounds() {
        let cache = SegmentCache::default();
        let big = MAX_BYTES / 4 - 100;
        for seq in 0..4 {
            cache
                .get_or_load(seq, || Ok::<_, ()>(segment(1, big)))
                .unwrap();
        }
        // Segment 0 is used again, so 1 is the oldest when 4 pushes the bytes over the bound.
        cache.get_or_load(0, || Err(())).unwrap();
        cache
            .get_or_load(4, || Ok::<_, ()>(segment(1, big)))
            .unwrap();
        assert!(cache.get_or_load(0, || Err(())).is_ok());
        assert!(cache.get_or_load(1, || Err(())).is_err());
        let inner = cache.lock();
        assert!(inner.bytes <= MAX_BYTES);
        assert_eq!(
            inner.bytes,
            inner.segments.iter().map(|(_, s)| s.size()).sum::<usize>()
        );
        drop(inner);
        for seq in 10..10 + MAX_SEGMENTS as u64 + 5 {
            cache
                .get_or_load(seq, || Ok::<_, ()>(segment(1, 10)))
                .unwrap();
        }
        assert_eq!(cache.lock().segments.len(), MAX_SEGMENTS);
    }

    #[test]
    fn a_failed_load_is_not_kept() {
        let cache = SegmentCache::default();
        assert_eq!(
            cache
                .get_or_load(7, || Err::<Loaded, _>("gone"))
                .unwrap_err(),
            "gone"
        );
        assert_eq!(cache.loads(), 0);
        cache
            .get_or_load(7, || Ok::<_, &str>(segment(7, 5)))
            .unwrap();
        assert_eq!(cache.loads(), 1);
    }
}
