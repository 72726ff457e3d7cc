//! The audit files through the real binary: entries written across a day change (the test
//! clock, `VITALSD_TEST_CLOCK`), read back by `vitalsd audit` and `/api/audit`, an edited and a
//! deleted line found by `vitalsd audit verify`, and the size cap removing the oldest days
//! with a WARN before each.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{http, Admin, Daemon, DaemonBuilder, Device, Pty, AUTH};
use vitalsd::audit::{clock, AuditLog, AuditOptions};
use vitalsd::context::audit::{AuditEntry, AuditEvent, ContextSource};
use vitalsd::queue::cipher::{KeySource, StoreKey};
use vitalsd::reading::PatientRef;

fn config(dir: &Path, serial: &Path, extra: &str) -> PathBuf {
    DaemonBuilder::new(dir)
        .admin(Admin::Token)
        .daemon(extra)
        .patient_mode("hold")
        .device(Device::serial("bridge", "json", "exam-2", serial))
        .outbox("reading")
        .write()
}

/// The daemon with its store clock starting at `clock` (RFC 3339, optionally `*rate`).
fn start(cfg: &Path, log: &Path, clock: &str) -> Daemon {
    let stderr = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(support::KEY_ENV, support::store_key_file())
        .env(clock::TEST_CLOCK_ENV, clock)
        .args(["run", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start vitalsd");
    let d = Daemon {
        child,
        stderr_path: log.to_path_buf(),
    };
    d.wait_log("serial port open", Duration::from_secs(10));
    d
}

fn vitalsd(cfg: &Path, args: &[&str]) -> Output {
    support::vitalsd_with_config(cfg, args)
}

fn text(o: &Output) -> String {
    support::output_text(o)
}

fn set_patient(admin: &str, mrn: &str) {
    let body = format!(r#"{{"id":"{mrn}","system":"urn:oid:1.2.3","by":"ma-jo"}}"#);
    let (st, b) = http(admin, "PUT", "/api/rooms/exam-2/patient", &[AUTH], &body);
    assert_eq!(st, 200, "{b}");
}

fn clear_patient(admin: &str) {
    let (st, b) = http(admin, "DELETE", "/api/rooms/exam-2/patient", &[AUTH], "");
    assert_eq!(st, 200, "{b}");
}

fn events(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
        .collect()
}

#[test]
fn entries_cross_a_day_change_read_back_and_an_edit_or_a_deleted_line_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Pty::new();
    let cfg = config(tmp.path(), &dev.path, "");
    let audit = tmp.path().join("data/audit");
    // The store clock starts 10 s before midnight and runs at real speed.
    let d = start(&cfg, &tmp.path().join("log1"), "2026-12-06T23:59:50Z");
    let admin = d.admin_addr();
    set_patient(&admin, "MRN-DAY-ONE");
    std::thread::sleep(Duration::from_secs(11));
    set_patient(&admin, "MRN-DAY-TWO");
    clear_patient(&admin);
    set_patient(&admin, "MRN-DAY-TWO-B");

    // The closed day is compressed in the background: wait for its `.gz`.
    let list = || {
        let mut names: Vec<String> = std::fs::read_dir(&audit)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut names = list();
    while names
        .iter()
        .any(|n| !n.starts_with("audit-2026-12-07") && !n.ends_with(".gz"))
        && std::time::Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(50));
        names = list();
    }
    assert_eq!(
        names,
        ["audit-2026-12-06.jsonl.gz", "audit-2026-12-07.jsonl"],
        "{}",
        d.log()
    );
    // Sealed: no identifier in clear in the files.
    for n in &names {
        let raw = std::fs::read(audit.join(n)).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("MRN-DAY"), "{n}");
    }

    // Read back, across both files, while the daemon runs: newest first by default.
    let all = vitalsd(&cfg, &["audit"]);
    assert!(all.status.success(), "{}", text(&all));
    let out = String::from_utf8_lossy(&all.stdout).to_string();
    assert_eq!(
        events(&out),
        [
            "\"context_set\"",
            "\"context_cleared\"",
            "\"context_set\"",
            "\"context_set\""
        ],
        "{out}"
    );
    assert!(out.contains("MRN-DAY-ONE") && out.contains("MRN-DAY-TWO-B"));
    assert!(
        out.lines().next().unwrap().contains("MRN-DAY-TWO-B"),
        "{out}"
    );
    // `--newest` (the default) is still accepted and changes nothing.
    let named = vitalsd(&cfg, &["audit", "--newest"]);
    assert_eq!(String::from_utf8_lossy(&named.stdout), out);
    let oldest = vitalsd(&cfg, &["audit", "--oldest"]);
    assert!(oldest.status.success(), "{}", text(&oldest));
    let oldest = String::from_utf8_lossy(&oldest.stdout).to_string();
    assert_eq!(
        events(&oldest),
        [
            "\"context_set\"",
            "\"context_set\"",
            "\"context_cleared\"",
            "\"context_set\""
        ],
        "{oldest}"
    );
    let first: serde_json::Value = serde_json::from_str(oldest.lines().next().unwrap()).unwrap();
    assert!(
        first["at"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-06T23:59"),
        "{first}"
    );
    let newest = vitalsd(&cfg, &["audit", "--limit", "2", "--room", "exam-2"]);
    let newest = String::from_utf8_lossy(&newest.stdout).to_string();
    assert_eq!(
        events(&newest),
        ["\"context_set\"", "\"context_cleared\""],
        "{newest}"
    );
    assert!(newest.lines().next().unwrap().contains("MRN-DAY-TWO-B"));
    let (st, api) = http(&admin, "GET", "/api/audit?limit=1", &[AUTH], "");
    assert_eq!(st, 200, "{api}");
    let page: Vec<serde_json::Value> = serde_json::from_str(&api).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["patient"]["id"], "MRN-DAY-TWO-B");
    let (st, api) = http(
        &admin,
        "GET",
        "/api/audit?order=oldest&limit=1",
        &[AUTH],
        "",
    );
    assert_eq!(st, 200, "{api}");
    let page: Vec<serde_json::Value> = serde_json::from_str(&api).unwrap();
    assert_eq!(page[0]["patient"]["id"], "MRN-DAY-ONE");
    let (_, api) = http(
        &admin,
        "GET",
        "/api/audit?since=2026-12-07T00:00:00Z",
        &[AUTH],
        "",
    );
    let since: Vec<serde_json::Value> = serde_json::from_str(&api).unwrap();
    assert_eq!(since.len(), 3, "{api}");
    let (_, metrics) = http(&admin, "GET", "/metrics", &[AUTH], "");
    assert!(metrics.contains("vitalsd_audit_files 2"), "{metrics}");
    // Stats show the store's classes and the audit files apart.
    let (_, status) = http(&admin, "GET", "/api/status", &[AUTH], "");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let q = &status["queue"];
    assert_eq!(q["history"]["audit_files"], 2, "{q}");
    assert_eq!(q["history"]["audit_bytes"], 0, "{q}");
    assert!(
        q["history"]["audit_file_bytes"].as_u64().unwrap() > 0,
        "{q}"
    );
    for field in [
        "undelivered_bytes",
        "free_bytes",
        "live_bytes",
        "disk_bytes",
        "reclaims",
    ] {
        assert!(q[field].is_u64(), "{field} in {q}");
    }
    let (_, stats) = http(&admin, "GET", "/api/queue/stats", &[AUTH], "");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["history"]["audit_files"], 2, "{stats}");
    assert!(stats["history"]["dedupe_bytes"].is_u64(), "{stats}");

    let ok = vitalsd(&cfg, &["audit", "verify"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("intact: 4 entries in 2 files"),
        "{}",
        text(&ok)
    );
    assert!(d.stop().0.success());

    let day2 = audit.join("audit-2026-12-07.jsonl");
    let original = std::fs::read_to_string(&day2).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), 3);

    // An edited line: its time changed (the sealed event is bound to it).
    let edited = lines[1].replacen("2026-12-07T", "2026-12-08T", 1);
    std::fs::write(&day2, [lines[0], &edited, lines[2]].join("\n") + "\n").unwrap();
    let bad = vitalsd(&cfg, &["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let msg = text(&bad);
    assert!(
        msg.contains("audit-2026-12-07.jsonl line 2:"),
        "the edited line is named: {msg}"
    );

    // A deleted line: the one after it no longer chains.
    std::fs::write(&day2, [lines[0], lines[2]].join("\n") + "\n").unwrap();
    let bad = vitalsd(&cfg, &["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let msg = text(&bad);
    assert!(
        msg.contains("audit-2026-12-07.jsonl line 2:") && msg.contains("removed or changed"),
        "{msg}"
    );

    std::fs::write(&day2, &original).unwrap();
    let ok = vitalsd(&cfg, &["audit", "verify"]);
    assert!(ok.status.success(), "{}", text(&ok));
}

/// Five earlier days of entries written with the store key, about 300 KB compressed each.
fn earlier_days(dir: &Path) {
    let key = StoreKey::load(&KeySource::File(support::store_key_file())).unwrap();
    let start = time::macros::datetime!(2026-12-01 12:00 UTC);
    let now = std::sync::Arc::new(std::sync::Mutex::new(start));
    let t = std::sync::Arc::clone(&now);
    let log = AuditLog::open(AuditOptions {
        dir: dir.to_path_buf(),
        key: Some(key),
        retention: Duration::from_secs(90 * 24 * 3600),
        max_bytes: u64::MAX,
        clock: std::sync::Arc::new(move || *t.lock().unwrap()),
    })
    .unwrap();
    for day in 0..5 {
        let at = start + time::Duration::days(day);
        *now.lock().unwrap() = at;
        let entries: Vec<_> = (0..1500)
            .map(|i| {
                (
                    uuid::Uuid::now_v7(),
                    AuditEntry {
                        at,
                        event: AuditEvent::ContextSet {
                            room: "exam-2".into(),
                            patient: PatientRef {
                                id: format!("MRN-{day}-{i}"),
                                system: "urn:oid:1.2.3".into(),
                            },
                            source: ContextSource::Scan,
                            by: "scanner".into(),
                        },
                    },
                )
            })
            .collect();
        log.append(&entries).unwrap();
    }
    log.sync().unwrap();
    // Closed days are compressed in the background; these are old days, long compressed.
    log.wait_compressed();
}

#[test]
fn the_size_cap_removes_the_oldest_days_first_with_a_warn_before_each() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Pty::new();
    let cfg = config(tmp.path(), &dev.path, "audit_max_bytes = \"1MiB\"");
    let audit = tmp.path().join("data/audit");
    std::fs::create_dir_all(&audit).unwrap();
    earlier_days(&audit);
    let before = vitalsd::audit::list_days(&audit).unwrap();
    assert_eq!(before.len(), 5);
    let total: u64 = before.iter().map(|d| d.bytes).sum();
    assert!(total > 1 << 20, "the earlier days take {total} bytes");

    let d = start(&cfg, &tmp.path().join("log1"), "2026-12-06T12:00:00Z");
    let admin = d.admin_addr();
    set_patient(&admin, "MRN-TODAY");
    d.wait_log("over daemon.audit_max_bytes", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let after = vitalsd::audit::list_days(&audit).unwrap();
    let kept: u64 = after.iter().map(|d| d.bytes).sum();
    assert!(kept <= 1 << 20, "{after:?}");
    let removed: Vec<_> = before
        .iter()
        .filter(|b| !after.iter().any(|a| a.day == b.day))
        .collect();
    assert!(!removed.is_empty());
    // Oldest first: every removed day is older than every kept one.
    let oldest_kept = after.iter().map(|a| a.day).min().unwrap();
    assert!(
        removed.iter().all(|r| r.day < oldest_kept),
        "{removed:?} {after:?}"
    );
    let log = d.log();
    for r in &removed {
        let name = r.path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains("audit_max_bytes") && l.contains(&name)),
            "no WARN names {name}:\n{log}"
        );
    }
    assert!(after
        .iter()
        .any(|a| a.day == time::macros::date!(2026 - 12 - 06)));
    let (_, metrics) = http(&admin, "GET", "/metrics", &[AUTH], "");
    let line = format!(
        "vitalsd_audit_pruned_files_total{{reason=\"size\"}} {}",
        removed.len()
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    // What is kept still verifies (from the first kept day's anchor on).
    let ok = vitalsd(&cfg, &["audit", "verify"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("starts after pruned days"),
        "{}",
        text(&ok)
    );
    assert!(d.stop().0.success());
}
