//! FHIR interop through the real binary: a pulse oximeter on a pseudo-terminal, a patient set
//! through the admin API, and a FHIR sink posting to record systems written by others (Medplum)
//! or behaving as real servers do (rewriting `urn:uuid:` strings, empty 2xx bodies,
//! batch-responses, answers lost after commit, a daemon killed mid-delivery). The property
//! each time: N readings → exactly N Observations on the server, nothing left pending.

#[path = "support/fhir_servers.rs"]
mod fhir_servers;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fhir_servers::{get, wait_until, Medplum, Proxy, ProxyPlan, Quirk, QuirkyServer};
use serde_json::Value as Json;
use support::{http, Admin, Daemon, DaemonBuilder, Device, Pty, Sink};

/// Oximeter frames sent per test; each is one SpO2 and one heart-rate reading.
const FRAMES: u32 = 10;
const READINGS: u64 = 2 * FRAMES as u64;

fn config(dir: &Path, pty: &Pty, bridge: &Pty, base_url: &str, batch: usize) -> PathBuf {
    DaemonBuilder::new(dir)
        .admin(Admin::Token)
        .device(
            Device::serial("ox", "nonin-ascii", "exam-1", &pty.path).options("report = \"every\""),
        )
        .device(Device::serial("bridge", "json", "exam-1", &bridge.path))
        .sink(
            Sink::fhir("ehr", base_url)
                .line(&format!("batch_size = {batch}"))
                .line("timeout = \"5s\""),
        )
        .write()
}

/// Puts a patient in exam-1 (hold mode would hold readings without one).
#[track_caller]
fn set_patient(d: &Daemon) {
    let (st, body) = http(
        &d.admin_addr(),
        "PUT",
        "/api/rooms/exam-1/patient",
        &[support::AUTH],
        r#"{"id":"MRN-4711","system":"urn:oid:2.16.840.1.113883.3.999","by":"interop-test"}"#,
    );
    assert_eq!(st, 200, "set patient: {body}");
}

fn send_frames(pty: &Pty) {
    for n in 0..FRAMES {
        pty.send(format!("SPO2={:03} HR={:03}\r\n", 90 + n % 10, 55 + n).as_bytes());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One reading of every vital-sign kind and the awkward shapes through the `json` driver: a
/// blood pressure without diastolic, one with an absent diastolic, a temperature site, device
/// and range flags. Returns how many readings were sent.
fn send_mixed(bridge: &Pty) -> u64 {
    let lines = [
        r#"{"kind":"blood_pressure","values":[{"name":"systolic","value":121,"unit":"mm[Hg]"},{"name":"diastolic","value":79,"unit":"mm[Hg]"},{"name":"mean","value":93,"unit":"mm[Hg]"}]}"#,
        r#"{"kind":"blood_pressure","values":[{"name":"systolic","value":135,"unit":"mm[Hg]"}]}"#,
        r#"{"kind":"blood_pressure","values":[{"name":"systolic","value":128,"unit":"mm[Hg]"},{"name":"diastolic","value":null,"absent":"error","unit":"mm[Hg]"}],"flags":["device:cuff_leak"]}"#,
        r#"{"kind":"blood_pressure","values":[{"name":"systolic","value":265,"unit":"mm[Hg]"},{"name":"diastolic","value":95,"unit":"mm[Hg]"}]}"#,
        r#"{"kind":"body_temperature","values":[{"name":"temperature","value":37.60,"unit":"Cel","site":"oral"}]}"#,
        r#"{"kind":"respiratory_rate","values":[{"name":"respiratory_rate","value":16,"unit":"/min"}]}"#,
        r#"{"kind":"body_weight","values":[{"name":"weight","value":72.5,"unit":"kg"}]}"#,
        r#"{"kind":"body_height","values":[{"name":"height","value":175.0,"unit":"cm"}]}"#,
        r#"{"kind":"bmi","values":[{"name":"bmi","value":23.7,"unit":"kg/m2"}]}"#,
    ];
    for l in lines {
        bridge.send(format!("{l}\n").as_bytes());
        std::thread::sleep(Duration::from_millis(20));
    }
    lines.len() as u64
}

/// `(pending, dead, held)` of sink `ehr`, `None` when the daemon does not answer.
fn sink_state(d: &Daemon) -> Option<(u64, u64, u64)> {
    let (st, body) = get(&d.admin_addr(), "/api/status");
    if st != 200 {
        return None;
    }
    let v: Json = serde_json::from_str(&body).ok()?;
    let s = v["sinks"].as_array()?.iter().find(|s| s["sink"] == "ehr")?;
    let held = v["held"].as_array().map_or(0, |h| h.len() as u64);
    Some((s["pending"].as_u64()?, s["dead"].as_u64()?, held))
}

/// Waits until `count()` is `READINGS` and the sink has nothing pending, then checks that the
/// count stays there (no late duplicate) and nothing was dead-lettered.
#[track_caller]
fn settle(d: &Daemon, what: &str, count: impl Fn() -> u64) {
    settle_n(d, what, READINGS, count);
}

#[track_caller]
fn settle_n(d: &Daemon, what: &str, expected: u64, count: impl Fn() -> u64) {
    wait_until(
        Duration::from_secs(40),
        || count() >= expected && sink_state(d).is_some_and(|(p, _, _)| p == 0),
        || {
            format!(
                "{what}: {} Observations for {expected} readings, sink (pending, dead, held) {:?}\n{}",
                count(),
                sink_state(d),
                d.log()
            )
        },
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        count(),
        expected,
        "{what}: readings sent vs Observations on the server"
    );
    assert_eq!(sink_state(d).map(|s| s.1), Some(0), "{what}: dead-lettered");
}

struct Rig {
    tmp: tempfile::TempDir,
    pty: Pty,
    bridge: Pty,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            tmp: tempfile::tempdir().expect("tmp"),
            pty: Pty::new(),
            bridge: Pty::new(),
        }
    }

    fn start(&self, base_url: &str, batch: usize, run: u32) -> Daemon {
        let cfg = config(self.tmp.path(), &self.pty, &self.bridge, base_url, batch);
        Daemon::start(&cfg, &self.tmp.path().join(format!("vitalsd-{run}.log")))
    }
}

/// Every Observation Medplum holds: identifiers untouched (`urn:uuid:` of the reading), one
/// per identifier, subject the patient, `expected` in all, none refused as invalid.
#[track_caller]
fn check_medplum_store(m: &Medplum, expected: u64) {
    let (st, body) = get(
        &format!("127.0.0.1:{}", m.port),
        "/fhir/Observation?_count=1000",
    );
    assert_eq!(st, 200, "{body}");
    let v: Json = serde_json::from_str(&body).expect("searchset");
    let entries = v["entry"].as_array().cloned().unwrap_or_default();
    let mut ids = std::collections::BTreeSet::new();
    for e in &entries {
        let o = &e["resource"];
        let id = o["identifier"][0]["value"].as_str().unwrap_or("");
        assert!(
            id.starts_with("urn:uuid:"),
            "identifier rewritten by the server: {id}"
        );
        assert!(ids.insert(id.to_string()), "two Observations with {id}");
        assert_eq!(o["subject"]["type"], "Patient");
        assert_eq!(o["status"], "final");
        // The conditional create finds it again by that identifier.
        let (st, found) = get(
            &format!("127.0.0.1:{}", m.port),
            &format!("/fhir/Observation?identifier=urn:ietf:rfc:3986|{id}"),
        );
        assert_eq!(st, 200);
        let n = serde_json::from_str::<Json>(&found).expect("search")["entry"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(n, 1, "search by identifier {id}");
    }
    assert_eq!(entries.len() as u64, expected);
    let s = m.stats();
    assert_eq!(
        s["invalid"],
        0,
        "Medplum refused invalid Observations:\n{}",
        m.log()
    );
}

#[test]
fn medplum_stores_each_reading_exactly_once_with_its_identifier_intact_and_valid() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    let d = rig.start(&m.base_url(), 4, 0);
    set_patient(&d);
    send_frames(&rig.pty);
    let expected = READINGS + send_mixed(&rig.bridge);
    settle_n(&d, "medplum", expected, || m.observations());
    check_medplum_store(&m, expected);
}

#[test]
fn medplum_after_kill_9_during_delivery_and_a_restart_still_holds_each_reading_once() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    // The answer to the 3rd transaction is held after Medplum committed it.
    let proxy = Proxy::start(
        m.port,
        ProxyPlan {
            hold: Some(2),
            ..ProxyPlan::default()
        },
    );
    let mut d = rig.start(&proxy.base_url(), 2, 0);
    set_patient(&d);
    send_frames(&rig.pty);
    wait_until(
        Duration::from_secs(20),
        || proxy.forwarded.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        || format!("3 transactions: {}", d.log()),
    );
    let committed = m.observations();
    d.child.kill().expect("kill -9");
    d.child.wait().expect("wait");
    assert!(
        committed > 0 && committed < READINGS,
        "killed mid-delivery: {committed}"
    );
    let d = rig.start(&proxy.base_url(), 2, 1);
    settle(&d, "medplum after kill -9", || m.observations());
    check_medplum_store(&m, READINGS);
}

#[test]
fn medplum_behind_a_connection_dropped_after_commit_still_holds_each_reading_once() {
    let rig = Rig::new();
    let m = Medplum::start(rig.tmp.path());
    let proxy = Proxy::start(
        m.port,
        ProxyPlan {
            drop_first: 2,
            ..ProxyPlan::default()
        },
    );
    let d = rig.start(&proxy.base_url(), 4, 0);
    set_patient(&d);
    send_frames(&rig.pty);
    settle(&d, "medplum, answers dropped", || m.observations());
    assert_eq!(proxy.dropped.load(std::sync::atomic::Ordering::SeqCst), 2);
    check_medplum_store(&m, READINGS);
}

#[test]
fn a_server_rewriting_full_urls_in_identifiers_does_not_duplicate_resent_readings() {
    let rig = Rig::new();
    let srv = QuirkyServer::start(Quirk::RewritesFullUrls);
    let proxy = Proxy::start(
        srv.port,
        ProxyPlan {
            drop_first: 2,
            ..ProxyPlan::default()
        },
    );
    let d = rig.start(&proxy.base_url(), 4, 0);
    set_patient(&d);
    send_frames(&rig.pty);
    settle(&d, "rewriting server", || u64::from(srv.created()));
    srv.with(|s| {
        assert!(
            s.by_identifier.keys().all(|k| k.contains("|urn:uuid:")),
            "an identifier was rewritten: {:?}",
            s.by_identifier.keys().collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_server_answering_2xx_with_an_empty_body_gets_each_reading_once_and_nothing_stays_queued() {
    let rig = Rig::new();
    let srv = QuirkyServer::start(Quirk::EmptyBody);
    let proxy = Proxy::start(
        srv.port,
        ProxyPlan {
            drop_first: 1,
            ..ProxyPlan::default()
        },
    );
    let d = rig.start(&proxy.base_url(), 4, 0);
    set_patient(&d);
    send_frames(&rig.pty);
    settle(&d, "empty-body server", || u64::from(srv.created()));
    // At most one transaction per reading, plus the resend of the one whose answer was
    // dropped: a 2xx is never resent.
    let sent = proxy.forwarded.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        u64::from(sent) <= READINGS + 1,
        "{sent} transactions for {READINGS} readings: 2xx answers were resent"
    );
}

#[test]
fn a_server_answering_a_batch_response_with_mixed_statuses_gets_each_reading_once() {
    let rig = Rig::new();
    let srv = QuirkyServer::start(Quirk::BatchMixed);
    let d = rig.start(&srv.base_url(), 4, 0);
    set_patient(&d);
    send_frames(&rig.pty);
    settle(&d, "batch-response server", || u64::from(srv.created()));
    srv.with(|s| {
        assert!(s.refused_entries > 0, "the server never answered 503");
        assert!(s.by_identifier.values().all(|n| *n == 1));
    });
}
