//! A damaged queue store through the real binary: the daemon refuses to start on it with one
//! line, `vitalsd queue verify` reports it, `vitalsd queue salvage` exports what sled can still
//! read into a new data_dir, and the daemon started there delivers exactly those readings.
//!
//! The stores are made by the daemon itself: an `hl7v2` device over MLLP feeds readings to a
//! FHIR sink whose server does not answer (`127.0.0.1:1`), so they stay queued; a later config
//! names the same sink id as a file outbox to deliver them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::{mllp_addr, wait_outbox, Daemon, DaemonBuilder, Device, Sink};

const WAIT: Duration = Duration::from_secs(15);

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A config over `data`: the MLLP monitor and sink `ehr`, a dead FHIR server or `outbox`.
    fn config(&self, name: &str, data: &Path, outbox: Option<&Path>) -> PathBuf {
        let sink = match outbox {
            None => Sink::fhir("ehr", "http://127.0.0.1:1/fhir"),
            Some(dir) => Sink::file("ehr", dir, "reading"),
        };
        DaemonBuilder::new(self.tmp.path())
            .data_dir(data)
            .device(Device::mllp("monitor", "hl7v2", "exam-5", "127.0.0.1:0"))
            .sink(sink)
            .write_as(name)
    }

    /// Starts the daemon, sends `n` one-SpO2 messages from number `from` on, stops it.
    fn ingest(&self, config: &Path, from: u32, n: u32) {
        let d = Daemon::start(config, &self.path(&format!("ingest-{from}.log")));
        d.wait_log("MLLP listener ready", WAIT);
        let addr = mllp_addr(&d.log()).expect("the MLLP listener's address in the log");
        for i in from..from + n {
            support::send_spo2_oru(addr, i);
        }
        let (st, _) = d.stop();
        assert!(
            st.success(),
            "{}",
            d_log(&self.path(&format!("ingest-{from}.log")))
        );
    }
}

fn d_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn vitalsd(args: &[&str], config: &Path) -> Output {
    support::vitalsd_with_config(config, args)
}

fn text(o: &Output) -> String {
    support::output_text(o)
}

/// Every file of the store directory with its bytes.
fn snapshot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("store dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_store_sled_reports_damaged_is_refused_and_salvage_exports_what_its_log_still_holds() {
    let site = Site::new();
    let data = site.path("data");
    let cfg = site.config("queued.toml", &data, None);
    site.ingest(&cfg, 0, 20);
    let store = data.join("queue");
    let first_run = std::fs::metadata(store.join("db")).expect("db").len();
    // The second start writes sled's snapshot; its readings go after the first run's.
    site.ingest(&cfg, 100, 20);
    let clean = vitalsd(&["queue", "verify"], &cfg);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(
        text(&clean).contains("recount:  40 readings"),
        "{}",
        text(&clean)
    );

    // Damage the first run's part of the log.
    let mut db = std::fs::read(store.join("db")).expect("db");
    let at = usize::try_from(first_run / 2).expect("offset");
    db[at..at + 8].copy_from_slice(&[0xff; 8]);
    std::fs::write(store.join("db"), db).expect("damage");

    let log = support::start_refused(&cfg, &site.path("refused.log"));
    let line = log
        .lines()
        .find(|l| l.starts_with("vitalsd: "))
        .expect("the error line");
    for needle in [
        "is damaged",
        &data.display().to_string(),
        "vitalsd queue verify",
        "vitalsd queue salvage --to NEW_DIR",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }

    // verify and salvage only read the old store.
    let before = snapshot_files(&store);
    let v = vitalsd(&["queue", "verify"], &cfg);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        text(&v).contains("ONLY a replay of its log"),
        "{}",
        text(&v)
    );
    let new = site.path("salvaged");
    let s = vitalsd(&["queue", "salvage", "--to", new.to_str().unwrap()], &cfg);
    assert_eq!(s.status.code(), Some(0), "{}", text(&s));
    assert_eq!(snapshot_files(&store), before, "the old store was written");
    let out = text(&s);
    assert!(out.contains("new store check: clean"), "{out}");
    let n: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("readings exported: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("readings exported: N");
    assert!(
        n > 0 && n < 40,
        "{n} readings from a log damaged in the middle\n{out}"
    );
    let again = vitalsd(&["queue", "salvage", "--to", new.to_str().unwrap()], &cfg);
    assert!(!again.status.success(), "salvage into a used directory");

    // The salvaged data_dir, moved into place, delivers each exported reading once.
    let outbox = site.path("outbox");
    let moved = site.path("data2");
    std::fs::rename(&new, &moved).expect("move into place");
    let deliver = site.config("deliver.toml", &moved, Some(&outbox));
    let d = Daemon::start(&deliver, &site.path("deliver.log"));
    let lines = wait_outbox(&outbox, n, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let lines = support::outbox_lines(&outbox).len().max(lines.len());
    assert_eq!(lines, n, "every exported reading delivered once");
    let log = d.log();
    let (st, _) = d.stop();
    assert!(st.success(), "{log}");
    let ids: std::collections::BTreeSet<_> = support::outbox_lines(&outbox)
        .iter()
        .map(|r| r["id"].to_string())
        .collect();
    assert_eq!(ids.len(), n, "duplicates in the outbox");
}

#[test]
fn a_log_cut_to_nothing_is_refused_instead_of_starting_with_an_empty_queue() {
    let site = Site::new();
    let data = site.path("data");
    let cfg = site.config("queued.toml", &data, None);
    site.ingest(&cfg, 0, 5);
    let store = data.join("queue");
    for (p, _) in snapshot_files(&store) {
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
        {
            std::fs::remove_file(p).expect("remove snapshot");
        }
    }
    std::fs::File::options()
        .write(true)
        .open(store.join("db"))
        .and_then(|f| f.set_len(0))
        .expect("truncate");
    // sled replays an empty log as an empty store; the missing marker gives it away.
    let log = support::start_refused(&cfg, &site.path("refused.log"));
    assert!(log.contains("counters marker"), "{log}");
    assert!(log.contains("is damaged"), "{log}");
    let v = vitalsd(&["queue", "verify"], &cfg);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("counters marker"), "{}", text(&v));
    // Still refused: nothing above wrote the marker back.
    let log = support::start_refused(&cfg, &site.path("refused-again.log"));
    assert!(log.contains("counters marker"), "{log}");
}

#[test]
fn verify_and_salvage_refuse_to_read_the_store_of_a_running_daemon() {
    let site = Site::new();
    let data = site.path("data");
    let cfg = site.config("queued.toml", &data, None);
    let d = Daemon::start(&cfg, &site.path("running.log"));
    d.wait_log("vitalsd ready", WAIT);
    let v = vitalsd(&["queue", "verify"], &cfg);
    assert!(!v.status.success());
    assert!(text(&v).contains("is in use"), "{}", text(&v));
    let to = site.path("new");
    let s = vitalsd(&["queue", "salvage", "--to", to.to_str().unwrap()], &cfg);
    assert!(!s.status.success());
    assert!(text(&s).contains("is in use"), "{}", text(&s));
    assert!(
        !to.exists(),
        "salvage created its target although it refused"
    );
    d.stop();
}

#[test]
fn a_store_with_readings_of_the_layout_before_segments_is_reported_and_they_are_not_exported() {
    use vitalsd::queue::{Batch, SledStore, Store};
    let site = Site::new();
    let data = site.path("data");
    let cfg = site.config("queued.toml", &data, None);
    site.ingest(&cfg, 0, 3);
    {
        let store = SledStore::open(&data.join("queue"), 1 << 20).expect("open");
        let mut b = Batch::new();
        b.put(
            [&[b'r'][..], &[7; 16]].concat(),
            b"{\"old\": true}".to_vec(),
        );
        store.apply(b).expect("put");
        store.sync().expect("sync");
    }
    let v = vitalsd(&["queue", "verify"], &cfg);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    let out = text(&v);
    assert!(out.contains("problems: 1"), "{out}");
    assert!(
        out.contains("1 reading keys (`r`) of the layout before segments"),
        "{out}"
    );
    let new = site.path("salvaged");
    let s = vitalsd(&["queue", "salvage", "--to", new.to_str().unwrap()], &cfg);
    assert_eq!(s.status.code(), Some(0), "{}", text(&s));
    let out = text(&s);
    assert!(
        out.contains("unreadable: `r` keys: 1 readings of the layout before segments"),
        "{out}"
    );
    assert!(out.contains("readings exported: 3 (0 without"), "{out}");
    assert!(out.contains("quarantined: 1 entries"), "{out}");
    assert!(out.contains("new store check: clean"), "{out}");
    let q = std::fs::read_to_string(new.join("quarantine.jsonl")).expect("quarantine");
    assert!(q.contains("layout before segments"), "{q}");
}
