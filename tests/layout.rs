//! A queue store whose layout marker names a newer layout version, through the real binary:
//! `vitalsd run`, `queue stats`, `queue verify` and `queue compact` refuse it with one message
//! that names both layout versions and what to do, and leave every file of the data directory
//! as it was; the same store marked with the layout version of earlier builds opens again.
//!
//! The store is made by the daemon itself: an `hl7v2` device over MLLP feeds readings to a
//! FHIR sink whose server does not answer (`127.0.0.1:1`), so they stay queued. The marker is
//! then changed through the library, sealed with the tests' store key as the daemon seals it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{mllp_addr, Daemon, DaemonBuilder, Device, Sink};
use vitalsd::queue::cipher::{KeySource, Sealed, StoreKey};
use vitalsd::queue::{Batch, SledStore, Store, LAYOUT_VERSION};

const WAIT: Duration = Duration::from_secs(15);

/// Every file under `dir` (recursively) with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let b = std::fs::read(&p).expect("read");
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}

/// Fails naming each file added, removed or changed since `before` (never its bytes).
#[track_caller]
fn unchanged(data: &Path, before: &[(PathBuf, Vec<u8>)], what: &str) {
    let now = snapshot(data);
    let names =
        |s: &[(PathBuf, Vec<u8>)]| -> Vec<PathBuf> { s.iter().map(|f| f.0.clone()).collect() };
    let mut changed: Vec<String> = Vec::new();
    for (p, b) in before {
        match now.iter().find(|f| &f.0 == p) {
            None => changed.push(format!("removed {}", p.display())),
            Some((_, nb)) if nb != b => changed.push(format!(
                "changed {} ({} -> {} bytes)",
                p.display(),
                b.len(),
                nb.len()
            )),
            Some(_) => {}
        }
    }
    for p in names(&now) {
        if !names(before).contains(&p) {
            changed.push(format!("added {}", p.display()));
        }
    }
    assert!(
        changed.is_empty(),
        "{what} changed the data dir: {changed:?}"
    );
}

/// Sets the store's layout marker to `marker` (sealed with the tests' key, as the daemon
/// writes it).
fn set_marker(store_dir: &Path, marker: &[u8]) {
    let key = StoreKey::load(&KeySource::File(support::store_key_file())).expect("key");
    let store =
        Sealed::open(SledStore::open(store_dir, 1 << 20).expect("open"), &key).expect("sealed");
    let mut b = Batch::new();
    b.put(b"mlayout".to_vec(), marker.to_vec());
    store.apply(b).expect("put");
    store.sync().expect("sync");
}

#[track_caller]
fn says_newer(out: &str) {
    for needle in [
        "layout version 9".to_string(),
        format!("this vitalsd's layout version {LAYOUT_VERSION}"),
        "run the newer vitalsd".to_string(),
        "restore the data directory".to_string(),
        "Nothing was written".to_string(),
    ] {
        assert!(out.contains(&needle), "{needle:?} not in:\n{out}");
    }
}

#[test]
fn a_store_of_a_newer_layout_is_refused_by_every_command_and_left_byte_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let cfg = DaemonBuilder::new(tmp.path())
        .data_dir(&data)
        .device(Device::mllp("monitor", "hl7v2", "exam-5", "127.0.0.1:0"))
        .sink(Sink::fhir("ehr", "http://127.0.0.1:1/fhir"))
        .write_as("queued.toml");
    let log = tmp.path().join("ingest.log");
    let d = Daemon::start(&cfg, &log);
    d.wait_log("MLLP listener ready", WAIT);
    let addr = mllp_addr(&d.log()).expect("the MLLP listener's address in the log");
    for i in 0..3 {
        support::send_spo2_oru(addr, i);
    }
    let (st, _) = d.stop();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap());

    let store = data.join("queue");
    set_marker(&store, b"segments v9");
    let before = snapshot(&data);

    let out = support::start_refused(&cfg, &tmp.path().join("run.log"));
    says_newer(&out);
    unchanged(&data, &before, "`vitalsd run`");

    for args in [
        &["queue", "stats"][..],
        &["queue", "verify"],
        &["queue", "compact"],
    ] {
        let o = support::vitalsd_with_config(&cfg, args);
        let out = support::output_text(&o);
        assert!(!o.status.success(), "{args:?} succeeded:\n{out}");
        says_newer(&out);
        unchanged(&data, &before, &format!("{args:?}"));
    }

    // The marker of the builds before the layout version opens, and is brought to this one.
    set_marker(&store, b"segments");
    let o = support::vitalsd_with_config(&cfg, &["queue", "stats"]);
    let out = support::output_text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("\"readings\": 3"), "{out}");
    let v = support::vitalsd_with_config(&cfg, &["queue", "verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", support::output_text(&v));
}
