//! The online rewrite of the queue store through the real binary: with a rewrite allowed every
//! second and a small slack, a stream of readings from a JSON bridge on a serial port keeps
//! flowing while the store is rewritten (the log says so), every reading reaches the file
//! outbox exactly once, and the rewrite gives space back.

mod support;

use std::time::{Duration, Instant};

use support::{wait_outbox, Admin, DaemonBuilder};
use time::OffsetDateTime;

const REWRITTEN: &str = "the queue store was rewritten to give back the space";

/// The number after `name=` in `line`.
fn field(line: &str, name: &str) -> u64 {
    let at = line
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    line[at + name.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn readings_flow_and_are_delivered_once_while_the_store_is_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let d = DaemonBuilder::new(tmp.path())
        .admin(Admin::Token)
        .patient_mode("location")
        .serial_device("bridge", "json", "exam-2", "")
        .outbox("reading")
        .daemon("store_reclaim_every = \"1s\"")
        .daemon("store_reclaim_slack = \"1MiB\"")
        .start();
    let (bridge, outbox) = (d.pty("bridge"), d.outbox().to_path_buf());
    d.daemon()
        .wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    // Device times a millisecond apart, in the last minute (a trusted clock); sent in chunks
    // until a rewrite was logged, then as many again so readings arrive after the swap too.
    let base = OffsetDateTime::now_utc() - time::Duration::seconds(60);
    let (mut sent, mut seen_at) = (0usize, None);
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let chunk: Vec<String> = (sent..sent + 200)
            .map(|i| support::temperature_frame(base + time::Duration::milliseconds(i as i64), i))
            .collect();
        bridge.send(format!("{}\n", chunk.join("\n")).as_bytes());
        sent += 200;
        std::thread::sleep(Duration::from_millis(40));
        match seen_at {
            None if d.daemon().log().contains(REWRITTEN) => seen_at = Some(sent),
            Some(at) if sent >= at * 2 => break,
            _ => {}
        }
    }
    let log = d.daemon().plain_log();
    let at = seen_at.unwrap_or_else(|| panic!("no rewrite within 90 s ({sent} sent):\n{log}"));
    let lines = wait_outbox(&outbox, sent, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    let lines = support::outbox_lines(&outbox).len().max(lines.len());
    assert_eq!(
        lines, sent,
        "every reading delivered once ({at} sent before the rewrite was logged)"
    );
    let mut ids: Vec<String> = support::outbox_lines(&outbox)
        .iter()
        .map(|l| l["id"].as_str().unwrap_or("").to_string())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), sent, "ids are unique");
    // The files shrank, in every rewrite; none failed.
    let log = d.daemon().plain_log();
    assert!(
        !log.contains("rewriting the queue store to give back space failed"),
        "{log}"
    );
    let rewrites: Vec<&str> = log.lines().filter(|l| l.contains(REWRITTEN)).collect();
    for line in &rewrites {
        let (before, after) = (
            field(line, "disk_bytes_before"),
            field(line, "disk_bytes_after"),
        );
        assert!(after < before, "{line}");
        assert!(field(line, "longest_pause_ms") < 1000, "{line}");
    }
    println!(
        "{} rewrites, {sent} readings:\n{}",
        rewrites.len(),
        rewrites.join("\n")
    );
}
