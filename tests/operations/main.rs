//! Day-to-day operation through the real binary: the queue commands against a running daemon
//! (admin API with the bearer token) and a stopped one (the store) with the same output,
//! `vitalsd status`, every config problem in one `check-config` run, completions and the man
//! page, `/metrics` checked by promtool, the dashboard and alert rules naming only metrics the
//! daemon exports, and the troubleshooting doc covering every logged warning and error.

#[path = "../support/mod.rs"]
mod support;

mod observability;
mod packaging;
mod queue_cli;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::hl7_engine::Engine;
use support::{free_port, http, Admin, DaemonBuilder, Pty, Running, Sink};

const TOKEN: &str = "ops-test-token-5f2c";

/// An HL7 engine that answers every message with an AE: each reading is dead-lettered.
fn refusing_engine() -> SocketAddr {
    Engine::start(|id| {
        format!("MSH|^~\\&|EHR|CLINIC_A|VITALSD||20261127120000+0000||ACK^R01^ACK|EHR-{id}|P|2.6\rMSA|AE|{id}|not accepted\r")
    })
    .addr
}

/// The refusing HL7 engine `engine` and the admin API with the token file on `port` (a fixed
/// port: the CLI finds the running daemon at the configured address).
fn site(dir: &Path, port: u16, engine: SocketAddr) -> DaemonBuilder {
    DaemonBuilder::new(dir)
        .admin(Admin::Token)
        .admin_listen(&format!("127.0.0.1:{port}"))
        .token(TOKEN)
        .patient_mode("location")
        .sink(
            Sink::mllp("engine", &engine.to_string())
                .line(r#"ack_timeout = "2s""#)
                .line(r#"sending_facility = "CLINIC_A""#)
                .line(r#"receiving_application = "EHR""#),
        )
}

struct Rig {
    tmp: tempfile::TempDir,
    d: Running,
    port: u16,
    engine: SocketAddr,
    addr: String,
}

impl Rig {
    /// Devices `ox` (nonin-ascii, exam-1) and `bp` (json, exam-2), the refusing HL7 sink
    /// `engine`, the admin API on a fixed free port with a token file; started (logging to
    /// `log` in its dir) and ready.
    fn start() -> Rig {
        let tmp = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let engine = refusing_engine();
        let d = site(tmp.path(), port, engine)
            .serial_device("ox", "nonin-ascii", "exam-1", r#"report = "every""#)
            .serial_device("bp", "json", "exam-2", "")
            .start();
        let rig = Rig {
            addr: format!("127.0.0.1:{port}"),
            tmp,
            d,
            port,
            engine,
        };
        rig.ready();
        rig
    }

    /// Starts the stopped daemon again on the same config, logging to `log`.
    fn restart(&mut self, log: &str) {
        self.d.restart(log);
        self.ready();
    }

    fn ready(&self) {
        self.d.wait_log("vitalsd ready", Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(300));
    }

    fn cfg(&self) -> PathBuf {
        self.d.config.clone()
    }

    fn ox(&self) -> &Pty {
        self.d.pty("ox")
    }

    fn bp(&self) -> &Pty {
        self.d.pty("bp")
    }

    /// The same site without devices, its token file holding `token`, written as `name`.
    fn config_with_token(&self, name: &str, token: &'static str) -> PathBuf {
        let dir = self.tmp.path().join(format!("{name}.token"));
        std::fs::create_dir_all(&dir).expect("token dir");
        site(self.tmp.path(), self.port, self.engine)
            .token(token)
            .token_dir(&dir)
            .write_as(name)
    }

    fn get(&self, path: &str) -> Value {
        let auth = format!("Bearer {TOKEN}");
        let (code, body) = http(&self.addr, "GET", path, &[("Authorization", &auth)], "");
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    fn dead(&self) -> u64 {
        self.get("/api/status")["sinks"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["sink"] == "engine"))
            .and_then(|s| s["dead"].as_u64())
            .unwrap_or(0)
    }

    #[track_caller]
    fn wait_dead(&self, n: u64) {
        wait_for(&format!("{n} dead-letter entries"), || self.dead() == n);
    }
}

fn bp_line(systolic: u32, at: &str) -> String {
    format!(
        "{{\"kind\":\"blood_pressure\",\"device_time\":\"{at}\",\"values\":[{{\"name\":\"systolic\",\"value\":{systolic},\"unit\":\"mm[Hg]\"}},{{\"name\":\"diastolic\",\"value\":79,\"unit\":\"mm[Hg]\"}}]}}\n"
    )
}

fn vitalsd(cfg: &Path, args: &[&str]) -> Output {
    support::vitalsd_with_config(cfg, args)
}

fn text(o: &Output) -> String {
    support::output_text(o)
}

/// Runs a command that must succeed; its stdout.
#[track_caller]
fn ok(cfg: &Path, args: &[&str]) -> String {
    let o = vitalsd(cfg, args);
    assert!(o.status.success(), "vitalsd {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// `queue stats` without the size on disk (the running store has not compacted its log).
fn stats_without_size(s: &str) -> Value {
    let mut v: Value = serde_json::from_str(s).expect("stats JSON");
    v.as_object_mut().expect("object").remove("disk_bytes");
    v
}
