//! The admin side's defences through the real binary (docs/security.md): only the admin's own
//! `Host` names, a token (or a signed-in page) for every change and every patient-data read,
//! none of those without a configured token, the page's sign-in with a cookie, security
//! headers, idle and slow connections cut, rooms limited to the configured ones, the masking
//! key and check-config's refusals.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{call, request, Admin, Daemon, DaemonBuilder, Device, AUTH, TOKEN};

/// A config with an MLLP monitor in `exam-1` (no serial port needed) and a file sink;
/// `extra` goes into `[daemon]`.
fn config(tmp: &Path, extra: &str, token: bool) -> PathBuf {
    DaemonBuilder::new(tmp)
        .admin(if token { Admin::Token } else { Admin::Open })
        .daemon(extra)
        .device(Device::mllp("mon", "hl7v2", "exam-1", "127.0.0.1:0"))
        .outbox("reading")
        .write()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const SET: &str = r#"{"id":"MRN0012345","system":"urn:oid:1.2.3","by":"ma-jo"}"#;
const HELD_ID: &str = "01938f4e-7b2a-7c4d-9a51-3f0c2b1d9e77";

/// Every route with a body that gets past validation where one is needed.
fn routes() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("GET", "/".into(), ""),
        ("GET", "/healthz".into(), ""),
        ("GET", "/readyz".into(), ""),
        ("GET", "/metrics".into(), ""),
        ("GET", "/api/status".into(), ""),
        ("GET", "/api/audit".into(), ""),
        ("GET", "/api/held".into(), ""),
        ("GET", "/api/dead".into(), ""),
        ("GET", "/api/quarantine".into(), ""),
        ("PUT", "/api/rooms/exam-1/patient".into(), SET),
        (
            "POST",
            "/api/rooms/exam-1/patient/confirm".into(),
            r#"{"by":"ma-jo"}"#,
        ),
        (
            "DELETE",
            "/api/rooms/exam-1/patient".into(),
            r#"{"by":"ma-jo"}"#,
        ),
        (
            "POST",
            format!("/api/held/{HELD_ID}/discard"),
            r#"{"reason":"r","by":"b"}"#,
        ),
        ("POST", "/login".into(), "token=x"),
        ("POST", "/logout".into(), ""),
        ("POST", "/rooms/exam-1/confirm".into(), "by=Ann"),
    ]
}

#[test]
fn a_foreign_host_is_refused_on_every_route_and_listed_names_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "admin_hosts = [\"vitals-box.clinic.local\"]",
        true,
    );
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    let port = addr.rsplit(':').next().unwrap();
    // A rebinding attack: the attacker's name resolves to 127.0.0.1, so the browser sends it.
    let foreign = format!("rebind.attacker.example:{port}");
    for (method, path, body) in routes() {
        let a = request(&addr, &foreign, method, &path, &[JSON, AUTH], body);
        assert_eq!(a.status, 421, "{method} {path}: {}", a.body);
        assert!(a.body.contains("unknown Host"), "{}", a.body);
        assert!(!a.body.contains("MRN"), "{}", a.body);
    }
    // A request line in absolute form naming another host is refused too.
    let a = request(
        &addr,
        &addr,
        "GET",
        &format!("http://{foreign}/api/status"),
        &[],
        "",
    );
    assert_eq!(a.status, 421, "{}", a.body);
    for host in [
        addr.clone(),
        format!("localhost:{port}"),
        format!("vitals-box.clinic.local:{port}"),
    ] {
        let a = request(&addr, &host, "GET", "/api/status", &[], "");
        assert_eq!(a.status, 200, "{host}: {}", a.body);
    }
    // Nothing was changed through the foreign name.
    let audit = call(&addr, "GET", "/api/audit", &[AUTH], "");
    assert_eq!(audit.status, 200);
    assert!(!audit.body.contains("MRN0012345"), "{}", audit.body);
}

#[test]
fn protected_routes_need_the_token_and_without_a_configured_token_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", true);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    // Set first so confirm and clear have a context to act on.
    let expected_with: &[(&str, &str, u16)] = &[
        ("PUT", "/api/rooms/exam-1/patient", 200),
        ("GET", "/api/audit", 200),
        ("GET", "/api/held", 200),
        ("GET", "/api/dead", 200),
        ("GET", "/api/quarantine", 200),
        ("POST", "/api/rooms/exam-1/patient/confirm", 200),
        ("POST", "/rooms/exam-1/confirm", 303),
        ("DELETE", "/api/rooms/exam-1/patient", 200),
    ];
    let body_of = |method: &str, path: &str| match path {
        "/api/rooms/exam-1/patient" if method == "PUT" => SET,
        "/rooms/exam-1/confirm" => "by=Ann",
        p if p.starts_with("/api/rooms") => r#"{"by":"ma-jo"}"#,
        _ => "",
    };
    for (method, path, with) in expected_with {
        let ct = if path.starts_with("/api") { JSON } else { FORM };
        let a = call(&addr, method, path, &[ct], body_of(method, path));
        assert_eq!(a.status, 401, "{method} {path} without: {}", a.body);
        assert!(!a.body.contains("MRN0012345"), "{}", a.body);
        let a = call(
            &addr,
            method,
            path,
            &[ct, ("Authorization", "Bearer not-the-token")],
            body_of(method, path),
        );
        assert_eq!(a.status, 401, "{method} {path} wrong token: {}", a.body);
        let a = call(&addr, method, path, &[ct, AUTH], body_of(method, path));
        assert_eq!(a.status, *with, "{method} {path} with: {}", a.body);
    }
    let a = call(
        &addr,
        "POST",
        &format!("/api/held/{HELD_ID}/discard"),
        &[JSON],
        r#"{"reason":"r","by":"b"}"#,
    );
    assert_eq!(a.status, 401);
    drop(d);

    // No token file: health, readiness, metrics, status and the page still answer; every
    // protected call is refused with how to set a token, even with some bearer token.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", false);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    for path in ["/healthz", "/readyz", "/metrics", "/api/status", "/"] {
        let a = call(&addr, "GET", path, &[], "");
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    let page = call(&addr, "GET", "/", &[], "").body;
    assert!(page.contains("admin_token_file"), "{page}");
    for (method, path, _) in expected_with {
        let ct = if path.starts_with("/api") { JSON } else { FORM };
        let a = call(&addr, method, path, &[ct, AUTH], body_of(method, path));
        assert_eq!(a.status, 401, "{method} {path}: {}", a.body);
        assert!(a.body.contains("admin_token_file"), "{}", a.body);
    }
    let a = call(&addr, "POST", "/login", &[FORM], &format!("token={TOKEN}"));
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.header("set-cookie").is_none(), "{}", a.head);
}

#[test]
fn the_page_signs_in_with_a_session_cookie_its_forms_work_and_sign_out_ends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", true);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    let own = format!("http://{addr}");
    let origin = ("Origin", own.as_str());
    let a = call(
        &addr,
        "PUT",
        "/api/rooms/exam-1/patient",
        &[JSON, AUTH],
        SET,
    );
    assert_eq!(a.status, 200, "{}", a.body);

    let page = call(&addr, "GET", "/", &[], "");
    assert!(page.body.contains(r#"action="/login""#), "{}", page.body);
    assert!(!page.body.contains(r#"action="/rooms/exam-1/confirm""#));

    let wrong = call(&addr, "POST", "/login", &[FORM, origin], "token=guess");
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none(), "{}", wrong.head);

    let ok = call(
        &addr,
        "POST",
        "/login",
        &[FORM, origin],
        &format!("token={TOKEN}"),
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    let set = ok.header("set-cookie").expect("a session cookie");
    for attr in ["httponly", "samesite=strict", "path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    // The cookie jar: the name=value pair.
    let pair = set.split(';').next().unwrap().to_string();
    let (_, id) = pair.split_once('=').unwrap();
    assert_eq!(id.len(), 64, "{pair}");
    let cookie = ("Cookie", pair.as_str());

    let page = call(&addr, "GET", "/", &[cookie], "");
    assert!(page.body.contains(r#"id="signed-in""#), "{}", page.body);
    assert!(
        page.body.contains(r#"action="/rooms/exam-1/confirm""#),
        "{}",
        page.body
    );
    let form = call(
        &addr,
        "POST",
        "/rooms/exam-1/confirm",
        &[FORM, origin, cookie],
        "by=Ann+MA",
    );
    assert_eq!(form.status, 303, "{}", form.body);
    let a = call(&addr, "GET", "/api/audit", &[cookie], "");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("context_confirmed"), "{}", a.body);

    let without = call(
        &addr,
        "POST",
        "/rooms/exam-1/confirm",
        &[FORM, origin],
        "by=Eve",
    );
    assert_eq!(without.status, 401);
    let forged = format!("vitalsd_session={}", "0".repeat(64));
    let a = call(
        &addr,
        "POST",
        "/rooms/exam-1/confirm",
        &[FORM, origin, ("Cookie", forged.as_str())],
        "by=Eve",
    );
    assert_eq!(a.status, 401);
    // A cross-site form post with the cookie (were a browser to send it) is still refused.
    let a = call(
        &addr,
        "POST",
        "/rooms/exam-1/confirm",
        &[FORM, ("Origin", "http://evil.example"), cookie],
        "by=Eve",
    );
    assert_eq!(a.status, 403);

    let out = call(&addr, "POST", "/logout", &[FORM, origin, cookie], "");
    assert_eq!(out.status, 303);
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("max-age=0")),
        "{}",
        out.head
    );
    let a = call(
        &addr,
        "POST",
        "/rooms/exam-1/confirm",
        &[FORM, cookie],
        "by=Ann",
    );
    assert_eq!(a.status, 401, "the session ended");
    assert!(!d.log().contains(TOKEN), "the token in the log");
    assert!(!d.log().contains(id), "a session id in the log");
}

#[test]
fn every_response_carries_the_security_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", true);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    let port = addr.rsplit(':').next().unwrap();
    let answers = [
        call(&addr, "GET", "/", &[], ""),
        call(&addr, "GET", "/api/status", &[], ""),
        call(&addr, "GET", "/api/audit", &[AUTH], ""),
        call(&addr, "GET", "/api/audit", &[], ""),
        call(&addr, "GET", "/no-such-page", &[], ""),
        request(&addr, &format!("evil.example:{port}"), "GET", "/", &[], ""),
    ];
    for a in answers {
        let h = |n: &str| a.header(n).unwrap_or_else(|| panic!("no {n}: {}", a.head));
        assert_eq!(h("x-frame-options"), "deny");
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("referrer-policy"), "no-referrer");
        assert_eq!(h("cache-control"), "no-store");
        let csp = h("content-security-policy");
        for part in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(part), "{csp}");
        }
    }
}

#[test]
fn idle_connections_do_not_lock_out_a_request_and_a_slow_request_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", true);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();

    // A request whose head trickles in, one byte a second: cut, never answered.
    let slow_addr = addr.clone();
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&slow_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let req = format!(
            "GET /healthz HTTP/1.1\r\nHost: {slow_addr}\r\nX-Pad: {}",
            "a".repeat(60)
        );
        let t0 = Instant::now();
        let mut got = Vec::new();
        for b in req.bytes() {
            if s.write_all(&[b]).is_err() {
                break;
            }
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
            std::thread::sleep(Duration::from_millis(950));
        }
        (t0.elapsed(), String::from_utf8_lossy(&got).to_string())
    });
    std::thread::sleep(Duration::from_millis(200));

    // More idle connections than the cap (64), saying nothing.
    let idle: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let t0 = Instant::now();
    let a = call(&addr, "GET", "/healthz", &[], "");
    let waited = t0.elapsed();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(waited < Duration::from_secs(25), "{waited:?}");
    drop(idle);

    let (took, got) = slow.join().unwrap();
    assert!(
        !got.contains("200 OK"),
        "the slow request was answered: {got}"
    );
    assert!(
        took < Duration::from_secs(20),
        "the slow request was not cut: {took:?}"
    );
    // Still serving afterwards.
    assert_eq!(call(&addr, "GET", "/healthz", &[], "").status, 200);
}

#[test]
fn a_room_no_device_is_in_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", true);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    for (method, path, body) in [
        ("PUT", "/api/rooms/lobby/patient", SET),
        (
            "POST",
            "/api/rooms/lobby/patient/confirm",
            r#"{"by":"ma-jo"}"#,
        ),
        ("DELETE", "/api/rooms/lobby/patient", r#"{"by":"ma-jo"}"#),
    ] {
        let a = call(&addr, method, path, &[JSON, AUTH], body);
        assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
    }
    let status = call(&addr, "GET", "/api/status", &[], "").body;
    assert!(!status.contains("lobby"), "{status}");
    let a = call(
        &addr,
        "PUT",
        "/api/rooms/exam-1/patient",
        &[JSON, AUTH],
        SET,
    );
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn the_masking_key_is_created_private_and_an_open_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", true);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let addr = d.admin_addr();
    let key = tmp.path().join("data").join("mask.key");
    let meta = std::fs::metadata(&key).expect("mask.key created");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    // The masked tag on the status page is 12 hex digits, not the identifier.
    call(
        &addr,
        "PUT",
        "/api/rooms/exam-1/patient",
        &[JSON, AUTH],
        SET,
    );
    let status: serde_json::Value =
        serde_json::from_str(&call(&addr, "GET", "/api/status", &[], "").body).unwrap();
    let tag = status["rooms"][0]["patient"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        tag.len() == 12 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
        "{status}"
    );
    let (st, _) = d.stop();
    assert!(st.success());

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mask.key") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn check_config_refuses_an_open_token_file_and_an_open_address_without_one() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", true);
    let check = |cfg: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vitalsd"))
            .env(support::KEY_ENV, support::store_key_file())
            .args(["check-config", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert!(check(&cfg).status.success());
    let token = tmp.path().join("admin.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&cfg);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("daemon.admin_token_file (line"), "{text}");

    let open = tmp.path().join("open.toml");
    let src = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("admin_token_file"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("127.0.0.1:0", "0.0.0.0:9750");
    std::fs::write(&open, src).unwrap();
    let out = check(&open);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("daemon.admin_listen (line") && text.contains("admin_token_file"),
        "{text}"
    );
}
