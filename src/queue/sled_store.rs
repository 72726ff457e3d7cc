//! The production [`Store`]: one sled tree, synced with `flush` + `fdatasync`.
//!
//! All keys live in sled's default tree so that one `apply_batch` covers a reading, its per-sink
//! entries and the counters (sled batches are atomic within one tree). [`Store::sync`] calls
//! `flush()` — which on Linux writes with `sync_file_range` and survives a process crash but not
//! a power cut — and then `fdatasync` on `<dir>/db` through a second handle to the same file
//! (sled 0.34's own flush does not wait for the disk). The store is the only code in vitalsd
//! that touches sled.
//!
//! File modes never follow the caller's umask: `open` sets the process umask to 0027 (sled
//! creates snapshot files later, from its own threads) and sets 0750 on the store's directories
//! and 0640 on its files, whatever they were created with. The values it holds are plain bytes:
//! encryption is the [`super::cipher::Sealed`] layer above it.
//!
//! Memory: sled's write path allocates and frees many short-lived blocks for every batch
//! (rewritten nodes, serialized log records), and glibc keeps the pages of freed heap memory
//! resident until the top of a heap is free. In a soak of several simulated days at 5 readings/s
//! the allocator held 45–60 MiB of freed memory next to 35–55 MiB in use, so RSS swung with it.
//! After every [`TRIM_EVERY_BYTES`] of keys and values applied, the next [`Store::sync`] asks
//! for the freed pages to be handed back to the system: the trim runs on the process's trim
//! thread ([`crate::alloc::Trimmer`]), so the sync, and the group commit waiting for it, does
//! not wait for the trim. Requests are counted by [`SledStore::trim_count`]
//! (docs/store-bounds.md, "Memory: the heap between rewrites").

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::store::{Batch, Entry, Op, Store, StoreError};

pub struct SledStore {
    db: sled::Db,
    data_file: File,
    path: PathBuf,
    syncs: AtomicU64,
    /// Key and value bytes applied since the last trim.
    applied: AtomicU64,
    trim_every: u64,
    trims: AtomicU64,
    trimmer: Trimmer,
}

/// The trimmer a store asks: the process's, or (tests) one of its own.
enum Trimmer {
    Global,
    #[cfg(test)]
    Own(crate::alloc::Trimmer),
}

impl Trimmer {
    fn get(&self) -> &crate::alloc::Trimmer {
        match self {
            Trimmer::Global => crate::alloc::Trimmer::global(),
            #[cfg(test)]
            Trimmer::Own(t) => t,
        }
    }
}

/// Bytes of keys and values applied between two trims of the heap.
pub const TRIM_EVERY_BYTES: u64 = 32 << 20;

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SledStore {
    /// The keys under `prefix` after `after` (from the first when `after` is before the
    /// prefix or absent), in order.
    fn keys_from(&self, prefix: &[u8], after: Option<&[u8]>) -> sled::Iter {
        match after {
            Some(a) if a >= prefix => {
                let start = std::ops::Bound::Excluded(a.to_vec());
                match super::store::prefix_end(prefix) {
                    Some(end) => self.db.range((start, std::ops::Bound::Excluded(end))),
                    None => self.db.range((start, std::ops::Bound::Unbounded)),
                }
            }
            _ => self.db.scan_prefix(prefix),
        }
    }

    /// Opens (creating) the store in `dir` with a page cache of `cache_capacity` bytes. Fails
    /// with [`StoreError::Open`] naming `dir` when it is not writable or another process holds
    /// the store's lock (sled allows one process per store).
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: dir.to_path_buf(),
            reason,
        };
        restrict_umask();
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None);
        // sled releases its lock file from background threads a moment after the last handle
        // in this process is dropped; wait briefly for that before calling the store locked.
        let deadline = Instant::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(open_err(describe_open_error(&e))),
            }
        };
        let data_path = dir.join("db");
        let data_file = File::open(&data_path)
            .map_err(|e| open_err(format!("{}: {e}", data_path.display())))?;
        set_modes(dir).map_err(|e| open_err(format!("setting file modes: {e}")))?;
        Ok(Self {
            db,
            data_file,
            path: dir.to_path_buf(),
            syncs: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            trim_every: TRIM_EVERY_BYTES,
            trims: AtomicU64::new(0),
            trimmer: Trimmer::Global,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How often a sync asked for the heap to be trimmed (see the module docs).
    pub fn trim_count(&self) -> u64 {
        self.trims.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn with_trim_every(mut self, bytes: u64) -> Self {
        self.trim_every = bytes;
        self
    }

    #[cfg(test)]
    fn with_trimmer(mut self, trimmer: crate::alloc::Trimmer) -> Self {
        self.trimmer = Trimmer::Own(trimmer);
        self
    }
}

/// The mode of every directory of a store (and of an outbox directory).
pub const DIR_MODE: u32 = 0o750;
/// The mode of every file of a store (and of an outbox file).
pub const FILE_MODE: u32 = 0o640;

/// Sets the process umask to 0027, so files created later without an explicit mode get at
/// most 0640 and directories 0750, whatever umask vitalsd was started with.
pub fn restrict_umask() {
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o027));
}

/// Sets [`DIR_MODE`] on `dir` and the directories below it and [`FILE_MODE`] on its files.
pub fn set_modes(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            set_modes(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(FILE_MODE))?;
        }
    }
    Ok(())
}

/// The owner, group and modes of a store, taken before `queue compact` or `salvage` opens it,
/// and given to the store written in its place (changing the owner needs root unless it is
/// already the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    uid: u32,
    gid: u32,
    dir_mode: u32,
    file_mode: u32,
}

impl Ownership {
    /// The owner and group of the directory `dir`, its mode, and the mode of `dir/db`.
    pub fn of(dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir)?;
        let file_mode = std::fs::metadata(dir.join("db")).map_or(FILE_MODE, |m| m.mode() & 0o7777);
        Ok(Self {
            uid: meta.uid(),
            gid: meta.gid(),
            dir_mode: meta.mode() & 0o7777,
            file_mode,
        })
    }

    /// Gives `tree` and everything under it this owner and group, the directory mode to its
    /// directories and the file mode to its files.
    pub fn apply(&self, tree: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::symlink_metadata(tree)?;
        if meta.uid() != self.uid || meta.gid() != self.gid {
            std::os::unix::fs::lchown(tree, Some(self.uid), Some(self.gid))?;
        }
        if meta.is_dir() {
            std::fs::set_permissions(tree, std::fs::Permissions::from_mode(self.dir_mode))?;
            for entry in std::fs::read_dir(tree)? {
                self.apply(&entry?.path())?;
            }
        } else if meta.is_file() {
            std::fs::set_permissions(tree, std::fs::Permissions::from_mode(self.file_mode))?;
        }
        Ok(())
    }
}

/// How long `open` waits for a lock held by a handle of this process that is closing.
const LOCK_WAIT: Duration = Duration::from_secs(1);

fn is_lock_error(e: &sled::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

fn describe_open_error(e: &sled::Error) -> String {
    let text = e.to_string();
    if is_lock_error(e) {
        "the store is locked by another process (is the vitalsd daemon running? use the admin API)"
            .to_string()
    } else {
        text
    }
}

fn store_err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Io(other.to_string()),
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(store_err)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let iter = self.keys_from(prefix, after);
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(store_err)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn scan_keys(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let iter = self.keys_from(prefix, after);
        let mut out = Vec::new();
        for item in iter.keys().take(limit) {
            out.push(item.map_err(store_err)?.to_vec());
        }
        Ok(out)
    }

    fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.scan_prefix(prefix).next_back() {
            Some(item) => Ok(Some(item.map_err(store_err)?.0.to_vec())),
            None => Ok(None),
        }
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        let mut bytes = 0usize;
        for op in batch.ops {
            match op {
                Op::Put(k, v) => {
                    bytes += k.len() + v.len();
                    b.insert(k, v);
                }
                Op::Remove(k) => {
                    bytes += k.len();
                    b.remove(k);
                }
            }
        }
        self.db.apply_batch(b).map_err(store_err)?;
        self.applied
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(store_err)?;
        self.data_file
            .sync_data()
            .map_err(|e| StoreError::Io(format!("fdatasync {}/db: {e}", self.path.display())))?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        // After the data is durable; only the thread that takes the counter back to zero
        // asks, and the trim runs on the trim thread: this sync's callers do not wait for it.
        if self.applied.load(Ordering::Relaxed) >= self.trim_every
            && self.applied.swap(0, Ordering::Relaxed) >= self.trim_every
        {
            self.trimmer.get().request();
            self.trims.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(store_err)
    }

    fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_mib(store: &SledStore, mib: usize) {
        for i in 0..mib {
            let mut b = Batch::new();
            for j in 0..16u32 {
                let key = format!("k{i:06}-{j:02}");
                b.put(key.into_bytes(), vec![7u8; 64 << 10]);
            }
            store.apply(b).unwrap();
            store.sync().unwrap();
        }
    }

    #[test]
    fn the_heap_is_trimmed_after_each_slice_of_applied_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::open(tmp.path(), 1 << 20)
            .unwrap()
            .with_trim_every(4 << 20);
        put_mib(&store, 3);
        assert_eq!(store.trim_count(), 0, "3 MiB applied: no trim yet");
        put_mib(&store, 2);
        assert_eq!(store.trim_count(), 1, "5 MiB applied: one trim");
        put_mib(&store, 4);
        assert_eq!(store.trim_count(), 2, "9 MiB applied: two trims");
        assert_eq!(store.sync_count(), 9);
    }

    #[test]
    fn removals_count_their_keys_and_nothing_trims_without_a_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::open(tmp.path(), 1 << 20)
            .unwrap()
            .with_trim_every(1 << 10);
        let mut b = Batch::new();
        for i in 0..100u32 {
            b.remove(format!("gone-{i:08}").into_bytes());
        }
        store.apply(b).unwrap();
        assert_eq!(store.trim_count(), 0, "applied, not synced");
        store.sync().unwrap();
        assert_eq!(
            store.trim_count(),
            1,
            "1,300 key bytes removed, then synced"
        );
    }

    #[test]
    fn a_sync_that_asks_for_a_trim_does_not_wait_for_it() {
        let tmp = tempfile::tempdir().unwrap();
        let slow = Duration::from_secs(2);
        let store = SledStore::open(tmp.path(), 1 << 20)
            .unwrap()
            .with_trim_every(1 << 20)
            .with_trimmer(crate::alloc::Trimmer::with(move || {
                std::thread::sleep(slow);
                true
            }));
        let mut b = Batch::new();
        b.put(b"big".to_vec(), vec![1u8; 2 << 20]);
        store.apply(b).unwrap();
        let started = Instant::now();
        store.sync().unwrap();
        let took = started.elapsed();
        assert_eq!(store.trim_count(), 1, "the sync asked for a trim");
        assert!(
            took < Duration::from_millis(1500),
            "the sync waited for the 2 s trim: {took:?}"
        );
        let Trimmer::Own(t) = &store.trimmer else {
            unreachable!()
        };
        assert!(
            t.wait_done(1, Duration::from_secs(10)),
            "the trim ran on its thread"
        );
        assert!(started.elapsed() >= slow);
    }
}
