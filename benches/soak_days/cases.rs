//! Two focused cases of the soak bench (`cargo bench --bench soak_days -- --case NAME`):
//!
//! - `one-device`: one device at 50 readings/s (`--per-hour 180000`) for `--hours 3` simulated
//!   hours, in enqueue calls of `--page 1000`, each hour delivered and one reading of the hour
//!   before replayed (must be a duplicate). Prints a row per hour: enqueue wall time and rate,
//!   enqueue-call latency, delivery time, RSS. All of an hour's readings share one dedupe
//!   bucket, so this is the case where a claim's cost per bucket shows.
//! - `reclaim-pause`: a store holding `--live-mib 190` of history (dedupe chunks written
//!   directly, with `--garbage-mib 400` written and removed beside them so the online rewrite
//!   is due), opened by the queue with the rewrite allowed after `--before-s 10`; one reading
//!   every `--interval-ms 20` (50/s) is enqueued meanwhile, one call at a time. Prints the
//!   commit latency (enqueue → durable) of the calls before the rewrite and of the calls while
//!   it ran, the rewrite's duration and the peak RSS (VmHWM) before and after, and the
//!   rewrite's log line (its pauses, the longest, the swap's, its duration).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use vitalsd::audit::{AuditLog, AuditOptions};
use vitalsd::queue::cipher::{Sealed, StoreKey};
use vitalsd::queue::reclaim::ReclaimOptions;
use vitalsd::queue::{
    AuditFiles, Batch, EnqueueOutcome, Queue, QueueClock, QueueOptions, Settle, SledStore, Store,
};
use vitalsd::reading::{Reading, ReadingId, SinkId};

use super::arg;
use super::driver::{reading, START};

/// Reading `i` of simulated hour `h` of the one device, `per_hour` spread over the hour.
fn nth(h: u64, i: u64, per_hour: u64) -> Reading {
    let step_us = 3_600_000_000 / per_hour.max(1);
    let t = START
        + time::Duration::hours(i64::try_from(h).unwrap())
        + time::Duration::microseconds(i64::try_from(i * step_us).unwrap());
    reading("soak-cuff", t, h * per_hour + i)
}

/// The median, 99th percentile and largest of `v` (sorted here), in ms.
fn percentiles(v: &mut [f64]) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    v.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [at(0.5), at(0.99), v[v.len() - 1]]
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[allow(clippy::cast_precision_loss)]
fn mib_kb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The queue of the soak (audit files, sealed sled store, 16 MiB page cache) on a manual clock.
fn soak_queue(
    dir: &Path,
    now: &Arc<Mutex<OffsetDateTime>>,
    reclaim_every: Duration,
) -> (Queue, SinkId) {
    let t = Arc::clone(now);
    let clock: vitalsd::audit::clock::Clock = Arc::new(move || *t.lock().unwrap());
    let key = StoreKey::from_bytes([9; 32], "soak");
    let qdir = dir.join("queue");
    let log = AuditLog::open(AuditOptions {
        dir: dir.join("audit"),
        key: Some(key.clone()),
        retention: Duration::from_secs(3 * 86_400),
        max_bytes: 3 << 30,
        clock: Arc::clone(&clock),
    })
    .unwrap();
    let sink = SinkId::new("ehr");
    let mut opts = QueueOptions::new(vec![sink.clone()]);
    opts.cache_capacity = 16 << 20;
    opts.history_max_bytes = 256 << 20;
    opts.audit_log = Some(AuditFiles(Arc::new(log)));
    opts.clock = QueueClock(clock);
    let mut reclaim = ReclaimOptions::new(qdir.clone(), opts.cache_capacity, key.clone());
    reclaim.every = reclaim_every;
    opts.reclaim = Some(reclaim);
    let store = Sealed::open(SledStore::open(&qdir, opts.cache_capacity).unwrap(), &key).unwrap();
    (Queue::with_store(Arc::new(store), opts).unwrap(), sink)
}

/// `--case one-device`: see the module docs.
#[allow(clippy::cast_precision_loss)]
pub fn one_device(dir: &Path, args: &[String]) {
    let hours: u64 = arg(args, "--hours", 3);
    let per_hour: u64 = arg(args, "--per-hour", 180_000);
    let page: u64 = arg(args, "--page", 1000);
    let rt = runtime();
    let now = Arc::new(Mutex::new(START));
    let (q, sink) = soak_queue(dir, &now, Duration::from_secs(5));
    let far = time::macros::datetime!(2100-01-01 0:00 UTC);
    println!(
        "one-device: {hours} simulated hours of {per_hour} readings ({:.1}/s) from one device, enqueue calls of {page}",
        per_hour as f64 / 3600.0
    );
    println!("| hour | enqueue s | readings/s | enqueue ms (p50 / p99 / max) | replay of the hour before | deliver s | RSS MiB |");
    println!("|---|---|---|---|---|---|---|");
    let (mut all_readings, mut all_secs) = (0u64, 0.0f64);
    for h in 0..hours {
        *now.lock().unwrap() = START + time::Duration::hours(i64::try_from(h).unwrap());
        let mut lat = Vec::new();
        let started = Instant::now();
        let mut i = 0;
        while i < per_hour {
            let n = (per_hour - i).min(page);
            let batch: Vec<Reading> = (i..i + n).map(|k| nth(h, k, per_hour)).collect();
            let t = Instant::now();
            let out = rt.block_on(q.enqueue(batch)).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(out.iter().all(|o| *o == EnqueueOutcome::Stored));
            i += n;
        }
        let secs = started.elapsed().as_secs_f64();
        all_readings += per_hour;
        all_secs += secs;
        let replay = if h > 0 {
            let out = rt
                .block_on(q.enqueue(vec![nth(h - 1, per_hour / 2, per_hour)]))
                .unwrap();
            if matches!(out[0], EnqueueOutcome::Duplicate(_)) {
                "duplicate"
            } else {
                "STORED AGAIN"
            }
        } else {
            "-"
        };
        let started = Instant::now();
        loop {
            let p = q
                .pending(&sink, usize::try_from(page).unwrap(), far)
                .unwrap();
            if p.is_empty() {
                break;
            }
            let done = p
                .into_iter()
                .map(|p| (p.reading.id.unwrap(), Settle::Delivered))
                .collect();
            rt.block_on(q.settle(&sink, done)).unwrap();
        }
        let [p50, p99, max] = percentiles(&mut lat);
        println!(
            "| {} | {secs:.1} | {:.0} | {p50:.1} / {p99:.1} / {max:.1} | {replay} | {:.1} | {:.1} |",
            h + 1,
            per_hour as f64 / secs,
            started.elapsed().as_secs_f64(),
            mib_kb(status_kb("VmRSS:"))
        );
    }
    println!(
        "enqueued {all_readings} readings in {all_secs:.1} s: {:.0} readings/s",
        all_readings as f64 / all_secs
    );
    rt.block_on(q.close()).unwrap();
}

/// A dedupe chunk of 170 entries of `device` in `hour`, touched at `minute`, number `n`.
fn chunk(hour: u32, device: u64, n: u16, minute: u32) -> (Vec<u8>, Vec<u8>) {
    let mut k = vec![b'w'];
    k.extend_from_slice(&hour.to_be_bytes());
    k.extend_from_slice(&device.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    let mut v = vec![1u8];
    v.extend_from_slice(&minute.to_be_bytes());
    for e in 0..170u64 {
        v.extend_from_slice(&((u64::from(n) << 16) | e).to_be_bytes());
        v.extend_from_slice(&ReadingId::new().to_bytes());
    }
    (k, v)
}

/// Writes `mib` of dedupe chunks of devices `first..` in `hour`; returns their keys.
fn fill(store: &dyn Store, hour: u32, first: u64, mib: u64, minute: u32) -> Vec<Vec<u8>> {
    let chunks = mib * (1 << 20) / 4100;
    let mut keys = Vec::new();
    let mut batch = Batch::new();
    for c in 0..chunks {
        let (k, v) = chunk(
            hour,
            first + c / 1000,
            u16::try_from(c % 1000).unwrap(),
            minute,
        );
        keys.push(k.clone());
        batch.put(k, v);
        if batch.ops.len() == 1000 {
            store.apply(std::mem::take(&mut batch)).unwrap();
        }
    }
    store.apply(batch).unwrap();
    keys
}

/// `--case reclaim-pause`: see the module docs.
#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
pub fn reclaim_pause(dir: &Path, args: &[String]) {
    let live_mib: u64 = arg(args, "--live-mib", 190);
    let garbage_mib: u64 = arg(args, "--garbage-mib", 400);
    let before = Duration::from_secs(arg(args, "--before-s", 10));
    let interval = Duration::from_millis(arg(args, "--interval-ms", 20));
    let after = Duration::from_secs(arg(args, "--after-s", 5));
    let now = Arc::new(Mutex::new(START));
    let hour = u32::try_from(START.unix_timestamp() / 3600).unwrap();
    let minute = u32::try_from(START.unix_timestamp() / 60).unwrap();
    {
        let t = Instant::now();
        let key = StoreKey::from_bytes([9; 32], "soak");
        let store =
            Sealed::open(SledStore::open(&dir.join("queue"), 16 << 20).unwrap(), &key).unwrap();
        fill(&store, hour, 1, live_mib, minute);
        let garbage = fill(&store, hour - 1, 1 << 32, garbage_mib, minute);
        for keys in garbage.chunks(1000) {
            let mut b = Batch::new();
            for k in keys {
                b.remove(k.clone());
            }
            store.apply(b).unwrap();
        }
        store.sync().unwrap();
        println!(
            "reclaim-pause: filled {live_mib} MiB of history (and {garbage_mib} MiB written and removed) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    // The rewrite's own figures (its pauses, their longest, its duration) are in its log line.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("vitalsd::queue=info"))
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .try_init();
    let rt = runtime();
    // The rewrite's timer starts inside the open (before the counters of the filled store are
    // counted): from here, calls before `before` are surely before it was allowed.
    let opened = Instant::now();
    let (q, _sink) = soak_queue(dir, &now, before);
    let s = q.stats().unwrap();
    println!(
        "opened: live {:.1} MiB, on disk {:.1} MiB; the rewrite is allowed {} s after the open; one reading every {} ms",
        s.live_bytes as f64 / 1_048_576.0,
        s.disk_bytes as f64 / 1_048_576.0,
        before.as_secs(),
        interval.as_millis()
    );
    // Peak RSS from here on.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut calls: Vec<(Duration, f64)> = Vec::new();
    let mut hwm_before = 0;
    let mut rewrite_seen: Option<Duration> = None;
    let mut i = 0u64;
    loop {
        let due = opened + interval * u32::try_from(i).unwrap();
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = opened.elapsed();
        let t = START + time::Duration::milliseconds(i64::try_from(i * 20).unwrap());
        let t0 = Instant::now();
        let out = rt
            .block_on(q.enqueue(vec![reading("pause-cuff", t, i)]))
            .unwrap();
        calls.push((at, t0.elapsed().as_secs_f64() * 1000.0));
        assert_eq!(out, vec![EnqueueOutcome::Stored]);
        i += 1;
        if at < before {
            hwm_before = status_kb("VmHWM:");
        }
        if rewrite_seen.is_none() && q.stats().unwrap().reclaims > 0 {
            rewrite_seen = Some(opened.elapsed());
        }
        match rewrite_seen {
            Some(seen) if opened.elapsed() > seen + after => break,
            None if opened.elapsed() > before + Duration::from_secs(120) => {
                println!("no rewrite within 120 s of its being allowed");
                break;
            }
            _ => {}
        }
    }
    let hwm_after = status_kb("VmHWM:");
    let s = q.stats().unwrap();
    let mut base: Vec<f64> = calls
        .iter()
        .filter(|(at, _)| *at < before)
        .map(|c| c.1)
        .collect();
    let mut during: Vec<f64> = calls
        .iter()
        .filter(|(at, _)| *at >= before)
        .map(|c| c.1)
        .collect();
    let stalls = |v: &[f64], ms: f64| v.iter().filter(|l| **l > ms).count();
    let (nb, nd) = (base.len(), during.len());
    let (sb, sd) = (stalls(&base, 100.0), stalls(&during, 100.0));
    let [b50, b99, bmax] = percentiles(&mut base);
    let [d50, d99, dmax] = percentiles(&mut during);
    println!(
        "| calls | n | commit ms p50 / p99 / max | calls over 100 ms | peak RSS (VmHWM) MiB |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| before the rewrite was allowed | {nb} | {b50:.1} / {b99:.1} / {bmax:.1} | {sb} | {:.1} |",
        mib_kb(hwm_before)
    );
    println!(
        "| from then until {} s after the rewrite | {nd} | {d50:.1} / {d99:.1} / {dmax:.1} | {sd} | {:.1} |",
        after.as_secs(),
        mib_kb(hwm_after)
    );
    println!(
        "rewrites: {}; the rewrite was seen done {:.1} s after the open; now live {:.1} MiB, on disk {:.1} MiB",
        s.reclaims,
        rewrite_seen.unwrap_or_default().as_secs_f64(),
        s.live_bytes as f64 / 1_048_576.0,
        s.disk_bytes as f64 / 1_048_576.0
    );
    rt.block_on(q.close()).unwrap();
}
