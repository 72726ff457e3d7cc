//! Who gets in: only the admin's own `Host` names, the token (or a signed-in page) for
//! every change and patient-data read, none of those without a configured token.

use super::*;

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
