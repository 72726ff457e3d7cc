//! Months unattended, compressed: a stream of readings far past a small `queue_max_bytes`,
//! each delivered at once to a file outbox, keeps flowing (what is kept after delivery does not
//! count against the cap), and replays of frames already stored are still stored once. The
//! audit entries of the deliveries go to the audit files, not the store.
//! Through the real binary, a PTY standing in for a JSON bridge on a serial port.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{wait_outbox, Admin, DaemonBuilder};
use time::OffsetDateTime;

/// Readings sent: the old check (store size on disk against the cap) refused everything after
/// about 2,000 of them with a 1 MiB cap.
const READINGS: usize = 20_000;
/// Frames sent a second time (a gateway replaying what it holds after a reconnect).
const REPLAYS: usize = 600;

/// A JSON bridge `bridge` on a pseudo-terminal in `exam-2`, a `reading` outbox, the admin API
/// with a token, patients by `mode`.
fn bridge_daemon(dir: &Path, mode: &str) -> DaemonBuilder {
    DaemonBuilder::new(dir)
        .admin(Admin::Token)
        .patient_mode(mode)
        .serial_device("bridge", "json", "exam-2", "")
        .outbox("reading")
}

#[test]
fn a_stream_far_past_the_cap_keeps_flowing_and_replays_are_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = bridge_daemon(tmp.path(), "location")
        .daemon("queue_max_bytes = \"1MiB\"")
        .daemon("history_max_bytes = \"64MiB\"")
        .start();
    let (bridge, outbox, cfg_path) = (d.pty("bridge"), d.outbox().to_path_buf(), d.config.clone());
    d.wait_log("serial port open", Duration::from_secs(10));
    // Started without it in the environment, `vitalsd run` fixes glibc's mmap threshold
    // itself (as the systemd unit once did through the environment), without re-executing.
    d.wait_log(
        "malloc: mmap threshold fixed by vitalsd",
        Duration::from_secs(5),
    );
    let environ = std::fs::read(format!("/proc/{}/environ", d.child.id())).unwrap();
    assert!(
        !environ
            .split(|b| *b == 0)
            .any(|kv| kv.starts_with(b"MALLOC_MMAP_THRESHOLD_=")),
        "the daemon's environment was changed"
    );
    std::thread::sleep(Duration::from_millis(300));

    // Device times a millisecond apart, in the last minute (a trusted clock).
    let base = OffsetDateTime::now_utc() - time::Duration::seconds(60);
    let frames: Vec<String> = (0..READINGS)
        .map(|i| support::temperature_frame(base + time::Duration::milliseconds(i as i64), i))
        .collect();
    let started = Instant::now();
    for chunk in frames.chunks(200) {
        bridge.send(format!("{}\n", chunk.join("\n")).as_bytes());
    }
    let lines = wait_outbox(&outbox, READINGS, Duration::from_secs(90));
    let first_pass = started.elapsed();
    assert_eq!(lines.len(), READINGS, "every reading delivered once");

    // Replays of frames stored long ago in this stream (their dedupe entries are still kept).
    for chunk in frames[..REPLAYS].chunks(200) {
        bridge.send(format!("{}\n", chunk.join("\n")).as_bytes());
    }
    // And a few new ones after them: when these are out, the replays were handled.
    let tail: Vec<String> = (READINGS..READINGS + 10)
        .map(|i| support::temperature_frame(base + time::Duration::milliseconds(i as i64), i))
        .collect();
    bridge.send(format!("{}\n", tail.join("\n")).as_bytes());
    let lines = wait_outbox(&outbox, READINGS + 10, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let lines_after = support::outbox_lines(&outbox);
    assert_eq!(
        lines_after.len(),
        READINGS + 10,
        "replayed frames must not be delivered again (had {} before the wait)",
        lines.len()
    );
    let mut ids: Vec<&str> = lines_after
        .iter()
        .map(|l| l["id"].as_str().unwrap_or(""))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), READINGS + 10, "ids are unique");

    let log = d.log();
    assert!(!log.contains("queue full"), "refused for history:\n{log}");
    // Live bytes by class and the size on disk, apart.
    let (code, metrics) = support::http(&d.admin_addr(), "GET", "/metrics", &[], "");
    assert_eq!(code, 200, "{metrics}");
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(gauge("vitalsd_store_live_bytes{class=\"undelivered\"}"), 0);
    assert!(gauge("vitalsd_store_live_bytes{class=\"dedupe\"}") > 0);
    assert_eq!(gauge("vitalsd_store_live_bytes{class=\"audit\"}"), 0);
    assert!(gauge("vitalsd_audit_bytes") > 0);
    assert!(gauge("vitalsd_store_disk_bytes") > 1024 * 1024);
    assert_eq!(gauge("vitalsd_history_pruned_total"), 0);
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");

    // The stopped daemon's store: nothing undelivered, the history is there and bounded.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(support::KEY_ENV, support::store_key_file())
        .args(["queue", "stats", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["readings"], 0, "{stats}");
    assert_eq!(stats["undelivered_bytes"], 0, "{stats}");
    assert_eq!(stats["free_bytes"], 1024 * 1024, "{stats}");
    let dedupe = stats["history"]["dedupe_bytes"].as_u64().unwrap();
    assert_eq!(stats["history"]["audit_bytes"], 0, "{stats}");
    let audit = stats["history"]["audit_file_bytes"].as_u64().unwrap();
    let n = (READINGS + 10) as u64;
    // One delivery entry per reading, in the files, chained.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(support::KEY_ENV, support::store_key_file())
        .args(["audit", "verify", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout).to_string();
    assert!(verify.status.success(), "{said}");
    assert!(said.contains(&format!("intact: {n} entries")), "{said}");
    // 24 bytes an entry plus a few keys: far below the per-reading keys of before.
    assert!(
        dedupe >= 24 * n && dedupe < 40 * n,
        "dedupe {dedupe} for {n}"
    );
    assert!(audit > 0, "{stats}");
    eprintln!(
        "long run: {READINGS} readings in {first_pass:?}; dedupe {dedupe} B ({:.1} B/reading), audit files {audit} B ({:.1} B/reading), disk {}",
        dedupe as f64 / n as f64,
        audit as f64 / n as f64,
        stats["disk_bytes"]
    );
}

/// Space comes back while the daemon runs: a backlog of held readings (no patient in the
/// room) grows the store's files; once they are discarded, the daemon rewrites the store in
/// place while readings keep arriving, and the files return near their size before the
/// backlog.
#[test]
fn a_drained_backlog_gives_its_disk_space_back_while_the_daemon_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = bridge_daemon(tmp.path(), "hold")
        .daemon("store_reclaim_slack = \"1MiB\"")
        .daemon("store_reclaim_every = \"1s\"")
        .start();
    let bridge = d.pty("bridge");
    d.wait_log("serial port open", Duration::from_secs(10));
    let admin = d.admin_addr();
    let gauge = |name: &str| -> u64 {
        let (_, m) = support::http(&admin, "GET", "/metrics", &[], "");
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{m}"))
    };
    let base = OffsetDateTime::now_utc() - time::Duration::seconds(120);
    let send = |from: usize, n: usize| {
        let frames: Vec<String> = (from..from + n)
            .map(|i| support::temperature_frame(base + time::Duration::milliseconds(i as i64), i))
            .collect();
        for chunk in frames.chunks(200) {
            bridge.send(format!("{}\n", chunk.join("\n")).as_bytes());
        }
    };
    send(0, 5);
    std::thread::sleep(Duration::from_secs(1));
    let before = gauge("vitalsd_store_disk_bytes");
    // The backlog: held readings, undelivered.
    const BACKLOG: usize = 4000;
    send(5, BACKLOG);
    let held = |limit: usize| -> Vec<String> {
        let (_, body) = support::http(
            &admin,
            "GET",
            &format!("/api/held?limit={limit}"),
            &[support::AUTH],
            "",
        );
        let v: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        v.iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let until = Instant::now() + Duration::from_secs(60);
    while held(100_000).len() < BACKLOG + 5 {
        assert!(Instant::now() < until, "the backlog was not held");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = gauge("vitalsd_store_disk_bytes");
    assert!(
        peak > before * 2,
        "the backlog grew the files: {before} -> {peak}"
    );
    // Drained (discarded by a person), while new readings keep arriving.
    let mut next = BACKLOG + 5;
    for ids in held(100_000).chunks(500) {
        for id in ids {
            let (st, body) = support::http(
                &admin,
                "POST",
                &format!("/api/held/{id}/discard"),
                &[support::AUTH],
                r#"{"reason":"test backlog","by":"ma-jo"}"#,
            );
            assert_eq!(st, 200, "{body}");
        }
        send(next, 2);
        next += 2;
    }
    let until = Instant::now() + Duration::from_secs(30);
    while gauge("vitalsd_store_reclaims_total") == 0 {
        assert!(Instant::now() < until, "no reclaim:\n{}", d.log());
        send(next, 1);
        next += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    send(next, 3);
    next += 3;
    std::thread::sleep(Duration::from_millis(800));
    let after = gauge("vitalsd_store_disk_bytes");
    let slack = 4 << 20;
    assert!(
        after <= before + before / 2 + slack,
        "disk {after} after, {before} before the backlog, {peak} at its peak"
    );
    // The last rewrite (after the drain) leaves a quarter of the peak at most; the readings written after it
    // may open a new sled log segment or two, so the live figure is held to half.
    let rewritten: u64 = d
        .log()
        .lines()
        .rfind(|l| l.contains("rewritten to give back the space"))
        .and_then(|l| {
            let v = l.split("disk_bytes_after=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no disk_bytes_after in the rewrite line:\n{}", d.log()));
    assert!(
        rewritten * 4 < peak,
        "rewritten to {rewritten}, {peak} at its peak"
    );
    assert!(after * 2 < peak, "disk {after} after, {peak} at its peak");
    // Everything sent after the backlog is still there, held.
    let kept = held(100_000).len();
    assert_eq!(kept, next - BACKLOG - 5, "{}", d.log());
    assert!(d.log().contains("rewritten to give back the space"));
    // stderr is a file here, not a terminal: plain text, no colour codes for grep to trip on.
    assert!(
        !d.log().contains('\u{1b}'),
        "colour codes in a log written to a file"
    );
    eprintln!(
        "reclaim through the daemon: {before} B before, {peak} B at the peak, {after} B after"
    );
    assert!(d.stop().0.success());
}
