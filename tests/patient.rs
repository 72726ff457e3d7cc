//! Patient context end to end through the real binary: a barcode scan on a pseudo-terminal
//! sets the room's patient, readings carry it, readings without one are held until an MA
//! assigns or discards them through the admin API, everything is audited and survives a
//! restart.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{http, wait_outbox, Admin, Daemon, DaemonBuilder, Device, Pty, AUTH};

const SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.999";

#[track_caller]
fn wait_json(addr: &str, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, body) = http(addr, "GET", path, &[AUTH], "");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if st == 200 && ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < until,
            "{path} never matched; last: {st} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(
    tmp: &std::path::Path,
    admin: &str,
    scanner: &Pty,
    ox1: &Pty,
    ox2: &Pty,
) -> std::path::PathBuf {
    DaemonBuilder::new(tmp)
        .admin(if admin.is_empty() {
            Admin::Off
        } else {
            Admin::Token
        })
        .admin_listen(admin)
        .device(
            Device::serial("scanner1", "barcode", "exam-1", &scanner.path)
                .options(&format!("system = {SYSTEM:?}")),
        )
        .device(Device::serial("ox1", "nonin-ascii", "exam-1", &ox1.path).options(EVERY))
        .device(Device::serial("ox2", "nonin-ascii", "exam-2", &ox2.path).options(EVERY))
        .outbox("reading")
        .write()
}

const EVERY: &str = "report = \"every\"";

fn vitalsd(args: &[&str]) -> std::process::Output {
    support::vitalsd(args)
}

#[test]
fn a_scan_attaches_the_patient_readings_before_it_are_held_until_assigned_and_all_is_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let (scanner, ox1, ox2) = (Pty::new(), Pty::new(), Pty::new());
    // A known port, so that the CLI finds the daemon from the config file.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(
        tmp.path(),
        &format!("127.0.0.1:{port}"),
        &scanner,
        &ox1,
        &ox2,
    );
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));

    // Measured before any scan: held, not delivered.
    ox1.send(b"SPO2=097 HR=072\r\n");
    let held = wait_json(&addr, "/api/held", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    });
    let early: Vec<String> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        held[0]["state"] == "held" && held[0]["room"] == "exam-1",
        "{held}"
    );

    // The wristband scan sets exam-1's patient; later readings carry it.
    scanner.send(b"MRN0012345\r");
    wait_json(&addr, "/api/status", |v| {
        v["rooms"].as_array().is_some_and(|r| {
            r.iter()
                .any(|x| x["room"] == "exam-1" && x["patient"].is_string())
        })
    });
    std::thread::sleep(Duration::from_millis(50));
    ox1.send(b"SPO2=098 HR=071\r\n");
    let lines = wait_outbox(&outbox, 1, Duration::from_secs(10));
    assert!(
        lines
            .iter()
            .all(|r| r["patient"]["id"] == "MRN0012345" && r["room"] == "exam-1"),
        "{lines:?}"
    );
    let n_after_scan = wait_outbox(&outbox, lines.len(), Duration::from_secs(1)).len();
    assert!(
        !d.log().contains("MRN0012345"),
        "the ordinary log shows a patient identifier"
    );

    // Exam-2 has no patient: its reading is held, never given exam-1's patient.
    ox2.send(b"SPO2=095 HR=080\r\n");
    let held = wait_json(&addr, "/api/held", |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|e| e["room"] == "exam-2"))
    });
    let exam2: Vec<String> = held
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["room"] == "exam-2")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();

    // Assign the early readings to a patient: they are delivered with that patient.
    for id in &early {
        let body =
            format!(r#"{{"patient":{{"id":"MRN0099999","system":"{SYSTEM}"}},"by":"ma-jo"}}"#);
        let (st, b) = http(
            &addr,
            "POST",
            &format!("/api/held/{id}/assign"),
            &[AUTH],
            &body,
        );
        assert_eq!(st, 200, "{b}");
        let (st, _) = http(
            &addr,
            "POST",
            &format!("/api/held/{id}/assign"),
            &[AUTH],
            &body,
        );
        assert_eq!(st, 404, "a released reading is never re-attributed");
    }
    let lines = wait_outbox(&outbox, n_after_scan + early.len(), Duration::from_secs(10));
    let assigned = lines
        .iter()
        .filter(|r| r["patient"]["id"] == "MRN0099999")
        .count();
    assert_eq!(assigned, early.len());
    for id in &exam2 {
        let (st, b) = http(
            &addr,
            "POST",
            &format!("/api/held/{id}/discard"),
            &[AUTH],
            r#"{"reason":"test strip","by":"ma-jo"}"#,
        );
        assert_eq!(st, 200, "{b}");
    }
    wait_json(&addr, "/api/held", |v| {
        v.as_array().is_some_and(Vec::is_empty)
    });

    // The audit trail, read through the CLI while the daemon runs (the store is locked).
    let out = vitalsd(&["audit", "--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit = String::from_utf8_lossy(&out.stdout).to_string();
    for needle in [
        r#""event":"context_set""#,
        r#""source":"scan""#,
        r#""event":"held""#,
        r#""event":"assigned""#,
        r#""event":"discarded""#,
        r#""event":"delivery""#,
        r#""by":"ma-jo""#,
    ] {
        assert!(audit.contains(needle), "audit lacks {needle}:\n{audit}");
    }
    let (status, _) = d.stop();
    assert!(status.success());

    // Restart: the context is still there (a new reading gets the patient); the held list
    // and audit trail are read from the store by the CLI while the daemon is stopped.
    let out = vitalsd(&["queue", "held", "--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = Daemon::start(&cfg, &tmp.path().join("log2"));
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let before = support::outbox_lines(&outbox).len();
    ox1.send(b"SPO2=099 HR=070\r\n");
    let lines = wait_outbox(&outbox, before + 1, Duration::from_secs(10));
    assert_eq!(lines.last().unwrap()["patient"]["id"], "MRN0012345");
}

#[test]
fn a_held_reading_survives_a_restart_and_is_delivered_once_assigned() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let (scanner, ox1, ox2) = (Pty::new(), Pty::new(), Pty::new());
    let cfg = config(tmp.path(), "127.0.0.1:0", &scanner, &ox1, &ox2);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    ox1.send(b"SPO2=097 HR=072\r\n");
    wait_json(&addr, "/api/held", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    });
    assert!(d.stop().0.success());

    let d = Daemon::start(&cfg, &tmp.path().join("log2"));
    let addr = d.admin_addr();
    let held = wait_json(&addr, "/api/held", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    });
    assert!(
        support::outbox_lines(&outbox).is_empty(),
        "held readings are not delivered"
    );
    let id = held[0]["id"].as_str().unwrap();
    let body = format!(r#"{{"patient":{{"id":"MRN0055555","system":"{SYSTEM}"}},"by":"ma-al"}}"#);
    let (st, b) = http(
        &addr,
        "POST",
        &format!("/api/held/{id}/assign"),
        &[AUTH],
        &body,
    );
    assert_eq!(st, 200, "{b}");
    let lines = wait_outbox(&outbox, 1, Duration::from_secs(10));
    assert_eq!(lines[0]["patient"]["id"], "MRN0055555");
}
