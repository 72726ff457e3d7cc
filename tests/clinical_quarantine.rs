//! A value past a hard plausibility limit through the real binary: it is quarantined, not sent;
//! no dead-letter retry (CLI or API) sends it; only a named person's release does, once, with
//! its `rejected:` flag, and the audit trail says who.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::{http, outbox_lines, wait_outbox, Admin, Daemon, DaemonBuilder, Device, Pty, AUTH};

fn bp(systolic: u32, at: &str) -> String {
    format!(
        r#"{{"kind":"blood_pressure","device_time":"{at}","values":[{{"name":"systolic","value":{systolic},"unit":"mm[Hg]"}},{{"name":"diastolic","value":79,"unit":"mm[Hg]"}}]}}"#
    )
}

fn vitalsd(cfg: &Path, args: &[&str]) -> Output {
    support::vitalsd_with_config(cfg, args)
}

fn text(o: &Output) -> String {
    support::output_text(o)
}

/// A config with the json device `bridge` in `exam-2` on `serial` and the file sink `outbox`
/// writing canonical readings.
fn config(dir: &Path, serial: &Path, admin: &str, mode: &str) -> std::path::PathBuf {
    let admin = match admin {
        "" => Admin::Off,
        "127.0.0.1:0" => Admin::Token,
        other => panic!("no test listens on {other}"),
    };
    DaemonBuilder::new(dir)
        .admin(admin)
        .patient_mode(mode)
        .device(Device::serial("bridge", "json", "exam-2", serial))
        .outbox("reading")
        .write()
}

fn systolic(line: &serde_json::Value) -> Option<i64> {
    line["values"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == "systolic")?["value"]
        .as_i64()
}

fn start(cfg: &Path, log: &Path) -> Daemon {
    let d = Daemon::start(cfg, log);
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    d
}

#[test]
fn a_rejected_value_is_quarantined_survives_retry_all_and_is_sent_once_when_released() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let dev = Pty::new();
    let cfg = config(tmp.path(), &dev.path, "", "location");
    let d = start(&cfg, &tmp.path().join("log1"));
    dev.send(format!("{}\n", bp(410, "2026-11-27T10:00:00Z")).as_bytes());
    dev.send(format!("{}\n", bp(121, "2026-11-27T10:01:00Z")).as_bytes());
    let lines = wait_outbox(&outbox, 1, Duration::from_secs(10));
    d.wait_log("hard plausibility limit", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(systolic(&outbox_lines(&outbox)[0]), Some(121));
    let (status, _) = d.stop();
    assert!(status.success());

    // The recovery steps for refused readings do not touch it.
    let retry = vitalsd(&cfg, &["queue", "retry", "--sink", "outbox"]);
    assert!(retry.status.success(), "{}", text(&retry));
    assert!(text(&retry).contains("0 entries moved"), "{}", text(&retry));
    let dead = vitalsd(&cfg, &["queue", "dead"]);
    assert!(
        String::from_utf8_lossy(&dead.stdout).trim().is_empty(),
        "{}",
        text(&dead)
    );

    let list = vitalsd(&cfg, &["queue", "quarantine"]);
    assert!(list.status.success(), "{}", text(&list));
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{}", text(&list));
    let e = &entries[0];
    assert_eq!(e["device"], "bridge");
    assert_eq!(e["room"], "exam-2");
    assert_eq!(e["kind"], "blood_pressure");
    assert!(
        e["reason"].as_str().unwrap().starts_with("systolic 410"),
        "{e}"
    );
    assert!(e["quarantined_at"].is_string(), "{e}");
    let id = e["id"].as_str().unwrap().to_string();

    let stats = vitalsd(&cfg, &["queue", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["quarantined"], 1, "{stats}");

    // A restart after the retry sends nothing new.
    let d = start(&cfg, &tmp.path().join("log2"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(outbox_lines(&outbox).len(), 1);
    let (status, _) = d.stop();
    assert!(status.success());

    // A release needs a name and a reason.
    let no_by = vitalsd(&cfg, &["queue", "release", &id, "--reason", "checked"]);
    assert!(!no_by.status.success());
    let blank = vitalsd(
        &cfg,
        &["queue", "release", &id, "--by", " ", "--reason", "checked"],
    );
    assert!(!blank.status.success());
    assert!(text(&blank).contains("--by"), "{}", text(&blank));
    let why = "cuff re-checked on the patient, reading confirmed";
    let ok = vitalsd(
        &cfg,
        &["queue", "release", &id, "--by", "dr-lee", "--reason", why],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let again = vitalsd(
        &cfg,
        &["queue", "release", &id, "--by", "dr-lee", "--reason", why],
    );
    assert!(!again.status.success(), "{}", text(&again));

    let d = start(&cfg, &tmp.path().join("log3"));
    let lines = wait_outbox(&outbox, 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    let lines_after = outbox_lines(&outbox);
    assert_eq!(lines_after.len(), 2, "sent more than once: {lines_after:?}");
    let released = lines
        .iter()
        .find(|l| systolic(l) == Some(410))
        .expect("the released reading");
    assert_eq!(released["id"], id.as_str());
    let flags: Vec<&str> = released["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        flags.iter().any(|f| f.starts_with("rejected:systolic 410")),
        "{flags:?}"
    );
    let (status, _) = d.stop();
    assert!(status.success());
    assert!(
        !d_log_has_value(&tmp.path().join("log1")),
        "value in the log"
    );

    let audit = vitalsd(&cfg, &["audit"]);
    let released: Vec<serde_json::Value> = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "quarantine_released")
        .collect();
    assert_eq!(released.len(), 1, "{}", text(&audit));
    assert_eq!(released[0]["reading"], id.as_str());
    assert_eq!(released[0]["by"], "dr-lee");
    assert_eq!(released[0]["reason"], why);
}

/// Whether a daemon log quotes the rejected value (the warning must give a count only).
fn d_log_has_value(log: &Path) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("systolic 410")
}

#[test]
fn the_api_lists_releases_with_a_patient_in_hold_mode_and_retry_cannot_send_it() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let dev = Pty::new();
    let cfg = config(tmp.path(), &dev.path, "127.0.0.1:0", "hold");
    let d = start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    dev.send(format!("{}\n", bp(410, "2026-11-27T10:00:00Z")).as_bytes());
    d.wait_log("hard plausibility limit", Duration::from_secs(10));

    let (code, body) = http(&addr, "GET", "/api/quarantine", &[AUTH], "");
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{body}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["reading"]["kind"], "blood_pressure");

    let metrics = http(&addr, "GET", "/metrics", &[], "").1;
    assert!(
        metrics.contains("vitalsd_quarantined_readings 1"),
        "{metrics}"
    );
    let page = http(&addr, "GET", "/", &[AUTH], "").1;
    assert!(
        page.contains("<span id=\"quarantine-count\">1</span>"),
        "{page}"
    );
    assert!(
        page.contains(&format!("data-quarantined=\"{id}\"")),
        "{page}"
    );
    assert!(!page.contains("410 mm"), "the value on the status page");

    // The dead-letter retry does not know it.
    let (code, _) = http(
        &addr,
        "POST",
        &format!("/api/dead/outbox/{id}/retry"),
        &[AUTH],
        "",
    );
    assert_eq!(code, 404);

    let path = format!("/api/quarantine/{id}/release");
    let (code, body) = http(&addr, "POST", &path, &[AUTH], r#"{"by":"dr-lee"}"#);
    assert_eq!(code, 400, "{body}");
    let (code, body) = http(&addr, "POST", &path, &[AUTH], r#"{"by":"","reason":"ok"}"#);
    assert_eq!(code, 400, "{body}");
    // No patient on the reading in hold mode: refused, and nothing moved.
    let (code, body) = http(
        &addr,
        "POST",
        &path,
        &[AUTH],
        r#"{"by":"dr-lee","reason":"re-measured"}"#,
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("patient"), "{body}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(outbox_lines(&outbox).is_empty());

    let (code, body) = http(
        &addr,
        "POST",
        &path,
        &[AUTH],
        r#"{"by":"dr-lee","reason":"re-measured","patient":{"id":"MRN0012345","system":"urn:oid:1.2.3"}}"#,
    );
    assert_eq!(code, 200, "{body}");
    let lines = wait_outbox(&outbox, 1, Duration::from_secs(10));
    assert_eq!(lines[0]["patient"]["id"], "MRN0012345");
    assert_eq!(systolic(&lines[0]), Some(410));
    let (code, _) = http(&addr, "POST", &path, &[AUTH], r#"{"by":"x","reason":"y"}"#);
    assert_eq!(code, 404);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(outbox_lines(&outbox).len(), 1);

    let metrics = http(&addr, "GET", "/metrics", &[], "").1;
    assert!(
        metrics.contains("vitalsd_quarantined_readings 0"),
        "{metrics}"
    );
    let audit: serde_json::Value =
        serde_json::from_str(&http(&addr, "GET", "/api/audit", &[AUTH], "").1).unwrap();
    let rel = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "quarantine_released")
        .expect("release audited");
    assert_eq!(rel["by"], "dr-lee");
    assert_eq!(rel["reading"], id.as_str());
    assert_eq!(rel["patient"]["id"], "MRN0012345");
    assert!(!d.log().contains("MRN0012345"), "patient id in the log");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn a_discard_through_the_api_is_audited_and_nothing_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let dev = Pty::new();
    let cfg = config(tmp.path(), &dev.path, "127.0.0.1:0", "location");
    let d = start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    dev.send(format!("{}\n", bp(410, "2026-11-27T10:00:00Z")).as_bytes());
    d.wait_log("hard plausibility limit", Duration::from_secs(10));
    let list: serde_json::Value =
        serde_json::from_str(&http(&addr, "GET", "/api/quarantine", &[AUTH], "").1).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/quarantine/{id}/discard");
    let (code, _) = http(&addr, "POST", &path, &[AUTH], r#"{"by":"ma-jo"}"#);
    assert_eq!(code, 400);
    let (code, body) = http(
        &addr,
        "POST",
        &path,
        &[AUTH],
        r#"{"by":"ma-jo","reason":"cuff fault"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let list = http(&addr, "GET", "/api/quarantine", &[AUTH], "").1;
    assert_eq!(list.trim(), "[]");
    std::thread::sleep(Duration::from_millis(500));
    assert!(outbox_lines(&outbox).is_empty());
    let audit = http(&addr, "GET", "/api/audit", &[AUTH], "").1;
    assert!(
        audit.contains("\"event\":\"quarantine_discarded\""),
        "{audit}"
    );
    assert!(audit.contains("\"by\":\"ma-jo\""), "{audit}");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn with_a_token_file_the_quarantine_list_needs_the_token_and_the_page_shows_no_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Pty::new();
    let cfg = config(tmp.path(), &dev.path, "127.0.0.1:0", "location");
    let d = start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    dev.send(format!("{}\n", bp(410, "2026-11-27T10:00:00Z")).as_bytes());
    d.wait_log("hard plausibility limit", Duration::from_secs(10));
    let (code, body) = http(&addr, "GET", "/api/quarantine", &[], "");
    assert_eq!(code, 401, "{body}");
    let (code, body) = http(&addr, "GET", "/api/quarantine", &[AUTH], "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("blood_pressure"), "{body}");
    let page = http(&addr, "GET", "/", &[], "").1;
    assert!(
        page.contains("<span id=\"quarantine-count\">1</span>"),
        "{page}"
    );
    assert!(!page.contains("data-quarantined"), "{page}");
    let (status, _) = d.stop();
    assert!(status.success());
}
