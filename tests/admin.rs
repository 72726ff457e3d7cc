//! The admin API's gatekeeping through the real binary: refused off loopback without a token,
//! bearer token for mutating calls, cross-origin refusal, bounded bodies, health and readiness.

mod support;

use support::{http, Admin, DaemonBuilder, Device, Running, Sink, AUTH};

/// The daemon of these tests: an HL7 monitor in exam-1 and a file outbox, the admin API as
/// `admin` says on `listen`.
fn site(dir: &std::path::Path, admin: Admin, listen: &str) -> DaemonBuilder {
    DaemonBuilder::new(dir)
        .admin(admin)
        .admin_listen(listen)
        .device(Device::mllp("mon", "hl7v2", "exam-1", "127.0.0.1:0"))
        .outbox("reading")
}

/// [`site`] on loopback with the token file, started.
fn start(dir: &std::path::Path) -> Running {
    site(dir, Admin::Token, "127.0.0.1:0").start()
}

const SET: &str = r#"{"id":"MRN0012345","system":"urn:oid:1.2.3","by":"ma-jo"}"#;

#[test]
fn a_non_loopback_admin_address_without_a_token_file_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = site(tmp.path(), Admin::Open, "0.0.0.0:0").write();
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains("admin_token_file"), "{text}");
    let out = support::vitalsd_with_config(&cfg, &["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin_token_file"), "{err}");
}

#[test]
fn with_a_token_mutating_calls_need_it_and_reads_of_status_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let d = start(tmp.path());
    let addr = d.admin();

    assert_eq!(http(&addr, "GET", "/healthz", &[], "").0, 200);
    let (st, body) = http(&addr, "GET", "/readyz", &[], "");
    assert_eq!(st, 200, "{body}");
    let (st, body) = http(&addr, "GET", "/api/status", &[], "");
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(r#""held":0"#), "{body}");

    let path = "/api/rooms/exam-1/patient";
    assert_eq!(http(&addr, "PUT", path, &[], SET).0, 401);
    assert_eq!(
        http(
            &addr,
            "PUT",
            path,
            &[("Authorization", "Bearer wrong")],
            SET
        )
        .0,
        401
    );
    assert_eq!(
        http(&addr, "GET", "/api/audit", &[], "").0,
        401,
        "the audit trail holds identifiers"
    );
    let auth = [AUTH];
    let (st, body) = http(&addr, "PUT", path, &auth, SET);
    assert_eq!(st, 200, "{body}");

    // Status shows the room with the patient masked; the audit trail has the identifier.
    let (_, status) = http(&addr, "GET", "/api/status", &[], "");
    assert!(
        status.contains("exam-1") && !status.contains("MRN0012345"),
        "{status}"
    );
    let (st, audit) = http(&addr, "GET", "/api/audit?since=1h", &auth, "");
    assert_eq!(st, 200);
    assert!(
        audit.contains("MRN0012345") && audit.contains(r#""source":"api""#),
        "{audit}"
    );
    assert!(
        !d.log().contains("MRN0012345"),
        "identifier in the ordinary log"
    );

    let (st, body) = http(&addr, "DELETE", path, &auth, r#"{"by":"ma-jo"}"#);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(r#""cleared":true"#), "{body}");
}

#[test]
fn cross_origin_requests_and_huge_bodies_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = start(tmp.path());
    let addr = d.admin();
    let path = "/api/rooms/exam-1/patient";

    let (st, _) = http(
        &addr,
        "PUT",
        path,
        &[("Origin", "http://evil.example")],
        SET,
    );
    assert_eq!(st, 403);
    let (st, _) = http(&addr, "PUT", path, &[("Sec-Fetch-Site", "cross-site")], SET);
    assert_eq!(st, 403);
    let own = format!("http://{addr}");
    let (st, body) = http(
        &addr,
        "PUT",
        path,
        &[
            ("Origin", own.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
            AUTH,
        ],
        SET,
    );
    assert_eq!(st, 200, "{body}");

    let huge = format!(
        r#"{{"id":"{}","system":"urn:oid:1","by":"x"}}"#,
        "A".repeat(100 * 1024)
    );
    assert_eq!(http(&addr, "PUT", path, &[AUTH], &huge).0, 413);
    let (st, _) = http(
        &addr,
        "POST",
        "/api/held/not-a-uuid/discard",
        &[AUTH],
        r#"{"reason":"r","by":"b"}"#,
    );
    assert_eq!(st, 400);
    let id = "01938f4e-7b2a-7c4d-9a51-3f0c2b1d9e77";
    let (st, _) = http(
        &addr,
        "POST",
        &format!("/api/held/{id}/discard"),
        &[AUTH],
        r#"{"reason":"r","by":"b"}"#,
    );
    assert_eq!(st, 404);
}

/// A minimal FHIR server on a std thread: `503` with a diagnostics text containing markup while
/// `up` is false, else a transaction-response with one `201 Created` per entry.
fn fake_fhir(up: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut first, mut len) = (String::new(), 0usize);
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let (status, reply) = if first.starts_with("GET") {
                (
                    200,
                    serde_json::json!({"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1"}),
                )
            } else if !up.load(std::sync::atomic::Ordering::SeqCst) {
                (
                    503,
                    serde_json::json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"<b>maintenance</b>"}]}),
                )
            } else {
                let bundle: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let n = bundle["entry"].as_array().map_or(0, Vec::len);
                let entry = vec![serde_json::json!({"response":{"status":"201 Created"}}); n];
                (
                    200,
                    serde_json::json!({"resourceType":"Bundle","type":"transaction-response","entry":entry}),
                )
            };
            let reply = reply.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    addr
}

/// The `ehr` sink's entry of `/api/status`.
fn sink_status(addr: &str) -> serde_json::Value {
    let (st, body) = http(addr, "GET", "/api/status", &[], "");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["sink"] == "ehr").cloned())
        .unwrap_or_else(|| panic!("no sink ehr in {body}"))
}

#[track_caller]
fn wait_sink(
    addr: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = sink_status(addr);
        if cond(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_failing_sink_shows_its_last_error_then_after_recovery_its_last_success() {
    let tmp = tempfile::tempdir().unwrap();
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fhir = fake_fhir(up.clone());
    let mut d = DaemonBuilder::new(tmp.path())
        .admin(Admin::Token)
        .patient_mode("hold")
        .serial_device("ox", "nonin-ascii", "exam-1", r#"report = "every""#)
        .sink(Sink::fhir("ehr", &format!("http://{fhir}/fhir")).line("timeout = \"5s\""))
        .start();
    let (ox, addr) = (d.pty("ox"), d.admin());
    let fresh = sink_status(&addr);
    for key in [
        "last_success",
        "last_error",
        "last_error_at",
        "failing_since",
    ] {
        assert!(fresh[key].is_null(), "{key} before any batch: {fresh}");
    }
    support::set_patient(&addr, "exam-1");
    d.wait_log("serial port open", std::time::Duration::from_secs(10));
    std::thread::sleep(std::time::Duration::from_millis(300));
    ox.send(b"SPO2=097 HR=072\r\n");

    let down = wait_sink(&addr, "a last error", |s| !s["last_error"].is_null());
    assert!(
        down["last_error"].as_str().unwrap().contains("503"),
        "{down}"
    );
    assert!(
        down["last_error_at"].is_string() && down["failing_since"].is_string(),
        "{down}"
    );
    assert!(down["last_success"].is_null(), "{down}");
    assert!(down["pending"].as_u64() > Some(0), "{down}");
    let (_, page) = http(&addr, "GET", "/", &[], "");
    assert!(page.contains(r#"<td class="last-error bad">"#), "{page}");
    assert!(
        !page.contains("<b>maintenance</b>"),
        "an unescaped reason: {page}"
    );

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let back = wait_sink(&addr, "a last success", |s| {
        !s["last_success"].is_null() && s["pending"] == 0
    });
    assert!(back["failing_since"].is_null(), "{back}");
    assert!(
        back["last_success"].as_str() >= back["last_error_at"].as_str(),
        "{back}"
    );
    assert!(
        back["last_error"].as_str().unwrap().contains("503"),
        "{back}"
    );
    let (_, page) = http(&addr, "GET", "/", &[], "");
    let row = page
        .split(r#"<tr data-sink="ehr">"#)
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no ehr row: {page}"));
    let success = back["last_success"].as_str().unwrap();
    assert!(
        row.contains(&format!(r#"<td class="last-success">{success}</td>"#)),
        "{row}"
    );
    assert!(
        row.contains(r#"<td class="last-error">"#) && row.contains("503"),
        "{row}"
    );
    let (st, ready) = http(&addr, "GET", "/readyz", &[], "");
    assert_eq!(st, 200, "{ready}");
    let (status, _) = d.stop();
    assert!(status.success());
}
