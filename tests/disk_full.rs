//! A full disk under `data_dir` (ENOSPC, not the soft `queue_max_bytes` cap) through the real
//! binary and a real Mosquitto: `/readyz` is red and the daemon stops acknowledging. When sled
//! meets the full disk it refuses every write until the store is reopened, so the daemon stops
//! with an error for the service manager to restart it; when the audit file meets it first, the
//! batch it describes is not applied and the daemon waits, retrying every second. Nothing is
//! corrupted (store and audit chain), and once there is room again every published message is
//! stored exactly once, by the waiting daemon or by a restart.
//!
//! The data_dir is a small tmpfs (`mount -t tmpfs -o size=6m`, CI runs as root) grown later
//! with `mount -o remount`. Where mounting is not permitted the test says so and falls back
//! to RLIMIT_FSIZE on the daemon (`prlimit --fsize`), which makes a write past the limit fail
//! with EFBIG; "room again" is then a restart without the limit.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::mosquitto::{publish, weight_at, Mosquitto};
use support::{http, plain, Admin, Daemon, DaemonBuilder, Device, Sink};

/// Messages published: about three times what fits in the small data_dir.
const MESSAGES: i64 = 6000;

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(st.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Publishes messages `0..n` (distinct body weights, one device time) at QoS 1; returns once
/// the broker acknowledged all of them.
fn publish_all(port: u16, n: i64) {
    let msgs = (0..n)
        .map(|i| {
            let p = weight_at(5000 + i, "2026-11-27T12:00:00Z");
            ("bridge/exam4".to_string(), p)
        })
        .collect();
    publish(port, msgs);
}

/// A temporary directory with a broker and the config of a daemon whose data_dir is `data`.
fn site() -> (tempfile::TempDir, PathBuf, Mosquitto, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start_with(&tmp.path().join("broker"), "max_inflight_messages 100");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let builder = DaemonBuilder::new(tmp.path())
        .admin(Admin::Token)
        .patient_mode("hold")
        .mqtt(&url, "vitalsd-disk-full")
        .device(Device::mqtt(
            "bridge",
            "json",
            "exam-4",
            "bridge/exam4",
            "json",
        ))
        .sink(Sink::fhir("ehr", "http://127.0.0.1:1/fhir"));
    let data = builder.data().to_path_buf();
    let cfg = builder.write();
    (tmp, data, broker, cfg)
}

fn stored(addr: &str) -> u64 {
    let (st, body) = http(addr, "GET", "/api/status", &[], "");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    v["queue"]["readings"].as_u64().expect("queue.readings")
}

/// The readings stored, or `None` while the status cannot read the store (sled refusing) or
/// the daemon is stopping by itself.
fn stored_now(addr: &str) -> Option<u64> {
    if std::net::TcpStream::connect(addr).is_err() {
        return None;
    }
    let (st, body) = http(addr, "GET", "/api/status", &[], "");
    if st == 0 {
        return None;
    }
    if st != 200 {
        assert!(body.contains("queue store"), "{st}: {body}");
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    v["queue"]["readings"].as_u64()
}

/// The readings in the store of a stopped daemon (`vitalsd queue stats`).
fn stored_offline(cfg: &Path) -> u64 {
    let (ok, stats) = vitalsd(&["queue", "stats"], cfg);
    assert!(ok, "{stats}");
    let v: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    v["readings"].as_u64().expect("readings")
}

/// ERROR lines other than the expected ones, and any panic.
fn unexpected_errors(log: &str, expected: &[&str]) -> Vec<String> {
    plain(log)
        .lines()
        .filter(|l| {
            (l.contains(" ERROR ") && !expected.iter().any(|e| l.contains(e)))
                || l.contains("panicked")
        })
        .map(str::to_string)
        .collect()
}

fn vitalsd(args: &[&str], config: &Path) -> (bool, String) {
    let o = support::vitalsd_with_config(config, args);
    (o.status.success(), support::output_text(&o))
}

/// Waits for the daemon to exit by itself; its status.
fn exits(d: &mut Daemon, within: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + within;
    loop {
        if let Some(st) = d.child.try_wait().expect("wait") {
            return st;
        }
        assert!(
            Instant::now() < until,
            "still running:\n{}",
            plain(&d.log())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const EXPECTED_ERRORS: &[&str] = &[
    "writing the audit file failed",
    "queue write failed",
    "queue sync failed",
    "queue refuses the message",
    "refuses all writes until it is reopened",
    "No space left on device",
    "FHIR",
];

#[test]
fn a_full_data_dir_stops_acks_and_a_restart_with_room_stores_every_message_once() {
    let (tmp, data, broker, cfg) = site();
    // VITALSD_TEST_NO_MOUNT=1 runs the fallback where mounting works too.
    let mount = std::env::var_os("VITALSD_TEST_NO_MOUNT").is_none();
    let Some(fs) = mount.then(|| Tmpfs::mount(&data, "6m")).flatten() else {
        eprintln!("path: no tmpfs (mount not permitted or VITALSD_TEST_NO_MOUNT): RLIMIT_FSIZE");
        return fsize_fallback(tmp.path(), &cfg, broker.port);
    };
    eprintln!("path: tmpfs of 6 MiB on data_dir");
    let mut d = Daemon::start(&cfg, &tmp.path().join("daemon.log"));
    d.wait_log("mqtt subscribed", Duration::from_secs(15));
    let addr = d.admin_addr();
    // FHIR output needs a patient (kept across restarts).
    support::set_patient(&addr, "exam-4");
    let (code, body) = http(&addr, "GET", "/readyz", &[], "");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("data_dir filesystem nearly full"), "{body}");
    publish_all(broker.port, MESSAGES);

    // The disk fills. Which write meets it first decides what follows, and both must hold:
    // sled (it then refuses every later write, so the daemon stops with an error for the
    // service manager to restart it), or the audit file (the batch it describes is not
    // applied; the daemon keeps running without acknowledging and retries every second).
    let first = full(&mut d, Duration::from_secs(90));
    let log = d.log();
    eprintln!(
        "first run: {first:?}: {}",
        plain(&log).lines().last().unwrap_or_default()
    );
    assert!(log.contains("queue refuses the message"), "{}", plain(&log));
    let bad = unexpected_errors(&log, EXPECTED_ERRORS);
    assert!(bad.is_empty(), "{bad:#?}");
    let running = match first {
        Full::Stopped => {
            assert!(
                log.contains("the queue store stopped taking writes"),
                "{}",
                plain(&log)
            );
            // Still full: a restart refuses or stops again, without a panic.
            let mut again = Daemon::start(&cfg, &tmp.path().join("again.log"));
            let st = exits(&mut again, Duration::from_secs(30));
            assert!(!st.success());
            let again_log = plain(&again.log());
            eprintln!(
                "restart while full: {}",
                again_log.lines().last().unwrap_or_default()
            );
            let bad = unexpected_errors(&again.log(), EXPECTED_ERRORS);
            assert!(bad.is_empty(), "{bad:#?}");
            None
        }
        Full::Waiting(at_failure) => {
            assert!(
                at_failure > 0 && at_failure < MESSAGES as u64,
                "{at_failure}"
            );
            Some(d)
        }
    };

    // Room again: nothing is corrupted, and what was stored is a part of what was sent.
    fs.grow("256m");
    let d = match running {
        Some(mut d) => match resumes(&mut d, MESSAGES, Duration::from_secs(60)) {
            // sled met the full disk too (its own flush) and the daemon stopped after all.
            Some(st) => {
                assert!(!st.success());
                None
            }
            None => Some(d),
        },
        None => None,
    };
    let d = match d {
        Some(d) => d,
        None => {
            let (ok, report) = vitalsd(&["queue", "verify"], &cfg);
            assert!(ok, "{report}");
            let at_failure = stored_offline(&cfg);
            assert!(
                at_failure > 0 && at_failure < MESSAGES as u64,
                "{at_failure}"
            );
            // The broker kept every unacknowledged message: a restart stores all, each once.
            let mut d = Daemon::start(&cfg, &tmp.path().join("resumed.log"));
            assert!(resumes(&mut d, MESSAGES, Duration::from_secs(60)).is_none());
            d
        }
    };
    ends_whole(d, &cfg, MESSAGES);
    drop(fs);
}

/// The end of both tests: the daemon that stored everything is ready and stops cleanly with
/// no unexpected error; its store holds each of the `sent` messages once, and the store and
/// the audit chain verify.
fn ends_whole(d: Daemon, cfg: &Path, sent: i64) {
    let (code, body) = http(&d.admin_addr(), "GET", "/readyz", &[], "");
    assert_eq!(code, 200, "{body}");
    let log = d.log();
    let (st, _) = d.stop();
    assert!(st.success(), "{}", plain(&log));
    let bad = unexpected_errors(&log, EXPECTED_ERRORS);
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(
        stored_offline(cfg),
        sent.unsigned_abs(),
        "each message stored exactly once"
    );
    let (ok, report) = vitalsd(&["queue", "verify"], cfg);
    assert!(ok, "{report}");
    let (ok, report) = vitalsd(&["audit", "verify"], cfg);
    assert!(
        ok,
        "the audit chain is whole across the full disk: {report}"
    );
}

/// How the daemon met the full disk.
#[derive(Debug)]
enum Full {
    /// It stopped by itself (sled refuses every write until reopened).
    Stopped,
    /// It keeps running without acknowledging (the audit file refused); readings stored then.
    Waiting(u64),
}

/// Waits until the daemon has stopped by itself, or has refused the audit file and stored
/// nothing more for three seconds while not ready.
fn full(d: &mut Daemon, within: Duration) -> Full {
    let until = Instant::now() + within;
    let mut last = None;
    loop {
        if let Some(st) = d.child.try_wait().expect("wait") {
            assert!(!st.success(), "{}", plain(&d.log()));
            return Full::Stopped;
        }
        if d.log().contains("writing the audit file failed") {
            let addr = d.admin_addr();
            let now = stored_now(&addr);
            match last {
                Some((Some(n), since)) if now == Some(n) => {
                    if Instant::now().duration_since(since) >= Duration::from_secs(3) {
                        let (code, body) = http(&addr, "GET", "/readyz", &[], "");
                        assert_eq!(code, 503, "not ready while it cannot store: {body}");
                        return Full::Waiting(n);
                    }
                }
                _ => last = Some((now, Instant::now())),
            }
        }
        assert!(
            Instant::now() < until,
            "still running:\n{}",
            plain(&d.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the running daemon has stored every message; `Some(status)` when it stopped
/// by itself instead.
fn resumes(d: &mut Daemon, sent: i64, within: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + within;
    let addr = d.admin_addr();
    loop {
        if let Some(st) = d.child.try_wait().expect("wait") {
            return Some(st);
        }
        let n = stored_now(&addr);
        if let Some(n) = n.filter(|&n| n >= sent.unsigned_abs()) {
            assert_eq!(n, sent.unsigned_abs(), "each message stored exactly once");
            return None;
        }
        assert!(
            Instant::now() < until,
            "ingest did not resume: {n:?} of {sent}\n{}",
            plain(&d.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The audit directory alone fills (its own small tmpfs): the daemon does not acknowledge what
/// it could not audit, keeps running, and once there is room the same daemon stores every
/// message once with the audit chain whole (a failed write leaves no torn line behind).
#[test]
fn a_full_audit_directory_holds_acks_and_the_same_daemon_resumes_with_the_chain_whole() {
    const N: i64 = 3000;
    let (tmp, data, broker, cfg) = site();
    let fs = Tmpfs::mount(&data.join("audit"), "128k").unwrap_or_else(|| {
        panic!("this test mounts a tmpfs on data_dir/audit and needs root (CI runs as root)")
    });
    let mut d = Daemon::start(&cfg, &tmp.path().join("daemon.log"));
    d.wait_log("mqtt subscribed", Duration::from_secs(15));
    let addr = d.admin_addr();
    support::set_patient(&addr, "exam-4");
    publish_all(broker.port, N);
    let Full::Waiting(at_failure) = full(&mut d, Duration::from_secs(90)) else {
        panic!("stopped on a full audit directory:\n{}", plain(&d.log()));
    };
    assert!(at_failure < N.unsigned_abs(), "{at_failure}");
    fs.grow("64m");
    assert!(
        resumes(&mut d, N, Duration::from_secs(60)).is_none(),
        "{}",
        plain(&d.log())
    );
    let log = d.log();
    assert!(
        log.contains("queue accepts messages again"),
        "{}",
        plain(&log)
    );
    ends_whole(d, &cfg, N);
    drop(fs);
}

/// Without mount: every file the daemon writes may grow to 3 MiB at most (RLIMIT_FSIZE); a
/// write past it fails (EFBIG, or SIGXFSZ ends the process). The daemon must stop without
/// acknowledging what it did not store; a restart without the limit is the "room again".
fn fsize_fallback(dir: &Path, cfg: &Path, port: u16) {
    let mut limited = Daemon::start_under(
        &["prlimit", "--fsize=3145728"],
        cfg,
        &dir.join("limited.log"),
        &[],
    );
    limited.wait_log("mqtt subscribed", Duration::from_secs(15));
    publish_all(port, MESSAGES);
    let st = exits(&mut limited, Duration::from_secs(90));
    eprintln!("limited run ended: {st}");
    assert!(!st.success());
    let log = limited.plain_log();
    assert!(!log.contains("panicked"), "{log}");
    let (ok, report) = vitalsd(&["queue", "verify"], cfg);
    assert!(ok, "{report}");
    let d = Daemon::start(cfg, &dir.join("daemon.log"));
    let addr = d.admin_addr();
    let until = Instant::now() + Duration::from_secs(60);
    while stored(&addr) < MESSAGES as u64 {
        assert!(Instant::now() < until, "{} of {MESSAGES}", stored(&addr));
        std::thread::sleep(Duration::from_millis(200));
    }
    d.stop();
    assert_eq!(
        stored_offline(cfg),
        MESSAGES.unsigned_abs(),
        "each message stored exactly once"
    );
}
