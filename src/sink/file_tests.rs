//! File outbox tests: day files, fsync before delivered, torn-line repair, no duplicate lines
//! after a redelivery, and a clear error for an unusable directory.

use std::sync::{Arc, Mutex};

use time::macros::datetime;
use time::OffsetDateTime;

use super::*;
use crate::model::fixtures;
use crate::reading::{Decimal, Kind, Ucum, Value};

fn reading(v: &str) -> Reading {
    fixtures::temperature(v).build()
}

/// A clock the test can move.
fn clock(at: OffsetDateTime) -> (Clock, Arc<Mutex<OffsetDateTime>>) {
    let now = Arc::new(Mutex::new(at));
    let c = now.clone();
    let f: Clock = Arc::new(move || *c.lock().expect("clock lock"));
    (f, now)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("outbox file")
        .lines()
        .map(str::to_string)
        .collect()
}

fn sink(dir: &Path, format: FileFormat, at: OffsetDateTime) -> FileSink {
    FileSink::open_with_clock(SinkId::new("outbox"), dir, format, clock(at).0).expect("open")
}

#[tokio::test]
async fn lines_go_to_a_file_named_after_the_utc_day() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 23:30 at UTC-05:00 is already the next day in UTC.
    let mut s = sink(
        tmp.path(),
        FileFormat::Fhir,
        datetime!(2026-11-27 23:30 -05:00),
    );
    let out = s.deliver(&[reading("37.60")]).await;
    assert_eq!(out, vec![Outcome::Delivered]);
    let path = tmp.path().join("2026-11-28.ndjson");
    assert_eq!(s.current_path(), path);
    let got = lines(&path);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains(r#""resourceType":"Observation""#),
        "{}",
        got[0]
    );
    assert!(got[0].contains(r#""value":37.60"#), "{}", got[0]);
}

#[tokio::test]
async fn one_sync_precedes_each_delivered_batch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = sink(
        tmp.path(),
        FileFormat::Reading,
        datetime!(2026-11-27 10:00 UTC),
    );
    assert_eq!(s.sync_count(), 0);
    let out = s.deliver(&[reading("36.9"), reading("37.0")]).await;
    assert_eq!(out, vec![Outcome::Delivered, Outcome::Delivered]);
    assert_eq!(s.sync_count(), 1);
    s.deliver(&[reading("37.1")]).await;
    assert_eq!(s.sync_count(), 2);
    assert_eq!(lines(&s.current_path()).len(), 3);
}

#[tokio::test]
async fn the_reading_format_writes_the_canonical_reading() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = sink(
        tmp.path(),
        FileFormat::Reading,
        datetime!(2026-11-27 10:00 UTC),
    );
    let r = reading("37.60");
    s.deliver(std::slice::from_ref(&r)).await;
    let got = lines(&s.current_path());
    let back: Reading = serde_json::from_str(&got[0]).expect("a reading per line");
    assert_eq!(back, r);
}

#[tokio::test]
async fn the_hl7_format_writes_ecg_waveforms_only_when_asked() {
    use crate::reading::{Lead, Waveform};
    let mut ecg = reading("37.60");
    ecg.kind = Kind::Ecg;
    ecg.values[0] = Value {
        code: "8867-4".into(),
        mdc: Some(147_842),
        name: "heart_rate".into(),
        value: Some(Decimal::from_int(72)),
        unit: Ucum::new("/min"),
        site: None,
        absent: None,
    };
    ecg.waveform = Some(Waveform {
        fs_hz: 250.0,
        t0: ecg.observed_at,
        leads: vec![Lead {
            mdc: 131_330,
            name: "lead_ii".into(),
            scale_uv: 1.0,
            samples: vec![0, 10, 250, -40, 5],
        }],
        r_peaks: vec![2],
        rr_ms: Vec::new(),
    });
    for on in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s =
            sink(tmp.path(), FileFormat::Hl7, datetime!(2026-11-27 10:00 UTC)).with_waveform(on);
        s.deliver(std::slice::from_ref(&ecg)).await;
        let text = std::fs::read_to_string(s.current_path()).expect("outbox");
        assert!(text.contains("OBX|"), "{text}");
        assert_eq!(text.contains("|NA|"), on, "waveform {on}: {text}");
        if on {
            assert!(text.contains("0^10^250^-40^5"), "{text}");
        }
    }
}

#[tokio::test]
async fn a_redelivery_after_a_lost_settle_is_not_written_twice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let at = datetime!(2026-11-27 10:00 UTC);
    for format in [FileFormat::Fhir, FileFormat::Reading] {
        let dir = tmp.path().join(format!("{format:?}"));
        let (a, b) = (reading("36.5"), reading("36.6"));
        let mut s = sink(&dir, format, at);
        s.deliver(std::slice::from_ref(&a)).await;
        drop(s); // crash: the queue never heard "delivered"
        let mut s = sink(&dir, format, at);
        let syncs = s.sync_count();
        assert_eq!(
            s.deliver(std::slice::from_ref(&a)).await,
            vec![Outcome::Delivered]
        );
        assert_eq!(
            s.sync_count(),
            syncs,
            "nothing new to write, nothing to sync"
        );
        s.deliver(&[a.clone(), b.clone(), b.clone()]).await;
        assert_eq!(lines(&s.current_path()).len(), 2, "{format:?}");
    }
}

#[tokio::test]
async fn a_redelivery_just_after_midnight_is_not_written_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = reading("36.5");
    let mut s = sink(
        tmp.path(),
        FileFormat::Fhir,
        datetime!(2026-11-27 23:59:59 UTC),
    );
    s.deliver(std::slice::from_ref(&a)).await;
    drop(s);
    let mut s = sink(
        tmp.path(),
        FileFormat::Fhir,
        datetime!(2026-11-28 00:00:01 UTC),
    );
    assert_eq!(s.deliver(&[a]).await, vec![Outcome::Delivered]);
    assert!(!s.current_path().exists() || lines(&s.current_path()).is_empty());
}

#[tokio::test]
async fn the_day_rolls_over_to_a_new_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (c, now) = clock(datetime!(2026-11-27 23:59:59 UTC));
    let mut s =
        FileSink::open_with_clock(SinkId::new("o"), tmp.path(), FileFormat::Fhir, c).expect("open");
    s.deliver(&[reading("36.5")]).await;
    *now.lock().expect("clock") = datetime!(2026-11-28 00:00:01 UTC);
    s.deliver(&[reading("36.6")]).await;
    assert_eq!(lines(&tmp.path().join("2026-11-27.ndjson")).len(), 1);
    assert_eq!(lines(&tmp.path().join("2026-11-28.ndjson")).len(), 1);
}

#[tokio::test]
async fn a_torn_last_line_is_truncated_at_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let at = datetime!(2026-11-27 10:00 UTC);
    let mut s = sink(tmp.path(), FileFormat::Fhir, at);
    let (a, torn) = (reading("36.5"), reading("36.6"));
    s.deliver(&[a]).await;
    let path = s.current_path();
    drop(s);
    // A crash in the middle of writing `torn`: half a line, no newline.
    let line = serde_json::to_string(&observation(&torn)).expect("json");
    let mut f = OpenOptions::new().append(true).open(&path).expect("file");
    f.write_all(&line.as_bytes()[..line.len() / 2])
        .expect("write");
    drop(f);

    let mut s = sink(tmp.path(), FileFormat::Fhir, at);
    let text = std::fs::read_to_string(&path).expect("file");
    assert!(text.ends_with('\n'), "torn line repaired");
    assert_eq!(text.lines().count(), 1);
    // The torn reading was never delivered: the queue sends it again and it is written.
    assert_eq!(s.deliver(&[torn]).await, vec![Outcome::Delivered]);
    let got = lines(&path);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], line);
}

#[tokio::test]
async fn a_file_that_is_one_torn_line_becomes_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("2026-11-27.ndjson");
    std::fs::write(&path, b"{\"resourceType\":\"Obs").expect("write");
    let _s = sink(
        tmp.path(),
        FileFormat::Fhir,
        datetime!(2026-11-27 10:00 UTC),
    );
    assert_eq!(std::fs::read(&path).expect("file"), b"");
}

#[test]
fn an_unusable_directory_is_named_in_the_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    let dir = file.join("outbox");
    let err = FileSink::open(SinkId::new("o"), &dir, FileFormat::Fhir)
        .err()
        .expect("a directory under a regular file cannot be created");
    let text = err.to_string();
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(matches!(err, FileSinkError::Dir { .. }), "{err:?}");
}
