//! The patient lookup (`[patient] lookup`, docs/patient-lookup.md) through the real binary
//! against Medplum (tests/medplum/server.mjs): Patients are created in Medplum, a wristband is
//! scanned on a pseudo-terminal, and what reaches the record system, the HL7 outbox, the
//! status, the held list and the audit trail is checked. The daemon's stderr (default level)
//! never shows an MRN or a name.

#[path = "support/fhir_servers.rs"]
mod fhir_servers;
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_servers::{wait_until, Medplum};
use serde_json::{json, Value};
use support::{http, Daemon, Pty, AUTH};

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
        let cfg = format!(
            "[daemon]\ndata_dir = {data:?}\nadmin_listen = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n\n\
             [patient]\nlookup = \"ehr\"\nlookup_unavailable = \"{unavailable}\"\nreview = {review}\n\n\
             [[device]]\nid = \"scan1\"\ndriver = \"barcode\"\nroom = \"exam-1\"\n\
             serial = {{ path = {scan:?} }}\noptions = {{ system = {SYSTEM:?} }}\n\n\
             [[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\n\
             serial = {{ path = {ox:?} }}\noptions = {{ report = \"every\" }}\n\n\
             [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"{base_url}\"\ntimeout = \"2s\"\n\n\
             [[sink]]\nid = \"hl7\"\ntype = \"file\"\ndir = {hl7:?}\nformat = \"hl7\"\n",
            data = dir.join("data"),
            scan = self.scanner.path,
            ox = self.ox.path,
            hl7 = self.hl7_dir(),
        );
        let p = dir.join("vitalsd.toml");
        std::fs::write(&p, support::with_token(&cfg, dir)).expect("config");
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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hl7/validate.py");
    let mut args: Vec<String> = Vec::new();
    for e in expect {
        args.push("--expect".into());
        args.push((*e).to_string());
    }
    let mut child = Command::new("python3")
        .arg(script)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/test installs what the tests need)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("validate.py");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(2), "hl7apy is missing:\n{report}");
    assert!(
        out.status.success(),
        "validate.py refused:\n{report}\n{input}"
    );
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

#[test]
fn a_known_mrn_files_observations_referencing_the_patient_and_hl7_carries_the_name() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    let id = create_patient(&m, "MRN-LOOK-1001", "Lovelacetest", "Adatest", "1961-04-12");
    let d = rig.start(&m.base_url(), "hold");

    let r = rig.scan(&d, "MRN-LOOK-1001", |r| r["verified"] == "record");
    assert_eq!(r["name"], "Adatest Lovelacetest", "{r}");
    assert_eq!(r["birth_date"], "1961-04-12", "{r}");
    assert!(r["last_refusal"].is_null(), "{r}");
    let open = room(&d, false).expect("status without token");
    assert_eq!(open["verified"], "record");
    assert!(
        open.get("name").is_none() && open.get("birth_date").is_none(),
        "an unauthenticated status shows no name: {open}"
    );
    assert!(open["patient"].is_string(), "the masked tag stays: {open}");

    rig.frames(3);
    wait_until(
        Duration::from_secs(30),
        || observations(&m).len() >= 6,
        || format!("{} Observations\n{}", observations(&m).len(), d.log()),
    );
    let obs = observations(&m);
    assert_eq!(obs.len(), 6);
    for o in &obs {
        assert_eq!(o["subject"]["reference"], format!("Patient/{id}"), "{o}");
        assert_eq!(o["subject"]["identifier"]["value"], "MRN-LOOK-1001", "{o}");
        assert_eq!(o["subject"]["identifier"]["system"], SYSTEM, "{o}");
    }
    assert_eq!(m.stats()["invalid"], 0, "{}", m.log());

    // The same readings through the HL7 outbox: PID-5 is the record's name, PID-7 its birth date.
    wait_until(
        Duration::from_secs(15),
        || hl7_text(&rig.hl7_dir()).matches("MSH|").count() >= 6,
        || format!("HL7 outbox: {}", hl7_text(&rig.hl7_dir())),
    );
    assert_hl7_valid(
        &hl7_text(&rig.hl7_dir()),
        &[
            "PID-3.1=MRN-LOOK-1001",
            "PID-5.1=Lovelacetest",
            "PID-5.2=Adatest",
            "PID-5.7=L",
            "PID-7=19610412",
        ],
    );
    assert_log_clean(&d, &["MRN-LOOK-1001", "Lovelacetest", "Adatest", "1961"]);
}

#[test]
fn an_unknown_mrn_is_refused_and_two_patients_with_one_mrn_are_ambiguous() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    create_patient(&m, "MRN-TWIN-7", "Twinone", "Kim", "1990-01-01");
    create_patient(&m, "MRN-TWIN-7", "Twintwo", "Kit", "1990-01-01");
    let d = rig.start(&m.base_url(), "hold");

    let r = rig.scan(&d, "MRN-NOBODY-42", |r| !r["last_refusal"].is_null());
    assert_eq!(r["last_refusal"]["reason"], "not_found", "{r}");
    assert_eq!(r["verified"], "none", "{r}");
    assert!(r["patient"].is_null(), "{r}");
    rig.frames(2);
    wait_until(
        Duration::from_secs(15),
        || held(&d).len() >= 4,
        || format!("held: {:?}\n{}", held(&d), d.log()),
    );
    for h in held(&d) {
        let flags = h["reading"]["flags"].to_string();
        assert!(flags.contains("patient_unknown"), "{h}");
        assert!(h["reading"]["patient"].is_null(), "{h}");
    }
    assert!(
        d.log().contains("not_found"),
        "the log says why:\n{}",
        d.log()
    );

    let r = rig.scan(&d, "MRN-TWIN-7", |r| {
        r["last_refusal"]["reason"] == "ambiguous"
    });
    assert!(r["patient"].is_null(), "{r}");
    assert_eq!(r["verified"], "none");
    assert!(d.log().contains("ambiguous"), "{}", d.log());

    // Through the API: refused with 409, and the answer does not quote the identifier.
    let (st, body) = http(
        &d.admin_addr(),
        "PUT",
        "/api/rooms/exam-1/patient",
        &[AUTH],
        &format!(r#"{{"id":"MRN-API-404","system":"{SYSTEM}","by":"ma"}}"#),
    );
    assert_eq!(st, 409, "{body}");
    assert!(!body.contains("MRN-API-404"), "{body}");
    assert_eq!(
        room(&d, true).unwrap()["last_refusal"]["reason"],
        "not_found"
    );

    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(observations(&m).len(), 0, "nothing filed");
    let refused: Vec<String> = audit_events(&d)
        .iter()
        .filter(|e| e["event"] == "context_refused")
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert_eq!(refused, ["not_found", "ambiguous", "not_found"]);
    assert_log_clean(
        &d,
        &[
            "MRN-NOBODY-42",
            "MRN-TWIN-7",
            "MRN-API-404",
            "Twinone",
            "Twintwo",
        ],
    );
}

#[test]
fn a_down_record_system_holds_the_readings_under_hold() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    create_patient(&m, "MRN-DOWN-5", "Downtest", "Dana", "1975-05-05");
    let gate = Gate::start(m.port);
    let d = rig.start(&gate.base_url(), "hold");

    let r = rig.scan(&d, "MRN-DOWN-5", |r| !r["last_refusal"].is_null());
    assert_eq!(r["last_refusal"]["reason"], "unavailable", "{r}");
    rig.frames(2);
    wait_until(
        Duration::from_secs(15),
        || held(&d).len() >= 4,
        || format!("held: {:?}\n{}", held(&d), d.log()),
    );
    gate.open.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(observations(&m).len(), 0, "held readings are not filed");
    let fallbacks: Vec<Value> = audit_events(&d)
        .into_iter()
        .filter(|e| e["event"] == "lookup_fallback")
        .collect();
    assert_eq!(
        fallbacks.len(),
        4,
        "one audit entry per reading: {fallbacks:?}"
    );
    assert!(
        fallbacks.iter().all(|e| e["choice"] == "hold"),
        "{fallbacks:?}"
    );
    assert_log_clean(&d, &["MRN-DOWN-5", "Downtest"]);
}

#[test]
fn a_down_record_system_attaches_by_identifier_with_the_flag_under_identifier() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    create_patient(&m, "MRN-DOWN-6", "Downtest", "Dora", "1975-05-06");
    let gate = Gate::start(m.port);
    let d = rig.start(&gate.base_url(), "identifier");

    let r = rig.scan(&d, "MRN-DOWN-6", |r| r["verified"] == "identifier_only");
    assert!(r["last_refusal"].is_null(), "{r}");
    assert!(r.get("name").is_none(), "no record, no name: {r}");
    rig.frames(2);
    // Queued for the record system while it is down; filed once it answers.
    std::thread::sleep(Duration::from_secs(1));
    gate.open.store(true, Ordering::SeqCst);
    wait_until(
        Duration::from_secs(40),
        || observations(&m).len() >= 4,
        || format!("{} Observations\n{}", observations(&m).len(), d.log()),
    );
    let obs = observations(&m);
    assert_eq!(obs.len(), 4);
    for o in &obs {
        assert!(o["subject"]["reference"].is_null(), "{o}");
        assert_eq!(o["subject"]["identifier"]["value"], "MRN-DOWN-6", "{o}");
        assert!(
            o["note"].to_string().contains("[patient_unverified]"),
            "{o}"
        );
    }
    let fallbacks: Vec<Value> = audit_events(&d)
        .into_iter()
        .filter(|e| e["event"] == "lookup_fallback")
        .collect();
    assert_eq!(
        fallbacks.len(),
        4,
        "one audit entry per reading: {fallbacks:?}"
    );
    assert!(
        fallbacks.iter().all(|e| e["choice"] == "identifier"),
        "{fallbacks:?}"
    );
    assert!(held(&d).is_empty());
    assert_log_clean(&d, &["MRN-DOWN-6", "Downtest"]);
}

/// The review list through the API.
fn review_list(d: &Daemon) -> Vec<Value> {
    let (st, body) = http(&d.admin_addr(), "GET", "/api/review", &[AUTH], "");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn in_review_mode_medplum_gets_nothing_until_confirmed_and_each_confirmed_reading_once() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    let id = create_patient(&m, "MRN-REV-2002", "Reviewtest", "Bea", "1975-09-30");
    let d = rig.start_with(&m.base_url(), "hold", true);
    rig.scan(&d, "MRN-REV-2002", |r| r["verified"] == "record");

    // Three frames: six readings, all on the review list, none at the record system.
    rig.frames(3);
    let t0 = Instant::now();
    while review_list(&d).len() < 6 && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = review_list(&d);
    assert_eq!(list.len(), 6, "{list:?}\n{}", d.log());
    for item in &list {
        assert_eq!(item["room"], "exam-1", "{item}");
        assert!(item["id"].is_string() && item["kind"].is_string(), "{item}");
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        observations(&m).len(),
        0,
        "nothing is filed before a confirmation"
    );

    let by = r#"{"by":"Bea MA"}"#;
    let ids: Vec<String> = list
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect();
    // One confirmed: exactly one Observation, referencing the record's Patient.
    let confirm = format!("/api/review/{}/confirm", ids[0]);
    let (st, body) = http(&d.admin_addr(), "POST", &confirm, &[AUTH], by);
    assert_eq!(st, 200, "{body}");
    wait_until(
        Duration::from_secs(20),
        || !observations(&m).is_empty(),
        || format!("no Observation after a confirmation\n{}", d.log()),
    );
    // A second confirm of the same reading files nothing.
    assert_eq!(http(&d.admin_addr(), "POST", &confirm, &[AUTH], by).0, 404);
    // One rejected: never filed.
    let reject = format!("/api/review/{}/reject", ids[1]);
    let (st, body) = http(&d.admin_addr(), "POST", &reject, &[AUTH], by);
    assert_eq!(st, 200, "{body}");
    // The rest of the room at once.
    let (st, body) = http(
        &d.admin_addr(),
        "POST",
        "/api/review/rooms/exam-1/confirm",
        &[AUTH],
        by,
    );
    assert_eq!(st, 200, "{body}");
    wait_until(
        Duration::from_secs(20),
        || observations(&m).len() >= 5,
        || format!("{} Observations\n{}", observations(&m).len(), d.log()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let obs = observations(&m);
    assert_eq!(obs.len(), 5, "five confirmed, one rejected: {obs:?}");
    let mut identifiers: Vec<String> = obs
        .iter()
        .map(|o| {
            o["identifier"][0]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    identifiers.sort();
    identifiers.dedup();
    assert_eq!(
        identifiers.len(),
        5,
        "each confirmed reading once: {identifiers:?}"
    );
    let rejected = format!("urn:uuid:{}", ids[1]);
    assert!(
        !identifiers.contains(&rejected),
        "the rejected reading was filed"
    );
    for o in &obs {
        assert_eq!(o["subject"]["reference"], format!("Patient/{id}"), "{o}");
    }
    assert!(review_list(&d).is_empty());
    assert_eq!(m.stats()["invalid"], 0, "{}", m.log());
    assert_log_clean(&d, &["MRN-REV-2002", "Reviewtest"]);
}
