//! The steps of the online rewrite (see the parent module's docs): the windows, the pauses
//! between them, the catch-up of what was written meanwhile, and the swap.
//!
//! Receives the [`Reclaim`] whose current store it copies. Promises: the copy in `<dir>.compact`
//! holds, at the swap, exactly what the current store holds (a key not written since the copy
//! began was read by the copy after its last write; every key written since was recorded and
//! is copied again from the current store under the write lock); the windows are read back and
//! compared with what was written (count, bytes, SHA-256) before the swap, and the keys copied
//! again are read back under the lock.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::cipher::Sealed;
use super::super::compact::{self, Copied, Tally};
use super::super::sled_store::{Ownership, SledStore};
use super::super::store::{Batch, Store, StoreError};
use super::{lock, Closed, Phase, Reclaim, Rewritten};

/// The page cache of each store the copy opens beside the current one: the copy reads and
/// writes every key once, in order, so a cache would only hold what was read.
const COPY_CACHE: u64 = 1 << 20;

/// While more keys than this were written since the last catch-up, another catch-up runs
/// outside the lock before the swap, so the swap's pause copies only a few keys.
const CATCH_UP_KEYS: usize = 2_000;

/// Catch-ups outside the lock, at most (a writer faster than the catch-up does not hold the
/// swap back forever).
const CATCH_UPS: u32 = 8;

/// Keys (with their values) per batch the catch-up writes.
const CATCH_UP_BATCH: usize = 512;

fn io(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{what}: {e}"))
}

fn shared() -> StoreError {
    StoreError::Io("the store is shared outside the queue; not rewritten".into())
}

impl Reclaim {
    /// The rewrite's steps; `done` collects the figures. On failure before the exchange the
    /// copy is removed and the current store is the old one.
    pub(super) fn rewrite(&self, done: &mut Rewritten) -> Result<(), StoreError> {
        let dir = self.opts.dir.clone();
        let tmp = compact::sibling(&dir);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io("removing a leftover copy", e))?;
        }
        let owner = Ownership::of(&dir).map_err(|e| io("reading the store's owner", e))?;
        let copied = self.copy(&tmp, done).and_then(|copied| {
            done.keys = copied.keys;
            self.swap(&tmp, &owner, done)
        });
        match copied {
            Ok(swapped) => {
                if swapped {
                    // The old store is under `<dir>.compact` now; a failure here leaves it for
                    // the next run (or `queue compact`) to remove.
                    let removed = self
                        .at(Phase::Swapped)
                        .and_then(|()| std::fs::remove_dir_all(&tmp).map_err(|e| io("", e)));
                    if removed.is_err() {
                        tracing::warn!(
                            path = %tmp.display(),
                            "the queue store was rewritten but the old files could not be removed; the next rewrite removes them"
                        );
                    }
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Starts recording writes, copies the windows into `tmp` with a pause after each but the
    /// last, and reads the copy back. Returns what the windows wrote.
    fn copy(&self, tmp: &Path, done: &mut Rewritten) -> Result<Copied, StoreError> {
        {
            // No apply runs while the lock is held: every apply from here on is recorded.
            let cur = self.current.write().unwrap_or_else(|e| e.into_inner());
            if Arc::strong_count(&cur) != 1 {
                return Err(shared());
            }
            *lock(&self.touched) = Some(BTreeSet::new());
        }
        let mut tally = Tally::new();
        let mut after: Option<Vec<u8>> = None;
        let mut window = 0u32;
        loop {
            let new = self.open_copy(tmp)?;
            // Through `self`: each page is read under the read lock alone.
            let last =
                compact::copy_all(self, &new, &mut after, self.opts.window_bytes, &mut tally)
                    .map_err(|e| io("copying", e))?;
            new.sync()?;
            drop(new);
            self.at(Phase::Window(window))?;
            window += 1;
            if last {
                break;
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(StoreError::Io("the queue is closing".into()));
            }
            let t = Instant::now();
            self.reopen_current()?;
            pause(done, t.elapsed());
            crate::alloc::Trimmer::global().request();
        }
        let copied = tally.finish();
        let key = self.opts.key.clone();
        let found = compact::read_back_with(
            || {
                let s = SledStore::open(tmp, COPY_CACHE)?;
                Ok(Box::new(
                    Sealed::reader(s, &key).map_err(|e| io("reading the copy back", e))?,
                ))
            },
            self.opts.window_bytes,
        )
        .and_then(|found| compact::verify(&copied, &found))
        .map_err(|e| io("checking the copy", e))?;
        debug_assert_eq!(found, copied.keys);
        self.at(Phase::Copied)?;
        Ok(copied)
    }

    /// Under the write lock: syncs, closes and opens the current store again (frees what sled
    /// kept in memory of what the copy read through it).
    fn reopen_current(&self) -> Result<(), StoreError> {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&cur) != 1 {
            return Err(shared());
        }
        cur.sync()?;
        self.syncs_before
            .fetch_add(cur.sync_count(), Ordering::Relaxed);
        *cur = Arc::new(Closed);
        *cur = Arc::new(self.reopen()?);
        Ok(())
    }

    /// Copies the recorded keys again (outside the lock while many were written, then under
    /// it), reads them back, and exchanges the directories. Returns whether the exchange
    /// happened (`<dir>.compact` then holds the old store).
    fn swap(
        &self,
        tmp: &Path,
        owner: &Ownership,
        done: &mut Rewritten,
    ) -> Result<bool, StoreError> {
        let new = self.open_copy(tmp)?;
        for _ in 0..CATCH_UPS {
            let keys = {
                let mut t = lock(&self.touched);
                match t.as_mut() {
                    Some(t) if t.len() > CATCH_UP_KEYS => std::mem::take(t),
                    _ => break,
                }
            };
            // A key taken here was written before it was recorded, so this read sees that
            // write; a later write records it again.
            done.caught_up += copy_keys(self, keys, &new)?;
        }
        let t = Instant::now();
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&cur) != 1 {
            return Err(shared());
        }
        cur.sync()?;
        let keys = lock(&self.touched).take().unwrap_or_default();
        done.caught_up += copy_keys(&**cur, keys, &new)?;
        new.sync()?;
        drop(new);
        self.at(Phase::Fixed)?;
        owner
            .apply(tmp)
            .map_err(|e| io("giving the copy the store's owner and modes", e))?;
        // The caches above the store (dedupe chunks, segments) stay valid: the copy holds the
        // same keys and values as the store it replaces at this moment.
        self.syncs_before
            .fetch_add(cur.sync_count(), Ordering::Relaxed);
        *cur = Arc::new(Closed);
        if let Err(e) = compact::exchange(&self.opts.dir, tmp) {
            *cur = Arc::new(self.reopen()?);
            return Err(io("swapping in the rewritten store", e));
        }
        *cur = Arc::new(self.reopen()?);
        drop(cur);
        done.swap_pause = t.elapsed();
        pause(done, done.swap_pause);
        Ok(true)
    }

    /// The copy at `tmp`, opened (created) with the store key.
    fn open_copy(&self, tmp: &Path) -> Result<Sealed<SledStore>, StoreError> {
        Sealed::open(SledStore::open(tmp, COPY_CACHE)?, &self.opts.key)
            .map_err(|e| io("opening the copy", e))
    }
}

/// Copies the value `from` holds of each of `keys` into `new` (removing the absent ones there),
/// then reads them back from `new`. Returns how many keys it copied.
fn copy_keys(
    from: &dyn Store,
    keys: BTreeSet<Vec<u8>>,
    new: &dyn Store,
) -> Result<u64, StoreError> {
    let n = keys.len() as u64;
    let keys: Vec<Vec<u8>> = keys.into_iter().collect();
    for part in keys.chunks(CATCH_UP_BATCH) {
        let mut batch = Batch::new();
        let mut want = Vec::with_capacity(part.len());
        for k in part {
            let v = from.get(k)?;
            match &v {
                Some(v) => batch.put(k.clone(), v.clone()),
                None => batch.remove(k.clone()),
            }
            want.push(v);
        }
        new.apply(batch)?;
        for (k, v) in part.iter().zip(want) {
            if new.get(k)? != v {
                return Err(StoreError::Io(
                    "a key copied again into the rewritten store reads back another value; nothing was changed".into(),
                ));
            }
        }
    }
    Ok(n)
}

fn pause(done: &mut Rewritten, took: Duration) {
    done.pauses += 1;
    done.longest_pause = done.longest_pause.max(took);
}

#[cfg(test)]
#[path = "online_tests.rs"]
mod tests;
