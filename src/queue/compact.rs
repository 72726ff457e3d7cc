//! Offline compaction: rewrites the queue store into a fresh sled tree and swaps it in.
//!
//! sled reuses the space of removed entries but does not give it back to the file system, so
//! after a large backlog drained `<data_dir>/queue` stays as big as it was at its peak. With the
//! daemon stopped, [`compact`] copies every live key into `<dir>.compact`, makes the copy
//! durable, checks it holds as many keys as the original, and then exchanges the two
//! directories in one `renameat2(RENAME_EXCHANGE)`: at every moment `<dir>` is a whole store,
//! the old one or the new one. The old store (now under `<dir>.compact`) is removed last; a
//! leftover `<dir>.compact` from an interrupted run is removed by the next run.
//!
//! The store key is checked first (a store sealed with another key is refused before anything
//! is written; an unencrypted store from an earlier version is sealed in place, as the daemon
//! would). Values are copied as they are stored: each is sealed with its own key as associated
//! data, so the copy opens with the same store key. The copy gets the owner, group and modes of
//! the store it replaces before the exchange.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cipher::{SealError, Sealed, StoreKey};
use super::scan::count_prefix;
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
const PAGE: usize = 4096;

/// Key and value bytes copied per batch, at most (one key more than this if a single key is
/// larger).
const BATCH_BYTES: usize = 4 << 20;

/// Bytes copied between two syncs of the copy. sled keeps what was written since its last
/// flush in memory; without these syncs the online rewrite of a store with 192 MiB live held
/// about twice that in the heap at its peak (docs/store-bounds.md, "Memory at 50 readings/s").
pub const SYNC_EVERY_BYTES: u64 = 8 << 20;

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
    let keys = {
        let old = match Sealed::open(SledStore::open(dir, cache_capacity)?, key) {
            Ok(s) => s,
            Err(SealError::Store(e)) => return Err(e.into()),
            Err(e @ SealError::WrongKey { .. }) => {
                return Err(QueueError::Store(StoreError::Open {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                }))
            }
        };
        let new = SledStore::open(&tmp, cache_capacity)?;
        let copied = copy_all(old.inner(), &new, SYNC_EVERY_BYTES)?;
        new.sync()?;
        let check = count_prefix(&new, &[], |_| {})?;
        if check != copied {
            return Err(QueueError::Store(StoreError::Io(format!(
                "the compacted copy holds {check} keys, the store {copied}; nothing was changed"
            ))));
        }
        copied
    };
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
fn sibling(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".compact");
    dir.with_file_name(name)
}

/// Copies every key of `from` into `to` in batches of at most [`PAGE`] keys and about
/// [`BATCH_BYTES`] (each read asks for as many keys as the last batch's average size lets
/// fit), syncing `to` after every `sync_every` bytes copied.
fn copy_all(from: &dyn Store, to: &dyn Store, sync_every: u64) -> Result<u64, QueueError> {
    let mut n = 0u64;
    let mut unsynced = 0u64;
    let mut limit = 64usize;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = from.scan_prefix(&[], after.as_deref(), limit)?;
        let Some((last, _)) = page.last() else {
            return Ok(n);
        };
        after = Some(last.clone());
        let keys = page.len();
        let mut batch = Batch::new();
        let mut bytes = 0usize;
        for (k, v) in page {
            bytes += k.len() + v.len();
            batch.put(k, v);
        }
        n += keys as u64;
        to.apply(batch)?;
        limit = (BATCH_BYTES / (bytes / keys).max(1)).clamp(1, PAGE);
        unsynced += bytes as u64;
        if unsynced >= sync_every {
            to.sync()?;
            unsynced = 0;
        }
    }
}

/// Atomically exchanges the two directories, then makes the rename durable.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
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
mod tests {
    use super::*;
    use crate::queue::tests::reading;
    use crate::queue::{Queue, QueueOptions, Settle};
    use crate::reading::SinkId;
    use std::sync::Arc;

    fn opts() -> QueueOptions {
        QueueOptions::new(vec![SinkId::new("ehr")])
    }

    fn key() -> StoreKey {
        StoreKey::from_bytes([5; 32], "test key")
    }

    fn open(dir: &Path) -> Queue {
        let store = Sealed::open(SledStore::open(dir, 8 << 20).unwrap(), &key()).unwrap();
        Queue::with_store(Arc::new(store), opts()).unwrap()
    }

    #[tokio::test]
    async fn compaction_gives_space_back_and_keeps_every_pending_entry() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("queue");
        let sink = SinkId::new("ehr");
        let kept = {
            let q = open(&dir);
            let all: Vec<_> = (0..3000).map(|n| reading("cuff", n)).collect();
            q.enqueue(all.clone()).await.unwrap();
            let delivered = all[..2990]
                .iter()
                .map(|r| (r.id.unwrap(), Settle::Delivered))
                .collect();
            q.settle(&sink, delivered).await.unwrap();
            q.close().await.unwrap();
            all[2990..].to_vec()
        };
        let report = compact(&dir, 8 << 20, &key()).unwrap();
        assert!(report.bytes_after < report.bytes_before, "{report:?}");
        assert!(!sibling(&dir).exists());
        let q = open(&dir);
        assert_eq!(q.stats().unwrap().sinks[0].pending, 10);
        let far = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        let left: Vec<_> = q
            .pending(&sink, 100, far)
            .unwrap()
            .into_iter()
            .map(|p| p.reading)
            .collect();
        assert_eq!(left, kept);
        // Dedupe keys survive: the delivered readings are still known.
        let again = q.enqueue(vec![reading("cuff", 5)]).await.unwrap();
        assert!(matches!(
            again[0],
            crate::queue::EnqueueOutcome::Duplicate(_)
        ));
    }

    #[test]
    fn compaction_refuses_a_directory_without_a_store_and_removes_leftovers() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("queue");
        assert!(compact(&dir, 8 << 20, &key()).is_err());
        std::fs::create_dir_all(sibling(&dir)).unwrap();
        drop(SledStore::open(&dir, 8 << 20).unwrap());
        compact(&dir, 8 << 20, &key()).unwrap();
        assert!(!sibling(&dir).exists());
        assert!(dir.join("db").exists());
    }

    #[test]
    fn compaction_refuses_another_key_and_keeps_the_store_modes() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("queue");
        drop(Sealed::open(SledStore::open(&dir, 8 << 20).unwrap(), &key()).unwrap());
        let other = StoreKey::from_bytes([6; 32], "other key");
        let err = compact(&dir, 8 << 20, &other).unwrap_err().to_string();
        assert!(err.contains("another key"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(dir.join("db"), std::fs::Permissions::from_mode(0o600)).unwrap();
        compact(&dir, 8 << 20, &key()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("db")), 0o600);
        assert_eq!(mode(&dir.join("conf")), 0o600);
        drop(Sealed::open(SledStore::open(&dir, 8 << 20).unwrap(), &key()).unwrap());
    }

    /// The largest heap bytes in use (glibc's count) sampled while `f` runs, above those in
    /// use when it started.
    fn peak_heap_during(f: impl FnOnce()) -> usize {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let base = crate::alloc::heap().in_use;
        let peak = Arc::new(AtomicUsize::new(base));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(crate::alloc::heap().in_use, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        f();
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        peak.load(Ordering::Relaxed).saturating_sub(base)
    }

    #[test]
    fn the_copy_holds_a_bounded_part_of_the_store_in_memory() {
        let parent = tempfile::tempdir().unwrap();
        let from = SledStore::open(&parent.path().join("from"), 1 << 20).unwrap();
        // 48 MiB of 4 KiB values, the size of the dedupe chunks that make up most of a store
        // at a high rate.
        let live = 48usize << 20;
        for page in 0..live / (1 << 20) {
            let mut b = Batch::new();
            for i in 0..256usize {
                let n = page * 256 + i;
                let v: Vec<u8> = (0..4096)
                    .map(|j| u8::try_from((n * 31 + j * 7) % 251).unwrap())
                    .collect();
                b.put(format!("k{n:08}").into_bytes(), v);
            }
            from.apply(b).unwrap();
            from.sync().unwrap();
        }
        let copy = |name: &str, sync_every: u64| {
            let to = SledStore::open(&parent.path().join(name), 1 << 20).unwrap();
            let peak = peak_heap_during(|| {
                assert_eq!(copy_all(&from, &to, sync_every).unwrap(), 12_288);
                to.sync().unwrap();
            });
            drop(to);
            peak
        };
        let unsynced = copy("unsynced", u64::MAX);
        let synced = copy("synced", SYNC_EVERY_BYTES);
        eprintln!(
            "heap in use above the start while copying {} MiB: {} MiB synced only at the end, {} MiB synced every {} MiB",
            live >> 20,
            unsynced >> 20,
            synced >> 20,
            SYNC_EVERY_BYTES >> 20
        );
        // Measured: 76–84 MiB synced at the end only, 31–40 MiB synced every 4–16 MiB (the
        // rest is what sled holds of the store it reads).
        assert!(
            synced < unsynced * 2 / 3 && synced < live,
            "synced every {} MiB: {synced} B at the peak; synced at the end only: {unsynced} B",
            SYNC_EVERY_BYTES >> 20
        );
    }
}
