//! The page in Chromium: rooms, devices, sinks, the sparkline and held readings; its assign
//! and discard forms clicked for real.

use super::browser::*;
use super::*;

#[test]
fn the_status_page_renders_in_chromium_and_its_forms_assign_and_discard_held_readings() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DaemonBuilder::new(tmp.path())
        .admin(Admin::Token)
        .patient_mode("hold")
        .serial_device("ox", "nonin-ascii", "exam-1", EVERY)
        .serial_device("ox2", "nonin-ascii", "exam-2", EVERY)
        .outbox("reading")
        .start();
    let (addr, ox, outbox) = (d.admin(), d.pty("ox"), d.outbox().to_path_buf());
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    // No patient in the room: both readings (SpO2, pulse) are held.
    ox.send(b"SPO2=097 HR=072\r\n");
    let until = Instant::now() + Duration::from_secs(10);
    let mut ids = held_ids(&addr);
    while ids.len() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        ids = held_ids(&addr);
    }
    assert_eq!(ids.len(), 2, "{}", d.log());
    let (code, _, body) = http(
        &addr,
        "PUT",
        "/api/rooms/exam-2/patient",
        &[("Content-Type", "application/json"), AUTH],
        r#"{"id":"MRN-7788","system":"urn:oid:1.2.3","by":"test"}"#,
    );
    assert_eq!(code, 200, "{body}");

    // Not signed in: rooms (masked), devices, sinks and counts, a sign-in form, no held
    // readings and no forms that change anything.
    let profile = tmp.path().join("chromium");
    let dom = dump_dom(&format!("http://{addr}/"), &profile);
    assert!(dom.contains("<h1>vitalsd</h1>"), "{dom}");
    assert!(dom.contains(r#"<tr data-device="ox"><td>ox</td><td>nonin-ascii</td><td>exam-1</td><td class="ok">yes</td>"#), "{dom}");
    assert!(dom.contains(r#"<td class="readings">2</td>"#), "{dom}");
    assert!(
        dom.contains(r#"<tr data-sink="outbox"><td>outbox</td><td class="pending">0</td>"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<svg id="depth""#) && dom.contains("<polyline"),
        "{dom}"
    );
    assert!(dom.contains(r#"<span id="held-count">2</span>"#), "{dom}");
    assert!(dom.contains(r#"action="/login""#), "{dom}");
    assert!(!dom.contains(r#"action="/held/"#), "{dom}");
    // The room shows the masked patient, never the identifier.
    assert!(
        dom.contains(
            r#"<article class="card" id="room-exam-2" data-room="exam-2"><h3>exam-2</h3>"#
        ),
        "{dom}"
    );
    assert!(!dom.contains("MRN-7788"), "patient identifier on the page");
    // One script, from the daemon itself; nothing inline.
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    assert!(
        dom.contains(r#"<script src="/static/page.js" defer="">"#),
        "{dom}"
    );

    // Sign in through the page's form in Chromium: the session cookie brings the held
    // readings and their forms.
    let mut browser = Browser::start(&tmp.path().join("chromium-cdp"));
    browser.call("Page.enable", serde_json::json!({}));
    browser.sign_in(&addr);
    let dom = browser
        .eval("document.documentElement.outerHTML")
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(dom.contains(r#"<span id="held-count">2</span>"#), "{dom}");
    for id in &ids {
        assert!(
            dom.contains(&format!(r#"action="/held/{id}/assign""#)),
            "{dom}"
        );
        assert!(
            dom.contains(&format!(r#"action="/held/{id}/discard""#)),
            "{dom}"
        );
    }
    assert!(!dom.contains("MRN-7788"), "patient identifier on the page");

    // Real clicks in Chromium: fill the assign form of one reading, the discard form of the
    // other, click their buttons; the server redirects back to the page.
    browser.wait_for(
        "document.getElementById('held-count')?.textContent",
        "2".into(),
    );
    let fill_and_click = |id: &str, kind: &str, fields: &[(&str, &str)]| {
        let mut js = format!("(() => {{ const f = document.querySelector('form[action=\"/held/{id}/{kind}\"]'); if (!f) return 'no form';");
        for (k, v) in fields {
            js.push_str(&format!(" f.elements['{k}'].value = '{v}';"));
        }
        js.push_str(" f.querySelector('button').click(); return 'clicked'; })()");
        js
    };
    let js = fill_and_click(
        &ids[0],
        "assign",
        &[
            ("patient_id", "MRN-4242"),
            ("patient_system", "urn:oid:1.2.3"),
            ("by", "Ann MA"),
        ],
    );
    assert_eq!(browser.eval(&js), "clicked");
    browser.wait_for(
        "document.getElementById('held-count')?.textContent",
        "1".into(),
    );
    let js = fill_and_click(
        &ids[1],
        "discard",
        &[("reason", "wrong patient"), ("by", "Ann MA")],
    );
    assert_eq!(browser.eval(&js), "clicked");
    browser.wait_for(
        "document.getElementById('held-count')?.textContent",
        "0".into(),
    );
    browser.wait_for("location.pathname", "/".into());
    drop(browser);
    assert!(held_ids(&addr).is_empty());
    // The assigned reading goes out with the patient; the discarded one does not.
    let lines = support::wait_outbox(&outbox, 1, Duration::from_secs(10));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["patient"]["id"], "MRN-4242");
    let (_, _, audit) = http(&addr, "GET", "/api/audit", &[AUTH], "");
    assert!(
        audit.contains("\"assigned\"") && audit.contains("\"discarded\""),
        "{audit}"
    );
    let origin = format!("http://{addr}");
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
        AUTH,
    ];
    // A cross-site form post is refused, and a missing field is a readable error.
    let (code, _, _) = http(
        &addr,
        "POST",
        &format!("/held/{}/discard", ids[0]),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ],
        "reason=x&by=y",
    );
    assert_eq!(code, 403);
    let (code, _, body) = http(
        &addr,
        "POST",
        &format!("/held/{}/assign", ids[0]),
        &form,
        "by=Ann",
    );
    assert_eq!(code, 400, "{body}");

    // The outbox delivered the assigned reading: its row shows when, and no error. The line
    // is readable before the sink's fsync, and only after it is the delivery done and shown.
    wait_last_success(&addr, "outbox");
    let dom = dump_dom(&format!("http://{addr}/"), &profile);
    assert!(dom.contains(r#"<span id="held-count">0</span>"#), "{dom}");
    assert!(
        dom.contains("<th>Last success</th><th>Last error</th>"),
        "{dom}"
    );
    let row = dom
        .split(r#"<tr data-sink="outbox">"#)
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(row.contains(r#"<td class="last-success">20"#), "{row}");
    assert!(row.contains(r#"<td class="last-error">—</td>"#), "{row}");
    let (status, _) = d.stop();
    assert!(status.success());
}
