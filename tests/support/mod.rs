//! Shared helpers for the black-box tests: pseudo-terminals that stand in for serial devices,
//! the real `vitalsd` binary started with a config file, and outbox readers.
#![allow(dead_code)]

pub mod daemon_builder;
mod daemon_tables;
pub mod hl7_engine;
pub mod mosquitto;
pub mod pty;

#[allow(unused_imports)]
pub use daemon_builder::{Admin, DaemonBuilder, Device, Running, Sink};
#[allow(unused_imports)]
pub use pty::Pty;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable through which every daemon the tests start gets its store key.
pub const KEY_ENV: &str = vitalsd::queue::cipher::KEY_FILE_ENV;

/// A store key file (0600, 32 random bytes as hex) shared by the daemons of this test binary,
/// created at the first call in a directory of the system's temp dir.
pub fn store_key_file() -> PathBuf {
    static KEY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vitalsd-test-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("key dir");
        let path = dir.join("store.key");
        vitalsd::queue::cipher::ensure_key_file(&path).expect("store key");
        path
    })
    .clone()
}

/// A TCP port on 127.0.0.1 nothing listens on right now (for a config that must name its
/// port before the daemon starts).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The real daemon, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: &Path) -> Daemon {
        Self::start_with_env(config, log, &[])
    }

    /// [`start`](Self::start) with more environment variables (e.g. `TZ`). The daemon never
    /// inherits the service manager's variables (`NOTIFY_SOCKET`, `WATCHDOG_*`) of whoever
    /// runs the tests; a test sets them here.
    pub fn start_with_env(config: &Path, log: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_under(&[], config, log, env)
    }

    /// [`start_with_env`](Self::start_with_env) through a program that runs the daemon,
    /// e.g. `["prlimit", "--fsize=3145728"]` (empty: the daemon itself).
    pub fn start_under(
        wrapper: &[&str],
        config: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        let stderr = std::fs::File::create(log).expect("log file");
        let bin = env!("CARGO_BIN_EXE_vitalsd");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
        };
        let child = cmd
            .env(KEY_ENV, store_key_file())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vitalsd");
        Daemon {
            child,
            stderr_path: log.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The log without its colour codes.
    pub fn plain_log(&self) -> String {
        plain(&self.log())
    }

    /// Waits until the log contains `needle`.
    #[track_caller]
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "`{needle}` not in the daemon log within {within:?}:\n{}",
            self.log()
        );
    }

    /// The admin API's address, read from the daemon's "admin API listening addr=..." log line
    /// (configs may listen on port 0).
    #[track_caller]
    pub fn admin_addr(&self) -> String {
        self.wait_log("admin API listening", Duration::from_secs(10));
        let ansi = regex::Regex::new(r"\x1b\[[0-9;]*m").expect("regex");
        let log = ansi.replace_all(&self.log(), "").to_string();
        let line = log
            .lines()
            .find(|l| l.contains("admin API listening"))
            .expect("admin API log line");
        line.split("addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .expect("addr= field")
            .to_string()
    }

    /// Sends SIGTERM and returns the exit status and how long the stop took.
    pub fn stop(mut self) -> (std::process::ExitStatus, Duration) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let t0 = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let until = t0 + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return (st, t0.elapsed());
            }
            assert!(Instant::now() < until, "vitalsd did not stop within 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vitalsd ARGS` with the tests' store key; its output.
pub fn vitalsd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(KEY_ENV, store_key_file())
        .args(args)
        .output()
        .expect("run vitalsd")
}

/// `vitalsd ARGS --config CONFIG` with the tests' store key; its output.
pub fn vitalsd_with_config(config: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--config");
    all.push(config.to_str().expect("UTF-8 config path"));
    vitalsd(&all)
}

/// A command's stdout, then its stderr, as text.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the independent HL7 v2 validator (tests/hl7/validate.py, hl7apy) on `input` with
/// `args`; its exit status and report (stdout then stderr). Exit status 2: hl7apy is missing.
pub fn hl7_validate(input: &str, args: &[String]) -> (Option<i32>, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hl7/validate.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/test installs what the tests need)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("validate.py");
    (out.status.code(), output_text(&out))
}

/// The admin token of a [`DaemonBuilder`] with [`Admin::Token`].
pub const TOKEN: &str = "vitalsd-test-admin-token-5d2f9a";
/// The header that carries [`TOKEN`], for the admin API's protected calls.
pub const AUTH: (&str, &str) = ("Authorization", "Bearer vitalsd-test-admin-token-5d2f9a");

/// One HTTP/1.1 request to the admin API; `(status, body)`.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes());
    let _ = s.write_all(body.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One answer: status, lower-cased head, body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
    }
}

/// One HTTP/1.1 request to `addr` with an explicit `Host` and no other headers than `headers`.
pub fn request(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// [`request`] with `addr` as the `Host`.
pub fn call(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    request(addr, addr, method, path, headers, body)
}

/// All JSON lines of every `*.ndjson` file in `dir`, in file-name order.
pub fn outbox_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "ndjson"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let file = std::fs::File::open(&f).expect("open outbox file");
        for line in std::io::BufReader::new(file).lines() {
            let line = line.expect("read outbox");
            if !line.is_empty() {
                out.push(serde_json::from_str(&line).expect("outbox line is JSON"));
            }
        }
    }
    out
}

/// Waits until the outbox holds at least `n` lines; returns them.
#[track_caller]
pub fn wait_outbox(dir: &Path, n: usize, within: Duration) -> Vec<serde_json::Value> {
    let until = Instant::now() + within;
    loop {
        let lines = outbox_lines(dir);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < until,
            "outbox has {} of {n} lines after {within:?}",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Puts a test patient in `room` through the admin API at `admin`. FHIR output needs one:
/// location mode (the room as subject) cannot be combined with FHIR.
#[track_caller]
pub fn set_patient(admin: &str, room: &str) {
    let (st, body) = http(
        admin,
        "PUT",
        &format!("/api/rooms/{room}/patient"),
        &[AUTH],
        r#"{"id":"MRN-TEST-1","system":"urn:oid:2.16.840.1.113883.3.999","by":"test"}"#,
    );
    assert_eq!(st, 200, "set the patient of {room}: {body}");
}

/// `log` without its colour codes.
pub fn plain(log: &str) -> String {
    static ANSI: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    ANSI.get_or_init(|| regex::Regex::new(r"\x1b\[[0-9;]*m").expect("regex"))
        .replace_all(log, "")
        .into_owned()
}

/// The address of the first MLLP listener that `log` says is ready (`listen=<addr>`).
pub fn mllp_addr(log: &str) -> Option<std::net::SocketAddr> {
    let log = plain(log);
    let line = log.lines().find(|l| l.contains("MLLP listener ready"))?;
    let at = line.find("listen=")? + "listen=".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// One ORU with one SpO2, measured `i` seconds after 10:00; waits for its AA.
pub fn send_spo2_oru(addr: std::net::SocketAddr, i: u32) {
    let t = format!("2024031510{:02}{:02}+0100", i / 60 % 60, i % 60);
    let id = format!("M{i:05}");
    let msg = format!(
        "MSH|^~\\&|MON|WARD|EHR|CLINIC_A|{t}||ORU^R01^ORU_R01|{id}|P|2.6\r\
         PID|||MRN777^^^CLINIC_A^MR\r\
         OBR|1|{id}|{id}|182777000^monitoring of patient^SCT|||{t}\r\
         OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|{}|262688^MDC_DIM_PERCENT^MDC|||||R|||{t}\r",
        90 + i % 10
    );
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(&vitalsd::net::hl7::mllp_frame(msg.as_bytes()))
        .expect("write");
    let mut got = Vec::new();
    let mut b = [0u8; 512];
    while !got.ends_with(&[0x1c, 0x0d]) {
        let n = s.read(&mut b).expect("an ACK");
        assert!(n > 0, "closed before the ACK");
        got.extend_from_slice(&b[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("MSA|AA"), "not AA");
}

/// Starts the daemon and expects it to exit non-zero without getting ready; returns its log.
pub fn start_refused(config: &std::path::Path, log: &std::path::Path) -> String {
    let mut d = Daemon::start(config, log);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let st = loop {
        if let Some(st) = d.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            std::time::Instant::now() < until,
            "the daemon kept running:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let log = d.plain_log();
    assert!(!st.success(), "{log}");
    assert!(!log.contains("vitalsd ready"), "{log}");
    log
}

/// A JSON bridge's body-temperature frame measured at `t` (its value varies with `i`).
pub fn temperature_frame(t: time::OffsetDateTime, i: usize) -> String {
    let at = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let temp = 36.0 + (i % 20) as f64 / 10.0;
    format!(
        r#"{{"kind":"body_temperature","device_time":"{at}","values":[{{"name":"temperature","value":{temp:.1},"unit":"Cel","site":"oral"}}]}}"#
    )
}
