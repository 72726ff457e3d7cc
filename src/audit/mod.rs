//! The audit file log: audit entries in append-only daily files under `<data_dir>/audit`,
//! hash-chained, compressed when their day closes, pruned by age and by size.
//!
//! Receives [`AuditEntry`]s from the queue's group-commit writer (each with a UUIDv7 id);
//! promises (docs/audit-log.md):
//! - every entry is one line of `audit-YYYY-MM-DD.jsonl` (the UTC day of its time); the writer
//!   appends before it applies the batch the entries describe, and the queue's syncer makes the
//!   file durable ([`AuditLog::sync`], fdatasync) before any caller of that batch is answered;
//! - each line carries `prev`, the SHA-256 (hex) of the line before it, the first line of a day
//!   the hash of the previous day's last line: a line removed or changed breaks the chain at
//!   the next line, which [`verify`] reports with its file and line number;
//! - with a store key, the event (room, patient, who) is sealed with ChaCha20-Poly1305 under a
//!   key derived from the store key (`sealed`, base64), bound to the line's id and `prev`; only
//!   `prev`, `id` and `at` stay readable;
//! - a day that closed is gzip-compressed (`.jsonl.gz`, written aside, synced, then renamed)
//!   by a thread of its own, so appending to the new day never waits for it; the plain file
//!   stays readable and verifiable until the `.gz` replaces it, and a stop or crash in between
//!   leaves one whole copy (or both) that the next [`AuditLog::open`] compresses again;
//! - [`AuditLog::maintain`] removes the days older than the retention, then the oldest days
//!   while the files take more than the size cap, with a WARN and a counter before each file
//!   the cap removes. The open day is never removed.
//!
//! Time comes from the injected [`clock::Clock`].

pub mod clock;
mod days;
mod files;
mod line;
mod read;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};

use days::{compressor, Job};
pub(crate) use line::sha256_hex;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::context::audit::AuditEntry;
use crate::queue::cipher::{RecordCipher, StoreKey};

pub use files::{day_name, list as list_days, DayFile};
pub use read::{read as read_dir, verify, AuditPage, AuditQuery, Break, VerifyReport};

/// The label the audit cipher's key is derived under (see `queue::cipher::RecordCipher`).
const CIPHER_LABEL: &[u8] = b"vitalsd audit entries v1";
/// `prev` of the very first entry of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the audit log failed; names the file, never an entry's content.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("audit log {path} line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

impl AuditError {
    fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        AuditError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// The audit directory inside `data_dir`.
pub fn audit_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}

impl AuditOptions {
    /// The daemon's audit files for `cfg`, sealed with `key`.
    pub fn for_config(cfg: &crate::config::Config, key: &StoreKey, clock: clock::Clock) -> Self {
        AuditOptions {
            dir: audit_dir(&cfg.daemon.data_dir),
            key: Some(key.clone()),
            retention: cfg.daemon.audit_retention,
            max_bytes: cfg.daemon.store.audit_max_bytes,
            clock,
        }
    }
}

/// How the log is kept.
#[derive(Clone)]
pub struct AuditOptions {
    pub dir: PathBuf,
    /// Seals every event when set (the store key).
    pub key: Option<StoreKey>,
    /// Days older than this are removed.
    pub retention: Duration,
    /// The oldest days are removed while the files take more than this.
    pub max_bytes: u64,
    pub clock: clock::Clock,
}

/// What the log holds and what it removed, for stats and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    pub files: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Day files removed because they were older than the retention, since start.
    pub pruned_age_files: u64,
    /// Day files removed because the log was over `audit_max_bytes`, since start.
    pub pruned_size_files: u64,
}

/// The append side of the log; readers use [`AuditLog::read`] or the free functions.
pub struct AuditLog {
    dir: PathBuf,
    cipher: Option<RecordCipher>,
    retention: Duration,
    max_bytes: u64,
    clock: clock::Clock,
    shared: Arc<Shared>,
    /// Closed days for the compressor thread; `None` once the log is closing.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    compressor: Mutex<Option<JoinHandle<()>>>,
    pruned_age: AtomicU64,
    pruned_size: AtomicU64,
}

/// What the appending side and the compressor thread share.
struct Shared {
    state: Mutex<State>,
    /// Notified whenever a compression ends.
    compressed: Condvar,
    /// Set when the log closes: the compressor stops (a day it was compressing stays plain).
    stop: AtomicBool,
    /// Tests hold the compressor before it starts a day, to look at the files meanwhile.
    held: Mutex<bool>,
    release: Condvar,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

struct State {
    open: Option<OpenDay>,
    /// SHA-256 (hex) of the last line written.
    last_hash: String,
    /// Id of the last entry written (migration skips what is already in the files).
    last_id: Option<Uuid>,
    /// Bytes of the files of the closed days (plain until compressed).
    closed_bytes: u64,
    closed_files: u64,
    /// Closed days whose plain file is queued for, or being, compressed: never removed by
    /// [`AuditLog::maintain`] meanwhile.
    compressing: BTreeSet<Date>,
}

struct OpenDay {
    day: Date,
    path: PathBuf,
    file: File,
    len: u64,
    dirty: bool,
    /// A failed write may have left part of a line past `len` (cut off before the next one).
    torn: bool,
}

impl OpenDay {
    /// Cuts off what a failed write left past the last whole line.
    fn cut_torn(&mut self) -> Result<(), AuditError> {
        if self.torn {
            self.file
                .set_len(self.len)
                .map_err(|e| AuditError::io(&self.path, e))?;
            self.torn = false;
        }
        Ok(())
    }
}

impl AuditLog {
    /// Opens (creating) the log in `opts.dir`: finishes what a crash left (a compressed day
    /// beside its plain file, a torn last line, a closed day not compressed yet) and reads the
    /// last hash to chain on.
    pub fn open(opts: AuditOptions) -> Result<AuditLog, AuditError> {
        let dir = opts.dir.clone();
        files::create_dir(&dir)?;
        let today = (opts.clock)().date();
        let (days, to_compress) = files::recover(&dir, today)?;
        let mut last_hash = GENESIS.to_string();
        let mut last_id = None;
        let mut open = None;
        let (mut closed_bytes, mut closed_files) = (0, 0);
        let mut jobs = Vec::new();
        for d in &days {
            if d.compressed || to_compress.contains(&d.path) {
                closed_bytes += d.bytes;
                closed_files += 1;
            }
            if to_compress.contains(&d.path) {
                jobs.push(Job {
                    day: d.day,
                    path: d.path.clone(),
                    plain_bytes: d.bytes,
                });
            }
        }
        if let Some(newest) = days.last() {
            if let Some((hash, id)) = files::last_line(newest)? {
                last_hash = hash;
                last_id = Some(id);
            }
            if !newest.compressed && !to_compress.contains(&newest.path) {
                let file = files::open_append(&newest.path)?;
                open = Some(OpenDay {
                    day: newest.day,
                    path: newest.path.clone(),
                    file,
                    len: newest.bytes,
                    dirty: false,
                    torn: false,
                });
            }
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                open,
                last_hash,
                last_id,
                closed_bytes,
                closed_files,
                compressing: BTreeSet::new(),
            }),
            compressed: Condvar::new(),
            stop: AtomicBool::new(false),
            held: Mutex::new(false),
            release: Condvar::new(),
        });
        let (tx, rx) = mpsc::channel();
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("vitalsd-audit-gz".into())
                .spawn(move || compressor(&shared, &rx))
                .map_err(|e| AuditError::io(&dir, e))?
        };
        let log = AuditLog {
            cipher: opts
                .key
                .as_ref()
                .map(|k| RecordCipher::new(k, CIPHER_LABEL)),
            dir,
            retention: opts.retention,
            max_bytes: opts.max_bytes,
            clock: opts.clock,
            shared,
            jobs: Mutex::new(Some(tx)),
            compressor: Mutex::new(Some(worker)),
            pruned_age: AtomicU64::new(0),
            pruned_size: AtomicU64::new(0),
        };
        {
            let mut st = log.state();
            for job in jobs {
                log.queue_compression(&mut st, job);
            }
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Now, by the log's clock.
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// The id of the last entry in the files.
    pub fn last_id(&self) -> Option<Uuid> {
        self.state().last_id
    }

    /// Appends `entries` (in order, each with its id) to the file of their day, chained; not
    /// durable until [`AuditLog::sync`]. An entry older than the open day goes to the open day.
    pub fn append(&self, entries: &[(Uuid, AuditEntry)]) -> Result<(), AuditError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut st = self.state();
        // The chain moves on only for lines that reached the file: a failed write (ENOSPC)
        // leaves the state as it was, so the retry chains onto the last line written.
        let mut tail = (st.last_hash.clone(), st.last_id);
        // Every line is written straight into `buf` (about 340 bytes sealed) and hashed there.
        let mut buf: Vec<u8> = Vec::with_capacity(entries.len() * 384);
        let mut scratch = line::Scratch::default();
        scratch.draw(self, entries.len())?;
        for (id, entry) in entries {
            let day = entry.at.date();
            if st.open.as_ref().is_none_or(|o| day > o.day) {
                self.write_out(&mut st, &mut buf, &tail)?;
                self.rotate(&mut st, day)?;
            }
            let start = buf.len();
            self.write_line(&mut scratch, &mut buf, &tail.0, *id, entry)?;
            line::sha256_hex_into(&buf[start..], &mut tail.0);
            tail.1 = Some(*id);
            buf.push(b'\n');
        }
        self.write_out(&mut st, &mut buf, &tail)
    }

    /// Writes `buf` to the open day; on success the chain's tail becomes `tail`. A write that
    /// fails part-way is cut back to the last whole line, so the file never holds a torn line
    /// the next append would run into; if even that fails, the next append tries again first.
    fn write_out(
        &self,
        st: &mut State,
        buf: &mut Vec<u8>,
        tail: &(String, Option<Uuid>),
    ) -> Result<(), AuditError> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(o) = st.open.as_mut() else {
            return Ok(());
        };
        o.cut_torn()?;
        if let Err(e) = o.file.write_all(buf) {
            o.torn = o.file.set_len(o.len).is_err();
            return Err(AuditError::io(&o.path, e));
        }
        o.len += buf.len() as u64;
        o.dirty = true;
        buf.clear();
        st.last_hash.clone_from(&tail.0);
        st.last_id = tail.1;
        Ok(())
    }

    /// Closes the open day (synced, then compressed in the background) and opens the file
    /// of `day`.
    fn rotate(&self, st: &mut State, day: Date) -> Result<(), AuditError> {
        self.close_open_day(st)?;
        let path = self.dir.join(day_name(day, false));
        let file = files::open_append(&path)?;
        files::sync_dir(&self.dir)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        st.open = Some(OpenDay {
            day,
            path,
            file,
            len,
            dirty: false,
            torn: false,
        });
        Ok(())
    }

    /// Makes every line appended so far durable (fdatasync of the open day's file).
    pub fn sync(&self) -> Result<(), AuditError> {
        let mut st = self.state();
        if let Some(o) = st.open.as_mut() {
            if o.dirty {
                o.file.sync_data().map_err(|e| AuditError::io(&o.path, e))?;
                o.dirty = false;
            }
        }
        Ok(())
    }

    /// Files, bytes and what was pruned.
    pub fn stats(&self) -> AuditStats {
        let st = self.state();
        let open_bytes = st.open.as_ref().map_or(0, |o| o.len);
        AuditStats {
            files: st.closed_files + u64::from(st.open.is_some()),
            bytes: st.closed_bytes + open_bytes,
            max_bytes: self.max_bytes,
            pruned_age_files: self.pruned_age.load(Ordering::Relaxed),
            pruned_size_files: self.pruned_size.load(Ordering::Relaxed),
        }
    }

    /// Reads entries across the files (see [`AuditQuery`]).
    pub fn read(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        read::read(&self.dir, self.cipher.as_ref(), q)
    }

    /// The cipher that opens the entries sealed with `key` (readers without the log: the CLI).
    pub fn cipher_for(key: Option<&StoreKey>) -> Option<RecordCipher> {
        key.map(|k| RecordCipher::new(k, CIPHER_LABEL))
    }
}

impl Drop for AuditLog {
    /// Stops the compressor thread (a day it was compressing stays plain: the next open
    /// compresses it) and waits for it, so another log opened on the directory afterwards
    /// never races it.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.release.notify_all();
        drop(self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
        let worker = self
            .compressor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(w) = worker {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests;
