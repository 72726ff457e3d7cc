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
const PAGE: usize = 4096;

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
fn sibling(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".compact");
    dir.with_file_name(name)
}

/// Key and value bytes the copy reads (and writes, and reads back) through one opening of each
/// store. sled keeps what it read or wrote in memory until its page cache processes the
/// accesses, which it does only after many of them (so a small `cache_capacity` alone does not
/// bound it); dropping the stores after each window frees all of it (docs/store-bounds.md,
/// "Memory at 50 readings/s").
pub const WINDOW_BYTES: u64 = 4 << 20;

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
struct Copied {
    keys: u64,
    bytes: u64,
    digest: Vec<u8>,
}

/// A running [`Copied`].
struct Tally {
    keys: u64,
    bytes: u64,
    sha: ring::digest::Context,
}

impl Tally {
    fn new() -> Self {
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

    fn finish(self) -> Copied {
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
fn verify(copied: &Copied, found: &Copied) -> Result<u64, QueueError> {
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

/// Reads the store in `dir` back a window at a time (each through a fresh opening, in pages of
/// about [`BATCH_BYTES`] like the copy's) and returns
/// what it holds, to compare with what [`copy_windows`] wrote.
fn read_back(dir: &Path, window: Window) -> Result<Copied, QueueError> {
    let mut tally = Tally::new();
    let mut after: Option<Vec<u8>> = None;
    let mut limit = 64usize;
    loop {
        let store = SledStore::open(dir, window.cache_capacity)?;
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
            if read >= window.bytes {
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
/// about [`BATCH_BYTES`] (each read asks for as many keys as the last batch's average size lets
/// fit), until at least `budget` bytes were copied (returns false, `after` the last key copied) or every key was (returns true).
fn copy_all(
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
        limit = (BATCH_BYTES / (bytes / keys).max(1)).clamp(1, PAGE);
        copied += bytes as u64;
        if copied >= budget {
            return Ok(false);
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

    /// A store in `dir` of `mib` MiB of 4 KiB values (the size of the dedupe chunks that make
    /// up most of a store at a high rate), with 256 keys a MiB.
    fn store_of(dir: &Path, mib: usize) -> SledStore {
        let store = SledStore::open(dir, 1 << 20).unwrap();
        for page in 0..mib {
            let mut b = Batch::new();
            for i in 0..256usize {
                let n = page * 256 + i;
                b.put(format!("k{n:08}").into_bytes(), copied_value(n));
            }
            store.apply(b).unwrap();
            store.sync().unwrap();
        }
        store
    }

    #[test]
    fn the_copy_holds_a_bounded_part_of_the_store_in_memory() {
        let parent = tempfile::tempdir().unwrap();
        let from = parent.path().join("from");
        let live = 96usize;
        drop(store_of(&from, live));
        let copy = |name: &str, bytes: u64| {
            let to = parent.path().join(name);
            let window = Window {
                cache_capacity: 1 << 20,
                bytes,
            };
            let started = Instant::now();
            let peak = peak_heap_during(|| {
                assert_eq!(
                    copy_and_check(&from, &to, window).unwrap(),
                    256 * live as u64
                );
            });
            (peak >> 20, started.elapsed())
        };
        let (whole, whole_took) = copy("whole", u64::MAX);
        let (windowed, windowed_took) = copy("windowed", WINDOW_BYTES);
        eprintln!(
            "heap in use above the start while copying and checking {live} MiB: {whole} MiB \
             through one opening of each store ({whole_took:?}), {windowed} MiB through a \
             fresh opening every {} MiB ({windowed_took:?})",
            WINDOW_BYTES >> 20
        );
        // Measured (debug build): 175 MiB through one opening, 33 MiB in windows of 4 MiB (about
        // 25 of it sled's own per opening of a store). The bound, half the live bytes: through
        // one opening (as the copy was before the windows) sled keeps most of both stores in
        // memory and goes far above it.
        let bound = live / 2;
        assert!(
            windowed < bound && whole > bound,
            "windows of {} MiB: {windowed} MiB at the peak; one opening: {whole} MiB",
            WINDOW_BYTES >> 20
        );
    }

    #[test]
    fn a_copy_that_differs_from_the_store_or_misses_a_key_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let from = parent.path().join("from");
        drop(store_of(&from, 3));
        let to = parent.path().join("to");
        // Windows of 1 MiB: the copy and the read-back each open the stores three times.
        let window = Window {
            cache_capacity: 1 << 20,
            bytes: 1 << 20,
        };
        let copied = copy_windows(&from, &to, window).unwrap();
        assert_eq!(copied.keys, 768);
        assert_eq!(
            verify(&copied, &read_back(&to, window).unwrap()).unwrap(),
            768
        );
        let tamper = |f: &dyn Fn(&mut Batch)| {
            let store = SledStore::open(&to, 1 << 20).unwrap();
            let mut b = Batch::new();
            f(&mut b);
            store.apply(b).unwrap();
            store.sync().unwrap();
        };
        // One value changed, same length: same keys and bytes, another digest.
        tamper(&|b| b.put(b"k00000500".to_vec(), vec![0; 4096]));
        let err = verify(&copied, &read_back(&to, window).unwrap()).unwrap_err();
        assert!(err.to_string().contains("digests differ"), "{err}");
        // One key missing (the copy cut short).
        tamper(&|b| b.put(b"k00000500".to_vec(), copied_value(500)));
        assert_eq!(
            verify(&copied, &read_back(&to, window).unwrap()).unwrap(),
            768
        );
        tamper(&|b| b.remove(b"k00000767".to_vec()));
        let err = verify(&copied, &read_back(&to, window).unwrap()).unwrap_err();
        assert!(err.to_string().contains("767 keys"), "{err}");
        // A key more than the store has.
        tamper(&|b| {
            b.put(b"k00000767".to_vec(), copied_value(767));
            b.put(b"zz".to_vec(), vec![1]);
        });
        assert!(verify(&copied, &read_back(&to, window).unwrap()).is_err());
    }

    /// The value [`store_of`] stores under key number `n`.
    fn copied_value(n: usize) -> Vec<u8> {
        (0..4096)
            .map(|j| u8::try_from((n * 31 + j * 7) % 251).unwrap())
            .collect()
    }
}
