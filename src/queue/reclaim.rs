//! Space comes back while the daemon runs: the store is rewritten beside ingest and swapped in.
//!
//! sled reuses freed space but never shrinks its files, so after a backlog drained the store
//! keeps its high-water size on disk. Receives a store opened from a directory and how to open
//! it again; promises a [`Store`] whose calls go to the current store, and a rewrite
//! ([`Reclaim::start`] on its own thread, or [`Reclaim::run`] on the caller's) that copies the
//! live keys into a fresh store at `<dir>.compact` while the writer goes on committing:
//! - every key an `apply` touches from the moment the copy starts is recorded (all writes go
//!   through this wrapper), so a write the copy missed is copied again at the end;
//! - the copy reads the current store a window of [`ReclaimOptions::window_bytes`] at a time;
//!   between windows the current store is synced, closed and opened again under the write lock
//!   (a short pause for readers and the writer) to free what sled kept of what it read;
//! - at the end, under the write lock, the recorded keys get the current store's values (or are
//!   removed) in the copy, are read back, and the two directories are exchanged in one rename:
//!   `<dir>` is a whole store, the old or the new, at every moment, so a crash or a failure at
//!   any step leaves a store that opens (a leftover `<dir>.compact` is removed at the next open,
//!   [`Reclaim::remove_leftover`], or by the next rewrite).
//!
//! The writer starts it when the files are much larger than the live data (see
//! [`Reclaim::due`]); docs/store-bounds.md, "Space comes back while running".

mod online;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cipher::{Sealed, StoreKey};
use super::sled_store::SledStore;
use super::store::{Batch, Entry, Op, Store, StoreError};

/// The live bytes above which the store is not rewritten online (the copy takes longer):
/// the default `history_max_bytes` stays 64 MiB below it (docs/store-bounds.md).
pub const MAX_LIVE_BYTES: u64 = 256 << 20;

/// When and how to rewrite the store.
#[derive(Clone)]
pub struct ReclaimOptions {
    /// The store's directory (`<data_dir>/queue`).
    pub dir: PathBuf,
    pub cache_capacity: u64,
    pub key: StoreKey,
    /// Rewrite when the files exceed twice the live bytes by more than this.
    pub slack_bytes: u64,
    /// Never when the live bytes are above this (the copy would take long).
    pub max_live_bytes: u64,
    /// At most once per this interval.
    pub every: Duration,
    /// Key and value bytes copied between two pauses (each pause closes and opens the current
    /// store again, freeing what sled kept of the window it read).
    pub window_bytes: u64,
    /// Called at every [`Phase`] of a rewrite (tests only).
    #[cfg(test)]
    pub hook: Option<Hook>,
}

impl std::fmt::Debug for ReclaimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReclaimOptions")
            .field("dir", &self.dir)
            .field("slack_bytes", &self.slack_bytes)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ReclaimOptions {
    fn eq(&self, o: &Self) -> bool {
        self.dir == o.dir
            && self.slack_bytes == o.slack_bytes
            && self.max_live_bytes == o.max_live_bytes
            && self.every == o.every
            && self.window_bytes == o.window_bytes
    }
}

impl Eq for ReclaimOptions {}

impl ReclaimOptions {
    /// Defaults: 64 MiB of slack, live data up to 256 MiB, at most every 10 minutes.
    pub fn new(dir: PathBuf, cache_capacity: u64, key: StoreKey) -> Self {
        Self {
            dir,
            cache_capacity,
            key,
            slack_bytes: 64 << 20,
            max_live_bytes: MAX_LIVE_BYTES,
            every: Duration::from_secs(600),
            window_bytes: super::compact::WINDOW_BYTES,
            #[cfg(test)]
            hook: None,
        }
    }
}

/// The store the queue uses when space is reclaimed online: the current store behind a lock.
pub struct Reclaim {
    current: RwLock<Arc<dyn Store>>,
    opts: ReclaimOptions,
    last: Mutex<Instant>,
    /// Syncs of the stores closed so far (`sync_count` goes on counting across swaps).
    syncs_before: AtomicU64,
    /// Rewrites swapped in since open.
    pub runs: AtomicU64,
    /// The keys written since the running rewrite began its copy (`None`: no copy runs).
    touched: Mutex<Option<BTreeSet<Vec<u8>>>>,
    /// Set to make a running rewrite stop at its next window (the queue is closing).
    stop: AtomicBool,
    /// The thread of the rewrite started last.
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What a rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// Bytes on disk of the store before and after.
    pub before: u64,
    pub after: u64,
    /// Keys the windows copied.
    pub keys: u64,
    /// Keys written while the copy ran, copied again at the end.
    pub caught_up: u64,
    /// The moments readers and the writer waited: one between every two windows, one at the
    /// swap.
    pub pauses: u32,
    pub longest_pause: Duration,
    /// The pause of the swap itself.
    pub swap_pause: Duration,
    pub took: Duration,
}

/// Where a rewrite stands, for tests that hold or fail it there (`ReclaimOptions::hook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Window `n` (from 0) was copied and synced; the pause that follows has not begun.
    Window(u32),
    /// The windows were copied and read back; the catch-up and the swap have not begun.
    Copied,
    /// Under the write lock: the recorded keys are in the copy; the exchange has not happened.
    Fixed,
    /// The exchange happened and the lock is released; the old store is not removed yet.
    Swapped,
}

/// A test's hook, called at every [`Phase`]: an error stops the rewrite there.
#[cfg(test)]
pub type Hook = Arc<dyn Fn(Phase) -> Result<(), StoreError> + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reclaim {
    pub fn new(store: Arc<dyn Store>, opts: ReclaimOptions) -> Self {
        Self {
            current: RwLock::new(store),
            opts,
            last: Mutex::new(Instant::now()),
            syncs_before: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            touched: Mutex::new(None),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        }
    }

    /// Removes what a rewrite interrupted by a crash or a kill left at `<dir>.compact` (a
    /// partial copy, or the old store after the exchange: `<dir>` is whole either way), so
    /// its space comes back at the next start and not only at the next rewrite, which may
    /// never be due. Called at open, before any rewrite can run; returns the bytes freed.
    pub fn remove_leftover(&self) -> Result<Option<u64>, StoreError> {
        let tmp = super::compact::sibling(&self.opts.dir);
        if !tmp.exists() {
            return Ok(None);
        }
        let bytes = super::compact::dir_bytes(&tmp).unwrap_or(0);
        std::fs::remove_dir_all(&tmp).map_err(|e| {
            StoreError::Io(format!(
                "removing the copy an interrupted rewrite left at {}: {e}",
                tmp.display()
            ))
        })?;
        tracing::info!(
            path = %tmp.display(),
            bytes,
            "removed the copy an interrupted rewrite of the queue store left behind"
        );
        Ok(Some(bytes))
    }

    fn store(&self) -> std::sync::RwLockReadGuard<'_, Arc<dyn Store>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a rewrite is worth it now: none is running, the files take more than twice the
    /// live bytes plus the slack, the live bytes are at most `max_live_bytes`, and the last
    /// rewrite (or the open) is at least `every` ago.
    pub fn due(&self, disk_bytes: u64, live_bytes: u64) -> bool {
        let last = *lock(&self.last);
        !self.running()
            && live_bytes <= self.opts.max_live_bytes
            && disk_bytes
                > live_bytes
                    .saturating_mul(2)
                    .saturating_add(self.opts.slack_bytes)
            && last.elapsed() >= self.opts.every
    }

    /// Whether a rewrite started by [`Reclaim::start`] is still running.
    pub fn running(&self) -> bool {
        lock(&self.thread)
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    /// Starts a rewrite on its own thread unless one runs; `done` gets its outcome there, after
    /// the swap (or the failure). Returns whether one was started.
    pub fn start(
        self: &Arc<Self>,
        done: impl FnOnce(Result<Rewritten, StoreError>) + Send + 'static,
    ) -> bool {
        let mut slot = lock(&self.thread);
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return false;
        }
        if let Some(h) = slot.take() {
            let _ = h.join();
        }
        *lock(&self.last) = Instant::now();
        self.stop.store(false, Ordering::SeqCst);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("vitalsd-rewrite".into())
            .spawn(move || done(me.run()));
        match spawned {
            Ok(h) => {
                *slot = Some(h);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the queue store's rewrite thread; will try again later");
                false
            }
        }
    }

    /// Whether [`Reclaim::stop`] was called (a rewrite that ends with an error then stopped
    /// because the queue is closing, not because something failed).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Makes a running rewrite stop at its next window (or finish its swap) and waits for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let thread = lock(&self.thread).take();
        if let Some(h) = thread {
            let _ = h.join();
        }
    }

    /// Rewrites the store on this thread (see the module docs). On failure the current store
    /// stays the old one (opened again if a pause had closed it) and `<dir>.compact` is removed.
    pub fn run(&self) -> Result<Rewritten, StoreError> {
        let started = Instant::now();
        *lock(&self.last) = started;
        let before = self.store().size_on_disk()?;
        let mut done = Rewritten {
            before,
            ..Rewritten::default()
        };
        let result = self.rewrite(&mut done);
        // Whatever happened, the writes are no longer recorded.
        *lock(&self.touched) = None;
        // What the copy allocated is free again: give it back (docs/store-bounds.md), on the
        // trim thread.
        crate::alloc::Trimmer::global().request();
        result?;
        done.after = self.store().size_on_disk()?;
        done.took = started.elapsed();
        self.runs.fetch_add(1, Ordering::Relaxed);
        Ok(done)
    }

    /// Opens the store again, waiting (up to [`REOPEN_WAIT`]) for sled to release the lock
    /// of the handle just closed.
    fn reopen(&self) -> Result<Sealed<SledStore>, StoreError> {
        let deadline = Instant::now() + REOPEN_WAIT;
        loop {
            let opened = SledStore::open(&self.opts.dir, self.opts.cache_capacity).and_then(|s| {
                Sealed::open(s, &self.opts.key).map_err(|e| StoreError::Io(e.to_string()))
            });
            match opened {
                Ok(s) => return Ok(s),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Calls the test hook at `phase` (nothing outside tests).
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    fn at(&self, phase: Phase) -> Result<(), StoreError> {
        #[cfg(test)]
        if let Some(hook) = &self.opts.hook {
            return hook(phase);
        }
        let _ = phase;
        Ok(())
    }
}

/// How long [`Reclaim::reopen`] keeps trying.
const REOPEN_WAIT: Duration = Duration::from_secs(15);

impl Store for Reclaim {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store().get(key)
    }
    fn value_len(&self, key: &[u8]) -> Result<Option<usize>, StoreError> {
        self.store().value_len(key)
    }
    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.store().scan_prefix(prefix, after, limit)
    }
    fn scan_keys(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.store().scan_keys(prefix, after, limit)
    }
    fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store().last_key(prefix)
    }
    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let cur = self.store();
        let keys: Option<Vec<Vec<u8>>> = lock(&self.touched).is_some().then(|| {
            batch
                .ops
                .iter()
                .map(|op| match op {
                    Op::Put(k, _) | Op::Remove(k) => k.clone(),
                })
                .collect()
        });
        let applied = cur.apply(batch);
        // Recorded after the write (and whether it failed or not): a key taken from the set is
        // read after the write that recorded it (see `online`), and the copy's start and end
        // hold the write lock, so no apply runs across them.
        if let Some(keys) = keys {
            if let Some(t) = lock(&self.touched).as_mut() {
                t.extend(keys);
            }
        }
        applied
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.store().sync()
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.store().size_on_disk()
    }
    fn sync_count(&self) -> u64 {
        self.syncs_before.load(Ordering::Relaxed) + self.store().sync_count()
    }
}

/// The store between closing one store and opening one (seen by callers only when the opening
/// failed: the write lock is held meanwhile).
struct Closed;

impl Store for Closed {
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(closed())
    }
    fn scan_prefix(&self, _: &[u8], _: Option<&[u8]>, _: usize) -> Result<Vec<Entry>, StoreError> {
        Err(closed())
    }
    fn last_key(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(closed())
    }
    fn apply(&self, _: Batch) -> Result<(), StoreError> {
        Err(closed())
    }
    fn sync(&self) -> Result<(), StoreError> {
        Err(closed())
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn sync_count(&self) -> u64 {
        0
    }
}

fn closed() -> StoreError {
    StoreError::Io("the store could not be opened again after it was rewritten".into())
}
