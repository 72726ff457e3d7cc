//! An in-memory [`Store`]: a `BTreeMap` under a mutex. For tests and benches of the queue logic
//! without disk. `sync` only counts (and can sleep, to imitate an fsync's cost in group-commit
//! tests); nothing survives the process.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::store::{Batch, Entry, Op, Store, StoreError};

#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    syncs: AtomicU64,
    sync_delay: Option<Duration>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose `sync` sleeps `delay`, like a disk's fdatasync would.
    pub fn with_sync_delay(delay: Duration) -> Self {
        Self {
            sync_delay: Some(delay),
            ..Self::default()
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated (each op is one
        // BTreeMap call), so a poisoned lock is still consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).cloned())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let map = self.map();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self.map();
        let mut range = match super::store::prefix_end(prefix) {
            Some(end) => map.range(prefix.to_vec()..end),
            None => map.range(prefix.to_vec()..),
        };
        Ok(range.next_back().map(|(k, _)| k.clone()))
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut map = self.map();
        for op in batch.ops {
            match op {
                Op::Put(k, v) => {
                    map.insert(k, v);
                }
                Op::Remove(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        if let Some(d) = self.sync_delay {
            std::thread::sleep(d);
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let bytes: usize = self.map().iter().map(|(k, v)| k.len() + v.len()).sum();
        Ok(u64::try_from(bytes).unwrap_or(u64::MAX))
    }

    fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}
