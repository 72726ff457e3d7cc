//! Crash test of the durable queue (docs/ARCHITECTURE.md#where-the-guarantees-are-enforced): a child process enqueues through
//! `Queue::open` and prints `acked <id>` after each enqueue returns; the parent SIGKILLs it at a
//! random moment, reopens the store and checks every acknowledged reading is pending. Five
//! rounds on the same store, so recovery of an already-crashed store is exercised too.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use vitalsd::queue::{EnqueueOutcome, Queue, QueueOptions};
use vitalsd::reading::{
    Decimal, DeviceId, DeviceInfo, Kind, Reading, ReadingId, SinkId, Ucum, Value,
};

const CHILD_ENV: &str = "VITALSD_QUEUE_CRASH_DIR";
const CHILD_TEST: &str = "child_enqueues_and_acks_until_killed";

fn sinks() -> Vec<SinkId> {
    vec![SinkId::new("ehr"), SinkId::new("outbox")]
}

fn reading(device: &str, n: i64) -> Reading {
    let t = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000 + n);
    Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: DeviceId::new(device),
            driver: "test".into(),
            model: None,
            serial: None,
        },
        room: Some("exam-1".into()),
        patient: None,
        patient_record: None,
        kind: Kind::Spo2,
        observed_at: t,
        received_at: t,
        device_time: Some(t),
        values: vec![Value {
            code: "59408-5".into(),
            mdc: Some(150_456),
            name: "spo2".into(),
            value: Some(Decimal::from_int(90 + n % 10)),
            unit: Ucum::new("%"),
            site: None,
            absent: None,
        }],
        flags: vec![],
        waveform: None,
    }
}

/// The child: four concurrent writers (so group commit is in play), each enqueueing batches
/// of 1–5 readings and printing one `acked` line per reading once its enqueue returned.
#[test]
#[ignore = "run by queue_survives_sigkill_at_random_moments as a child process"]
fn child_enqueues_and_acks_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let q = Queue::open(Path::new(&dir), QueueOptions::new(sinks())).unwrap();
        println!("ready");
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let device = format!("crash-{}", std::process::id());
        let tasks: Vec<_> = (0..4i64)
            .map(|w| {
                let (q, out, device) = (q.clone(), out.clone(), device.clone());
                tokio::spawn(async move {
                    for i in 0i64.. {
                        let n = (i * 4 + w) * 8;
                        let batch: Vec<Reading> =
                            (0..1 + (i % 5)).map(|k| reading(&device, n + k)).collect();
                        let outcomes = q.enqueue(batch.clone()).await.unwrap();
                        assert!(outcomes.iter().all(|o| *o == EnqueueOutcome::Stored));
                        let mut out = out.lock().unwrap();
                        for r in &batch {
                            writeln!(out, "acked {}", r.id.unwrap()).unwrap();
                        }
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Runs one child until a random moment and returns the ids it acknowledged.
fn run_child_and_kill(dir: &Path) -> Vec<ReadingId> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--ignored"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The kill timer starts once the store is open: opening after a crash may take a while
    // on a busy machine, and a kill before the first enqueue proves nothing.
    let mut acked = Vec::new();
    let ready = Duration::from_secs(30);
    loop {
        match lines.recv_timeout(ready) {
            Ok(l) if l == "ready" => break,
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                panic!("the child did not open the store within {ready:?}: {e}");
            }
        }
    }
    std::thread::sleep(Duration::from_millis(fastrand::u64(200..=800)));
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no goodbye.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    for line in lines.try_iter() {
        if let Some(id) = line.strip_prefix("acked ") {
            acked.push(id.trim().parse().unwrap());
        }
    }
    acked
}

#[test]
fn queue_survives_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_acked: Vec<ReadingId> = Vec::new();
    for round in 0..5 {
        let acked = run_child_and_kill(dir.path());
        assert!(
            !acked.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        all_acked.extend(acked);
        let q = Queue::open(dir.path(), QueueOptions::new(sinks())).unwrap();
        let far = OffsetDateTime::now_utc() + time::Duration::days(365);
        let stats = q.stats().unwrap();
        for sink in sinks() {
            let pending: HashSet<ReadingId> = q
                .pending(&sink, usize::MAX, far)
                .unwrap()
                .into_iter()
                .filter_map(|p| p.reading.id)
                .collect();
            let lost: Vec<_> = all_acked
                .iter()
                .filter(|id| !pending.contains(id))
                .collect();
            assert!(
                lost.is_empty(),
                "round {round}, sink {sink}: {} of {} acknowledged readings lost, e.g. {}",
                lost.len(),
                all_acked.len(),
                lost[0]
            );
            let counted = stats.sinks.iter().find(|s| s.sink == sink).unwrap().pending;
            assert_eq!(
                counted,
                pending.len() as u64,
                "round {round}: counters match"
            );
        }
        eprintln!(
            "round {round}: {} acknowledged so far, all pending",
            all_acked.len()
        );
    }
}
