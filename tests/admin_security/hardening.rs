//! Security headers, idle and slow connections cut, rooms limited to the configured ones,
//! the masking key, and check-config's refusals.

use super::*;

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
