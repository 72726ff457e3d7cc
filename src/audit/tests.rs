use std::sync::{Arc, Mutex};

use time::macros::datetime;

use super::line::{rfc3339, Head};
use super::*;
use crate::context::audit::{AuditEvent, ContextSource};
use crate::reading::PatientRef;

struct Manual(Arc<Mutex<OffsetDateTime>>);

impl Manual {
    fn new(t: OffsetDateTime) -> Self {
        Manual(Arc::new(Mutex::new(t)))
    }
    fn clock(&self) -> clock::Clock {
        let t = Arc::clone(&self.0);
        Arc::new(move || *t.lock().unwrap())
    }
    fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap() = t;
    }
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

fn opts(dir: &Path, clock: clock::Clock, key: Option<StoreKey>, max: u64) -> AuditOptions {
    AuditOptions {
        dir: dir.to_path_buf(),
        key,
        retention: Duration::from_secs(3 * 24 * 3600),
        max_bytes: max,
        clock,
    }
}

fn set(room: &str, at: OffsetDateTime) -> (Uuid, AuditEntry) {
    (
        Uuid::now_v7(),
        AuditEntry {
            at,
            event: AuditEvent::ContextSet {
                room: room.into(),
                patient: PatientRef {
                    id: "MRN-SECRET-77".into(),
                    system: "urn:oid:1".into(),
                },
                source: ContextSource::Scan,
                by: "scanner".into(),
            },
        },
    )
}

fn all(log: &AuditLog, newest_first: bool) -> Vec<AuditEntry> {
    log.read(&AuditQuery {
        limit: usize::MAX,
        newest_first,
        ..AuditQuery::default()
    })
    .unwrap()
    .entries
}

fn room(e: &AuditEntry) -> String {
    match &e.event {
        AuditEvent::ContextSet { room, .. } => room.clone(),
        _ => String::new(),
    }
}

#[test]
fn entries_rotate_by_day_chain_across_files_and_read_back_in_both_orders() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-06 23:59 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.append(&[set("a", m.now()), set("b", m.now())]).unwrap();
    m.set(datetime!(2026-12-07 00:01 UTC));
    log.append(&[set("c", m.now())]).unwrap();
    log.sync().unwrap();
    log.wait_compressed();
    let names: Vec<_> = files::list(dir.path())
        .unwrap()
        .iter()
        .map(|d| d.path.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        ["audit-2026-12-06.jsonl.gz", "audit-2026-12-07.jsonl"]
    );
    let oldest: Vec<_> = all(&log, false).iter().map(room).collect();
    assert_eq!(oldest, ["a", "b", "c"]);
    let newest: Vec<_> = all(&log, true).iter().map(room).collect();
    assert_eq!(newest, ["c", "b", "a"]);
    let rep = verify(dir.path(), None).unwrap();
    assert_eq!((rep.files, rep.entries, rep.first_break), (2, 3, None));
    // Reopened, the chain goes on from the last line.
    drop(log);
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.append(&[set("d", m.now())]).unwrap();
    assert!(verify(dir.path(), None).unwrap().first_break.is_none());
    assert_eq!(all(&log, false).len(), 4);
}

#[test]
fn pages_follow_the_cursor_and_the_room_filter() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-06 10:00 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    for i in 0..5 {
        log.append(&[set(&format!("r{i}"), m.now())]).unwrap();
        m.set(m.now() + time::Duration::hours(8));
    }
    let mut q = AuditQuery {
        limit: 2,
        newest_first: true,
        ..AuditQuery::default()
    };
    let mut seen = Vec::new();
    loop {
        let p = log.read(&q).unwrap();
        seen.extend(p.entries.iter().map(room));
        match p.next {
            Some(n) => q.cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["r4", "r3", "r2", "r1", "r0"]);
    q.cursor = None;
    q.room = Some("r2".into());
    q.newest_first = false;
    let p = log.read(&q).unwrap();
    assert_eq!(p.entries.iter().map(room).collect::<Vec<_>>(), ["r2"]);
    let since = log
        .read(&AuditQuery {
            since: Some(datetime!(2026-12-07 09:00 UTC)),
            limit: 100,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(since.entries.len(), 2);
}

#[test]
fn an_edited_and_a_deleted_line_break_the_chain_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-06 10:00 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    let entries: Vec<_> = (0..6).map(|i| set(&format!("r{i}"), m.now())).collect();
    log.append(&entries).unwrap();
    log.sync().unwrap();
    drop(log);
    let path = dir.path().join("audit-2026-12-06.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"r2\"", "\"r9\"", 1);
    std::fs::write(&path, &edited).unwrap();
    let rep = verify(dir.path(), None).unwrap();
    let b = rep.first_break.unwrap();
    assert_eq!((b.file.clone(), b.line), (path.clone(), 4), "{b:?}");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(4);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let b = verify(dir.path(), None).unwrap().first_break.unwrap();
    assert_eq!(b.line, 5, "{b:?}");
}

#[test]
fn with_a_key_no_identifier_is_in_clear_and_a_moved_event_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::from_bytes([7; 32], "test");
    let m = Manual::new(datetime!(2026-12-06 10:00 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), Some(key.clone()), u64::MAX)).unwrap();
    log.append(&[set("exam-1", m.now()), set("exam-2", m.now())])
        .unwrap();
    log.sync().unwrap();
    let path = dir.path().join("audit-2026-12-06.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("MRN-SECRET-77") && !text.contains("exam-1"),
        "{text}"
    );
    assert_eq!(
        all(&log, false).iter().map(room).collect::<Vec<_>>(),
        ["exam-1", "exam-2"]
    );
    let cipher = AuditLog::cipher_for(Some(&key));
    assert!(verify(dir.path(), cipher.as_ref())
        .unwrap()
        .first_break
        .is_none());
    // Without the key the chain still checks, but a read refuses.
    assert!(verify(dir.path(), None).is_ok());
    let other = AuditLog::cipher_for(Some(&StoreKey::from_bytes([8; 32], "other")));
    let b = verify(dir.path(), other.as_ref())
        .unwrap()
        .first_break
        .unwrap();
    assert_eq!(b.line, 1);
}

#[test]
fn retention_and_the_size_cap_remove_the_oldest_days_never_the_open_one() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-01 12:00 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    for _ in 0..6 {
        log.append(&[set("a", m.now())]).unwrap();
        m.set(m.now() + time::Duration::days(1));
    }
    m.set(m.now() - time::Duration::days(1));
    log.wait_compressed();
    log.maintain().unwrap();
    // Retention 3 days from 12-06: 12-01 and 12-02 go.
    let days: Vec<_> = files::list(dir.path())
        .unwrap()
        .iter()
        .map(|d| d.day)
        .collect();
    assert_eq!(days.first(), Some(&time::macros::date!(2026 - 12 - 03)));
    assert_eq!(log.stats().pruned_age_files, 2);
    drop(log);
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, 1)).unwrap();
    log.maintain().unwrap();
    let days = files::list(dir.path()).unwrap();
    assert_eq!(days.len(), 1, "{days:?}");
    assert!(!days[0].compressed);
    assert_eq!(log.stats().pruned_size_files, 3);
    assert_eq!(log.stats().files, 1);
}

#[test]
fn a_torn_last_line_is_cut_at_open_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-06 10:00 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.append(&[set("a", m.now())]).unwrap();
    log.sync().unwrap();
    drop(log);
    let path = dir.path().join("audit-2026-12-06.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"{\"prev\":\"ab").unwrap();
    drop(f);
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.append(&[set("b", m.now())]).unwrap();
    assert_eq!(all(&log, false).len(), 2);
    assert!(verify(dir.path(), None).unwrap().first_break.is_none());
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn a_closed_day_is_compressed_off_the_appending_thread_and_stays_readable_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-06 23:59 UTC));
    let key = StoreKey::from_bytes([4; 32], "test");
    let log = AuditLog::open(opts(dir.path(), m.clock(), Some(key.clone()), 1)).unwrap();
    let cipher = AuditLog::cipher_for(Some(&key));
    log.append(&[set("a", m.now()), set("b", m.now())]).unwrap();
    log.hold_compression(true);
    m.set(datetime!(2026-12-07 00:01 UTC));
    // The day change closes 12-06; the append returns while its compression has not started.
    log.append(&[set("c", m.now())]).unwrap();
    log.sync().unwrap();
    assert_eq!(
        names(dir.path()),
        ["audit-2026-12-06.jsonl", "audit-2026-12-07.jsonl"]
    );
    let oldest: Vec<_> = all(&log, false).iter().map(room).collect();
    assert_eq!(oldest, ["a", "b", "c"]);
    let rep = verify(dir.path(), cipher.as_ref()).unwrap();
    assert_eq!((rep.files, rep.entries, rep.first_break), (2, 3, None));
    assert_eq!(log.stats().files, 2);
    // A closed day waiting for compression is not pruned meanwhile (the cap is 1 byte).
    log.maintain().unwrap();
    assert!(dir.path().join("audit-2026-12-06.jsonl").exists());
    log.append(&[set("d", m.now())]).unwrap();

    log.hold_compression(false);
    log.wait_compressed();
    assert_eq!(
        names(dir.path()),
        ["audit-2026-12-06.jsonl.gz", "audit-2026-12-07.jsonl"]
    );
    let newest: Vec<_> = all(&log, true).iter().map(room).collect();
    assert_eq!(newest, ["d", "c", "b", "a"]);
    let rep = verify(dir.path(), cipher.as_ref()).unwrap();
    assert_eq!((rep.files, rep.entries, rep.first_break), (2, 4, None));
    let gz = std::fs::metadata(dir.path().join("audit-2026-12-06.jsonl.gz"))
        .unwrap()
        .len();
    let open = std::fs::metadata(dir.path().join("audit-2026-12-07.jsonl"))
        .unwrap()
        .len();
    assert_eq!(
        log.stats().bytes,
        gz + open,
        "the closed day counted at its compressed size"
    );
}

#[test]
fn a_stop_or_crash_mid_compression_leaves_a_whole_copy_and_the_next_open_compresses_it() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-06 23:00 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.append(&[set("a", m.now()), set("b", m.now())]).unwrap();
    log.hold_compression(true);
    m.set(datetime!(2026-12-07 00:30 UTC));
    log.append(&[set("c", m.now())]).unwrap();
    log.sync().unwrap();
    // Stopped before the compression ran: the plain file is the day's whole copy.
    drop(log);
    let plain = dir.path().join("audit-2026-12-06.jsonl");
    let day_one = std::fs::read(&plain).unwrap();
    // And a crash mid-compression left half a `.gz.tmp` beside it.
    std::fs::write(
        dir.path().join("audit-2026-12-06.jsonl.gz.tmp"),
        b"\x1f\x8b half",
    )
    .unwrap();
    assert_eq!(verify(dir.path(), None).unwrap().first_break, None);

    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.wait_compressed();
    assert_eq!(
        names(dir.path()),
        ["audit-2026-12-06.jsonl.gz", "audit-2026-12-07.jsonl"]
    );
    log.append(&[set("d", m.now())]).unwrap();
    let rooms: Vec<_> = all(&log, false).iter().map(room).collect();
    assert_eq!(rooms, ["a", "b", "c", "d"]);
    drop(log);

    // A crash after the rename, before the plain file was removed: both whole copies; the
    // next open keeps the `.gz` and removes the plain one, nothing is read twice.
    std::fs::write(&plain, &day_one).unwrap();
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.wait_compressed();
    assert_eq!(
        names(dir.path()),
        ["audit-2026-12-06.jsonl.gz", "audit-2026-12-07.jsonl"]
    );
    assert_eq!(all(&log, true).len(), 4);
    let rep = verify(dir.path(), None).unwrap();
    assert_eq!((rep.files, rep.entries, rep.first_break), (2, 4, None));
}

#[test]
fn a_failed_write_leaves_no_torn_line_and_the_retry_chains_onto_the_last_line_written() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-06 10:00 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.append(&[set("a", m.now())]).unwrap();
    let path = dir.path().join("audit-2026-12-06.jsonl");
    // A disk that fills mid-write: part of a line reached the file, then the write fails
    // (here: a handle that cannot write, nor cut the file back at once).
    let mut raw = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    raw.write_all(b"{\"prev\":\"0123").unwrap();
    let writable = {
        let mut st = log.state();
        let o = st.open.as_mut().unwrap();
        std::mem::replace(&mut o.file, std::fs::File::open(&path).unwrap())
    };
    assert!(log.append(&[set("b", m.now())]).is_err());
    assert!(log.state().open.as_ref().unwrap().torn);
    // Room again: the retry cuts the partial line off and chains onto "a".
    log.state().open.as_mut().unwrap().file = writable;
    log.append(&[set("c", m.now())]).unwrap();
    log.sync().unwrap();
    let rooms: Vec<String> = all(&log, false).iter().map(room).collect();
    assert_eq!(rooms, ["a", "c"]);
    assert!(verify(dir.path(), None).unwrap().first_break.is_none());
    drop(log);
    let log = AuditLog::open(opts(dir.path(), m.clock(), None, u64::MAX)).unwrap();
    log.append(&[set("d", m.now())]).unwrap();
    assert_eq!(all(&log, false).len(), 3);
    assert!(verify(dir.path(), None).unwrap().first_break.is_none());
}

#[test]
fn a_sealed_line_is_the_json_object_of_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::from_bytes([7; 32], "test");
    let m = Manual::new(datetime!(2026-12-06 10:00:00.123 UTC));
    let log = AuditLog::open(opts(dir.path(), m.clock(), Some(key), u64::MAX)).unwrap();
    let (id, entry) = set("exam-1", m.now());
    // A hash as the chain writes it (copied as it is), and one that needs escaping.
    for prev in [GENESIS, "a\"quoted\\prev"] {
        let line = log.line(prev, id, &entry).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let sealed = v["sealed"].as_str().unwrap().to_string();
        // The object of the same fields, as the line was written before: byte for byte.
        let head = Head {
            prev,
            id,
            at: rfc3339(entry.at),
            sealed: Some(sealed),
        };
        let object = serde_json::to_vec(&serde_json::to_value(&head).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            String::from_utf8(object).unwrap()
        );
    }
}

/// Day files written by this version (three `context_set` entries of 2026-12-06, plain and
/// sealed under a fixed test key), kept as they were written: the chain's format must stay
/// readable, so `vitalsd audit verify` and reads of them must keep working as code changes.
#[test]
fn files_written_by_an_earlier_build_verify_and_read_back() {
    let day = "audit-2026-12-06.jsonl";
    let key = StoreKey::from_bytes([9; 32], "fixture");
    for (fixture, key) in [
        (
            &include_bytes!("testdata/audit-2026-12-06.plain.jsonl")[..],
            None,
        ),
        (
            &include_bytes!("testdata/audit-2026-12-06.sealed.jsonl")[..],
            Some(key),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(day), fixture).unwrap();
        let cipher = AuditLog::cipher_for(key.as_ref());
        let rep = verify(dir.path(), cipher.as_ref()).unwrap();
        assert_eq!((rep.files, rep.entries), (1, 3), "{rep:?}");
        assert!(rep.first_break.is_none() && rep.anchor.is_none(), "{rep:?}");
        let m = Manual::new(datetime!(2026-12-06 12:00 UTC));
        let log = AuditLog::open(opts(dir.path(), m.clock(), key.clone(), u64::MAX)).unwrap();
        assert_eq!(
            all(&log, false).iter().map(room).collect::<Vec<_>>(),
            ["exam-1", "exam-2", "exam-3"]
        );
        // A new line chains onto the last one of the old file.
        log.append(&[set("exam-4", m.now())]).unwrap();
        log.sync().unwrap();
        drop(log);
        let rep = verify(dir.path(), cipher.as_ref()).unwrap();
        assert_eq!(rep.entries, 4);
        assert!(rep.first_break.is_none(), "{rep:?}");
    }
}

mod append;
