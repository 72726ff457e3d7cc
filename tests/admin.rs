//! The admin API's gatekeeping through the real binary: refused off loopback without a token,
//! bearer token for mutating calls, cross-origin refusal, bounded bodies, health and readiness.

mod support;

use support::{http, Daemon};

fn write_config(tmp: &std::path::Path, listen: &str, token_file: &str) -> std::path::PathBuf {
    let cfg = format!(
        "[daemon]\ndata_dir = {:?}\nadmin_listen = {listen:?}\nadmin_token_file = {token_file:?}\nshutdown_timeout = \"5s\"\n\n\
         [[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = {:?}\nformat = \"reading\"\n",
        tmp.join("data"),
        tmp.join("outbox"),
    );
    let p = tmp.join("vitalsd.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

const SET: &str = r#"{"id":"MRN0012345","system":"urn:oid:1.2.3","by":"ma-jo"}"#;

#[test]
fn a_non_loopback_admin_address_without_a_token_file_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "0.0.0.0:0", "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin_token_file"), "{err}");
}

#[test]
fn with_a_token_mutating_calls_need_it_and_reads_of_status_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("admin.token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let cfg = write_config(tmp.path(), "127.0.0.1:0", token.to_str().unwrap());
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();

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
    let auth = [("Authorization", "Bearer s3cret-token")];
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
    let cfg = write_config(tmp.path(), "127.0.0.1:0", "");
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
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
        &[("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")],
        SET,
    );
    assert_eq!(st, 200, "{body}");

    let huge = format!(
        r#"{{"id":"{}","system":"urn:oid:1","by":"x"}}"#,
        "A".repeat(100 * 1024)
    );
    assert_eq!(http(&addr, "PUT", path, &[], &huge).0, 413);
    let (st, _) = http(
        &addr,
        "POST",
        "/api/held/not-a-uuid/discard",
        &[],
        r#"{"reason":"r","by":"b"}"#,
    );
    assert_eq!(st, 400);
    let id = "01938f4e-7b2a-7c4d-9a51-3f0c2b1d9e77";
    let (st, _) = http(
        &addr,
        "POST",
        &format!("/api/held/{id}/discard"),
        &[],
        r#"{"reason":"r","by":"b"}"#,
    );
    assert_eq!(st, 404);
}
