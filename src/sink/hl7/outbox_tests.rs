//! The `hl7` file outbox format: day files named `.hl7`, one ORU^R01 per line group, a torn
//! group cut off at open, no duplicate after a lost settle.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use time::macros::datetime;

use super::{outbox_record, Header};
use crate::model::fixtures;
use crate::reading::{Reading, SinkId};
use crate::sink::file::{Clock, FileFormat, FileSink};
use crate::sink::{Outcome, Sink};

fn reading(v: &str) -> Reading {
    fixtures::temperature(v).build()
}

fn sink(dir: &Path) -> FileSink {
    let clock: Clock = Arc::new(|| datetime!(2026-11-27 10:00 UTC));
    FileSink::open_with_clock(SinkId::new("outbox"), dir, FileFormat::Hl7, clock).expect("open")
}

/// The MSH-10 of every message in the file, in order.
fn control_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("outbox file")
        .lines()
        .filter(|l| l.starts_with("MSH|"))
        .map(|l| l.split('|').nth(9).unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn hl7_messages_go_to_a_dot_hl7_day_file_as_line_groups() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = sink(tmp.path());
    let (a, b) = (reading("36.5"), reading("37.60"));
    let out = s.deliver(&[a.clone(), b.clone()]).await;
    assert_eq!(out, vec![Outcome::Delivered, Outcome::Delivered]);
    assert_eq!(s.sync_count(), 1);
    let path = tmp.path().join("2026-11-27.hl7");
    assert_eq!(s.current_path(), path);
    let text = std::fs::read_to_string(&path).expect("file");
    let want = outbox_record(&a, &Header::default()) + &outbox_record(&b, &Header::default());
    assert_eq!(text, want);
    assert!(text.contains("|37.60|"), "precision kept");
    // Each group parses as HL7 on its own (segments split by CR LF).
    for group in text.split("\r\n\r\n").filter(|g| !g.is_empty()) {
        let msg = hl7_parser::Message::parse_with_lenient_newlines(group, true).expect("HL7");
        assert_eq!(msg.segment_count("OBX"), 1);
    }
}

#[tokio::test]
async fn a_torn_hl7_group_is_cut_off_at_open_and_written_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, torn) = (reading("36.5"), reading("36.6"));
    let mut s = sink(tmp.path());
    s.deliver(std::slice::from_ref(&a)).await;
    let path = s.current_path();
    drop(s);
    let record = outbox_record(&torn, &Header::default());
    // Cut after whole segments (each line ends CR LF) but before the closing empty line, and
    // also in the middle of a segment: both are torn groups.
    for cut in [record.len() - 2, record.len() / 2] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("file");
        f.write_all(&record.as_bytes()[..cut]).expect("write");
        drop(f);
        let mut s = sink(tmp.path());
        assert_eq!(
            std::fs::read_to_string(&path).expect("file"),
            outbox_record(&a, &Header::default()),
            "torn group removed (cut at {cut})"
        );
        drop(s.deliver(&[]).await);
    }
    let mut s = sink(tmp.path());
    assert_eq!(
        s.deliver(std::slice::from_ref(&torn)).await,
        vec![Outcome::Delivered]
    );
    let ids = control_ids(&path);
    let want: Vec<String> = [&a, &torn]
        .iter()
        .map(|r| r.id.expect("id").to_string())
        .collect();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn an_hl7_redelivery_after_a_lost_settle_is_not_written_twice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (reading("36.5"), reading("36.6"));
    let mut s = sink(tmp.path());
    s.deliver(std::slice::from_ref(&a)).await;
    drop(s); // crash: the queue never heard "delivered"
    let mut s = sink(tmp.path());
    let syncs = s.sync_count();
    assert_eq!(
        s.deliver(std::slice::from_ref(&a)).await,
        vec![Outcome::Delivered]
    );
    assert_eq!(s.sync_count(), syncs, "nothing new to write");
    s.deliver(&[a.clone(), b.clone(), b.clone()]).await;
    assert_eq!(control_ids(&s.current_path()).len(), 2);
}

#[tokio::test]
async fn a_file_that_is_one_torn_hl7_group_becomes_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("2026-11-27.hl7");
    std::fs::write(&path, b"MSH|^~\\&|VITALSD\r\nPID|||\r\n").expect("write");
    let _s = sink(tmp.path());
    assert_eq!(std::fs::read(&path).expect("file"), b"");
}
