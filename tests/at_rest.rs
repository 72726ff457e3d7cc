//! Patient data at rest through the real binary: the store under data_dir shows no MRN and no
//! reading, the daemon restarts with its key and delivers what it held, refuses another key or
//! a missing key file with a message naming it, seals a store an earlier version left
//! unencrypted, and gives its files 0640 and directories 0750 whatever umask it started with.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{http, wait_outbox, Admin, Daemon, DaemonBuilder, Device, Pty};

const SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.999";
const MRN: &str = "MRN7734019";
/// The oximeter's id: it is inside every stored reading, and nowhere else in the store.
const DEVICE: &str = "oxi-at-rest-4417";

fn key_file(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    vitalsd::queue::cipher::ensure_key_file(&p).unwrap();
    p
}

fn write_config(
    tmp: &Path,
    key: &Path,
    admin: &str,
    scanner: Option<&Pty>,
    ox: Option<&Pty>,
    name: &str,
) -> PathBuf {
    let mut b = DaemonBuilder::new(tmp)
        .admin(if admin.is_empty() {
            Admin::Off
        } else {
            Admin::Token
        })
        .admin_listen(admin)
        .daemon(&format!("store_key_file = {key:?}"));
    if let Some(s) = scanner {
        b = b.device(
            Device::serial("scanner1", "barcode", "exam-1", &s.path)
                .options(&format!("system = {SYSTEM:?}")),
        );
    }
    if let Some(o) = ox {
        b = b.device(
            Device::serial(DEVICE, "nonin-ascii", "exam-1", &o.path).options("report = \"every\""),
        );
    }
    b.outbox("reading").write_as(name)
}

/// `vitalsd <args>` under `sh -c 'umask <umask>; exec …'`, the key only from the config.
fn command(umask: &str, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_vitalsd"))
        .args(args)
        .env_remove(support::KEY_ENV)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("RUST_LOG", "info");
    c
}

fn start(umask: &str, cfg: &Path, log: &Path) -> Daemon {
    let stderr = std::fs::File::create(log).unwrap();
    let child = command(umask, &["run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start vitalsd");
    Daemon {
        child,
        stderr_path: log.to_path_buf(),
    }
}

/// Runs the daemon expecting it to refuse to start; returns its output.
fn refused(cfg: &Path) -> Output {
    let mut child = command("022", &["run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "vitalsd did not refuse to start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[track_caller]
fn wait_json(addr: &str, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, body) = http(addr, "GET", path, &[support::AUTH], "");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if st == 200 && ok(&v) {
            return v;
        }
        assert!(Instant::now() < until, "{path} never matched: {st} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        }
        out.push(p);
    }
    out
}

/// `grep -a` of every file under `dir`: the files that contain `needle`.
fn grep(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[track_caller]
fn assert_modes(dir: &Path) {
    assert_eq!(mode(dir), 0o750, "{}", dir.display());
    for p in files_under(dir) {
        let want = if p.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(mode(&p), want, "{}", p.display());
    }
}

fn held_ids(addr: &str) -> Vec<String> {
    let (st, body) = http(addr, "GET", "/api/held", &[support::AUTH], "");
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn stop_ok(d: Daemon) {
    let log = d.log();
    let (st, _) = d.stop();
    assert!(st.success(), "vitalsd stopped with {st}: {log}");
}

#[test]
fn the_store_shows_no_patient_data_opens_only_with_its_key_and_keeps_modes_under_umask_000() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let key = key_file(&keys, "store.key");
    let (scanner, ox) = (Pty::new(), Pty::new());
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(
        tmp.path(),
        &key,
        &admin,
        Some(&scanner),
        Some(&ox),
        "vitalsd.toml",
    );
    let (data, outbox) = (tmp.path().join("data"), tmp.path().join("outbox"));

    let d = start("000", &cfg, &tmp.path().join("run1.log"));
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    let addr = d.admin_addr();
    std::thread::sleep(Duration::from_millis(300));
    // Before any scan: the reading is held in the store.
    ox.send(b"SPO2=093 HR=101\r\n");
    wait_json(&addr, "/api/held", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    });
    // The scan sets the room's patient (a context record and an audit entry hold the MRN);
    // the next reading goes out with it.
    scanner.send(format!("{MRN}\r").as_bytes());
    wait_json(&addr, "/api/status", |v| {
        v["rooms"].as_array().is_some_and(|r| {
            r.iter()
                .any(|x| x["room"] == "exam-1" && x["patient"].is_string())
        })
    });
    std::thread::sleep(Duration::from_millis(50));
    ox.send(b"SPO2=097 HR=072\r\n");
    let lines = wait_outbox(&outbox, 1, Duration::from_secs(10));
    // What a plain store would show: the outbox (the record system's copy) has both strings.
    assert_eq!(lines[0]["patient"]["id"], MRN, "{lines:?}");
    assert!(!grep(&outbox, DEVICE).is_empty());
    // One oximeter frame is two readings (SpO2 and pulse rate).
    let held = held_ids(&addr);
    assert_eq!(held.len(), 2, "{held:?}");
    stop_ok(d);

    for needle in [MRN, DEVICE, held[0].as_str(), held[1].as_str()] {
        let found = grep(&data, needle);
        assert!(found.is_empty(), "{needle} in plain text in {found:?}");
    }
    assert_modes(&data.join("queue"));
    assert_modes(&outbox);
    assert_eq!(mode(&data), 0o750);

    // Another key: refused, with the key named (the right key still opens it, below).
    let other = key_file(&keys, "other.key");
    let cfg_other = write_config(tmp.path(), &other, "", None, None, "other.toml");
    let out = refused(&cfg_other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("does not open the queue store") && err.contains("other.key"),
        "{err}"
    );

    // No key file: refused at start, and by check-config, naming the file.
    let missing = keys.join("absent.key");
    let cfg_missing = write_config(tmp.path(), &missing, "", None, None, "missing.toml");
    let out = refused(&cfg_missing);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("store_key_file")
            && err.contains("absent.key")
            && err.contains("does not exist"),
        "{err}"
    );
    let out = command(
        "022",
        &["check-config", "--config", cfg_missing.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("absent.key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The right key: the held readings are still there and is delivered once assigned.
    let d = start("000", &cfg, &tmp.path().join("run2.log"));
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    let addr = d.admin_addr();
    assert_eq!(held_ids(&addr), held);
    let body = format!(r#"{{"patient":{{"id":"{MRN}","system":"{SYSTEM}"}},"by":"ma-jo"}}"#);
    for id in &held {
        let (st, b) = http(
            &addr,
            "POST",
            &format!("/api/held/{id}/assign"),
            &[support::AUTH],
            &body,
        );
        assert_eq!(st, 200, "{b}");
    }
    let lines = wait_outbox(&outbox, 4, Duration::from_secs(10));
    for id in &held {
        assert!(lines.iter().any(|l| l["id"] == id.as_str()), "{lines:?}");
    }
    assert!(!d.log().contains(MRN), "the log shows the MRN");
    stop_ok(d);
    assert!(grep(&data, MRN).is_empty());

    // A key others can read is refused too.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = refused(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.key") && err.contains("0644"), "{err}");
}

#[test]
fn an_unencrypted_store_from_an_earlier_version_is_sealed_at_start_and_delivered_under_umask_022() {
    use vitalsd::queue::{Queue, QueueOptions};
    use vitalsd::reading::SinkId;
    let tmp = tempfile::tempdir().unwrap();
    let key = key_file(&tmp.path().join("keys"), "store.key");
    let cfg = write_config(tmp.path(), &key, "", None, None, "vitalsd.toml");
    let data = tmp.path().join("data");
    // A reading stored by the previous version: plain sled, no key.
    let line = format!(
        r#"{{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","device":{{"id":"{DEVICE}","driver":"json"}},
        "room":"exam-1","patient":{{"id":"{MRN}","system":"{SYSTEM}"}},"kind":"spo2",
        "observed_at":"2026-11-27T12:00:00Z","received_at":"2026-11-27T12:00:00Z",
        "device_time":"2026-11-27T12:00:00Z",
        "values":[{{"name":"spo2","code":"59408-5","value":96,"unit":"%"}}]}}"#
    );
    let reading: vitalsd::reading::Reading = serde_json::from_str(&line).expect("reading JSON");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let q = Queue::open(
            &data.join("queue"),
            QueueOptions::new(vec![SinkId::new("outbox")]),
        )
        .unwrap();
        q.enqueue(vec![reading]).await.unwrap();
        q.close().await.unwrap();
    });
    assert!(
        !grep(&data, MRN).is_empty(),
        "the old store holds the MRN in plain text"
    );

    let d = start("022", &cfg, &tmp.path().join("run.log"));
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    let lines = wait_outbox(&tmp.path().join("outbox"), 1, Duration::from_secs(10));
    assert_eq!(lines[0]["patient"]["id"], MRN);
    assert!(d.log().contains("rewritten encrypted"), "{}", d.log());
    stop_ok(d);
    for needle in [MRN, DEVICE] {
        let found = grep(&data, needle);
        assert!(found.is_empty(), "{needle} in plain text in {found:?}");
    }
    assert_modes(&data.join("queue"));
    assert_modes(&tmp.path().join("outbox"));

    // The offline tools read the config's key like the daemon.
    let out = command(
        "022",
        &["queue", "verify", "--config", cfg.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("clean"), "{text}");
    let out = command(
        "022",
        &["queue", "compact", "--config", cfg.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_modes(&data.join("queue"));
    assert!(grep(&data, MRN).is_empty());
    let to = tmp.path().join("salvaged");
    let out = command(
        "000",
        &[
            "queue",
            "salvage",
            "--to",
            to.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&to), 0o750);
    assert_modes(&to.join("queue"));
    assert!(grep(&to, MRN).is_empty());
}

#[test]
fn the_key_can_be_a_systemd_credential() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("credentials");
    key_file(&creds, "store.key");
    let written = write_config(
        tmp.path(),
        Path::new("unused"),
        "",
        None,
        None,
        "vitalsd.toml",
    );
    let text = std::fs::read_to_string(&written).unwrap().replace(
        "store_key_file = \"unused\"",
        "store_key_file = \"credential:store.key\"",
    );
    std::fs::write(&written, text).unwrap();
    let check = |dir: Option<&Path>| {
        let mut c = command(
            "022",
            &["check-config", "--config", written.to_str().unwrap()],
        );
        if let Some(d) = dir {
            c.env("CREDENTIALS_DIRECTORY", d);
        }
        c.output().unwrap()
    };
    let out = check(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CREDENTIALS_DIRECTORY"), "{err}");
    let out = check(Some(&creds));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
