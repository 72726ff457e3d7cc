//! Offline compaction: rewrites the queue store into a fresh sled tree and swaps it in.
//!
//! sled reuses the space of removed entries but does not give it back to the file system, so
//! after a large backlog drained `<data_dir>/queue` stays as big as it was at its peak. With the
//! daemon stopped, [`compact`] copies every live key into `<dir>.compact`, making the copy
//! durable as it goes, reads the copy back and checks it holds exactly the keys and values
//! written (their count, bytes and a SHA-256 over them in order), and then exchanges the two
//! directories in one `renameat2(RENAME_EXCHANGE)`: at every moment `<dir>` is a whole store,
//! the old one or the new one. The old store (now under `<dir>.compact`) is removed last; a
//! leftover `<dir>.compact` from an interrupted run is removed by the next run.
//!
//! The store key is checked first (a store sealed with another key is refused before anything
//! is written; an unencrypted store from an earlier version is sealed in place, as the daemon
//! would). Values are copied as they are stored: each is sealed with its own key as associated
//! data, so the copy opens with the same store key. The copy gets the owner, group and modes of
//! the store it replaces before the exchange.
//!
//! The online rewrite (`reclaim`) uses the same copy, read-back, check and exchange with the
//! daemon running, reading the store the queue uses instead of opening it here.
//!
//! Memory: the copy and the read-back go through the stores in windows of [`WINDOW_BYTES`],
//! each through a fresh opening of the stores that is closed at the window's end, so what sled
//! keeps in memory of the nodes it read or wrote is bounded by a window, not by the store's
//! size (docs/store-bounds.md, "Memory at 50 readings/s").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cipher::{SealError, Sealed, StoreKey};
use super::sled_store::{Ownership, SledStore};
use super::store::{Batch, Store, StoreError};
use super::types::QueueError;

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Keys copied (readings, entries, indexes, audit, counters).
    pub keys: u64,
    /// Bytes the store's directory occupied on disk before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub took: Duration,
}

/// Keys copied per batch (at most; see [`BATCH_BYTES`]).
pub(super) const PAGE: usize = 4096;

/// Key and value bytes copied per batch, at most (one key more than this if a single key is
/// larger).
const BATCH_BYTES: usize = 1 << 20;

/// Compacts the store in `dir` (the daemon must be stopped: the store's lock is taken).
pub fn compact(
    dir: &Path,
    cache_capacity: u64,
    key: &StoreKey,
) -> Result<CompactReport, QueueError> {
    let started = Instant::now();
    let io = |what: &str, p: &Path, e: std::io::Error| {
        QueueError::Store(StoreError::Io(format!("{what} {}: {e}", p.display())))
    };
    if !dir.join("db").exists() {
        return Err(QueueError::Store(StoreError::Open {
            path: dir.to_path_buf(),
            reason: "there is no queue store here".into(),
        }));
    }
    let tmp = sibling(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io("removing the leftover", &tmp, e))?;
    }
    let bytes_before = dir_bytes(dir).map_err(|e| io("measuring", dir, e))?;
    let owner = Ownership::of(dir).map_err(|e| io("reading the owner and modes of", dir, e))?;
    // The key is checked (and an unencrypted store sealed) once; the copy then reads the raw
    // sealed values window by window.
    match Sealed::open(SledStore::open(dir, cache_capacity)?, key) {
        Ok(s) => drop(s),
        Err(SealError::Store(e)) => return Err(e.into()),
        Err(e @ SealError::WrongKey { .. }) => {
            return Err(QueueError::Store(StoreError::Open {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            }))
        }
    }
    let keys = copy_and_check(
        dir,
        &tmp,
        Window {
            cache_capacity,
            bytes: WINDOW_BYTES,
        },
    )?;
    owner
        .apply(&tmp)
        .map_err(|e| io("giving the copy the owner and modes of", dir, e))?;
    exchange(dir, &tmp).map_err(|e| io("swapping in the compacted store at", dir, e))?;
    std::fs::remove_dir_all(&tmp).map_err(|e| io("removing the old store at", &tmp, e))?;
    let bytes_after = dir_bytes(dir).map_err(|e| io("measuring", dir, e))?;
    Ok(CompactReport {
        keys,
        bytes_before,
        bytes_after,
        took: started.elapsed(),
    })
}

/// `<dir>.compact`, next to `dir` on the same file system.
pub(super) fn sibling(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".compact");
    dir.with_file_name(name)
}

/// Key and value bytes the copy reads (and writes, and reads back) through one opening of each
/// store. sled keeps what it read or wrote in memory until its page cache processes the
/// accesses, which it does only after many of them (so a small `cache_capacity` alone does not
/// bound it); dropping the stores after each window frees all of it (docs/store-bounds.md,
/// "Memory at 50 readings/s").
pub const WINDOW_BYTES: u64 = 16 << 20;

/// How the copy opens the stores: each window of about `bytes` through a fresh opening with a
/// page cache of `cache_capacity`.
#[derive(Debug, Clone, Copy)]
struct Window {
    cache_capacity: u64,
    bytes: u64,
}

/// What a copy wrote, or what a read-back found: the keys, their key and value bytes, and a
/// SHA-256 over every key and value in order (each preceded by its length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Copied {
    pub(super) keys: u64,
    bytes: u64,
    digest: Vec<u8>,
}

/// A running [`Copied`].
pub(super) struct Tally {
    keys: u64,
    bytes: u64,
    sha: ring::digest::Context,
}

impl Tally {
    pub(super) fn new() -> Self {
        Self {
            keys: 0,
            bytes: 0,
            sha: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    fn add(&mut self, k: &[u8], v: &[u8]) {
        self.keys += 1;
        self.bytes += (k.len() + v.len()) as u64;
        for part in [k, v] {
            self.sha.update(&(part.len() as u64).to_be_bytes());
            self.sha.update(part);
        }
    }

    pub(super) fn finish(self) -> Copied {
        Copied {
            keys: self.keys,
            bytes: self.bytes,
            digest: self.sha.finish().as_ref().to_vec(),
        }
    }
}

/// Copies the store in `from` into `to` ([`copy_windows`]), reads the copy back
/// ([`read_back`]) and returns the keys copied if it holds exactly what was written.
fn copy_and_check(from: &Path, to: &Path, window: Window) -> Result<u64, QueueError> {
    let copied = copy_windows(from, to, window)?;
    let found = read_back(to, window)?;
    verify(&copied, &found)
}

/// The keys copied if the copy holds exactly what was written (the same keys, bytes and
/// digest); an error otherwise.
pub(super) fn verify(copied: &Copied, found: &Copied) -> Result<u64, QueueError> {
    if found == copied {
        return Ok(copied.keys);
    }
    Err(QueueError::Store(StoreError::Io(format!(
        "the compacted copy holds {} keys ({} bytes), the store {} keys ({} bytes), and their \
         digests {}; nothing was changed",
        found.keys,
        found.bytes,
        copied.keys,
        copied.bytes,
        if found.digest == copied.digest {
            "agree"
        } else {
            "differ"
        },
    ))))
}

/// Copies every key of the store in `from` into a store in `to`, a window at a time: each
/// window opens both stores, copies keys in order after the last one copied until about
/// `window.bytes` were copied, syncs the copy, and closes both (asking for the heap to be
/// trimmed). Returns what it wrote.
fn copy_windows(from: &Path, to: &Path, window: Window) -> Result<Copied, QueueError> {
    let mut tally = Tally::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let old = SledStore::open(from, window.cache_capacity)?;
        let new = SledStore::open(to, window.cache_capacity)?;
        let done = copy_all(&old, &new, &mut after, window.bytes, &mut tally)?;
        new.sync()?;
        drop((old, new));
        crate::alloc::Trimmer::global().request();
        if done {
            return Ok(tally.finish());
        }
    }
}

/// Reads the store in `dir` back a window at a time (see [`read_back_with`]).
fn read_back(dir: &Path, window: Window) -> Result<Copied, QueueError> {
    read_back_with(
        || Ok(Box::new(SledStore::open(dir, window.cache_capacity)?)),
        window.bytes,
    )
}

/// Reads a store back a window of about `window_bytes` at a time, each window through a fresh
/// store from `open` (closed at the window's end), in pages of about [`BATCH_BYTES`] like the
/// copy's, and returns what it holds, to compare with what the copy wrote.
pub(super) fn read_back_with(
    open: impl Fn() -> Result<Box<dyn Store>, StoreError>,
    window_bytes: u64,
) -> Result<Copied, QueueError> {
    let mut tally = Tally::new();
    let mut after: Option<Vec<u8>> = None;
    let mut limit = 64usize;
    loop {
        let store = open()?;
        let mut read = 0u64;
        let done = loop {
            let page = store.scan_prefix(&[], after.as_deref(), limit)?;
            let Some((last, _)) = page.last() else {
                break true;
            };
            after = Some(last.clone());
            let mut bytes = 0usize;
            for (k, v) in &page {
                bytes += k.len() + v.len();
                tally.add(k, v);
            }
            limit = (BATCH_BYTES / (bytes / page.len()).max(1)).clamp(1, PAGE);
            read += bytes as u64;
            if read >= window_bytes {
                break false;
            }
        };
        drop(store);
        crate::alloc::Trimmer::global().request();
        if done {
            return Ok(tally.finish());
        }
    }
}

/// Copies the keys of `from` after `after` into `to` in batches of at most [`PAGE`] keys and
/// about [`BATCH_BYTES`] or `budget`, the smaller (each read asks for as many keys as the last batch's average size lets
/// fit), until at least `budget` bytes were copied (returns false, `after` the last key copied) or every key was (returns true).
pub(super) fn copy_all(
    from: &dyn Store,
    to: &dyn Store,
    after: &mut Option<Vec<u8>>,
    budget: u64,
    tally: &mut Tally,
) -> Result<bool, QueueError> {
    let mut copied = 0u64;
    let mut limit = 64usize;
    loop {
        let page = from.scan_prefix(&[], after.as_deref(), limit)?;
        let Some((last, _)) = page.last() else {
            return Ok(true);
        };
        *after = Some(last.clone());
        let keys = page.len();
        let mut batch = Batch::new();
        let mut bytes = 0usize;
        for (k, v) in page {
            bytes += k.len() + v.len();
            tally.add(&k, &v);
            batch.put(k, v);
        }
        to.apply(batch)?;
        let most = BATCH_BYTES.min(usize::try_from(budget).unwrap_or(usize::MAX));
        limit = (most / (bytes / keys).max(1)).clamp(1, PAGE);
        copied += bytes as u64;
        if copied >= budget {
            return Ok(false);
        }
    }
}

/// Atomically exchanges the two directories, then makes the rename durable.
pub(super) fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE)
        .map_err(std::io::Error::from)?;
    if let Some(parent) = a.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Bytes allocated on disk by the files under `dir`.
pub fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
