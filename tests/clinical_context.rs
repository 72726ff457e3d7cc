//! Never the wrong patient, through the real binary: a scan is valid `context_ttl` after the
//! scan or an MA's confirmation however chatty the devices are; a reading whose device clock
//! is fast, or that was measured before a scan and arrives after it, is held as ambiguous; a
//! multi-user cuff's or scale's user reading goes to the room's patient only when the context
//! maps that user.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{http, outbox_lines, wait_outbox, Admin, Daemon, DaemonBuilder, Device, Pty, AUTH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.999";

/// A config in hold mode with a wristband scanner and one more device in `exam-1`.
fn config(
    tmp: &Path,
    patient: &str,
    daemon_extra: &str,
    scanner: &Pty,
    (driver, dev, options): (&str, &Pty, &str),
) -> PathBuf {
    DaemonBuilder::new(tmp)
        .admin(Admin::Token)
        .daemon(daemon_extra)
        .patient_mode("hold")
        .patient(patient)
        .device(
            Device::serial("scanner1", "barcode", "exam-1", &scanner.path)
                .options(&format!("system = {SYSTEM:?}")),
        )
        .device(Device::serial("dev1", driver, "exam-1", &dev.path).options(options))
        .outbox("reading")
        .write()
}

fn start(cfg: &Path, tmp: &Path) -> (Daemon, String) {
    let d = Daemon::start(cfg, &tmp.join("log"));
    let addr = d.admin_addr();
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    (d, addr)
}

fn get(addr: &str, path: &str) -> Value {
    let (st, body) = http(addr, "GET", path, &[AUTH], "");
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[track_caller]
fn wait_json(addr: &str, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get(addr, path);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < until, "{path} never matched; last: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `exam-1`'s entry in `/api/status`.
fn room(addr: &str) -> Value {
    get(addr, "/api/status")["rooms"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["room"] == "exam-1").cloned())
        .unwrap_or(Value::Null)
}

/// Scans `mrn` and waits until `exam-1` shows its (masked) patient.
fn scan(addr: &str, scanner: &Pty, mrn: &str) {
    let before = room(addr)["patient"].clone();
    scanner.send(format!("{mrn}\r").as_bytes());
    wait_json(addr, "/api/status", |v| {
        v["rooms"].as_array().is_some_and(|r| {
            r.iter().any(|x| {
                x["room"] == "exam-1" && x["patient"].is_string() && x["patient"] != before
            })
        })
    });
}

/// The first value of a reading as a number (decimals are written as strings or numbers).
fn first_value(r: &Value) -> f64 {
    let v = &r["values"][0]["value"];
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn flags(r: &Value) -> Vec<String> {
    r["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The held readings of `kind` by their first value.
fn held(addr: &str, kind: &str) -> Vec<(f64, Value)> {
    get(addr, "/api/held")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reading"].clone())
        .filter(|r| r["kind"] == kind)
        .map(|r| (first_value(&r), r))
        .collect()
}

#[track_caller]
fn wait_held(addr: &str, kind: &str, value: f64) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((_, r)) = held(addr, kind).into_iter().find(|(v, _)| *v == value) {
            return r;
        }
        assert!(
            Instant::now() < until,
            "no held {kind} {value}; held: {}",
            get(addr, "/api/held")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The delivered reading of `kind` with first value `value`.
#[track_caller]
fn wait_delivered(outbox: &Path, kind: &str, value: f64) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = outbox_lines(outbox)
            .into_iter()
            .find(|r| r["kind"] == kind && first_value(r) == value)
        {
            return r;
        }
        assert!(
            Instant::now() < until,
            "no delivered {kind} {value}; outbox: {:?}",
            outbox_lines(outbox)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

fn audit_events(addr: &str) -> Vec<String> {
    get(addr, "/api/audit?order=oldest")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_chatty_oximeter_does_not_keep_a_scan_alive_and_a_confirmation_renews_it() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let (scanner, ox) = (Pty::new(), Pty::new());
    let cfg = config(
        tmp.path(),
        "context_ttl = \"3s\"",
        "",
        &scanner,
        ("nonin-ascii", &ox, "report = \"every\""),
    );
    let (d, addr) = start(&cfg, tmp.path());

    // One reading a second from just after the scan: SpO2 90, 91, ... 96.
    scan(&addr, &scanner, "MRN-A1");
    let t0 = Instant::now();
    // Checked after the readings (the behaviour first).
    let ctx = room(&addr);
    let page = http(&addr, "GET", "/", &[AUTH], "").1;
    for i in 0..7u32 {
        sleep_until(t0 + Duration::from_millis(500 + 1000 * u64::from(i)));
        ox.send(format!("SPO2={:03} HR=070\r\n", 90 + i).as_bytes());
    }
    // Sent within 3 s of the scan: charted to the scanned patient.
    for v in [90.0, 91.0] {
        let r = wait_delivered(&outbox, "spo2", v);
        assert_eq!(r["patient"]["id"], "MRN-A1", "{r}");
    }
    // Sent 3.5 s and more after it: held, however many readings came in between.
    for v in [93.0, 94.0, 95.0, 96.0] {
        let r = wait_held(&addr, "spo2", v);
        assert!(r["patient"].is_null(), "{r}");
    }
    assert!(
        !outbox_lines(&outbox)
            .iter()
            .any(|r| r["kind"] == "spo2" && first_value(r) >= 93.0),
        "a reading after the scan's ttl was charted: {:?}",
        outbox_lines(&outbox)
    );
    // Right after the scan the room showed its time left and a confirm form.
    let left = ctx["remaining_seconds"]
        .as_u64()
        .expect("remaining_seconds");
    assert!(left <= 3, "{ctx}");
    assert!(ctx["expires_at"].is_string(), "{ctx}");
    assert!(
        page.contains("action=\"/rooms/exam-1/confirm\"") && page.contains("Still this patient"),
        "{page}"
    );
    assert!(page.contains("class=\"remaining\""), "{page}");
    wait_json(&addr, "/api/status", |v| {
        v["rooms"][0]["patient"].is_null() && v["rooms"][0]["remaining_seconds"].is_null()
    });
    assert!(audit_events(&addr).contains(&"context_expired".to_string()));
    // An expired context cannot be confirmed: the patient must be scanned again.
    let (st, body) = http(
        &addr,
        "POST",
        "/api/rooms/exam-1/patient/confirm",
        &[AUTH],
        r#"{"by":"ma-jo"}"#,
    );
    assert_eq!(st, 404, "{body}");

    // A new scan, confirmed by the MA 2 s later: valid 3 s from the confirmation.
    scan(&addr, &scanner, "MRN-B2");
    let t1 = Instant::now();
    sleep_until(t1 + Duration::from_secs(2));
    let (st, body) = http(
        &addr,
        "POST",
        "/api/rooms/exam-1/patient/confirm",
        &[AUTH],
        r#"{"by":"ma-jo"}"#,
    );
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["context"]["remaining_seconds"].as_u64() >= Some(2), "{v}");
    let (st, body) = http(
        &addr,
        "POST",
        "/api/rooms/exam-1/patient/confirm",
        &[AUTH],
        r#"{"by":""}"#,
    );
    assert_eq!(st, 400, "who confirms is required: {body}");
    // 4 s after the scan, 2 s after the confirmation: still this patient.
    sleep_until(t1 + Duration::from_secs(4));
    ox.send(b"SPO2=085 HR=070\r\n");
    let r = wait_delivered(&outbox, "spo2", 85.0);
    assert_eq!(r["patient"]["id"], "MRN-B2", "{r}");
    // More than 3 s after the confirmation: held.
    sleep_until(t1 + Duration::from_millis(6500));
    ox.send(b"SPO2=086 HR=070\r\n");
    let r = wait_held(&addr, "spo2", 86.0);
    assert!(r["patient"].is_null(), "{r}");

    // The status page's "Still this patient" form renews a valid context too.
    scan(&addr, &scanner, "MRN-C3");
    let (st, _) = http(&addr, "POST", "/rooms/exam-1/confirm", &[AUTH], "by=Ann+MA");
    assert_eq!(st, 303);
    let audit = get(&addr, "/api/audit?order=oldest");
    let confirmed: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "context_confirmed")
        .collect();
    assert_eq!(confirmed.len(), 2, "{audit}");
    assert_eq!(confirmed[0]["by"], "ma-jo");
    assert_eq!(confirmed[0]["patient"]["id"], "MRN-B2");
    assert_eq!(confirmed[1]["by"], "Ann MA");
    assert!(!d.log().contains("MRN-"), "an identifier in the log");
    assert!(d.stop().0.success());
}

/// A ble-gatt JSON envelope line of a 0x2A35 blood pressure (mmHg, no time stamp) with
/// `systolic` / 80 / 93, the gateway's receipt time `rx` if any, and a user index if any.
fn bp_line(systolic: u8, rx: Option<OffsetDateTime>, user: Option<u8>) -> Vec<u8> {
    let flags = if user.is_some() { 0x08 } else { 0x00 };
    let mut hex = format!("{flags:02X} {systolic:02X}00 5000 5D00");
    if let Some(u) = user {
        hex.push_str(&format!(" {u:02X}"));
    }
    let rx = rx
        .map(|t| format!(",\"rx_time\":\"{}\"", t.format(&Rfc3339).unwrap()))
        .unwrap_or_default();
    format!("{{\"chr\":\"2A35\",\"data_hex\":\"{hex}\"{rx}}}\n").into_bytes()
}

#[test]
fn a_fast_device_clock_or_a_reading_from_before_a_scan_is_held_as_ambiguous() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let (scanner, cuff) = (Pty::new(), Pty::new());
    let cfg = config(
        tmp.path(),
        "",
        "clock_skew_tolerance = \"5s\"",
        &scanner,
        ("ble-gatt", &cuff, "payload = \"json\""),
    );
    let (d, addr) = start(&cfg, tmp.path());
    let now = OffsetDateTime::now_utc;
    let secs = time::Duration::seconds;

    // Measured 2 s before the first scan (the cuff's memory), received after it: it may be
    // the previous, unscanned patient's.
    let before_scan = now() - secs(2);
    scan(&addr, &scanner, "MRN-A1");
    let t_a = Instant::now();
    cuff.send(&bp_line(121, Some(before_scan), None));
    let r = wait_held(&addr, "blood_pressure", 121.0);
    assert!(flags(&r).contains(&"patient_ambiguous".to_string()), "{r}");

    // Measured well after the scan (more than the tolerance): the scanned patient's.
    sleep_until(t_a + Duration::from_secs(6));
    cuff.send(&bp_line(122, Some(now()), None));
    let r = wait_delivered(&outbox, "blood_pressure", 122.0);
    assert_eq!(r["patient"]["id"], "MRN-A1", "{r}");
    assert!(flags(&r).is_empty(), "{r}");

    // The next patient is scanned; the cuff's clock is 30 s fast, so its reading seems
    // measured after the scan, but may have been the previous patient's.
    scan(&addr, &scanner, "MRN-B2");
    cuff.send(&bp_line(123, Some(now() + secs(30)), None));
    let r = wait_held(&addr, "blood_pressure", 123.0);
    let f = flags(&r);
    assert!(
        f.contains(&"clock_untrusted".to_string()) && f.contains(&"patient_ambiguous".to_string()),
        "{r}"
    );
    assert_eq!(r["observed_at"], r["received_at"], "{r}");
    assert!(
        !outbox_lines(&outbox)
            .iter()
            .any(|r| r["patient"]["id"] == "MRN-B2"),
        "{:?}",
        outbox_lines(&outbox)
    );
    let lines = wait_outbox(&outbox, 1, Duration::from_secs(1));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(d.stop().0.success());
}

#[test]
fn a_multi_user_cuff_or_scale_reading_needs_its_user_mapped_to_the_rooms_patient() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let (scanner, gw) = (Pty::new(), Pty::new());
    let cfg = config(
        tmp.path(),
        "",
        "",
        &scanner,
        ("ble-gatt", &gw, "payload = \"json\""),
    );
    let (d, addr) = start(&cfg, tmp.path());

    // A wristband scan maps no device user: user 2's values are held.
    scan(&addr, &scanner, "MRN-A1");
    gw.send(&bp_line(121, None, Some(2)));
    // 0x2A9D, kg, user 2: 72.5 kg.
    gw.send(b"{\"chr\":\"2A9D\",\"data_hex\":\"04 A438 02\"}\n");
    let r = wait_held(&addr, "blood_pressure", 121.0);
    assert!(
        flags(&r).contains(&"patient_user_unmapped".to_string()),
        "{r}"
    );
    let r = wait_held(&addr, "body_weight", 72.5);
    assert!(
        flags(&r).contains(&"patient_user_unmapped".to_string()),
        "{r}"
    );

    // The MA maps user 2 to the patient: user 2 is charted, user 3 is still held, and a
    // value without a user (a single-user device) goes to the patient.
    let body = format!(r#"{{"id":"MRN-A1","system":"{SYSTEM}","by":"ma-jo","user":2}}"#);
    let (st, b) = http(&addr, "PUT", "/api/rooms/exam-1/patient", &[AUTH], &body);
    assert_eq!(st, 200, "{b}");
    assert_eq!(room(&addr)["user"], 2);
    std::thread::sleep(Duration::from_millis(50));
    gw.send(&bp_line(122, None, Some(2)));
    gw.send(b"{\"chr\":\"2A9D\",\"data_hex\":\"04 A838 02\"}\n");
    gw.send(&bp_line(123, None, Some(3)));
    gw.send(&bp_line(124, None, None));
    for (kind, v) in [
        ("blood_pressure", 122.0),
        ("body_weight", 72.52),
        ("blood_pressure", 124.0),
    ] {
        let r = wait_delivered(&outbox, kind, v);
        assert_eq!(r["patient"]["id"], "MRN-A1", "{r}");
    }
    let r = wait_held(&addr, "blood_pressure", 123.0);
    assert!(
        flags(&r).contains(&"patient_user_unmapped".to_string()),
        "{r}"
    );
    let (st, b) = http(
        &addr,
        "PUT",
        "/api/rooms/exam-1/patient",
        &[AUTH],
        &format!(r#"{{"id":"MRN-A1","system":"{SYSTEM}","by":"ma-jo","user":255}}"#),
    );
    assert_eq!(st, 400, "255 is the devices' unknown user: {b}");
    let audit = get(&addr, "/api/audit?order=oldest");
    let mapped: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "context_user_mapped")
        .collect();
    assert_eq!(mapped.len(), 1, "{audit}");
    assert_eq!(mapped[0]["user"], 2);
    assert_eq!(mapped[0]["by"], "ma-jo");
    assert!(d.stop().0.success());
}
