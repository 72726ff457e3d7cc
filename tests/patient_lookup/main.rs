//! The patient lookup (`[patient] lookup`, docs/patient-lookup.md) through the real binary
//! against Medplum (tests/medplum/server.mjs): Patients are created in Medplum, a wristband is
//! scanned on a pseudo-terminal, and what reaches the record system, the HL7 outbox, the
//! status, the held list and the audit trail is checked. The daemon's stderr (default level)
//! never shows an MRN or a name.

#[path = "../support/fhir_servers.rs"]
mod fhir_servers;
#[path = "../support/mod.rs"]
mod support;

mod known_and_unknown;
mod record_system_down;
mod review;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_servers::{wait_until, Medplum};
use serde_json::{json, Value};
use support::{http, Admin, Daemon, DaemonBuilder, Device, Pty, Sink, AUTH};

const SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.999";

/// A gate in front of the record system: while closed, every connection is cut at once (the
/// server is unreachable); while open, bytes are relayed both ways.
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Gate {
    fn start(upstream: u16) -> Gate {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind gate");
        let port = l.local_addr().expect("addr").port();
        let open = Arc::new(AtomicBool::new(false));
        let o = open.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Gate { port, open }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }
}

fn medplum_addr(m: &Medplum) -> String {
    format!("127.0.0.1:{}", m.port)
}

/// Creates a Patient with `mrn` in Medplum; returns its logical id.
#[track_caller]
fn create_patient(m: &Medplum, mrn: &str, family: &str, given: &str, born: &str) -> String {
    let body = json!({
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "birthDate": born,
    });
    let (st, text) = http(
        &medplum_addr(m),
        "POST",
        "/fhir/Patient",
        &[("Content-Type", "application/fhir+json")],
        &body.to_string(),
    );
    assert_eq!(st, 201, "create Patient: {text}\n{}", m.log());
    let v: Value = serde_json::from_str(&text).expect("Patient JSON");
    v["id"].as_str().expect("id").to_string()
}

/// Every Observation Medplum holds.
fn observations(m: &Medplum) -> Vec<Value> {
    let (st, text) = http(
        &medplum_addr(m),
        "GET",
        "/fhir/Observation?_count=1000",
        &[],
        "",
    );
    assert_eq!(st, 200, "search Observations: {text}");
    let v: Value = serde_json::from_str(&text).expect("Bundle");
    v["entry"]
        .as_array()
        .map(|a| a.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

struct Rig {
    tmp: tempfile::TempDir,
    scanner: Pty,
    ox: Pty,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            tmp: tempfile::tempdir().expect("tmp"),
            scanner: Pty::new(),
            ox: Pty::new(),
        }
    }

    fn hl7_dir(&self) -> PathBuf {
        self.tmp.path().join("hl7")
    }

    fn start(&self, base_url: &str, unavailable: &str) -> Daemon {
        self.start_with(base_url, unavailable, false)
    }

    /// As [`Self::start`]; `review` turns on review before filing.
    fn start_with(&self, base_url: &str, unavailable: &str, review: bool) -> Daemon {
        let dir = self.tmp.path();
        let p = DaemonBuilder::new(dir)
            .admin(Admin::Token)
            .patient("lookup = \"ehr\"")
            .patient(&format!("lookup_unavailable = \"{unavailable}\""))
            .patient(&format!("review = {review}"))
            .device(
                Device::serial("scan1", "barcode", "exam-1", &self.scanner.path)
                    .options(&format!("system = {SYSTEM:?}")),
            )
            .device(
                Device::serial("ox", "nonin-ascii", "exam-1", &self.ox.path)
                    .options("report = \"every\""),
            )
            .sink(Sink::fhir("ehr", base_url).line("timeout = \"2s\""))
            .sink(Sink::file("hl7", &self.hl7_dir(), "hl7"))
            .write();
        let d = Daemon::start(&p, &dir.join("daemon.log"));
        d.wait_log("vitalsd ready", Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(300));
        d
    }

    /// A wristband scan, then waits until the room shows its result.
    fn scan(&self, d: &Daemon, mrn: &str, until: impl Fn(&Value) -> bool) -> Value {
        self.scanner.send(format!("{mrn}\r").as_bytes());
        let mut last = Value::Null;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Some(room) = room(d, true) {
                if until(&room) {
                    return room;
                }
                last = room;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("room exam-1 after scanning: {last}\n{}", d.log());
    }

    /// Two readings per frame.
    fn frames(&self, n: u32) {
        for i in 0..n {
            self.ox
                .send(format!("SPO2={:03} HR={:03}\r\n", 95 + i % 4, 60 + i).as_bytes());
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

/// exam-1 in `/api/status`, with (`authed`) or without the token.
fn room(d: &Daemon, authed: bool) -> Option<Value> {
    let headers: &[(&str, &str)] = if authed { &[AUTH] } else { &[] };
    let (st, body) = http(&d.admin_addr(), "GET", "/api/status", headers, "");
    if st != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["rooms"]
        .as_array()?
        .iter()
        .find(|r| r["room"] == "exam-1")
        .cloned()
}

fn held(d: &Daemon) -> Vec<Value> {
    let (st, body) = http(&d.admin_addr(), "GET", "/api/held", &[AUTH], "");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn audit_events(d: &Daemon) -> Vec<Value> {
    let (st, body) = http(
        &d.admin_addr(),
        "GET",
        "/api/audit?order=oldest",
        &[AUTH],
        "",
    );
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("audit JSON");
    v.as_array()
        .cloned()
        .or_else(|| v["entries"].as_array().cloned())
        .unwrap_or_default()
}

#[track_caller]
fn assert_log_clean(d: &Daemon, secrets: &[&str]) {
    let log = d.log();
    for s in secrets {
        assert!(!log.contains(s), "the daemon's stderr shows `{s}`:\n{log}");
    }
}

/// Runs tests/hl7/validate.py (hl7apy strict) on `input`.
#[track_caller]
fn assert_hl7_valid(input: &str, expect: &[&str]) {
    let mut args: Vec<String> = Vec::new();
    for e in expect {
        args.push("--expect".into());
        args.push((*e).to_string());
    }
    let (code, report) = support::hl7_validate(input, &args);
    assert_ne!(code, Some(2), "hl7apy is missing:\n{report}");
    assert!(code == Some(0), "validate.py refused:\n{report}\n{input}");
}

fn hl7_text(dir: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "hl7") {
            let _ = std::fs::File::open(e.path()).and_then(|mut f| f.read_to_string(&mut text));
        }
    }
    text
}
