//! A backlog of N readings: built through the library's queue in the daemon's own `data_dir`
//! layout, then the real daemon restarted on it (time to `/readyz`), holding it with the FHIR
//! listener down (RSS), draining it into the listener in 50-reading Bundles (rate, peak RSS),
//! and the space on disk before, full, after the drain, after a restart and after
//! `vitalsd queue compact`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::runtime::Runtime;
use vitalsd::reading::{
    Decimal, DeviceId, DeviceInfo, Kind, PatientRef, Reading, ReadingId, Ucum, Value,
};

use crate::listener::{self, Listener};
use crate::proc::{self, Daemon};

pub struct Backlog {
    pub n: u64,
    pub reading_bytes: usize,
    pub build_rate: f64,
    pub ready_empty: Duration,
    pub ready_full: Duration,
    pub ready_full_again: Duration,
    pub rss_holding: u64,
    pub hwm_holding: u64,
    pub hwm_draining: u64,
    pub rss_max_sampled_draining: u64,
    pub drain_rate: f64,
    pub drain_cpu_pct: f64,
    /// The listener alone with one client, and with as many as the sink keeps in flight.
    pub ceiling: f64,
    pub ceiling_pipelined: f64,
    pub concurrency: usize,
    /// Entries the listener received for an Observation it already had (re-sends).
    pub resent: u64,
    pub disk_empty: u64,
    pub disk_full: u64,
    pub disk_drained: u64,
    pub disk_restarted: u64,
    /// `vitalsd queue compact` on the drained, stopped store: its time and the size after.
    pub compact_took: Duration,
    pub disk_compacted: u64,
    /// What the compacted `data_dir` holds, part by part.
    pub kept: Kept,
    pub cache_size: String,
    /// With `--waits`: where the drain's time went, per part (median, p99, count).
    pub waits: Vec<Wait>,
}

/// How to drain: Bundles in flight (`None`: the sink's default), and whether to log and
/// summarise where the delivery loop waits.
#[derive(Clone, Copy, Default)]
pub struct DrainArgs {
    pub concurrency: Option<usize>,
    pub waits: bool,
}

/// One part of the drain's time, from the daemon's DEBUG timing events.
pub struct Wait {
    pub part: &'static str,
    pub median_us: u64,
    pub p99_us: u64,
    pub count: usize,
}

/// The DEBUG timing events the delivery loop, the FHIR sink and the queue's writer log
/// (docs/throughput.md, "Where a drain waits"): (event message, field, what it measures).
const WAIT_FIELDS: &[(&str, &str, &str)] = &[
    (
        "batch timings",
        "idle_us",
        "handle free until its next batch was sent",
    ),
    ("batch timings", "read_us", "queue read of the batch"),
    (
        "batch timings",
        "queued_us",
        "batch read, waiting for a free handle",
    ),
    (
        "batch timings",
        "free_us",
        "earlier versions: handle free until its read began",
    ),
    ("batch timings", "wire_us", "sink: Bundle, POST, answer"),
    ("bundle timings", "build_us", "  of it: writing the Bundle"),
    (
        "bundle timings",
        "round_trip_us",
        "  of it: HTTP round trip",
    ),
    ("bundle timings", "answer_us", "  of it: reading the answer"),
    (
        "batch timings",
        "order_us",
        "answered, waiting for older batches",
    ),
    (
        "batch timings",
        "settle_us",
        "settle requested until durable",
    ),
    (
        "group applied",
        "apply_us",
        "writer: one group staged and applied",
    ),
    (
        "group applied",
        "commands",
        "writer: requests per group (count, not µs)",
    ),
    ("groups synced", "sync_us", "syncer: one flush + fdatasync"),
    (
        "groups synced",
        "groups",
        "syncer: groups per sync (count, not µs)",
    ),
];

/// The `RUST_LOG` that makes the daemon log those events (and INFO otherwise).
const WAIT_LOG: &str = "info,vitalsd::sink::delivery=debug,vitalsd::sink::fhir::http=debug,\
vitalsd::queue::writer=debug,vitalsd::queue::syncer=debug";

/// Median and p99 of each timing field found in `log` (a text log; fields as `name=value`).
pub fn waits(log: &str) -> Vec<Wait> {
    WAIT_FIELDS
        .iter()
        .map(|(event, field, part)| {
            let key = format!(" {field}=");
            let mut v: Vec<u64> = log
                .lines()
                .filter(|l| l.contains(event))
                .filter_map(|l| {
                    let at = l.find(&key)? + key.len();
                    let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                })
                .collect();
            v.sort_unstable();
            let pick = |q: f64| {
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss
                )]
                let i = ((v.len().saturating_sub(1)) as f64 * q).round() as usize;
                v.get(i).copied().unwrap_or(0)
            };
            Wait {
                part,
                median_us: pick(0.5),
                p99_us: pick(0.99),
                count: v.len(),
            }
        })
        .collect()
}

/// What stays in `data_dir` after the drain and `vitalsd queue compact`, and what of it is
/// kept on purpose (`vitalsd queue stats` on the stopped store).
#[derive(Debug, Clone, Copy, Default)]
pub struct Kept {
    /// `data_dir/queue` (sled's files) and `data_dir/audit` (the audit trail's day files).
    pub queue_dir: u64,
    pub audit_dir: u64,
    /// Everything else in `data_dir` (the store key, the outbox, ...).
    pub other: u64,
    /// The empty store's `data_dir/queue`.
    pub empty_queue_dir: u64,
    /// The store's live bytes: undelivered, dedupe history, audit entries still in the store.
    pub live: u64,
    pub undelivered: u64,
    pub dedupe: u64,
    pub audit_in_store: u64,
    pub rejected: u64,
}

impl Kept {
    /// The history the store keeps by design and the audit files: what an empty store plus
    /// the same readings' history takes, sled's own files at their size for an empty store.
    pub fn by_design(&self) -> u64 {
        self.empty_queue_dir + self.live + self.audit_dir + self.other
    }
}

/// Splits the `data_dir` in `data` into its parts and reads the store's live bytes from
/// `vitalsd queue stats` (the daemon stopped).
fn kept(cfg: &Path, data: &Path, empty: &Path) -> Kept {
    let out = std::process::Command::new(proc::binary())
        .args(["queue", "stats", "--config"])
        .arg(cfg)
        .output()
        .expect("vitalsd queue stats");
    assert!(
        out.status.success(),
        "queue stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("queue stats JSON");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let queue_dir = proc::dir_bytes(&data.join("queue"));
    let audit_dir = proc::dir_bytes(&data.join("audit"));
    Kept {
        queue_dir,
        audit_dir,
        other: proc::dir_bytes(data).saturating_sub(queue_dir + audit_dir),
        empty_queue_dir: proc::dir_bytes(&empty.join("queue")),
        live: n(&v["live_bytes"]),
        undelivered: n(&v["undelivered_bytes"]),
        dedupe: n(&v["history"]["dedupe_bytes"]),
        audit_in_store: n(&v["history"]["audit_bytes"]),
        rejected: n(&v["history"]["rejected_bytes"]),
    }
}

/// A realistic SpO2 reading (~330 bytes of JSON), distinct per `n`: measured at a distinct
/// second, received now (a backlog received long ago makes `/readyz` report the sink as stuck,
/// by design).
pub fn reading(n: u64) -> Reading {
    let t = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + n);
    Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: DeviceId::new(format!("exam{}-oximeter", n % 20)),
            driver: "nonin-ascii".into(),
            model: Some("Nonin 7500".into()),
            serial: None,
        },
        room: Some(format!("exam-{}", n % 20)),
        patient: Some(PatientRef {
            id: format!("MRN-{}", n % 20),
            system: "urn:oid:2.16.840.1.113883.3.999".into(),
        }),
        patient_record: None,
        kind: Kind::Spo2,
        observed_at: t,
        received_at: OffsetDateTime::now_utc(),
        device_time: Some(t),
        values: vec![Value {
            code: "59408-5".into(),
            mdc: Some(150_456),
            name: "spo2".into(),
            value: Some(Decimal::from_int(90 + i64::try_from(n % 10).unwrap_or(0))),
            unit: Ucum::new("%"),
            site: None,
            absent: None,
        }],
        flags: Vec::new(),
        waveform: None,
    }
}

/// Samples VmRSS every 100 ms until stopped; the largest value seen.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(proc::rss(pid).0);
            std::thread::sleep(Duration::from_millis(100));
        }
        max
    })
}

fn build(rt: &Runtime, cfg_text: &str, n: u64) -> f64 {
    let cfg = vitalsd::config::parse(cfg_text, "bench").expect("config");
    let queue = vitalsd::app::open_queue(&cfg).expect("open the queue");
    let t0 = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        // Two producers of 1000-reading batches, so the writer always has the next one.
        let mut tasks = Vec::new();
        for p in 0..2u64 {
            let (q, done) = (queue.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut first = p * 1000;
                while first < n {
                    let batch = (first..(first + 1000).min(n)).map(reading).collect();
                    q.enqueue(batch).await.expect("enqueue the backlog");
                    let k = (first + 1000).min(n) - first;
                    let d = done.fetch_add(k, Ordering::Relaxed) + k;
                    if (d - k) / 100_000 != d / 100_000 {
                        eprintln!("  backlog: {d} readings stored");
                    }
                    first += 2000;
                }
            }));
        }
        for t in tasks {
            t.await.expect("producer");
        }
        queue.close().await.expect("close the queue");
    });
    #[allow(clippy::cast_precision_loss)]
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    rate
}

pub fn run(rt: &Runtime, tmp: &Path, n: u64, drain: DrainArgs) -> Backlog {
    let mut listener = rt.block_on(Listener::start());
    let data = tmp.join("backlog-data");
    let empty = tmp.join("empty-data");
    // A 1,000,000-reading store is larger than the default 2 GiB cap: the operator of a
    // clinic that expects such an outage raises it; the page cache stays at its default.
    let extra = "queue_max_bytes = \"16GiB\"\n";
    // The sink table is the config's last: a key appended belongs to it.
    let sink_extra = drain
        .concurrency
        .map_or(String::new(), |c| format!("concurrency = {c}\n"));
    let cfg_text = proc::config(&data, "", &listener.base_url(), extra) + &sink_extra;
    let cfg = tmp.join("backlog.toml");
    std::fs::write(&cfg, &cfg_text).expect("config");
    let cfg_empty = tmp.join("empty.toml");
    std::fs::write(
        &cfg_empty,
        proc::config(&empty, "", &listener.base_url(), extra) + &sink_extra,
    )
    .expect("config");
    let log = tmp.join("backlog.log");

    // Restart time with an empty store (the baseline), listener up, nothing to send.
    let mut d = Daemon::start(&cfg_empty, &tmp.join("empty.log"));
    let (_, ready_empty) = d.wait_ready(Duration::from_secs(30));
    d.stop();
    let disk_empty = proc::dir_bytes(&empty);

    eprintln!("  backlog: building {n} readings");
    let build_rate = build(rt, &cfg_text, n);
    let disk_full = proc::dir_bytes(&data);

    // The listener's own ceiling, alone, with the Bundles the sink would send.
    let sample: Vec<Reading> = (0..20_000.min(n)).map(reading).collect();
    let bundles: Vec<(usize, Vec<u8>)> = sample
        .chunks(50)
        .map(|c| {
            let b = vitalsd::sink::fhir::transaction_bundle(c);
            (c.len(), serde_json::to_vec(&b).expect("bundle JSON"))
        })
        .collect();
    let concurrency = drain
        .concurrency
        .unwrap_or_else(vitalsd::config::default_fhir_concurrency);
    let ceiling = rt.block_on(listener::ceiling(&listener.base_url(), &bundles, 1));
    listener.reset(false);
    let ceiling_pipelined = rt.block_on(listener::ceiling(
        &listener.base_url(),
        &bundles,
        concurrency,
    ));
    listener.reset(false);

    // Holding: the listener is down; start, ready, settle, RSS.
    rt.block_on(listener.down());
    let mut d = Daemon::start(&cfg, &log);
    let (_, ready_full) = d.wait_ready(Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(5));
    let (rss_holding, hwm_holding) = proc::rss(d.pid());
    d.stop();

    // Draining: listener up, restart (ready again), count until every reading arrived.
    // `VITALSD_BENCH_HEAPTRACK=FILE` runs this daemon under heaptrack's preload, its raw
    // profile to FILE (`heaptrack_interpret < FILE | gzip > FILE.gz; heaptrack_print FILE.gz`).
    rt.block_on(listener.up());
    // VITALSD_WRAP_DRAIN="valgrind --tool=callgrind --callgrind-out-file=cg.out" profiles the
    // draining daemon only.
    let wrap = std::env::var("VITALSD_WRAP_DRAIN")
        .ok()
        .filter(|w| !w.is_empty());
    let mut profile: Vec<(String, String)> = std::env::var("VITALSD_BENCH_HEAPTRACK")
        .map(|out| {
            vec![
                (
                    "LD_PRELOAD".to_string(),
                    "/usr/lib/heaptrack/libheaptrack_preload.so".to_string(),
                ),
                ("DUMP_HEAPTRACK_OUTPUT".to_string(), out),
            ]
        })
        .unwrap_or_default();
    if drain.waits {
        profile.push(("RUST_LOG".into(), WAIT_LOG.into()));
    }
    let mut d = Daemon::start_wrapped(&cfg, &log, wrap.as_deref(), &profile);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(d.pid(), stop.clone());
    let (addr, ready_full_again) = d.wait_ready(Duration::from_secs(120));
    let ticks0 = proc::cpu_ticks(d.pid());
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(3600);
    while listener.stored() < usize::try_from(n).unwrap_or(usize::MAX) {
        assert!(Instant::now() < deadline, "drain did not finish in an hour");
        if last_print.elapsed() > Duration::from_secs(15) {
            eprintln!("  drain: {} of {n} at the listener", listener.stored());
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    #[allow(clippy::cast_precision_loss)]
    let drain_cpu_pct = (proc::cpu_ticks(d.pid()) - ticks0) as f64
        / proc::clock_ticks()
        / t0.elapsed().as_secs_f64()
        * 100.0;
    let span = listener.with(|s| match (s.first_post, s.last_post) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => f64::NAN,
    });
    #[allow(clippy::cast_precision_loss)]
    let drain_rate = n as f64 / span;
    // Settled: every pending entry gone (the last settle follows the last answer).
    let until = Instant::now() + Duration::from_secs(30);
    while proc::queue_status(&addr, "ehr").is_none_or(|(p, _)| p > 0) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let rss_max_sampled_draining = sampler.join().unwrap_or(0);
    let hwm_draining = proc::rss(d.pid()).1;
    std::thread::sleep(Duration::from_secs(2));
    let disk_drained = proc::dir_bytes(&data);
    let waits = if drain.waits {
        waits(&d.log())
    } else {
        Vec::new()
    };
    d.stop();

    // Restart on the drained store: does the space come back?
    let mut d = Daemon::start(&cfg, &log);
    d.wait_ready(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    d.stop();
    let disk_restarted = proc::dir_bytes(&data);
    // The mitigation: compact the stopped daemon's store.
    let t0 = Instant::now();
    let out = std::process::Command::new(proc::binary())
        .args(["queue", "compact", "--config"])
        .arg(&cfg)
        .output()
        .expect("vitalsd queue compact");
    assert!(
        out.status.success(),
        "queue compact failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compact_took = t0.elapsed();
    let disk_compacted = proc::dir_bytes(&data);
    let kept = kept(&cfg, &data, &empty);
    let resent = listener.with(|s| s.resent);
    let dup = listener.with(|s| s.stored.values().filter(|c| **c > 1).count());
    assert_eq!(dup, 0, "the listener stored {dup} Observations twice");
    Backlog {
        n,
        reading_bytes: serde_json::to_vec(&reading(1)).map_or(0, |v| v.len()),
        build_rate,
        ready_empty,
        ready_full,
        ready_full_again,
        rss_holding,
        hwm_holding,
        hwm_draining,
        rss_max_sampled_draining,
        drain_rate,
        drain_cpu_pct,
        ceiling,
        ceiling_pipelined,
        concurrency,
        resent,
        disk_empty,
        disk_full,
        disk_drained,
        disk_restarted,
        compact_took,
        disk_compacted,
        kept,
        cache_size: "16MiB (default)".into(),
        waits,
    }
}
