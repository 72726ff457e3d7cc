//! Day-to-day operation through the real binary: the queue commands against a running daemon
//! (admin API with the bearer token) and a stopped one (the store) with the same output,
//! `vitalsd status`, every config problem in one `check-config` run, completions and the man
//! page, `/metrics` checked by promtool, the dashboard and alert rules naming only metrics the
//! daemon exports, and the troubleshooting doc covering every logged warning and error.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{http, Daemon, Pty};

const TOKEN: &str = "ops-test-token-5f2c";

/// An HL7 engine that answers every message with an AE: each reading is dead-lettered.
fn refusing_engine() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind engine");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_ae(stream));
        }
    });
    addr
}

fn serve_ae(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == [0x1C, 0x0D]) {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let start = frame.iter().position(|&b| b == 0x0B).unwrap_or(0);
            let msg = String::from_utf8_lossy(&frame[start + 1..end]).to_string();
            let id = msg
                .split('\r')
                .next()
                .and_then(|msh| msh.split('|').nth(9))
                .unwrap_or("")
                .to_string();
            let ack = format!(
                "\x0bMSH|^~\\&|EHR|CLINIC_A|VITALSD||20261127120000+0000||ACK^R01^ACK|EHR-{id}|P|2.6\rMSA|AE|{id}|not accepted\r\x1c\r"
            );
            if s.write_all(ack.as_bytes()).is_err() {
                return;
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Rig {
    tmp: tempfile::TempDir,
    ox: Pty,
    bp: Pty,
    cfg: PathBuf,
    addr: String,
}

impl Rig {
    /// Devices `ox` (nonin-ascii, exam-1) and `bp` (json, exam-2), the refusing HL7 sink
    /// `engine`, the admin API on a fixed free port with a token file.
    fn new() -> Rig {
        let tmp = tempfile::tempdir().expect("tmp");
        let (ox, bp) = (Pty::new(), Pty::new());
        let port = free_port();
        let token = tmp.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod token");
        let cfg = write_config(tmp.path(), "vitalsd.toml", port, &token, &ox.path, &bp.path);
        Rig {
            addr: format!("127.0.0.1:{port}"),
            tmp,
            ox,
            bp,
            cfg,
        }
    }

    fn start(&self, log: &str) -> Daemon {
        let d = Daemon::start(&self.cfg, &self.tmp.path().join(log));
        d.wait_log("vitalsd ready", Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(300));
        d
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

fn write_config(dir: &Path, name: &str, port: u16, token: &Path, ox: &Path, bp: &Path) -> PathBuf {
    let engine = refusing_engine();
    let s = format!(
        "[daemon]\ndata_dir = {data:?}\nadmin_listen = \"127.0.0.1:{port}\"\nadmin_token_file = {token:?}\n\
         shutdown_timeout = \"5s\"\n\n[patient]\nmode = \"location\"\n\n\
         [[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\nserial = {{ path = {ox:?} }}\noptions = {{ report = \"every\" }}\n\n\
         [[device]]\nid = \"bp\"\ndriver = \"json\"\nroom = \"exam-2\"\nserial = {{ path = {bp:?} }}\n\n\
         [[sink]]\nid = \"engine\"\ntype = \"hl7-mllp\"\naddress = \"{engine}\"\nack_timeout = \"2s\"\n\
         sending_facility = \"CLINIC_A\"\nreceiving_application = \"EHR\"\n",
        data = dir.join("data"),
    );
    let path = dir.join(name);
    std::fs::write(&path, s).expect("config");
    path
}

fn bp_line(systolic: u32, at: &str) -> String {
    format!(
        "{{\"kind\":\"blood_pressure\",\"device_time\":\"{at}\",\"values\":[{{\"name\":\"systolic\",\"value\":{systolic},\"unit\":\"mm[Hg]\"}},{{\"name\":\"diastolic\",\"value\":79,\"unit\":\"mm[Hg]\"}}]}}\n"
    )
}

fn vitalsd(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(support::KEY_ENV, support::store_key_file())
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .expect("run vitalsd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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

#[test]
fn queue_commands_answer_alike_through_the_running_daemon_and_from_the_stopped_store() {
    let rig = Rig::new();
    let cfg = &rig.cfg;
    let d = rig.start("log1");
    rig.ox.send(b"SPO2=097 HR=072\r\n");
    rig.bp.send(bp_line(410, "2026-11-27T10:00:00Z").as_bytes());
    rig.bp.send(bp_line(420, "2026-11-27T10:01:00Z").as_bytes());
    rig.wait_dead(2);
    wait_for("two quarantined", || {
        rig.get("/api/queue/stats")["quarantined"] == 2
    });

    // Running: the store is locked, so these answers came through the admin API.
    let stats_running = ok(cfg, &["queue", "stats"]);
    let dead_running = ok(cfg, &["queue", "dead", "--sink", "engine"]);
    let quarantine_running = ok(cfg, &["queue", "quarantine"]);
    assert_eq!(json_lines(&dead_running).len(), 2, "{dead_running}");
    assert_eq!(
        json_lines(&quarantine_running).len(),
        2,
        "{quarantine_running}"
    );
    assert_eq!(stats_without_size(&stats_running)["sinks"][0]["dead"], 2);

    // A wrong token is refused by the daemon, not papered over by the store.
    let wrong = rig.tmp.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token\n").expect("token");
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod token");
    let port: u16 = rig.addr.rsplit(':').next().unwrap().parse().unwrap();
    let bad_cfg = write_config(
        rig.tmp.path(),
        "wrong-token.toml",
        port,
        &wrong,
        &rig.ox.path,
        &rig.bp.path,
    );
    let refused = vitalsd(&bad_cfg, &["queue", "dead"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("401"), "{}", text(&refused));

    let (status, _) = d.stop();
    assert!(status.success());

    // Stopped: the same answers from the store.
    assert_eq!(
        stats_without_size(&ok(cfg, &["queue", "stats"])),
        stats_without_size(&stats_running)
    );
    assert_eq!(
        ok(cfg, &["queue", "dead", "--sink", "engine"]),
        dead_running
    );
    assert_eq!(ok(cfg, &["queue", "quarantine"]), quarantine_running);

    // Running again: the changing commands go through the API too.
    let d = rig.start("log2");
    let out = ok(cfg, &["queue", "retry", "--sink", "engine"]);
    assert_eq!(out.trim(), "2 entries moved back to pending");
    rig.wait_dead(2); // the engine refuses them again
    let q = json_lines(&quarantine_running);
    let (q1, q2) = (q[0]["id"].as_str().unwrap(), q[1]["id"].as_str().unwrap());
    let out = ok(
        cfg,
        &[
            "queue",
            "release",
            q2,
            "--by",
            "Dr. Ops",
            "--reason",
            "cuff re-checked",
        ],
    );
    assert!(
        out.starts_with(&format!("released {q2} to every configured sink")),
        "{out}"
    );
    rig.wait_dead(3);
    let out = ok(
        cfg,
        &[
            "queue", "discard", q1, "--by", "Dr. Ops", "--reason", "artifact",
        ],
    );
    assert_eq!(out.trim(), format!("discarded {q1}"));
    let gone = vitalsd(
        cfg,
        &["queue", "discard", q1, "--by", "x", "--reason", "again"],
    );
    assert!(!gone.status.success());
    assert!(
        text(&gone).contains(&format!("no quarantined reading with id {q1}")),
        "{}",
        text(&gone)
    );
    assert_eq!(ok(cfg, &["queue", "quarantine"]).trim(), "");
    let first = json_lines(&dead_running)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = ok(cfg, &["queue", "purge-dead", &first, "--sink", "engine"]);
    assert_eq!(out.trim(), "1 dead-letter entry purged");
    assert_eq!(json_lines(&ok(cfg, &["queue", "dead"])).len(), 2);
    let (status, _) = d.stop();
    assert!(status.success());

    // Stopped: the rest from the store.
    let out = ok(cfg, &["queue", "purge-dead"]);
    assert_eq!(out.trim(), "2 dead-letter entries purged");
    assert_eq!(ok(cfg, &["queue", "dead"]).trim(), "");
}

#[test]
fn status_summarises_the_running_daemon_and_fails_when_none_answers() {
    let rig = Rig::new();
    let cfg = &rig.cfg;
    let d = rig.start("log");
    rig.ox.send(b"SPO2=097 HR=072\r\n");
    rig.bp.send(bp_line(410, "2026-11-27T10:00:00Z").as_bytes());
    rig.wait_dead(2);
    wait_for("one quarantined", || {
        rig.get("/api/queue/stats")["quarantined"] == 1
    });

    let o = vitalsd(cfg, &["status"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (ready_code, _) = http(&rig.addr, "GET", "/readyz", &[], "");
    assert_eq!(o.status.success(), ready_code == 200, "{}", text(&o));
    let first = out.lines().next().unwrap_or("");
    if ready_code == 200 {
        assert_eq!(first, "ready: yes");
    } else {
        assert!(first.starts_with("ready: NO ("), "{out}");
    }
    assert!(out.contains("queue: 3 readings"), "{out}");
    assert!(out.contains("; held 0; quarantined 1"), "{out}");
    assert!(
        out.contains("device ox (nonin-ascii, room exam-1): connected, last frame "),
        "{out}"
    );
    assert!(out.contains(", 2 readings, 0 bad frames"), "{out}");
    assert!(
        out.contains("device bp (json, room exam-2): connected"),
        "{out}"
    );
    assert!(
        out.contains("sink engine: pending 0, dead 2, last success never"),
        "{out}"
    );
    assert!(out.contains("last error"), "{out}");

    let (status, _) = d.stop();
    assert!(status.success());
    let o = vitalsd(cfg, &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no daemon answers at http://127.0.0.1:"),
        "{}",
        text(&o)
    );
}

#[test]
fn check_config_lists_a_type_error_and_the_unknown_driver_of_one_device_and_the_other_tables() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("bad.toml");
    let src = "[daemon]\n\
               data_dir = \"/var/lib/vitalsd-test\"\n\
               cache_size = 5\n\
               \n\
               [[device]]\n\
               id = \"ox\"\n\
               driver = \"nonin-asci\"\n\
               room = \"exam-1\"\n\
               serial = { path = \"/dev/null\", baud = \"fast\" }\n\
               inactivity_timeout = 30\n\
               \n\
               [[device]]\n\
               id = \"bp\"\n\
               driver = \"json\"\n\
               room = \"\"\n\
               serial = { path = \"/dev/null\" }\n\
               \n\
               [[sink]]\n\
               id = \"ehr\"\n\
               type = \"fhir\"\n\
               base_url = \"http://127.0.0.1:1/fhir\"\n\
               batch_size = \"ten\"\n\
               colour = \"red\"\n";
    std::fs::write(&cfg, src).expect("config");
    let o = vitalsd(&cfg, &["check-config"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    for want in [
        "daemon.cache_size (line 3): invalid type: integer `5`",
        "device[0].serial.baud (line 9): invalid type: string \"fast\"",
        "device[0].inactivity_timeout (line 10): invalid type: integer `30`",
        "device[0].driver (line 7): unknown driver `nonin-asci`",
        "device[1].room (line 15): must not be empty",
        "sink[0].batch_size (line 22): invalid type: string \"ten\"",
        "sink[0].colour (line 23): unknown field `colour`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    assert!(
        err.starts_with(&format!("{}: 7 problems", cfg.display())),
        "{err}"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_and_the_package_installs_them() {
    let bin = env!("CARGO_BIN_EXE_vitalsd");
    let run = |args: &[&str]| {
        let o = Command::new(bin).args(args).output().expect("run vitalsd");
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8(o.stdout).expect("UTF-8")
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("_vitalsd()"), "{bash}");
    assert!(bash.contains("purge-dead") && bash.contains("completions"));
    let syntax = Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&bash)
        .output()
        .expect("bash");
    assert!(syntax.status.success(), "{}", text(&syntax));
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef vitalsd"), "{zsh}");
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c vitalsd"), "{fish}");
    assert!(fish.contains("check-config"));
    let man = run(&["man"]);
    assert!(man.contains(".TH vitalsd 8"), "{man}");
    for section in [
        "VITALSD STATUS",
        "VITALSD QUEUE PURGE-DEAD",
        "VITALSD CHECK-CONFIG",
    ] {
        assert!(man.contains(section), "no {section} in the man page");
    }
    assert!(man.contains("\\-\\-sink"), "options of the queue actions");
    // roff input is ASCII: other characters are written as escapes.
    assert!(man.is_ascii(), "raw non-ASCII in the man page");

    // The packaging script writes every generated asset Cargo.toml's deb assets name.
    let out = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(root.join("scripts/package-assets"))
        .env("VITALSD_BIN", bin)
        .env("VITALSD_ASSETS_DIR", out.path())
        .output()
        .expect("scripts/package-assets");
    assert!(o.status.success(), "{}", text(&o));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let generated: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\"debian/generated/"))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(generated.len(), 4, "{generated:?}");
    for f in generated {
        let len = std::fs::metadata(out.path().join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 100, "scripts/package-assets did not write {f}");
    }
}

/// promtool, which scripts/test installs (Debian `prometheus`).
fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("promtool");
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("promtool is missing: scripts/test installs it (apt-get install prometheus)");
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write to promtool");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("promtool")
}

/// Every `vitalsd_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"vitalsd_[a-z0-9_]+").expect("regex");
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn metrics_pass_promtool_and_the_dashboard_and_alerts_use_only_exported_metrics() {
    let rig = Rig::new();
    let d = rig.start("log");
    let auth = format!("Bearer {TOKEN}");
    let (code, body) = http(
        &rig.addr,
        "PUT",
        "/api/rooms/exam-1/patient",
        &[("Authorization", &auth)],
        r#"{"id":"MRN-OPS-1","system":"urn:oid:1.2.3","by":"ops test"}"#,
    );
    assert_eq!(code, 200, "{body}");
    rig.ox.send(b"SPO2=097 HR=072\r\n");
    rig.bp.send(bp_line(121, "2026-11-27T10:00:00Z").as_bytes());
    rig.wait_dead(3);

    let (code, metrics) = http(&rig.addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200, "{metrics}");
    let check = promtool(&["check", "metrics"], Some(&metrics));
    assert!(
        check.status.success(),
        "promtool check metrics: {}\n{metrics}",
        text(&check)
    );
    // A scraper asking for OpenMetrics gets it (with its end marker).
    let (_, open) = http(
        &rig.addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        "",
    );
    assert!(open.trim_end().ends_with("# EOF"), "{open}");
    assert!(!metrics.contains("MRN-OPS-1"), "patient id in /metrics");
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    for want in [
        "vitalsd_device_last_frame_timestamp_seconds",
        "vitalsd_room_patient_context_active",
        "vitalsd_sink_failing",
        "vitalsd_held_oldest_age_seconds",
    ] {
        assert!(
            exported.contains(want),
            "{want} not in /metrics:\n{metrics}"
        );
    }
    d.stop();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("docs/ops/alerts.yml");
    let check = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(
        check.status.success(),
        "promtool check rules: {}",
        text(&check)
    );
    let alerts = std::fs::read_to_string(&rules).expect("alerts.yml");
    for name in [
        "VitalsdSinkFailing",
        "VitalsdQueueGrowing",
        "VitalsdDeviceSilentWithPatient",
        "VitalsdReadingsHeldLong",
        "VitalsdQuarantineNotEmpty",
    ] {
        assert!(alerts.contains(&format!("alert: {name}")), "no {name}");
    }
    let used_by_alerts = metric_names(
        &alerts
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:") || l.starts_with("          "))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    for m in &used_by_alerts {
        assert!(exported.contains(m), "alerts.yml uses {m}, not in /metrics");
    }

    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/ops/grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for m in names {
                assert!(
                    exported.contains(&m),
                    "panel {} uses {m}, not in /metrics",
                    p["title"]
                );
            }
        }
    }
}

/// The message of every `warn!` / `error!` in `src` (outside test modules): the first string
/// literal among the macro's top-level arguments that is not a field's value.
fn logged_messages(dir: &Path, macro_re: &regex::Regex, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = entry.path();
        if p.is_dir() {
            logged_messages(&p, macro_re, out);
            continue;
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".rs") || name.ends_with("_tests.rs") || name == "tests.rs" {
            continue;
        }
        let src = std::fs::read_to_string(&p).expect("source");
        let src = match src.find("#[cfg(test)]\nmod tests") {
            Some(i) => &src[..i],
            None => &src[..],
        };
        for m in macro_re.find_iter(src) {
            let b = src.as_bytes();
            let (mut i, mut depth, mut prev_eq) = (m.end(), 1, false);
            let mut found = None;
            while depth > 0 && i < b.len() {
                match b[i] {
                    b'"' => {
                        let mut j = i + 1;
                        while b[j] != b'"' {
                            j += if b[j] == b'\\' { 2 } else { 1 };
                        }
                        if depth == 1 && !prev_eq && found.is_none() {
                            found = Some(src[i + 1..j].to_string());
                        }
                        i = j + 1;
                        prev_eq = false;
                        continue;
                    }
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth -= 1,
                    b'=' => prev_eq = true,
                    b',' => prev_eq = false,
                    _ => {}
                }
                i += 1;
            }
            if let Some(msg) = found {
                out.push((p.clone(), msg));
            }
        }
    }
}

#[test]
fn every_logged_warning_and_error_is_explained_in_the_troubleshooting_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut msgs = Vec::new();
    let macro_re =
        regex::Regex::new(r"(?:^|[^A-Za-z_:])(?:tracing::)?(?:warn|error)!\(").expect("regex");
    logged_messages(&root.join("src"), &macro_re, &mut msgs);
    assert!(msgs.len() > 50, "found only {} messages", msgs.len());
    let doc = std::fs::read_to_string(root.join("docs/troubleshooting.md")).expect("doc");
    let missing: Vec<String> = msgs
        .iter()
        // A message that is only a placeholder (config warnings) is described as a group.
        .filter(|(_, m)| !m.replace("{}", "").trim().is_empty())
        .filter(|(_, m)| !doc.contains(m.as_str()))
        .map(|(p, m)| format!("{}: {m}", p.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md lacks:\n{}",
        missing.join("\n")
    );
}
