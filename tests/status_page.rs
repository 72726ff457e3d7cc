//! The status page `/` through the real binary, rendered by headless Chromium (`--dump-dom`):
//! rooms with the masked patient, devices, sinks, the queue-depth sparkline, held readings with
//! their assign/discard forms; then real clicks on those forms (Chromium driven over the
//! DevTools protocol) assign and discard held readings and the page comes back updated.
//! The exam-room test: a held reading first in "Needs attention", review items confirmed by a
//! click and filed once, the page refreshing itself while typed text stays, local time in the
//! daemon's zone (`TZ=America/New_York`) and relative times. With `VITALSD_SCREENSHOTS=DIR`
//! it writes `normal.png`, `attention.png` and `review.png` at a tablet width into DIR.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{with_token, Daemon, Pty, AUTH, TOKEN};

/// The Chromium binary; installs Debian's `chromium` when it is missing (CI runs as root).
fn chromium() -> String {
    for name in ["chromium", "chromium-browser"] {
        if Command::new("which")
            .arg(name)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name.to_string();
        }
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let st = Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("run apt-get");
        assert!(st.success(), "cannot install chromium");
    }
    "chromium".to_string()
}

/// The DOM after Chromium loaded and rendered `url`.
fn dump_dom(url: &str, profile: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A plain HTTP/1.1 request with extra headers; returns the status, the head and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let a = support::call(addr, method, path, headers, body);
    (a.status, a.head, a.body)
}

fn held_ids(addr: &str) -> Vec<String> {
    let (_, _, body) = http(addr, "GET", "/api/held", &[AUTH], "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Headless Chromium driven over the DevTools protocol (a minimal WebSocket client), for real
/// clicks on the page.
struct Browser {
    child: std::process::Child,
    ws: std::net::TcpStream,
    next_id: u64,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let port = loop {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut err, &mut line).expect("chromium stderr");
            assert!(n > 0, "chromium exited before DevTools listened");
            if let Some(rest) = line
                .trim()
                .strip_prefix("DevTools listening on ws://127.0.0.1:")
            {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let devtools = format!("127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(10);
        let page_ws = loop {
            let (_, _, body) = http(&devtools, "GET", "/json/list", &[], "");
            let list: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let page = list.as_array().and_then(|a| {
                a.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(String::from))
            });
            if let Some(p) = page {
                break p;
            }
            assert!(Instant::now() < until, "no page target: {body}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let path = page_ws.split_once(&devtools).unwrap().1.to_string();
        let mut ws = std::net::TcpStream::connect(&devtools).unwrap();
        ws.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {devtools}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            ws.read_exact(&mut b).expect("websocket handshake");
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Browser {
            child,
            ws,
            next_id: 1,
        }
    }

    fn send_frame(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut f = vec![0x81u8];
        let n = payload.len();
        if let Ok(small) = u8::try_from(n).map(|b| b.min(126)) {
            if small < 126 {
                f.push(0x80 | small);
            }
        }
        if n >= 126 {
            match u16::try_from(n) {
                Ok(mid) => {
                    f.push(0x80 | 126);
                    f.extend_from_slice(&mid.to_be_bytes());
                }
                Err(_) => {
                    f.push(0x80 | 127);
                    f.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.ws.write_all(&f).expect("websocket send");
    }

    fn read_frame(&mut self) -> String {
        let mut h = [0u8; 2];
        self.ws.read_exact(&mut h).expect("websocket read");
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.ws.read_exact(&mut l).unwrap();
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                self.ws.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        let mut data = vec![0u8; usize::try_from(len).unwrap()];
        self.ws.read_exact(&mut data).unwrap();
        String::from_utf8_lossy(&data).to_string()
    }

    /// One DevTools call; returns its `result`.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let v = self.call_raw(method, params);
        assert!(v["error"].is_null(), "{method}: {v}");
        v["result"].clone()
    }

    /// One DevTools call; the whole answer, `error` included.
    fn call_raw(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.send_frame(&msg.to_string());
        loop {
            let v: serde_json::Value = serde_json::from_str(&self.read_frame()).unwrap_or_default();
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Evaluates `js` in the page; its value (null while the page is navigating).
    fn eval(&mut self, js: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": js, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `js` evaluates to `want`.
    #[track_caller]
    fn wait_for(&mut self, js: &str, want: serde_json::Value) {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            // While the page navigates (a form post and its redirect) an evaluation may fail.
            let r = self.call_raw(
                "Runtime.evaluate",
                serde_json::json!({"expression": js, "returnByValue": true}),
            );
            let got = r["result"]["result"]["value"].clone();
            if got == want {
                return;
            }
            assert!(Instant::now() < until, "{js} is {got}, not {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_status_page_renders_in_chromium_and_its_forms_assign_and_discard_held_readings() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, outbox) = (tmp.path().join("data"), tmp.path().join("outbox"));
    let ox = Pty::new();
    let ox2 = Pty::new();
    let cfg = support::config(
        &data,
        &outbox,
        "reading",
        &[
            (
                "ox",
                "nonin-ascii",
                "exam-1",
                &ox.path,
                r#"report = "every""#,
            ),
            (
                "ox2",
                "nonin-ascii",
                "exam-2",
                &ox2.path,
                r#"report = "every""#,
            ),
        ],
    )
    .replace("admin_listen = \"\"", "admin_listen = \"127.0.0.1:0\"")
    .replace("mode = \"location\"", "mode = \"hold\"");
    let cfg_path = tmp.path().join("vitalsd.toml");
    std::fs::write(&cfg_path, with_token(&cfg, tmp.path())).unwrap();
    let d = Daemon::start(&cfg_path, &tmp.path().join("log"));
    let addr = d.admin_addr();
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
    browser.call(
        "Page.navigate",
        serde_json::json!({"url": format!("http://{addr}/")}),
    );
    browser.wait_for("document.querySelector('form#login') !== null", true.into());
    let js = format!(
        "(() => {{ const f = document.querySelector('form#login'); f.elements['token'].value = '{TOKEN}'; f.querySelector('button').click(); return 'clicked'; }})()"
    );
    assert_eq!(browser.eval(&js), "clicked");
    browser.wait_for("document.getElementById('signed-in') !== null", true.into());
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

    let dom = dump_dom(&format!("http://{addr}/"), &profile);
    assert!(dom.contains(r#"<span id="held-count">0</span>"#), "{dom}");
    // The outbox delivered the assigned reading: its row shows when, and no error.
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

/// The daemon with `TZ` set (the zone the status page shows times in).
fn start_in_zone(cfg: &Path, log: &Path, tz: &str) -> Daemon {
    let stderr = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(support::KEY_ENV, support::store_key_file())
        .env("TZ", tz)
        .env("RUST_LOG", "info")
        .args(["run", "--config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start vitalsd");
    Daemon {
        child,
        stderr_path: log.to_path_buf(),
    }
}

impl Browser {
    /// Waits until `js` is true, up to `within`.
    #[track_caller]
    fn wait_true(&mut self, js: &str, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let r = self.call_raw(
                "Runtime.evaluate",
                serde_json::json!({"expression": js, "returnByValue": true}),
            );
            if r["result"]["result"]["value"] == true {
                return;
            }
            assert!(Instant::now() < until, "{js} is not true after {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the page (the viewport, or the part from `from_y` of `height` CSS pixels)
    /// into `$VITALSD_SCREENSHOTS/name.png` when that variable is set.
    fn screenshot(&mut self, name: &str, clip: Option<(f64, f64)>) {
        let Some(dir) = std::env::var_os("VITALSD_SCREENSHOTS") else {
            return;
        };
        let mut params = serde_json::json!({"format": "png"});
        if let Some((y, height)) = clip {
            params["captureBeyondViewport"] = true.into();
            params["clip"] = serde_json::json!({"x": 0, "y": y, "width": TABLET_WIDTH, "height": height, "scale": 1});
        }
        let r = self.call("Page.captureScreenshot", params);
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).expect("write png");
    }
}

/// A portrait tablet.
const TABLET_WIDTH: u32 = 800;

fn review_ids(addr: &str) -> Vec<(String, String)> {
    let (_, _, body) = http(addr, "GET", "/api/review", &[AUTH], "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        e["id"].as_str()?.to_string(),
                        e["room"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_exam_room_page_shows_held_first_files_a_confirmed_review_and_keeps_typed_text() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, outbox) = (tmp.path().join("data"), tmp.path().join("outbox"));
    let (ox1, ox2, ox4) = (Pty::new(), Pty::new(), Pty::new());
    let cfg = support::config(
        &data,
        &outbox,
        "reading",
        &[
            (
                "exam1-ox",
                "nonin-ascii",
                "exam-1",
                &ox1.path,
                r#"report = "every""#,
            ),
            (
                "exam2-ox",
                "nonin-ascii",
                "exam-2",
                &ox2.path,
                r#"report = "every""#,
            ),
            (
                "exam4-ox",
                "nonin-ascii",
                "exam-4",
                &ox4.path,
                r#"report = "every""#,
            ),
        ],
    )
    .replace("admin_listen = \"\"", "admin_listen = \"127.0.0.1:0\"")
    .replace("mode = \"location\"", "mode = \"hold\"\nreview = true");
    let cfg_path = tmp.path().join("vitalsd.toml");
    std::fs::write(&cfg_path, with_token(&cfg, tmp.path())).unwrap();
    let d = start_in_zone(&cfg_path, &tmp.path().join("log"), "America/New_York");
    let addr = d.admin_addr();
    for room in ["exam-1", "exam-2"] {
        support::set_patient(&addr, room);
    }
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));

    let mut b = Browser::start(&tmp.path().join("chromium-cdp"));
    b.call("Page.enable", serde_json::json!({}));
    b.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": TABLET_WIDTH, "height": 1100, "deviceScaleFactor": 1, "mobile": true}),
    );
    b.call(
        "Page.navigate",
        serde_json::json!({"url": format!("http://{addr}/")}),
    );
    b.wait_for("document.querySelector('form#login') !== null", true.into());
    let js = format!(
        "(() => {{ const f = document.querySelector('form#login'); f.elements['token'].value = '{TOKEN}'; f.querySelector('button').click(); return 'clicked'; }})()"
    );
    assert_eq!(b.eval(&js), "clicked");
    b.wait_for("document.getElementById('signed-in') !== null", true.into());

    // Local time in the daemon's zone: December in New York is UTC-05:00.
    let zone = b.eval("document.getElementById('zone').textContent");
    assert_eq!(zone, "America/New_York (UTC-05:00)", "{zone}");
    let shown = b.eval("document.querySelector('#clock b').textContent");
    let ny = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(-5));
    let minutes = |hm: &str| -> i64 {
        let (h, m) = hm.split_once(':').expect("HH:MM");
        h.parse::<i64>().unwrap() * 60 + m.parse::<i64>().unwrap()
    };
    let want = i64::from(ny.hour()) * 60 + i64::from(ny.minute());
    let got = minutes(shown.as_str().unwrap());
    assert!(
        (got - want).rem_euclid(1440) <= 1,
        "clock {shown}, New York {want} min"
    );
    // Nothing waits yet: the calm line; each room a card on one column at tablet width? No:
    // 800 px holds two cards side by side; under 700 px it is one column (checked below).
    b.wait_true(
        "document.getElementById('all-clear') !== null",
        Duration::from_secs(5),
    );
    b.screenshot("normal", None);

    // exam-4 has no scan: its readings are held. exam-1 has a patient: to review.
    ox4.send(b"SPO2=096 HR=077\r\n");
    ox1.send(b"SPO2=097 HR=072\r\n");
    let until = Instant::now() + Duration::from_secs(10);
    while (held_ids(&addr).len() < 2 || review_ids(&addr).len() < 2) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(held_ids(&addr).len(), 2, "{}", d.log());
    assert_eq!(review_ids(&addr).len(), 2, "{}", d.log());

    // Type into exam-2's "Still this patient" name field (real key input), then let the page
    // refresh itself: the attention list and the review list appear, the typed text stays.
    let focus = b.eval(
        "(() => { const i = document.querySelector('#room-exam-2 input[name=by]'); if (!i) return 'no input'; i.focus(); return 'focused'; })()",
    );
    assert_eq!(focus, "focused");
    b.call(
        "Input.insertText",
        serde_json::json!({"text": "Typed by Ann"}),
    );
    b.wait_true(
        "document.querySelectorAll('#attention li.attn').length >= 2",
        Duration::from_secs(15),
    );
    assert_eq!(
        b.eval("document.querySelector('#attention li.attn').dataset.attn"),
        "held",
        "the held reading comes first"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#attention li.attn')[1].dataset.attn"),
        "review"
    );
    b.wait_true(
        "document.querySelectorAll('tr[data-review]').length === 2",
        Duration::from_secs(10),
    );
    assert_eq!(
        b.eval("document.querySelector('#room-exam-2 input[name=by]').value"),
        "Typed by Ann",
        "the refresh wiped what the MA typed"
    );
    assert_eq!(
        b.eval("document.activeElement === document.querySelector('#room-exam-2 input[name=by]')"),
        true
    );
    // Refreshed in place (a reload would have lost this counter), and the card kept its
    // form while the attention list changed.
    let refreshed = b.eval("Number(document.documentElement.dataset.refreshed || 0)");
    assert!(refreshed.as_u64() >= Some(1), "{refreshed}");
    // Relative times: "just now" / "12 s ago" next to the local clock time.
    let rel = b.eval("document.querySelector('#attention time[data-rel] .rel').textContent");
    let rel = rel.as_str().unwrap_or_default().to_string();
    assert!(rel == "just now" || rel.ends_with(" s ago"), "{rel}");
    let title = b.eval("document.querySelector('#attention time[data-rel]').title");
    assert!(
        title.as_str().unwrap_or_default().ends_with("UTC-05:00"),
        "{title}"
    );
    b.call(
        "Runtime.evaluate",
        serde_json::json!({"expression": "document.activeElement.blur(); window.scrollTo(0, 0)"}),
    );
    b.screenshot("attention", Some((0.0, 1100.0)));
    let top = b.eval("Math.round(document.getElementById('review').getBoundingClientRect().top + window.scrollY)");
    let height =
        b.eval("Math.round(document.getElementById('review').getBoundingClientRect().height)");
    b.screenshot(
        "review",
        Some((
            top.as_f64().unwrap_or(0.0),
            height.as_f64().unwrap_or(600.0) + 16.0,
        )),
    );

    // Nothing was filed yet. Confirm one reading by clicking its button (the room's name
    // field filled first): it is filed, once; the other still waits.
    assert!(support::outbox_lines(&outbox).is_empty());
    let ids = review_ids(&addr);
    let (id, _) = ids.iter().find(|(_, r)| r == "exam-1").unwrap().clone();
    let js = format!(
        "(() => {{ const row = document.querySelector('tr[data-review=\"{id}\"]'); if (!row) return 'no row'; \
         row.closest('form').elements['by'].value = 'Ann MA'; \
         row.querySelector('button[formaction$=\"/confirm\"]').click(); return 'clicked'; }})()"
    );
    assert_eq!(b.eval(&js), "clicked");
    b.wait_true(
        "document.getElementById('review-count')?.textContent === '1'",
        Duration::from_secs(10),
    );
    let lines = support::wait_outbox(&outbox, 1, Duration::from_secs(10));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"].as_str(), Some(id.as_str()));
    // A second confirm of the same reading (a stale page, a double tap) files nothing.
    let origin = format!("http://{addr}");
    let (code, _, _) = http(
        &addr,
        "POST",
        &format!("/review/{id}/confirm"),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", origin.as_str()),
            AUTH,
        ],
        "by=Ann+MA",
    );
    assert_eq!(code, 404);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(support::outbox_lines(&outbox).len(), 1);

    // Under 700 px the cards stack in one column.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 600, "height": 1000, "deviceScaleFactor": 1, "mobile": true}),
    );
    let cols = b.eval(
        "getComputedStyle(document.getElementById('cardlist')).gridTemplateColumns.split(' ').length",
    );
    assert_eq!(cols, 1);
    drop(b);
    let (status, _) = d.stop();
    assert!(status.success());
}
