//! `cargo bench --bench pipeline`: durable queue ingest with group commit, flush latency, the
//! delivery's queue read + settle per reading, and decode throughput per driver. Prints a table
//! with the machine and the command.
//!
//! Under `cargo test` (no `--bench` argument) it runs a few iterations only, as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use vitalsd::decode::{self, Options};
use vitalsd::queue::cipher::{Sealed, StoreKey};
use vitalsd::queue::segment_entry;
use vitalsd::queue::{
    Batch, Entry, MemoryStore, Queue, QueueOptions, SledStore, Store, StoreError,
};
use vitalsd::reading::{
    Decimal, DeviceId, DeviceInfo, Kind, Lead, Reading, ReadingId, SinkId, Ucum, Value, Waveform,
};

fn reading(device: usize, n: u64) -> Reading {
    let t = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n);
    Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: DeviceId::new(format!("bench-device-{device:03}")),
            driver: "json".into(),
            model: Some("bench".into()),
            serial: None,
        },
        room: Some("exam-1".into()),
        patient: None,
        patient_record: None,
        kind: Kind::BloodPressure,
        observed_at: t,
        received_at: t,
        device_time: Some(t),
        values: ["systolic", "diastolic"]
            .iter()
            .zip([("8480-6", 150_021u32), ("8462-4", 150_022)])
            .map(|(name, (code, mdc))| Value {
                code: code.into(),
                mdc: Some(mdc),
                name: (*name).into(),
                value: Some(Decimal::from_int(120)),
                unit: Ucum::new("mm[Hg]"),
                site: None,
                absent: None,
            })
            .collect(),
        flags: Vec::new(),
        waveform: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The library's test store with hooks (`HookedStore`), here to time every sync (flush +
/// fdatasync) the queue makes; the bench uses no other hook of it.
#[path = "../src/queue/test_store.rs"]
#[allow(dead_code)]
mod test_store;

/// The store the queue benches run on: sled with every value encrypted, as the daemon runs it;
/// plain sled when `VITALSD_BENCH_PLAIN=1` (to measure what encryption costs).
fn bench_store(dir: &std::path::Path, cache: u64) -> Box<dyn Store> {
    let sled = SledStore::open(dir, cache).expect("open");
    if plain_store() {
        return Box::new(sled);
    }
    let key = StoreKey::from_bytes([7; 32], "bench");
    Box::new(Sealed::open(sled, &key).expect("sealed store"))
}

fn plain_store() -> bool {
    std::env::var("VITALSD_BENCH_PLAIN").is_ok_and(|v| v == "1")
}

/// What one ingest run measured.
struct Ingest {
    rate: f64,
    p50: Duration,
    p99: Duration,
    flush_p50: Duration,
    flush_p99: Duration,
    syncs: usize,
}

/// `producers` tasks each enqueue `batch` readings at a time (1, as a serial device's pipeline
/// does; more, as an MQTT burst does).
async fn queue_ingest(total: u64, producers: usize, batch: u64) -> Ingest {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = QueueOptions::new(vec![SinkId::new("outbox")]);
    let store = Arc::new(test_store::HookedStore::over(bench_store(
        dir.path(),
        opts.cache_capacity,
    )));
    let q = Queue::with_store(store.clone(), opts).expect("queue");
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        usize::try_from(total).unwrap_or(0),
    )));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let (q, lat) = (q.clone(), lat.clone());
        let per = total / producers as u64;
        tasks.push(tokio::spawn(async move {
            for first in (0..per).step_by(usize::try_from(batch).unwrap_or(1)) {
                let readings = (first..(first + batch).min(per))
                    .map(|n| reading(p, n))
                    .collect();
                let s = Instant::now();
                q.enqueue(readings).await.expect("enqueue");
                lat.lock().expect("lock").push(s.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await.expect("producer");
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut l = lat.lock().expect("lock").clone();
    l.sort();
    let syncs = q.sync_count();
    q.close().await.expect("close");
    let mut flushes = store.sync_times();
    flushes.sort();
    #[allow(clippy::cast_precision_loss)]
    let rate = total as f64 / secs;
    Ingest {
        rate,
        p50: percentile(&l, 0.5),
        p99: percentile(&l, 0.99),
        flush_p50: percentile(&flushes, 0.5),
        flush_p99: percentile(&flushes, 0.99),
        syncs: usize::try_from(syncs).unwrap_or(0),
    }
}

/// The start of an hour (unix seconds) after every time `reading` makes.
const CLAIM_HOUR_S: i64 = 1_800_000_000 / 3600 * 3600;

/// `reading(device, 0)` at `t_s` with `value` (a different value is a different measurement).
fn reading_at(device: usize, t_s: i64, value: i64) -> Reading {
    let mut r = reading(device, 0);
    let t = OffsetDateTime::from_unix_timestamp(t_s).expect("time");
    r.device_time = Some(t);
    r.observed_at = t;
    r.values[0].value = Some(Decimal::from_int(value));
    r
}

/// Enqueues `readings` 100 per call and returns the time per reading.
async fn enqueue_all(q: &Queue, readings: Vec<Reading>) -> Duration {
    let n = readings.len().max(1);
    let t0 = Instant::now();
    let mut it = readings.into_iter().peekable();
    while it.peek().is_some() {
        let part: Vec<Reading> = it.by_ref().take(100).collect();
        q.enqueue(part).await.expect("enqueue");
    }
    t0.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
}

/// The dedupe claim's cost as a bucket fills: enqueue time per reading (encrypted in-memory
/// store, so no fsync hides it) when every reading is alone in its device-hour, against
/// readings of one device into an hour that already holds `full` readings (an hour at 1/s is
/// 3,600). Returns (empty, full) per reading.
async fn claim_cost(full: i64, measured: i64) -> (Duration, Duration) {
    let key = StoreKey::from_bytes([7; 32], "bench");
    let store = Arc::new(Sealed::open(MemoryStore::new(), &key).expect("sealed store"));
    let q =
        Queue::with_store(store, QueueOptions::new(vec![SinkId::new("outbox")])).expect("queue");
    // Empty buckets: one reading per hour, each its own device-hour.
    let alone = (0..measured)
        .map(|i| reading_at(1, CLAIM_HOUR_S + 3600 * (i + 1), 120))
        .collect();
    let empty = enqueue_all(&q, alone).await;
    // A full hour: `full` readings one second apart, then `measured` more in the same hour.
    let fill = (0..full)
        .map(|i| reading_at(2, CLAIM_HOUR_S - 3600 + i % 3600, 100 + i / 3600))
        .collect();
    enqueue_all(&q, fill).await;
    let more = (0..measured)
        .map(|i| reading_at(2, CLAIM_HOUR_S - 3600 + i % 3600, 200 + i / 3600))
        .collect();
    let into_full = enqueue_all(&q, more).await;
    q.close().await.expect("close");
    (empty, into_full)
}

/// What the queue costs a delivery per reading (encrypted in-memory store, so no fsync hides
/// it): `n` readings stored, then read 50 at a time (`Queue::pending`, as a sink does) and
/// each batch settled delivered with its audit entries. Returns (read, settle) per reading.
async fn read_settle_cost(n: u64) -> (Duration, Duration) {
    let key = StoreKey::from_bytes([7; 32], "bench");
    let store = Arc::new(Sealed::open(MemoryStore::new(), &key).expect("sealed store"));
    let sink = SinkId::new("ehr");
    let q = Queue::with_store(store, QueueOptions::new(vec![sink.clone()])).expect("queue");
    let readings = (0..n)
        .map(|i| {
            reading_at(
                usize::try_from(i % 8).unwrap_or(0),
                CLAIM_HOUR_S + i64::try_from(i).unwrap_or(0),
                120,
            )
        })
        .collect();
    enqueue_all(&q, readings).await;
    let far = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let (mut read, mut settle, mut done) = (Duration::ZERO, Duration::ZERO, 0u64);
    loop {
        let t0 = Instant::now();
        let batch = q.pending(&sink, 50, far).expect("pending");
        read += t0.elapsed();
        if batch.is_empty() {
            break;
        }
        done += batch.len() as u64;
        let results = batch
            .iter()
            .filter_map(|p| p.reading.id)
            .map(|id| (id, vitalsd::queue::Settle::Delivered))
            .collect();
        let t0 = Instant::now();
        q.settle_audited(&sink, results).await.expect("settle");
        settle += t0.elapsed();
    }
    assert_eq!(done, n, "every reading handed out once");
    q.close().await.expect("close");
    let per = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    (read / per, settle / per)
}

/// Parsing a reading's JSON (the form earlier versions stored; kept for comparison with the
/// figures of earlier runs).
fn parse_cost(n: u32) -> Duration {
    let json = serde_json::to_vec(&reading(1, 7)).expect("json");
    let t0 = Instant::now();
    for _ in 0..n {
        let r: Reading = serde_json::from_slice(std::hint::black_box(&json)).expect("parse");
        std::hint::black_box(r);
    }
    t0.elapsed() / n.max(1)
}

/// A 10 s single-lead ECG strip at 130 Hz (the default strip of a chest strap), with its
/// heart rate, R peaks and RR intervals, for the stored-form figures.
fn ecg_reading() -> Reading {
    let mut r = reading(1, 9);
    r.kind = Kind::Ecg;
    r.values.truncate(1);
    r.values[0].code = "8867-4".into();
    r.values[0].mdc = Some(147_842);
    r.values[0].name = "heart_rate".into();
    r.values[0].unit = Ucum::new("/min");
    let samples = (0..1300i32)
        .map(|i| {
            let beat = i % 108;
            let peak = if (40..46).contains(&beat) { 900 } else { 0 };
            peak + (i * 37) % 61 - 30
        })
        .collect();
    r.waveform = Some(Waveform {
        fs_hz: 130.0,
        t0: r.observed_at,
        leads: vec![Lead {
            mdc: 131_328,
            name: "ecg".into(),
            scale_uv: 1.0,
            samples,
        }],
        r_peaks: (0..12).map(|b| 42 + b * 108).collect(),
        rr_ms: vec![831; 11],
    });
    r
}

/// Per reading: (encode, decode, stored bytes) of the binary stored form and of the JSON form
/// that earlier versions stored, timed in one process on the same reading.
fn stored_form_cost(r: &Reading, n: u32) -> [(Duration, Duration, usize); 2] {
    let n = n.max(1);
    let encoders: [fn(&Reading) -> Vec<u8>; 2] =
        [segment_entry::encode, segment_entry::encode_json];
    encoders.map(|enc| {
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(enc(std::hint::black_box(r)));
        }
        let encode = t0.elapsed() / n;
        let stored = enc(r);
        let t0 = Instant::now();
        for _ in 0..n {
            let back = segment_entry::decode(std::hint::black_box(&stored)).expect("decode");
            std::hint::black_box(back);
        }
        (encode, t0.elapsed() / n, stored.len())
    })
}

/// SHA-256 of one audit line of `len` bytes (the chain hashes every line it writes), with
/// the implementation the audit log uses.
fn sha_cost(len: usize, n: u32) -> Duration {
    let line = vec![b'x'; len];
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ring::digest::digest(
            &ring::digest::SHA256,
            std::hint::black_box(&line),
        ));
    }
    t0.elapsed() / n.max(1)
}

/// sled alone: 100 inserts of the same JSON per flush (the group-commit ceiling).
fn sled_baseline(total: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(16 << 20)
        .open()
        .expect("sled");
    let body = serde_json::to_vec(&reading(0, 0)).expect("json");
    let t0 = Instant::now();
    for n in 0..total {
        db.insert(n.to_be_bytes(), body.as_slice()).expect("insert");
        if n % 100 == 99 {
            db.flush().expect("flush");
        }
    }
    db.flush().expect("flush");
    #[allow(clippy::cast_precision_loss)]
    let r = total as f64 / t0.elapsed().as_secs_f64();
    r
}

fn decode_rate(driver: &str, frame: &[u8], frames: usize) -> f64 {
    let mut input = Vec::with_capacity(frame.len() * frames);
    for _ in 0..frames {
        input.extend_from_slice(frame);
    }
    let mut opts = Options::new();
    if decode::driver_info(driver).is_some_and(|d| d.continuous) {
        opts.insert("report".into(), "every".into());
    }
    let mut dec = decode::build(driver, &opts).expect("driver");
    let mut out = Vec::with_capacity(1024);
    let t0 = Instant::now();
    let mut n = 0usize;
    for chunk in input.chunks(4096) {
        dec.feed(chunk, &mut out);
        n += out.len();
        out.clear();
    }
    dec.finish(&mut out);
    assert!(
        n >= frames,
        "{driver}: decoded {n} events from {frames} frames"
    );
    #[allow(clippy::cast_precision_loss)]
    let r = frames as f64 / t0.elapsed().as_secs_f64();
    r
}

#[allow(clippy::cast_precision_loss)]
fn per_flush(total: u64, syncs: usize) -> f64 {
    total as f64 / syncs.max(1) as f64
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or_else(
            || "?".into(),
            |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
        );
    format!("{cores} cores, {mem}")
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (total, frames) = if full {
        (60_000u64, 200_000usize)
    } else {
        (640, 1_000)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("# vitalsd pipeline benchmark");
    println!(
        "command: cargo bench --bench pipeline   machine: {}",
        machine()
    );
    println!(
        "queue store: {}",
        if plain_store() {
            "plain sled (VITALSD_BENCH_PLAIN=1)"
        } else {
            "sled, every value encrypted (ChaCha20-Poly1305)"
        }
    );
    println!("{:<52} {:>14}", "figure", "value");
    let base = sled_baseline(total);
    println!(
        "{:<52} {:>12.0}/s",
        "sled alone, 100 inserts per flush (baseline)", base
    );
    for (producers, batch) in [(1usize, 1u64), (64, 1), (16, 50)] {
        let m = rt.block_on(queue_ingest(total, producers, batch));
        println!(
            "{:<52} {:>12.0}/s   ratio to baseline {:.2}",
            format!("queue ingest, {producers} producers x {batch} per enqueue"),
            m.rate,
            m.rate / base
        );
        println!(
            "{:<52} {:>10.2} ms / {:.2} ms   ({:.1} readings per flush)",
            "  enqueue→durable latency p50 / p99",
            m.p50.as_secs_f64() * 1e3,
            m.p99.as_secs_f64() * 1e3,
            per_flush(total, m.syncs)
        );
        println!(
            "{:<52} {:>10.2} ms / {:.2} ms",
            "  flush + fdatasync p50 / p99",
            m.flush_p50.as_secs_f64() * 1e3,
            m.flush_p99.as_secs_f64() * 1e3,
        );
    }
    let (fill, measured) = if full { (3600, 1000) } else { (400, 50) };
    let (empty, into_full) = rt.block_on(claim_cost(fill, measured));
    println!(
        "{:<52} {:>10.1} µs",
        "dedupe claim, empty device-hour (baseline), per reading",
        empty.as_secs_f64() * 1e6
    );
    println!(
        "{:<52} {:>10.1} µs   ratio to baseline {:.2}",
        format!("dedupe claim, device-hour holding {fill}, per reading"),
        into_full.as_secs_f64() * 1e6,
        into_full.as_secs_f64() / empty.as_secs_f64().max(1e-9)
    );
    let delivered = if full { 20_000 } else { 300 };
    let (read, settle) = rt.block_on(read_settle_cost(delivered));
    println!(
        "{:<52} {:>10.1} µs",
        format!("delivery: queue read of {delivered}, per reading"),
        read.as_secs_f64() * 1e6
    );
    println!(
        "{:<52} {:>10.1} µs",
        "delivery: audited settle, per reading",
        settle.as_secs_f64() * 1e6
    );
    let parses = if full { 200_000 } else { 1_000 };
    println!(
        "{:<52} {:>10.2} µs",
        "stored reading JSON parse, per reading",
        parse_cost(parses).as_secs_f64() * 1e6
    );
    for (what, r, n) in [
        ("blood pressure", reading(1, 7), parses),
        ("ECG 10 s at 130 Hz", ecg_reading(), parses / 20),
    ] {
        let [bin, json] = stored_form_cost(&r, n);
        for (form, (enc, dec, len)) in [("binary", bin), ("JSON (earlier)", json)] {
            println!(
                "{:<52} {:>7.2} / {:.2} µs   {len} bytes",
                format!("stored form {form}, {what}: encode / decode"),
                enc.as_secs_f64() * 1e6,
                dec.as_secs_f64() * 1e6,
            );
        }
    }
    println!(
        "{:<52} {:>10.2} µs",
        "audit chain SHA-256 of a 600-byte line",
        sha_cost(600, parses).as_secs_f64() * 1e6
    );
    let nonin = b"SPO2=097 HR=072\r\n";
    let json = br#"{"kind":"blood_pressure","device_time":"2026-11-27T10:00:00Z","values":[{"name":"systolic","value":121,"unit":"mm[Hg]"},{"name":"diastolic","value":79,"unit":"mm[Hg]"}]}
"#;
    println!(
        "{:<52} {:>12.0}/s",
        "decode nonin-ascii (frames)",
        decode_rate("nonin-ascii", nonin, frames)
    );
    println!(
        "{:<52} {:>12.0}/s",
        "decode json (frames)",
        decode_rate("json", json, frames)
    );
}
