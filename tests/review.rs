//! Review before filing (`[patient] review = true`) through the real binary with a file outbox:
//! nothing is filed until a person confirms it; each confirmed reading is filed exactly once
//! (confirmed twice, with a restart in between); a rejected reading never; a room's batch;
//! the audit trail; the token.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{http, outbox_lines, set_patient, Admin, Daemon, DaemonBuilder, Device, Pty, AUTH};

fn review_config(tmp: &Path, ox: &Pty, ox2: &Pty) -> std::path::PathBuf {
    DaemonBuilder::new(tmp)
        .admin(Admin::Token)
        .patient_mode("hold")
        .patient("review = true")
        .device(Device::serial("ox", "nonin-ascii", "exam-1", &ox.path).options(EVERY))
        .device(Device::serial("ox2", "nonin-ascii", "exam-2", &ox2.path).options(EVERY))
        .outbox("reading")
        .write()
}

const EVERY: &str = r#"report = "every""#;

fn review_list(addr: &str) -> Vec<Value> {
    let (st, body) = http(addr, "GET", "/api/review", &[AUTH], "");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[track_caller]
fn wait_review(addr: &str, n: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let list = review_list(addr);
        if list.len() >= n {
            return list;
        }
        assert!(
            Instant::now() < until,
            "{} of {n} on the review list",
            list.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit(addr: &str) -> Vec<Value> {
    let (st, body) = http(addr, "GET", "/api/audit?order=oldest", &[AUTH], "");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn start(cfg: &Path, log: &Path) -> (Daemon, String) {
    let d = Daemon::start(cfg, log);
    let addr = d.admin_addr();
    (d, addr)
}

#[test]
fn nothing_is_filed_until_confirmed_and_each_confirmed_reading_is_filed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let (ox, ox2) = (Pty::new(), Pty::new());
    let cfg = review_config(tmp.path(), &ox, &ox2);
    let (d, addr) = start(&cfg, &tmp.path().join("log"));
    set_patient(&addr, "exam-1");
    set_patient(&addr, "exam-2");
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    // Two readings (SpO2, pulse) per line: exam-1 sends one line, exam-2 two.
    ox.send(b"SPO2=097 HR=072\r\n");
    ox2.send(b"SPO2=095 HR=080\r\n");
    std::thread::sleep(Duration::from_millis(200));
    ox2.send(b"SPO2=094 HR=081\r\n");
    let list = wait_review(&addr, 6);
    assert_eq!(list.len(), 6, "{list:?}");
    let first = &list[0];
    for key in [
        "id",
        "room",
        "kind",
        "values",
        "observed_at",
        "waiting_since",
    ] {
        assert!(!first[key].is_null(), "{key} missing: {first}");
    }
    assert!(first["age_seconds"].is_u64(), "{first}");
    // Nothing is filed while the readings wait, however long we look.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(outbox_lines(&outbox).is_empty(), "filed before review");
    let (_, status) = http(&addr, "GET", "/api/status", &[], "");
    assert!(status.contains("\"held\":0"), "{status}");

    // The status page: values only for a signed-in user (the token here); the count for all.
    let (_, page) = http(&addr, "GET", "/", &[AUTH], "");
    assert!(
        page.contains(r#"<span id="review-count">6</span>"#),
        "{page}"
    );
    assert_eq!(page.matches("data-review=").count(), 6, "{page}");
    assert!(page.contains("spo2 97 %"), "{page}");
    let (_, open) = http(&addr, "GET", "/", &[], "");
    assert!(
        open.contains(r#"<span id="review-count">6</span>"#),
        "{open}"
    );
    assert!(
        !open.contains("data-review=") && !open.contains("spo2 97"),
        "{open}"
    );

    // Without a token: 401 for the list, a confirm and a batch.
    let one = list
        .iter()
        .find(|r| r["room"] == "exam-1" && r["kind"] == "spo2")
        .expect("exam-1 SpO2");
    let reject = list
        .iter()
        .find(|r| r["room"] == "exam-1" && r["kind"] != "spo2")
        .expect("exam-1 pulse");
    let (one, reject) = (id_of(one), id_of(reject));
    let by = r#"{"by":"Ann MA"}"#;
    assert_eq!(http(&addr, "GET", "/api/review", &[], "").0, 401);
    let confirm = format!("/api/review/{one}/confirm");
    assert_eq!(http(&addr, "POST", &confirm, &[], by).0, 401);
    assert_eq!(
        http(&addr, "POST", "/api/review/rooms/exam-2/confirm", &[], by).0,
        401
    );
    assert_eq!(
        http(&addr, "POST", &confirm, &[AUTH], "{}").0,
        400,
        "`by` is required"
    );

    let (st, body) = http(&addr, "POST", &confirm, &[AUTH], by);
    assert_eq!(st, 200, "{body}");
    let lines = support::wait_outbox(&outbox, 1, Duration::from_secs(10));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"].as_str(), Some(one.as_str()));
    let (st, body) = http(
        &addr,
        "POST",
        &format!("/api/review/{reject}/reject"),
        &[AUTH],
        r#"{"by":"Ann MA","reason":"probe off"}"#,
    );
    assert_eq!(st, 200, "{body}");
    // A second confirm (and a confirm of the rejected one) files nothing: 404.
    assert_eq!(http(&addr, "POST", &confirm, &[AUTH], by).0, 404);
    let again = format!("/api/review/{reject}/confirm");
    assert_eq!(http(&addr, "POST", &again, &[AUTH], by).0, 404);

    // Restart: the review list is kept, and confirming again still files nothing twice.
    let (status, _) = d.stop();
    assert!(status.success());
    let (d, addr) = start(&cfg, &tmp.path().join("log2"));
    let left = review_list(&addr);
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.iter().all(|r| r["room"] == "exam-2"), "{left:?}");
    assert_eq!(http(&addr, "POST", &confirm, &[AUTH], by).0, 404);

    // The room's batch files all four of exam-2 at once.
    let (st, body) = http(
        &addr,
        "POST",
        "/api/review/rooms/exam-2/confirm",
        &[AUTH],
        by,
    );
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["confirmed"], 4, "{v}");
    let (st, _) = http(
        &addr,
        "POST",
        "/api/review/rooms/exam-2/confirm",
        &[AUTH],
        by,
    );
    assert_eq!(st, 404, "a second batch finds nothing");
    let lines = support::wait_outbox(&outbox, 5, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let lines = if lines.len() == 5 {
        outbox_lines(&outbox)
    } else {
        lines
    };
    let mut ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    assert_eq!(ids.len(), 5, "{lines:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "a reading filed twice: {lines:?}");
    assert!(
        !ids.contains(&reject.as_str()),
        "the rejected reading was filed"
    );
    assert!(review_list(&addr).is_empty());

    // "End visit" on a room's card clears its patient, audited with the name given.
    let own = format!("http://{addr}");
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", own.as_str()),
        AUTH,
    ];
    assert_eq!(
        http(&addr, "POST", "/rooms/exam-2/end", &form, "by=").0,
        400
    );
    let (st, body) = http(&addr, "POST", "/rooms/exam-2/end", &form, "by=Ann+MA");
    assert!(st == 303, "{st} {body}");
    let (_, status) = http(&addr, "GET", "/api/status", &[], "");
    let status: Value = serde_json::from_str(&status).unwrap();
    let room = status["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == "exam-2")
        .cloned()
        .unwrap();
    assert!(room["patient"].is_null(), "{room}");

    // Audited: who, when and which reading, for each decision.
    let trail = audit(&addr);
    let events =
        |name: &str| -> Vec<&Value> { trail.iter().filter(|e| e["event"] == name).collect() };
    assert_eq!(events("review_waiting").len(), 6);
    let confirmed = events("review_confirmed");
    assert_eq!(confirmed.len(), 5, "{trail:?}");
    assert!(
        confirmed
            .iter()
            .all(|e| e["by"] == "Ann MA" && e["at"].is_string()),
        "{confirmed:?}"
    );
    assert!(confirmed.iter().any(|e| e["reading"] == one.as_str()));
    let rejected = events("review_rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["reading"], reject.as_str());
    assert_eq!(rejected[0]["reason"], "probe off");
    assert!(
        trail.iter().any(|e| e["event"] == "context_cleared"
            && e["by"] == "Ann MA"
            && e["room"] == "exam-2"),
        "{trail:?}"
    );
    // No values or identifiers in the log.
    let log = d.log();
    assert!(!log.contains("MRN-TEST-1"), "{log}");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn without_review_readings_are_filed_at_once_and_the_list_stays_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox");
    let (ox, ox2) = (Pty::new(), Pty::new());
    let cfg = review_config(tmp.path(), &ox, &ox2);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("review = true", "");
    std::fs::write(&cfg, text).unwrap();
    let (d, addr) = start(&cfg, &tmp.path().join("log"));
    set_patient(&addr, "exam-1");
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    ox.send(b"SPO2=097 HR=072\r\n");
    let lines = support::wait_outbox(&outbox, 2, Duration::from_secs(10));
    assert_eq!(lines.len(), 2);
    assert!(review_list(&addr).is_empty());
    assert!(!audit(&addr).iter().any(|e| e["event"] == "review_waiting"));
    let (status, _) = d.stop();
    assert!(status.success());
}
