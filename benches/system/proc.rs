//! The real `vitalsd` binary under measurement: started with a config file, its admin API,
//! `/proc/PID` figures (RSS, peak RSS, CPU ticks), pseudo-terminals that stand in for serial
//! devices, and the size of a directory on disk.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary measured: the one cargo built for this bench profile (release under
/// `cargo bench`), else `target/release/vitalsd` under the crate.
/// A store key file (0600) for the daemons of this run, in the system's temp dir.
pub fn store_key_file() -> PathBuf {
    static KEY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vitalsd-bench-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("key dir");
        let path = dir.join("store.key");
        vitalsd::queue::cipher::ensure_key_file(&path).expect("store key");
        path
    })
    .clone()
}

/// The daemon binary: `VITALSD_BIN` when set (an A/B of two builds, as `bench/drain-profile`
/// takes it), else the one cargo built with this bench.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("VITALSD_BIN") {
        return PathBuf::from(bin);
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_vitalsd"));
    if built.exists() {
        return built;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/vitalsd")
}

pub use crate::pty::Pty;

/// The daemon, killed when dropped.
pub struct Daemon {
    child: Child,
    log: PathBuf,
    pub started: Instant,
}

impl Daemon {
    /// Starts `vitalsd run --config <config>` with its default log level, stderr to `log`.
    pub fn start(config: &Path, log: &Path) -> Daemon {
        Self::start_wrapped(config, log, None, &[])
    }

    /// [`Daemon::start`] under `wrap` (a command line such as `valgrind --tool=callgrind
    /// --callgrind-out-file=cg.out` that is given the binary and its arguments), if any, with
    /// more environment variables (a heap profiler's preload).
    pub fn start_wrapped(
        config: &Path,
        log: &Path,
        wrap: Option<&str>,
        env: &[(String, String)],
    ) -> Daemon {
        let stderr = std::fs::File::create(log).expect("log file");
        let started = Instant::now();
        let words: Vec<&str> = wrap.unwrap_or_default().split_whitespace().collect();
        let mut cmd = match words.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = cmd
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(vitalsd::queue::cipher::KEY_FILE_ENV, store_key_file())
            .args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vitalsd");
        Daemon {
            child,
            log: log.to_path_buf(),
            started,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin API address from the "admin API listening addr=..." line.
    pub fn admin_addr(&mut self, within: Duration) -> String {
        let ansi = regex::Regex::new(r"\x1b\[[0-9;]*m").expect("regex");
        let until = Instant::now() + within;
        loop {
            let log = ansi.replace_all(&self.log(), "").to_string();
            if let Some(addr) = log
                .lines()
                .find(|l| l.contains("admin API listening"))
                .and_then(|l| l.split("addr=").nth(1))
                .and_then(|a| a.split_whitespace().next())
            {
                return addr.to_string();
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("vitalsd exited ({st}) before its admin API listened:\n{log}");
            }
            assert!(
                Instant::now() < until,
                "no admin API within {within:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until `/readyz` answers 200; the time since the process was started.
    pub fn wait_ready(&mut self, within: Duration) -> (String, Duration) {
        let addr = self.admin_addr(within);
        let until = self.started + within;
        loop {
            let (code, body) = http(&addr, "GET", "/readyz");
            if code == 200 {
                return (addr, self.started.elapsed());
            }
            assert!(
                Instant::now() < until,
                "not ready within {within:?}: {code} {body}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGTERM, then waits (kills after 60 s); how long the stop took.
    pub fn stop(mut self) -> Duration {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let t0 = Instant::now();
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        while t0.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("vitalsd did not stop within 60 s; killing it");
        t0.elapsed()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(VmRSS, VmHWM)` of a process, in bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the state.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Bytes allocated on disk under `dir` (`du -sb` style: file lengths).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// One HTTP/1.1 GET-style request; `(status, body)`.
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    let _ = s.write_all(req.as_bytes());
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

/// Puts a bench patient in `room` through the admin API: FHIR output needs a patient (location
/// mode, the room as subject, is refused with a FHIR sink).
pub fn set_patient(addr: &str, room: &str) {
    let body = r#"{"id":"MRN-BENCH","system":"urn:oid:2.16.840.1.113883.3.999","by":"bench"}"#;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        panic!("admin API at {addr} not reachable");
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "PUT /api/rooms/{room}/patient HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(req.as_bytes());
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(
        raw.starts_with("HTTP/1.1 200"),
        "set the patient of {room}: {raw}"
    );
    // A reading is attributed only when the context covers (device time − the 1 s clock-skew
    // tolerance of `config`) .. receipt: readings start after that.
    std::thread::sleep(Duration::from_millis(1500));
}

/// Pending entries of `sink` and stored readings, from `/api/status`.
pub fn queue_status(addr: &str, sink: &str) -> Option<(u64, u64)> {
    let (code, body) = http(addr, "GET", "/api/status");
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let pending = v["sinks"]
        .as_array()?
        .iter()
        .find(|s| s["sink"] == sink)
        .and_then(|s| s["pending"].as_u64())?;
    Some((pending, v["queue"]["readings"].as_u64().unwrap_or(0)))
}

/// Waits (up to `within`) until `n` devices show as connected in `/api/status`.
pub fn wait_connected(addr: &str, n: usize, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        let (_, body) = http(addr, "GET", "/api/status");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let open = v["devices"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|d| d["connected"] == true).count());
        if open >= n {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A config: `[daemon]` with the admin API on a free loopback port and its token, a 1 s
/// clock-skew tolerance, hold mode (set the rooms' patients with [`set_patient`]), the given
/// device tables and a FHIR sink at `fhir_url`.
pub fn config(data_dir: &Path, devices: &str, fhir_url: &str, extra_daemon: &str) -> String {
    let token = admin_token_file();
    let key = store_key_file();
    format!(
        "[daemon]\ndata_dir = {data_dir:?}\nadmin_listen = \"127.0.0.1:0\"\nadmin_token_file = {token:?}\n\
         store_key_file = {key:?}\n\
         clock_skew_tolerance = \"1s\"\n{extra_daemon}\n\
         [patient]\nmode = \"hold\"\n\n{devices}\n\
         [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = {fhir_url:?}\nbatch_size = 50\ntimeout = \"10s\"\n"
    )
}

/// The admin token the bench daemons require for changes and patient data.
pub const ADMIN_TOKEN: &str = "vitalsd-bench-admin-token";

/// A file (0600) holding [`ADMIN_TOKEN`], next to the bench's store key.
pub fn admin_token_file() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let key = store_key_file();
    let path = key.with_file_name("admin.token");
    if !path.exists() {
        std::fs::write(&path, format!("{ADMIN_TOKEN}\n")).expect("admin token");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

/// One serial device table.
pub fn serial_device(id: &str, driver: &str, room: &str, path: &Path, options: &str) -> String {
    format!(
        "[[device]]\nid = {id:?}\ndriver = {driver:?}\nroom = {room:?}\nserial = {{ path = {path:?} }}\noptions = {{ {options} }}\n\n"
    )
}
