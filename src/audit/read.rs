//! Reading and verifying the audit files.
//!
//! Receives the log directory and, for sealed entries, the record cipher; promises entries
//! across day files in either order, filtered by time and room, a page at a time with a cursor
//! (`YYYY-MM-DD:line`), and a check of the whole hash chain that names the first broken link.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;
use time::{Date, OffsetDateTime};

use super::files::{self, DayFile};
use super::line::aad;
use super::{sha256_hex, AuditError, GENESIS};
use crate::context::audit::{AuditEntry, AuditEvent};
use crate::queue::cipher::RecordCipher;

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only entries that name this room.
    pub room: Option<String>,
    pub limit: usize,
    pub newest_first: bool,
    /// Continue after this position (the `next` of the previous page).
    pub cursor: Option<String>,
}

/// One page of entries, and where the next page starts when there may be more.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<String>,
}

type Pos = (Date, u64);

fn parse_cursor(c: &str) -> Option<Pos> {
    let (d, n) = c.rsplit_once(':')?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Some((Date::parse(d, &fmt).ok()?, n.parse().ok()?))
}

fn cursor(p: Pos) -> String {
    let name = files::day_name(p.0, false);
    let day = name.trim_start_matches("audit-").trim_end_matches(".jsonl");
    format!("{day}:{}", p.1)
}

/// The lines of one day file: `(line number from 1, bytes)`.
fn lines(d: &DayFile) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
    let mut r = files::reader(d)?;
    let mut out = Vec::new();
    let mut n = 0;
    loop {
        let mut line = Vec::new();
        let got = r
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io(&d.path, e))?;
        if got == 0 {
            return Ok(out);
        }
        n += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        out.push((n, line));
    }
}

/// A parsed line: its `prev`, and the entry.
fn parse(
    path: &Path,
    n: u64,
    line: &[u8],
    cipher: Option<&RecordCipher>,
) -> Result<(String, AuditEntry), AuditError> {
    let corrupt = |reason: String| AuditError::Corrupt {
        path: path.to_path_buf(),
        line: n,
        reason,
    };
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(line).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let prev = match v.remove("prev") {
        Some(serde_json::Value::String(p)) => p,
        _ => return Err(corrupt("no `prev` hash".into())),
    };
    let id: uuid::Uuid = v
        .remove("id")
        .and_then(|i| serde_json::from_value(i).ok())
        .ok_or_else(|| corrupt("no `id`".into()))?;
    let entry = match v.remove("sealed") {
        Some(serde_json::Value::String(s)) => {
            let Some(c) = cipher else {
                return Err(corrupt(
                    "a sealed entry: reading it needs the store key".into(),
                ));
            };
            let at_text = v
                .get("at")
                .and_then(|a| a.as_str())
                .ok_or_else(|| corrupt("no `at`".into()))?;
            let at = OffsetDateTime::parse(at_text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| corrupt("`at` is not an RFC 3339 time".into()))?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| corrupt("`sealed` is not base64".into()))?;
            let plain = c.open(&aad(id, &prev, at_text), &raw).ok_or_else(|| {
                corrupt(
                    "the sealed event does not open with this key (altered, moved, or another key)"
                        .into(),
                )
            })?;
            let event: AuditEvent = serde_json::from_slice(&plain)
                .map_err(|e| corrupt(format!("sealed event: {e}")))?;
            AuditEntry { at, event }
        }
        Some(_) => return Err(corrupt("`sealed` is not a string".into())),
        None => serde_json::from_value(serde_json::Value::Object(v))
            .map_err(|e| corrupt(format!("not an audit entry: {e}")))?,
    };
    Ok((prev, entry))
}

/// The room an event names, if any.
fn room_of(e: &AuditEvent) -> Option<&str> {
    match e {
        AuditEvent::ContextSet { room, .. }
        | AuditEvent::ContextCleared { room, .. }
        | AuditEvent::ContextExpired { room, .. }
        | AuditEvent::ContextConfirmed { room, .. }
        | AuditEvent::ContextUserMapped { room, .. } => Some(room),
        AuditEvent::Held { room, .. } => room.as_deref(),
        _ => None,
    }
}

/// Reads a page of entries from the files in `dir` (see [`AuditQuery`]).
pub fn read(
    dir: &Path,
    cipher: Option<&RecordCipher>,
    q: &AuditQuery,
) -> Result<AuditPage, AuditError> {
    let mut days = files::list(dir)?;
    if q.newest_first {
        days.reverse();
    }
    let after = q.cursor.as_deref().and_then(parse_cursor);
    let since_day = q.since.map(|s| s.date());
    let mut page = AuditPage::default();
    if q.limit == 0 {
        return Ok(page);
    }
    for d in &days {
        if since_day.is_some_and(|s| d.day < s) {
            continue;
        }
        if let Some((cd, _)) = after {
            if (q.newest_first && d.day > cd) || (!q.newest_first && d.day < cd) {
                continue;
            }
        }
        let mut ls = lines(d)?;
        if q.newest_first {
            ls.reverse();
        }
        for (n, line) in ls {
            let pos = (d.day, n);
            if let Some(c) = after {
                if (q.newest_first && pos >= c) || (!q.newest_first && pos <= c) {
                    continue;
                }
            }
            if line.is_empty() {
                continue;
            }
            let (_, entry) = parse(&d.path, n, &line, cipher)?;
            if q.since.is_some_and(|s| entry.at < s) {
                continue;
            }
            if let Some(room) = &q.room {
                if room_of(&entry.event) != Some(room.as_str()) {
                    continue;
                }
            }
            page.entries.push(entry);
            if page.entries.len() >= q.limit {
                page.next = Some(cursor(pos));
                return Ok(page);
            }
        }
    }
    Ok(page)
}

/// The first broken link of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub file: PathBuf,
    /// Line number in the file (from 1).
    pub line: u64,
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub files: u64,
    pub entries: u64,
    /// The `prev` of the oldest entry kept when it is not the start of the log (older days
    /// were pruned): the chain is checked from there on.
    pub anchor: Option<String>,
    pub first_break: Option<Break>,
}

/// Checks every line of every day file, oldest first: it parses, its `prev` is the hash of the
/// line before it (across days), and a sealed event opens with `cipher` when given. Stops at
/// the first broken link.
pub fn verify(dir: &Path, cipher: Option<&RecordCipher>) -> Result<VerifyReport, AuditError> {
    let mut rep = VerifyReport::default();
    let mut expect: Option<String> = None;
    for d in files::list(dir)? {
        rep.files += 1;
        for (n, line) in lines(&d)? {
            let brk = |reason: String| Break {
                file: d.path.clone(),
                line: n,
                reason,
            };
            let prev = match parse(&d.path, n, &line, cipher) {
                Ok((prev, _)) => prev,
                Err(AuditError::Corrupt { reason, .. }) => {
                    rep.first_break = Some(brk(reason));
                    return Ok(rep);
                }
                Err(e) => return Err(e),
            };
            match &expect {
                None if prev != GENESIS => rep.anchor = Some(prev.clone()),
                Some(h) if *h != prev => {
                    rep.first_break = Some(brk(
                        "its `prev` is not the hash of the line before it: a line before it was removed or changed".into(),
                    ));
                    return Ok(rep);
                }
                _ => {}
            }
            expect = Some(sha256_hex(&line));
            rep.entries += 1;
        }
    }
    Ok(rep)
}
