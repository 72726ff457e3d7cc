//! Space comes back while the daemon runs: the store is rewritten and swapped in place.
//!
//! sled reuses freed space but never shrinks its files, so after a backlog drained the store
//! keeps its high-water size on disk. Receives a store opened from a directory and how to open
//! it again; promises a [`Store`] whose calls go to the current store, and [`Reclaim::run`]: with
//! every reader and the writer held off (a write lock), it syncs and closes the current store,
//! rewrites it with the offline compaction (`compact`: a whole store at `<dir>` at every
//! moment, so a crash leaves the old or the new one), and opens the rewritten one. The writer
//! calls it when the files are much larger than the live data (see [`Reclaim::due`]); ingest
//! waits for its duration (the copy of the live keys: a fraction of a second for a few MB).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::cipher::{Sealed, StoreKey};
use super::sled_store::SledStore;
use super::store::{Batch, Entry, Store, StoreError};

/// The live bytes above which the store is not rewritten online (the copy holds ingest):
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
    /// Never when the live bytes are above this (the copy would hold ingest too long).
    pub max_live_bytes: u64,
    /// At most once per this interval.
    pub every: Duration,
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
        }
    }
}

/// The store the queue uses when space is reclaimed online: the current store behind a lock.
pub struct Reclaim {
    current: RwLock<Arc<dyn Store>>,
    opts: ReclaimOptions,
    last: std::sync::Mutex<Instant>,
    /// Syncs of the stores closed so far (`sync_count` goes on counting across swaps).
    syncs_before: AtomicU64,
    /// Rewrites done since open.
    pub runs: AtomicU64,
}

impl Reclaim {
    pub fn new(store: Arc<dyn Store>, opts: ReclaimOptions) -> Self {
        Self {
            current: RwLock::new(store),
            opts,
            last: std::sync::Mutex::new(Instant::now()),
            syncs_before: AtomicU64::new(0),
            runs: AtomicU64::new(0),
        }
    }

    fn store(&self) -> std::sync::RwLockReadGuard<'_, Arc<dyn Store>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a rewrite is worth it now: the files take more than twice the live bytes plus
    /// the slack, the live bytes are small enough to copy quickly, and the last rewrite (or the
    /// open) is at least `every` ago.
    pub fn due(&self, disk_bytes: u64, live_bytes: u64) -> bool {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        live_bytes <= self.opts.max_live_bytes
            && disk_bytes
                > live_bytes
                    .saturating_mul(2)
                    .saturating_add(self.opts.slack_bytes)
            && last.elapsed() >= self.opts.every
    }

    /// Rewrites the store and swaps the rewritten one in (see the module docs). Returns the
    /// bytes on disk before and after. On failure the store is opened again as it is.
    pub fn run(&self) -> Result<(u64, u64), StoreError> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&cur) != 1 {
            return Err(StoreError::Io(
                "the store is shared outside the queue; not rewritten".into(),
            ));
        }
        cur.sync()?;
        let before = cur.size_on_disk()?;
        self.syncs_before
            .fetch_add(cur.sync_count(), Ordering::Relaxed);
        // Closed: sled releases the directory's lock from its threads a moment later, which
        // the compaction's open waits for.
        *cur = Arc::new(Closed);
        // The copy reads every key once, in order: a page cache would only hold what was read,
        // so the two stores it opens get a small one.
        let rewritten = super::compact::compact(
            &self.opts.dir,
            self.opts.cache_capacity.min(COPY_CACHE),
            &self.opts.key,
        );
        // What the copy allocated is free again: give it back (docs/store-bounds.md), on the
        // trim thread, so ingest does not wait for it too.
        crate::alloc::Trimmer::global().request();
        let reopened = self.reopen()?;
        let after = reopened.size_on_disk()?;
        *cur = Arc::new(reopened);
        self.runs.fetch_add(1, Ordering::Relaxed);
        rewritten.map_err(|e| StoreError::Io(e.to_string()))?;
        Ok((before, after))
    }
}

impl Reclaim {
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
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// The page cache of each store the rewrite's copy opens.
const COPY_CACHE: u64 = 1 << 20;

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
        self.store().apply(batch)
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

/// The store between closing the old one and opening the rewritten one (never seen by a
/// caller: the write lock is held meanwhile).
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
