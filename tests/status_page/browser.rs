//! Headless Chromium: `--dump-dom` renders, and a minimal DevTools-protocol client for real
//! clicks, typing, script evaluation and screenshots.

use super::*;

/// The Chromium binary; installs Debian's `chromium` when it is missing (CI runs as root).
/// A portrait tablet.
pub(crate) const TABLET_WIDTH: u32 = 800;

pub(crate) fn chromium() -> String {
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

/// The flags of every headless Chromium these tests start.
const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The DOM after Chromium loaded and rendered `url`.
pub(crate) fn dump_dom(url: &str, profile: &Path) -> String {
    let out = Command::new(chromium())
        .args(HEADLESS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Headless Chromium driven over the DevTools protocol (a minimal WebSocket client), for real
/// clicks on the page.
pub(crate) struct Browser {
    pub(crate) child: std::process::Child,
    pub(crate) ws: std::net::TcpStream,
    pub(crate) next_id: u64,
}

impl Browser {
    pub(crate) fn start(profile: &Path) -> Browser {
        let mut child = Command::new(chromium())
            .args(HEADLESS)
            .arg("--remote-debugging-port=0")
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

    pub(crate) fn send_frame(&mut self, text: &str) {
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

    pub(crate) fn read_frame(&mut self) -> String {
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
    pub(crate) fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let v = self.call_raw(method, params);
        assert!(v["error"].is_null(), "{method}: {v}");
        v["result"].clone()
    }

    /// One DevTools call; the whole answer, `error` included.
    pub(crate) fn call_raw(
        &mut self,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
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
    pub(crate) fn eval(&mut self, js: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": js, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `js` evaluates to `want`.
    #[track_caller]
    pub(crate) fn wait_for(&mut self, js: &str, want: serde_json::Value) {
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

impl Browser {
    /// Opens the page at `addr` and signs in through its form with [`TOKEN`].
    pub(crate) fn sign_in(&mut self, addr: &str) {
        self.call(
            "Page.navigate",
            serde_json::json!({"url": format!("http://{addr}/")}),
        );
        self.wait_for("document.querySelector('form#login') !== null", true.into());
        let js = format!(
            "(() => {{ const f = document.querySelector('form#login'); f.elements['token'].value = '{TOKEN}'; f.querySelector('button').click(); return 'clicked'; }})()"
        );
        assert_eq!(self.eval(&js), "clicked");
        self.wait_for("document.getElementById('signed-in') !== null", true.into());
    }

    /// Waits until `js` is true, up to `within`.
    #[track_caller]
    pub(crate) fn wait_true(&mut self, js: &str, within: Duration) {
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
    pub(crate) fn screenshot(&mut self, name: &str, clip: Option<(f64, f64)>) {
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
