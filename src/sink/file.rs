//! The file outbox sink: append-only, one file per UTC day. NDJSON (`YYYY-MM-DD.ndjson`) with
//! one FHIR Observation (`fhir`) or canonical Reading (`reading`) per line, or HL7 v2
//! (`YYYY-MM-DD.hl7`) with one ORU^R01 message per line group (`hl7`, see [`super::hl7`])
//! (docs/ARCHITECTURE.md#forwarding-formats).
//!
//! Promises:
//! - A reading is reported `Delivered` only after its line was written and the file
//!   `fdatasync`ed (one sync per batch).
//! - A torn last record (a crash in the middle of a write: a line without its '\n', or an HL7
//!   line group without its closing empty line) is truncated away when the file is opened, at
//!   start and at day rollover; it was never reported delivered, so the queue sends it again.
//! - A reading written and synced whose queue settle was lost in a crash is not written twice:
//!   the ids already in today's (and yesterday's) file are loaded at open (the HL7 format reads
//!   them from MSH-10), and a redelivery of one of them is reported `Delivered` without writing.
//!
//! The file I/O runs on tokio's blocking pool, so an fsync never stalls the runtime.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use time::{Date, OffsetDateTime};

use super::fhir::observation;
use super::hl7;
use super::{DeliverFuture, Outcome, Sink};
use crate::reading::{Reading, ReadingId, SinkId};

/// What each line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// A FHIR R4 Observation.
    Fhir,
    /// The canonical reading JSON of docs/ARCHITECTURE.md#the-reading-json.
    Reading,
    /// An HL7 v2.6 ORU^R01 message (MSH-10 = reading id) per line group, sent as `VITALSD`.
    Hl7,
}

impl FileFormat {
    /// The day files' extension.
    pub fn extension(&self) -> &'static str {
        match self {
            FileFormat::Fhir | FileFormat::Reading => "ndjson",
            FileFormat::Hl7 => "hl7",
        }
    }

    /// The bytes that end every complete record.
    fn record_end(&self) -> &'static [u8] {
        match self {
            FileFormat::Fhir | FileFormat::Reading => b"\n",
            FileFormat::Hl7 => hl7::RECORD_END,
        }
    }
}

/// Why the outbox cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("cannot use outbox directory {}: {source}", dir.display())]
    Dir { dir: PathBuf, source: io::Error },
    #[error("cannot open outbox file {}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
}

/// The clock that picks the day file (injectable for tests).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Readings per batch unless set with [`FileSink::with_max_batch`].
pub const DEFAULT_MAX_BATCH: usize = 100;

/// The NDJSON outbox sink.
pub struct FileSink {
    id: SinkId,
    max_batch: usize,
    /// `None` only while a write runs on the blocking pool (or after it panicked).
    outbox: Option<Outbox>,
    dir: PathBuf,
    format: FileFormat,
    /// The HL7 header of the `hl7` format (its `waveform` switch).
    hl7: hl7::Header,
    clock: Clock,
    syncs: Arc<AtomicU64>,
}

impl FileSink {
    /// Opens (creating) `dir` and today's file, repairing a torn last line.
    pub fn open(id: SinkId, dir: &Path, format: FileFormat) -> Result<Self, FileSinkError> {
        Self::open_with_clock(id, dir, format, Arc::new(OffsetDateTime::now_utc))
    }

    /// [`FileSink::open`] with the clock that decides the day file.
    pub fn open_with_clock(
        id: SinkId,
        dir: &Path,
        format: FileFormat,
        clock: Clock,
    ) -> Result<Self, FileSinkError> {
        let syncs = Arc::new(AtomicU64::new(0));
        let mut outbox = Outbox::new(dir, format, syncs.clone())?;
        outbox.ensure_day(day_of(clock()))?;
        Ok(Self {
            id,
            max_batch: DEFAULT_MAX_BATCH,
            outbox: Some(outbox),
            dir: dir.to_path_buf(),
            format,
            hl7: hl7::Header::default(),
            clock,
            syncs,
        })
    }

    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// `hl7` format: also write ECG strips as waveform OBX rows (off by default).
    pub fn with_waveform(mut self, on: bool) -> Self {
        self.hl7.waveform = on;
        self
    }

    /// How many times a file was synced (tests check a sync precedes every delivered batch).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// The file a reading would be written to now.
    pub fn current_path(&self) -> PathBuf {
        day_path_for(&self.dir, day_of((self.clock)()), self.format)
    }
}

impl Sink for FileSink {
    fn id(&self) -> &SinkId {
        &self.id
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Reading]) -> DeliverFuture<'a> {
        Box::pin(async move {
            let lines: Vec<(Option<ReadingId>, Result<String, String>)> = batch
                .iter()
                .map(|r| (r.id, encode(r, self.format, &self.hl7)))
                .collect();
            let day = day_of((self.clock)());
            let outbox = match self.outbox.take() {
                Some(o) => o,
                None => match Outbox::new(&self.dir, self.format, self.syncs.clone()) {
                    Ok(o) => o,
                    Err(e) => return retry_all(batch.len(), &e.to_string()),
                },
            };
            let job = tokio::task::spawn_blocking(move || {
                let mut outbox = outbox;
                let outcomes = outbox.append(day, &lines);
                (outbox, outcomes)
            });
            match job.await {
                Ok((outbox, outcomes)) => {
                    self.outbox = Some(outbox);
                    outcomes
                }
                Err(e) => retry_all(batch.len(), &format!("outbox write task failed: {e}")),
            }
        })
    }
}

fn retry_all(n: usize, reason: &str) -> Vec<Outcome> {
    vec![Outcome::Retry(reason.to_string()); n]
}

/// One complete record, terminator included.
fn encode(r: &Reading, format: FileFormat, header: &hl7::Header) -> Result<String, String> {
    let line = match format {
        FileFormat::Fhir => serde_json::to_string(&observation(r)),
        FileFormat::Reading => serde_json::to_string(r),
        FileFormat::Hl7 => return Ok(hl7::outbox_record(r, header)),
    };
    line.map(|l| l + "\n")
        .map_err(|e| format!("cannot encode reading: {e}"))
}

fn day_of(t: OffsetDateTime) -> Date {
    t.to_offset(time::UtcOffset::UTC).date()
}

/// `DIR/YYYY-MM-DD.ndjson`.
pub fn day_path(dir: &Path, day: Date) -> PathBuf {
    day_path_for(dir, day, FileFormat::Fhir)
}

/// `DIR/YYYY-MM-DD.<ext>` for `format` (`ndjson` or `hl7`).
pub fn day_path_for(dir: &Path, day: Date, format: FileFormat) -> PathBuf {
    dir.join(format!(
        "{:04}-{:02}-{:02}.{}",
        day.year(),
        u8::from(day.month()),
        day.day(),
        format.extension()
    ))
}

/// The open day file and the ids it (and the day before) already hold. Blocking I/O only.
struct Outbox {
    dir: PathBuf,
    format: FileFormat,
    syncs: Arc<AtomicU64>,
    /// `None` after a failed write: the next append reopens, repairs and reloads.
    current: Option<DayFile>,
    /// Ids of the previous day's file, so a redelivery across midnight is not duplicated.
    previous_ids: HashSet<ReadingId>,
}

/// The mode of a day file vitalsd creates: the owner writes, the group (a pickup process) reads.
const OUTBOX_FILE_MODE: u32 = 0o640;
/// The mode of an outbox directory vitalsd creates.
const OUTBOX_DIR_MODE: u32 = 0o750;

struct DayFile {
    day: Date,
    file: File,
    ids: HashSet<ReadingId>,
}

impl Outbox {
    fn new(dir: &Path, format: FileFormat, syncs: Arc<AtomicU64>) -> Result<Self, FileSinkError> {
        let dir_err = |source| FileSinkError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        if created {
            // The caller's umask does not decide who may read the outbox.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(OUTBOX_DIR_MODE))
                .map_err(dir_err)?;
        }
        if !std::fs::metadata(dir).map_err(dir_err)?.is_dir() {
            return Err(dir_err(io::Error::other("not a directory")));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            format,
            syncs,
            current: None,
            previous_ids: HashSet::new(),
        })
    }

    /// Makes `day`'s file the current one (opening, repairing and loading its ids).
    fn ensure_day(&mut self, day: Date) -> Result<(), FileSinkError> {
        if self.current.as_ref().is_some_and(|c| c.day == day) {
            return Ok(());
        }
        let previous = match self.current.take() {
            Some(c) if day.previous_day() == Some(c.day) => c.ids,
            _ => match day.previous_day() {
                Some(p) => self.load_ids_if_exists(&day_path_for(&self.dir, p, self.format))?,
                None => HashSet::new(),
            },
        };
        let path = day_path_for(&self.dir, day, self.format);
        let file_err = |source| FileSinkError::File {
            path: path.clone(),
            source,
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(OUTBOX_FILE_MODE)
            .open(&path)
            .map_err(file_err)?;
        if !existed {
            // `mode` above is narrowed by the umask; the file gets exactly OUTBOX_FILE_MODE.
            file.set_permissions(std::fs::Permissions::from_mode(OUTBOX_FILE_MODE))
                .map_err(file_err)?;
            // The new directory entry must survive a power cut too.
            sync_dir(&self.dir).map_err(|source| FileSinkError::Dir {
                dir: self.dir.clone(),
                source,
            })?;
        }
        repair_torn_tail(&mut file, &path, self.format.record_end()).map_err(file_err)?;
        let ids = read_ids(&mut file, self.format, &path).map_err(file_err)?;
        tracing::info!(file = %path.display(), lines = ids.len(), "outbox file opened");
        self.previous_ids = previous;
        self.current = Some(DayFile { day, file, ids });
        Ok(())
    }

    fn load_ids_if_exists(&self, path: &Path) -> Result<HashSet<ReadingId>, FileSinkError> {
        let file_err = |source| FileSinkError::File {
            path: path.to_path_buf(),
            source,
        };
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(mut f) => {
                repair_torn_tail(&mut f, path, self.format.record_end()).map_err(file_err)?;
                read_ids(&mut f, self.format, path).map_err(file_err)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashSet::new()),
            Err(e) => Err(file_err(e)),
        }
    }

    /// Writes the new lines of a batch, syncs, then reports. One outcome per line, in order.
    fn append(
        &mut self,
        day: Date,
        lines: &[(Option<ReadingId>, Result<String, String>)],
    ) -> Vec<Outcome> {
        if let Err(e) = self.ensure_day(day) {
            return retry_all(lines.len(), &e.to_string());
        }
        let Some(cur) = self.current.as_mut() else {
            return retry_all(lines.len(), "outbox file not open");
        };
        let mut buf = String::new();
        let mut outcomes = Vec::with_capacity(lines.len());
        let mut new_ids = HashSet::new();
        for (id, line) in lines {
            let seen = id.is_some_and(|id| {
                cur.ids.contains(&id) || self.previous_ids.contains(&id) || !new_ids.insert(id)
            });
            match line {
                _ if seen => outcomes.push(Outcome::Delivered),
                Ok(text) => {
                    buf.push_str(text);
                    outcomes.push(Outcome::Delivered);
                }
                Err(reason) => outcomes.push(Outcome::Rejected(reason.clone())),
            }
        }
        if buf.is_empty() {
            return outcomes;
        }
        let written = cur.file.write_all(buf.as_bytes()).and_then(|()| {
            cur.file.sync_data()?;
            self.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        match written {
            Ok(()) => {
                cur.ids.extend(new_ids);
                outcomes
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "outbox write failed");
                // Unknown how much reached the file: reopen (repair + reload ids) next time.
                self.current = None;
                let reason = format!("outbox write failed: {e}");
                outcomes
                    .into_iter()
                    .map(|o| match o {
                        Outcome::Delivered => Outcome::Retry(reason.clone()),
                        other => other,
                    })
                    .collect()
            }
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Truncates a torn last record: everything after the last `end` (a write torn by a crash).
/// Returns whether it did.
fn repair_torn_tail(file: &mut File, path: &Path, end: &[u8]) -> io::Result<bool> {
    let len = file.metadata()?.len();
    let n = end.len() as u64;
    if len == 0 || n == 0 {
        return Ok(false);
    }
    let mut tail = vec![0u8; end.len()];
    if len >= n {
        file.seek(SeekFrom::Start(len - n))?;
        file.read_exact(&mut tail)?;
        if tail == end {
            return Ok(false);
        }
    }
    // Find the end of the last complete record by scanning backwards in chunks that overlap
    // by `end.len() - 1` bytes, so a terminator across a chunk border is still seen.
    let mut hi = len;
    let mut keep = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    while hi >= n {
        let lo = hi.saturating_sub(chunk.len() as u64);
        let size = usize::try_from(hi - lo).unwrap_or(chunk.len());
        file.seek(SeekFrom::Start(lo))?;
        file.read_exact(&mut chunk[..size])?;
        if let Some(i) = chunk[..size].windows(end.len()).rposition(|w| w == end) {
            keep = lo + i as u64 + n;
            break;
        }
        if lo == 0 {
            break;
        }
        hi = lo + n - 1;
    }
    file.set_len(keep)?;
    file.sync_all()?;
    tracing::warn!(file = %path.display(), dropped_bytes = len - keep, "repaired a torn last record in the outbox");
    Ok(true)
}

/// The reading ids of every complete record.
fn read_ids(file: &mut File, format: FileFormat, path: &Path) -> io::Result<HashSet<ReadingId>> {
    file.seek(SeekFrom::Start(0))?;
    let mut ids = HashSet::new();
    let mut reader = BufReader::new(&*file);
    let mut line = Vec::new();
    let mut unreadable = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        match line_id(&line, format) {
            Some(Some(id)) => {
                ids.insert(id);
            }
            Some(None) => unreadable += 1,
            None => {}
        }
    }
    if unreadable > 0 {
        tracing::warn!(file = %path.display(), unreadable, "outbox records without a readable id");
    }
    Ok(ids)
}

/// The id of a line that starts a record (`Some(None)`: a record without a readable id);
/// `None` for the other lines of an HL7 line group.
fn line_id(line: &[u8], format: FileFormat) -> Option<Option<ReadingId>> {
    let json = |line: &[u8]| -> Option<ReadingId> {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        let text = match format {
            FileFormat::Fhir => v["identifier"][0]["value"]
                .as_str()?
                .strip_prefix("urn:uuid:")?
                .to_string(),
            _ => v["id"].as_str()?.to_string(),
        };
        text.parse().ok()
    };
    match format {
        FileFormat::Hl7 => hl7::outbox_line_id(line),
        FileFormat::Fhir | FileFormat::Reading => Some(json(line)),
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
