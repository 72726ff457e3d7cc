//! Running as a system service, through the real binary: sd_notify readiness, watchdog and
//! stopping on a fake NOTIFY_SOCKET; SIGHUP reload of the device list; /metrics and /readyz.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{wait_outbox, Admin, Daemon, DaemonBuilder, Device, Pty};

/// A daemon with the oximeter `ox` (every frame a reading) in `exam-1` and a `reading`
/// outbox; with `admin`, the admin API too.
fn oximeter(dir: &Path, admin: bool) -> DaemonBuilder {
    DaemonBuilder::new(dir)
        .admin(if admin { Admin::Token } else { Admin::Off })
        .patient_mode("location")
        .serial_device("ox", "nonin-ascii", "exam-1", r#"report = "every""#)
        .outbox("reading")
}

/// Every datagram received within `within`, until `done` says enough.
fn collect(sock: &UnixDatagram, within: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let until = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until && !done(&got) {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    got
}

fn count(msgs: &[String], line: &str) -> usize {
    msgs.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

/// One metric sample's value by its exact name and labels.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn signal(d: &Daemon, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(d.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, sig).expect("signal");
}

#[test]
fn under_systemd_it_reports_ready_pings_the_watchdog_and_reports_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut d = oximeter(tmp.path(), false).start_with_env(&[
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let msgs = collect(&sock, Duration::from_secs(15), |m| {
        count(m, "READY=1") == 1 && count(m, "WATCHDOG=1") >= 3
    });
    assert_eq!(count(&msgs, "READY=1"), 1, "{msgs:?}\n{}", d.log());
    assert!(count(&msgs, "WATCHDOG=1") >= 3, "{msgs:?}");
    let ready = msgs.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready.contains("STATUS=running: 1 devices, 1 sinks"),
        "{ready}"
    );
    // READY only once the serial source was started: its log line is already there.
    assert!(d.log().contains("vitalsd ready"));

    signal(&d, nix::sys::signal::Signal::SIGTERM);
    let msgs = collect(&sock, Duration::from_secs(15), |m| {
        count(m, "STOPPING=1") == 1
    });
    assert_eq!(count(&msgs, "STOPPING=1"), 1, "{msgs:?}");
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn without_notify_socket_nothing_is_sent_and_no_watchdog_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = oximeter(tmp.path(), false).start();
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    assert!(!d.log().contains("watchdog enabled"), "{}", d.log());
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn metrics_count_frames_deliveries_and_latency_and_readyz_is_green() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = oximeter(tmp.path(), true).start();
    let (ox, outbox) = (d.pty("ox"), d.outbox().to_path_buf());
    let addr = d.admin();
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    ox.send(b"SPO2=097 HR=072\r\n");
    wait_outbox(&outbox, 2, Duration::from_secs(10));

    let until = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (code, text) = support::http(&addr, "GET", "/metrics", &[], "");
        assert_eq!(code, 200, "{text}");
        if sample(&text, r#"vitalsd_delivered_total{sink="outbox"}"#) == Some(2.0)
            || Instant::now() > until
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Frames as the pipeline counts them: the same figure as /api/status.
    let (_, status) = support::http(&addr, "GET", "/api/status", &[], "");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let frames_ok = status["devices"][0]["frames_ok"].as_f64().unwrap();
    assert!(frames_ok >= 1.0);
    let want = [
        (
            r#"vitalsd_frames_total{device="ox",result="ok"}"#,
            frames_ok,
        ),
        (r#"vitalsd_frames_total{device="ox",result="bad"}"#, 0.0),
        (r#"vitalsd_readings_stored_total{device="ox"}"#, 2.0),
        (r#"vitalsd_device_connected{device="ox"}"#, 1.0),
        (r#"vitalsd_queue_pending{sink="outbox"}"#, 0.0),
        (r#"vitalsd_queue_dead{sink="outbox"}"#, 0.0),
        (r#"vitalsd_delivered_total{sink="outbox"}"#, 2.0),
        ("vitalsd_held_readings", 0.0),
        ("vitalsd_delivery_seconds_count", 2.0),
    ];
    for (series, v) in want {
        assert_eq!(sample(&text, series), Some(v), "{series} in:\n{text}");
    }
    let sum = sample(&text, "vitalsd_delivery_seconds_sum").unwrap();
    assert!(sum > 0.0 && sum < 10.0, "delivery latency sum {sum}");

    let (code, body) = support::http(&addr, "GET", "/readyz", &[], "");
    assert_eq!(code, 200, "{body}");
    let (status, _) = d.stop();
    assert!(status.success());
}

/// Waits until the log has a line holding every needle.
#[track_caller]
fn wait_line(d: &Daemon, needles: &[&str], within: Duration) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if d.plain_log()
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no log line with {needles:?}:\n{}", d.plain_log());
}

/// The outbox readings' device ids (reading format).
fn delivered_devices(outbox: &Path) -> Vec<String> {
    support::outbox_lines(outbox)
        .iter()
        .map(|l| l["device"]["id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn sighup_starts_added_devices_stops_removed_ones_keeps_the_rest_and_refuses_a_bad_config() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let (a, b, c) = (Pty::new(), Pty::new(), Pty::new());
    // The config with these oximeters (every frame a reading), written over the last one.
    let write = |devs: &[(&str, &str, &Pty)]| {
        devs.iter()
            .fold(
                DaemonBuilder::new(tmp.path())
                    .patient_mode("location")
                    .outbox("reading"),
                |b, (id, room, pty)| {
                    b.device(
                        Device::serial(id, "nonin-ascii", room, &pty.path)
                            .options(r#"report = "every""#),
                    )
                },
            )
            .write()
    };
    let config = write(&[("oxa", "exam-1", &a), ("oxb", "exam-2", &b)]);
    let d = Daemon::start(&config, &tmp.path().join("log"));
    wait_line(
        &d,
        &["serial port open", "device=oxa"],
        Duration::from_secs(10),
    );
    wait_line(
        &d,
        &["serial port open", "device=oxb"],
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(300));
    a.send(b"SPO2=097 HR=072\r\n");
    b.send(b"SPO2=096 HR=071\r\n");
    wait_outbox(&outbox, 4, Duration::from_secs(10));

    // Remove oxb, add oxc, keep oxa as it was.
    write(&[("oxa", "exam-1", &a), ("oxc", "exam-3", &c)]);
    signal(&d, nix::sys::signal::Signal::SIGHUP);
    wait_line(
        &d,
        &[
            "config reloaded",
            "started=1",
            "stopped=1",
            "restarted=0",
            "unchanged=1",
        ],
        Duration::from_secs(10),
    );
    wait_line(
        &d,
        &["serial port open", "device=oxc"],
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(300));
    let log = d.plain_log();
    assert!(
        !log.lines()
            .any(|l| l.contains("stopped by reload") && l.contains("oxa")),
        "{log}"
    );
    a.send(b"SPO2=095 HR=070\r\n");
    b.send(b"SPO2=094 HR=069\r\n");
    c.send(b"SPO2=093 HR=068\r\n");
    let _ = wait_outbox(&outbox, 8, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let devs = delivered_devices(&outbox);
    assert_eq!(devs.iter().filter(|x| *x == "oxa").count(), 4, "{devs:?}");
    assert_eq!(
        devs.iter().filter(|x| *x == "oxb").count(),
        2,
        "the removed device still reads: {devs:?}"
    );
    assert_eq!(devs.iter().filter(|x| *x == "oxc").count(), 2, "{devs:?}");

    // A bad file is refused with its reason, and everything keeps running.
    // Written by hand: a config the builder cannot write (a data dir that is not a path).
    std::fs::write(&config, "[daemon]\ndata_dir = 5\n").unwrap();
    signal(&d, nix::sys::signal::Signal::SIGHUP);
    wait_line(
        &d,
        &["config reload refused", "data_dir"],
        Duration::from_secs(10),
    );
    c.send(b"SPO2=092 HR=067\r\n");
    let devs: Vec<String> = wait_outbox(&outbox, 10, Duration::from_secs(10))
        .iter()
        .map(|l| l["device"]["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(devs.iter().filter(|x| *x == "oxc").count(), 4, "{devs:?}");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn under_journald_log_lines_have_no_colours_and_no_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = oximeter(tmp.path(), false).start_with_env(&[("JOURNAL_STREAM", "8:12345")]);
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    let log = d.log();
    assert!(
        !log.contains('\x1b'),
        "colour codes in the journal: {log:?}"
    );
    let ready = log.lines().find(|l| l.contains("vitalsd ready")).unwrap();
    assert!(
        ready.starts_with(" INFO") || ready.starts_with("INFO"),
        "{ready:?}"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}
