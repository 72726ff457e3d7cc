//! The audit log's files: names, listing, crash recovery, compression, modes.
//!
//! Receives the log directory; promises day files named `audit-YYYY-MM-DD.jsonl` (open) or
//! `.jsonl.gz` (closed), directories 0750 and files 0640 whatever the umask, and a
//! compression that never leaves a half-written `.gz` under its final name.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use time::Date;
use uuid::Uuid;

use super::{sha256_hex, AuditError};

const PREFIX: &str = "audit-";
const PLAIN: &str = ".jsonl";
const GZ: &str = ".jsonl.gz";

/// One day's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFile {
    pub day: Date,
    pub path: PathBuf,
    pub compressed: bool,
    pub bytes: u64,
}

/// The file name of `day`.
pub fn day_name(day: Date, compressed: bool) -> String {
    format!(
        "{PREFIX}{:04}-{:02}-{:02}{}",
        day.year(),
        u8::from(day.month()),
        day.day(),
        if compressed { GZ } else { PLAIN }
    )
}

fn parse_name(name: &str) -> Option<(Date, bool)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (date, compressed) = if let Some(d) = rest.strip_suffix(GZ) {
        (d, true)
    } else {
        (rest.strip_suffix(PLAIN)?, false)
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Some((Date::parse(date, &fmt).ok()?, compressed))
}

pub(super) fn create_dir(dir: &Path) -> Result<(), AuditError> {
    std::fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
        .map_err(|e| AuditError::io(dir, e))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io(dir, e))
}

/// Every day file in `dir`, oldest day first; a day with both files lists its `.gz` only.
pub fn list(dir: &Path) -> Result<Vec<DayFile>, AuditError> {
    let mut out: Vec<DayFile> = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(AuditError::io(dir, e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| AuditError::io(dir, e))?;
        let name = ent.file_name();
        let Some((day, compressed)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let bytes = ent.metadata().map(|m| m.len()).unwrap_or(0);
        out.push(DayFile {
            day,
            path: ent.path(),
            compressed,
            bytes,
        });
    }
    out.sort_by_key(|d| (d.day, !d.compressed));
    out.dedup_by_key(|d| d.day);
    Ok(out)
}

/// At open: removes a plain file whose `.gz` exists (compression finished before a crash),
/// removes leftover `.tmp` files (compression a crash interrupted), cuts a torn last line.
/// Returns every day file, and the plain files of closed days (every day before `today`
/// except the newest, which is closed at the next append of a later day): the caller
/// compresses those, as a crash or a stop left them uncompressed.
pub(super) fn recover(dir: &Path, today: Date) -> Result<(Vec<DayFile>, Vec<PathBuf>), AuditError> {
    let rd = std::fs::read_dir(dir).map_err(|e| AuditError::io(dir, e))?;
    for ent in rd.flatten() {
        let p = ent.path();
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(".tmp") {
            std::fs::remove_file(&p).map_err(|e| AuditError::io(&p, e))?;
        } else if let Some((day, false)) = parse_name(&name) {
            if dir.join(day_name(day, true)).exists() {
                std::fs::remove_file(&p).map_err(|e| AuditError::io(&p, e))?;
            }
        }
    }
    let days = list(dir)?;
    let newest = days.last().map(|d| d.day);
    let mut closed = Vec::new();
    for d in &days {
        if d.compressed {
            continue;
        }
        cut_torn_line(&d.path)?;
        // The newest day stays open when it is today; every other day is closed now.
        if Some(d.day) != newest || d.day < today {
            closed.push(d.path.clone());
        }
    }
    Ok((list(dir)?, closed))
}

/// Cuts bytes after the last newline (a write a crash interrupted, never acknowledged).
fn cut_torn_line(path: &Path) -> Result<(), AuditError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io(path, e))?;
    let len = f.metadata().map_err(|e| AuditError::io(path, e))?.len();
    if len == 0 {
        return Ok(());
    }
    let tail = len.min(1 << 20);
    f.seek(SeekFrom::Start(len - tail))
        .map_err(|e| AuditError::io(path, e))?;
    let mut buf = Vec::with_capacity(tail as usize);
    f.read_to_end(&mut buf)
        .map_err(|e| AuditError::io(path, e))?;
    if buf.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => len - tail + i as u64 + 1,
        None if tail == len => 0,
        None => return Ok(()),
    };
    tracing::warn!(file = %path.display(), "the audit file ended in a line cut by a crash (never acknowledged); removed it");
    f.set_len(keep).map_err(|e| AuditError::io(path, e))?;
    f.sync_all().map_err(|e| AuditError::io(path, e))
}

pub(super) fn open_append(path: &Path) -> Result<File, AuditError> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| AuditError::io(path, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o640))
        .map_err(|e| AuditError::io(path, e))?;
    Ok(f)
}

/// Compresses a closed day: `<name>.gz.tmp` written and synced, renamed to `.gz`, the
/// directory synced, then the plain file removed. Until the rename the plain file is the
/// day's only copy; between the rename and the removal both are whole (readers prefer the
/// `.gz`). Stops early, removing the `.tmp`, when `stop` is set (the log is closing; the
/// next open compresses the day again). Returns the compressed size, `None` when stopped.
pub(super) fn compress(plain: &Path, stop: &AtomicBool) -> Result<Option<u64>, AuditError> {
    let gz = plain.with_extension("jsonl.gz");
    let tmp = plain.with_extension("jsonl.gz.tmp");
    let mut src = File::open(plain).map_err(|e| AuditError::io(plain, e))?;
    let out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(|e| AuditError::io(&tmp, e))?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        if stop.load(Ordering::Relaxed) {
            drop(enc);
            let _ = std::fs::remove_file(&tmp);
            return Ok(None);
        }
        let n = src.read(&mut chunk).map_err(|e| AuditError::io(plain, e))?;
        if n == 0 {
            break;
        }
        enc.write_all(&chunk[..n])
            .map_err(|e| AuditError::io(&tmp, e))?;
    }
    let out = enc.finish().map_err(|e| AuditError::io(&tmp, e))?;
    out.set_permissions(std::fs::Permissions::from_mode(0o640))
        .map_err(|e| AuditError::io(&tmp, e))?;
    out.sync_all().map_err(|e| AuditError::io(&tmp, e))?;
    let bytes = out.metadata().map(|m| m.len()).unwrap_or(0);
    drop(out);
    std::fs::rename(&tmp, &gz).map_err(|e| AuditError::io(&gz, e))?;
    let dir = plain.parent().unwrap_or(Path::new("."));
    sync_dir(dir)?;
    std::fs::remove_file(plain).map_err(|e| AuditError::io(plain, e))?;
    sync_dir(dir)?;
    Ok(Some(bytes))
}

/// The lines of a day file (decompressed when it is a `.gz`).
/// A plain file listed a moment ago may have been compressed since: then its `.gz` is read.
pub(super) fn reader(d: &DayFile) -> Result<Box<dyn BufRead>, AuditError> {
    let (f, compressed) = match File::open(&d.path) {
        Ok(f) => (f, d.compressed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !d.compressed => {
            let gz = d.path.with_extension("jsonl.gz");
            (File::open(&gz).map_err(|e| AuditError::io(&gz, e))?, true)
        }
        Err(e) => return Err(AuditError::io(&d.path, e)),
    };
    Ok(if compressed {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(f)))
    } else {
        Box::new(BufReader::new(f))
    })
}

/// The hash and id of the last line of `d`, `None` when it is empty.
pub(super) fn last_line(d: &DayFile) -> Result<Option<(String, Uuid)>, AuditError> {
    let mut last: Option<Vec<u8>> = None;
    let mut r = reader(d)?;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io(&d.path, e))?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if !line.is_empty() {
            last = Some(line.clone());
        }
    }
    let Some(l) = last else { return Ok(None) };
    #[derive(serde::Deserialize)]
    struct Id {
        id: Uuid,
    }
    let id: Id = serde_json::from_slice(&l).map_err(|e| AuditError::Corrupt {
        path: d.path.clone(),
        line: 0,
        reason: format!("its last line is not an audit entry: {e}"),
    })?;
    Ok(Some((sha256_hex(&l), id.id)))
}
