//! The online rewrite of the queue store through the real binary: with a rewrite allowed every
//! second and a small slack, a stream of readings from a JSON bridge on a serial port keeps
//! flowing while the store is rewritten (the log says so), every reading reaches the file
//! outbox exactly once, and the rewrite gives space back.

mod support;

use std::time::{Duration, Instant};

use support::{wait_outbox, Admin, DaemonBuilder};
use time::OffsetDateTime;

const REWRITTEN: &str = "the queue store was rewritten to give back the space";

/// A daemon with a JSON bridge on a serial port (room exam-2), a file outbox of readings, and
/// a rewrite of its store allowed every second with 1 MiB of slack.
fn rewriting(dir: &std::path::Path) -> support::Running {
    DaemonBuilder::new(dir)
        .admin(Admin::Token)
        .patient_mode("location")
        .serial_device("bridge", "json", "exam-2", "")
        .outbox("reading")
        .daemon("store_reclaim_every = \"1s\"")
        .daemon("store_reclaim_slack = \"1MiB\"")
        .start()
}

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
    let d = rewriting(tmp.path());
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

/// Lines in the outbox's NDJSON files (counted without parsing them).
fn outbox_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "ndjson"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .map(|b| b.iter().filter(|&&c| c == b'\n').count())
                .sum()
        })
        .unwrap_or(0)
}

/// SIGKILL while the store is being rewritten (its copy `queue.compact` is beside it), three
/// times. A serial frame the dead daemon may not have stored is sent again after the restart,
/// as a bridge that never got an answer would: the dedupe index, rewritten with the rest,
/// must catch the ones that were stored. The copy a killed daemon left is gone once the next
/// one has started; at the end every frame is in the outbox exactly once, the restarted daemon
/// rewrote its store again and `vitalsd queue verify` finds the store whole.
#[test]
fn a_sigkill_during_the_rewrite_loses_and_duplicates_nothing() {
    const CHUNK: usize = 100;
    let tmp = tempfile::tempdir().unwrap();
    let mut d = rewriting(tmp.path());
    let outbox = d.outbox().to_path_buf();
    let copy = d.data.join("queue.compact");
    d.daemon()
        .wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let base = OffsetDateTime::now_utc() - time::Duration::seconds(90);
    let frames = |from: usize| -> Vec<u8> {
        let chunk: Vec<String> = (from..from + CHUNK)
            .map(|i| support::temperature_frame(base + time::Duration::milliseconds(i as i64), i))
            .collect();
        format!("{}\n", chunk.join("\n")).into_bytes()
    };
    // A chunk is sent only when every earlier one is in the outbox, so only the chunk in
    // flight is in doubt at a kill: the daemon is killed the moment a rewrite's copy shows up
    // (the one a dead daemon left is removed at the next start), then that chunk goes out again.
    let (mut sent, mut kills) = (0usize, 0u32);
    let deadline = Instant::now() + Duration::from_secs(150);
    while kills < 3 {
        d.pty("bridge").send(&frames(sent));
        let mut polls = 0u32;
        loop {
            assert!(
                Instant::now() < deadline,
                "{kills} kills during a rewrite in 150 s ({sent} frames sent):\n{}",
                d.daemon().plain_log()
            );
            if kills < 3 && copy.exists() {
                d.kill();
                kills += 1;
                d.restart(&format!("log-after-kill-{kills}"));
                d.daemon()
                    .wait_log("serial port open", Duration::from_secs(20));
                assert!(
                    !copy.exists(),
                    "the copy left behind was not removed at start"
                );
                std::thread::sleep(Duration::from_millis(300));
                d.pty("bridge").send(&frames(sent));
            }
            polls += 1;
            if polls.is_multiple_of(25) && outbox_count(&outbox) >= sent + CHUNK {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        sent += CHUNK;
    }
    // The restarted daemon rewrites again: more frames until it says so.
    let until = Instant::now() + Duration::from_secs(60);
    while !d.daemon().log().contains(REWRITTEN) {
        assert!(
            Instant::now() < until,
            "no rewrite after the restart:\n{}",
            d.daemon().plain_log()
        );
        wait_outbox(&outbox, sent, Duration::from_secs(30));
        d.pty("bridge").send(&frames(sent));
        sent += CHUNK;
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_outbox(&outbox, sent, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let lines = support::outbox_lines(&outbox);
    let mut times: Vec<String> = lines
        .iter()
        .map(|l| l["device_time"].as_str().unwrap_or("").to_string())
        .collect();
    times.sort_unstable();
    times.dedup();
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|l| l["id"].as_str().unwrap_or(""))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(lines.len(), sent, "every frame delivered, none twice");
    assert_eq!(times.len(), sent, "one line per frame");
    assert_eq!(ids.len(), sent, "ids are unique");
    let log = d.daemon().plain_log();
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
    let (status, _) = d.stop();
    assert!(status.success(), "{status}");
    assert!(!copy.exists(), "the dead daemon's copy was left behind");
    let out = support::vitalsd_with_config(&d.config, &["queue", "verify"]);
    let text = support::output_text(&out);
    assert!(out.status.success() && text.contains("clean"), "{text}");
}
