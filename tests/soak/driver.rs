//! The accelerated soak, shared by `tests/soak.rs` (small, in CI) and `benches/soak_days.rs`
//! (90 days): the queue with its audit files and online reclaim, in this process, driven by a
//! manual clock that advances one simulated hour per step. Each hour stores that hour's
//! readings (device time = the simulated time) and delivers them (one audited delivery each),
//! all at once or in slices ([`Shape::slices_per_hour`]: store a slice, deliver it, next
//! slice, as the daemon sees a steady rate), and replays two readings: one of a day ago (inside the dedupe window: must be a duplicate)
//! and one of 8 days ago (outside it: stored again). Every simulated day it records the
//! process's RSS and the bytes on disk.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use vitalsd::audit::{AuditLog, AuditOptions};
use vitalsd::queue::cipher::{Sealed, StoreKey};
use vitalsd::queue::reclaim::ReclaimOptions;
use vitalsd::queue::{
    AuditFiles, EnqueueOutcome, Queue, QueueClock, QueueOptions, Settle, SledStore,
};
use vitalsd::reading::{
    Decimal, DeviceId, DeviceInfo, Kind, Reading, ReadingId, SinkId, Ucum, Value,
};

#[derive(Debug, Clone)]
pub struct SoakArgs {
    pub days: u32,
    /// Readings stored per simulated day (spread over its hours).
    pub per_day: u32,
    pub audit_retention_days: u32,
    pub audit_max_bytes: u64,
}

/// How each simulated hour's readings are produced and delivered. The default is the shape
/// `tests/soak.rs` checks: one device, one enqueue at a time, pages of 1,000.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Devices sharing the hour's readings, each with its own device id (so its own dedupe
    /// buckets), each sending its part in device-time order, one device after the other.
    pub devices: u32,
    /// Devices enqueueing at the same time (their calls are combined into the writer's group
    /// commits, as a burst of devices' calls would be).
    pub parallel: u32,
    /// Readings per enqueue call and per delivery page.
    pub page: usize,
    /// `history_max_bytes` of the queue (`None`: the queue's default).
    pub history_max_bytes: Option<u64>,
    /// Slices each simulated hour is fed in: every slice stores its share of each device's
    /// readings (a minute's with 60) and delivers them before the next slice starts, the way
    /// the daemon sees a steady rate. 1 (the default) stores the whole hour, then delivers it.
    pub slices_per_hour: u32,
    /// Stop after this many simulated hours (`None`: every hour of every day); the last day's
    /// row then has only the hours run.
    pub hours: Option<u64>,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            devices: 1,
            parallel: 1,
            page: 1000,
            history_max_bytes: None,
            slices_per_hour: 1,
            hours: None,
        }
    }
}

/// One simulated day's measurements.
#[derive(Debug, Clone, Copy, Default)]
pub struct DayRow {
    pub day: u32,
    pub readings: u64,
    /// The hours' readings (replays not counted) sent in enqueue calls so far, and how many
    /// of them the queue answered `Stored`: both `readings` when every reading was fed
    /// exactly once, whatever the shape.
    pub sent: u64,
    pub stored: u64,
    pub rss_bytes: u64,
    pub store_disk_bytes: u64,
    pub store_live_bytes: u64,
    pub dedupe_bytes: u64,
    pub audit_files: u64,
    pub audit_bytes: u64,
    pub reclaims: u64,
    /// Replays inside the window stored again (must stay 0), outside it stored (expected).
    pub replays_stored_inside: u64,
    pub replays_stored_outside: u64,
    /// glibc's counters at the end of the day.
    pub heap: vitalsd::alloc::Heap,
    /// Wall time of the day: enqueueing (generating the readings included), delivering
    /// (pending pages and audited settles), and the rest (the end-of-day measurements).
    pub enqueue_secs: f64,
    pub deliver_secs: f64,
    pub total_secs: f64,
    /// RSS after each simulated hour of the day (its readings stored and delivered).
    pub rss_hourly: [u64; 24],
    /// The day's enqueue calls (each up to a page of readings, answered once stored and
    /// synced): how many, and their latency in ms at the median, the 99th percentile and the
    /// longest.
    pub enqueue_calls: usize,
    pub enqueue_ms: [f64; 3],
    /// Heap trims finished on the trim thread so far, and the longest of the day (ms).
    pub trims: u64,
    pub trim_max_ms: f64,
    /// What was resident and in the heap after each simulated hour, and what happened in it.
    pub hours: [HourSample; 24],
}

/// One simulated hour's memory: sampled when its readings are stored and delivered, plus the
/// largest figures a sampling thread saw during the hour (every [`PEAK_EVERY`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HourSample {
    pub resident: vitalsd::alloc::Resident,
    pub heap: vitalsd::alloc::Heap,
    /// The largest RSS and heap bytes in use sampled during the hour.
    pub peak_rss: u64,
    pub peak_in_use: usize,
    /// Of `peak_in_use`, the largest sampled while readings were being stored (replays
    /// included) and while they were being delivered.
    pub peak_in_use_enqueue: usize,
    pub peak_in_use_deliver: usize,
    /// Online rewrites and heap trims that finished during the hour.
    pub reclaims: u64,
    pub trims: u64,
    /// Audit files at the end of the hour.
    pub audit_files: u64,
    /// RSS right after a trim made for the sample (with [`PROBE_TRIM`] set; else 0): what of
    /// RSS a trim cannot give back.
    pub rss_after_trim: u64,
}

/// Set by the bench's `--probe-trim`: after each hour's sample, trim the heap on the spot and
/// sample RSS again (one trim an hour more than the store asks for).
pub static PROBE_TRIM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How often the sampling thread reads RSS and glibc's counters for the hourly peaks.
pub const PEAK_EVERY: Duration = Duration::from_millis(200);

/// The largest RSS and heap in use seen since the last [`Peaks::take`].
#[derive(Default)]
struct Peaks {
    rss: std::sync::atomic::AtomicU64,
    in_use: std::sync::atomic::AtomicUsize,
    stop: std::sync::atomic::AtomicBool,
}

impl Peaks {
    fn sample(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rss.fetch_max(rss_bytes(), Relaxed);
        self.in_use
            .fetch_max(vitalsd::alloc::heap().in_use, Relaxed);
    }

    fn take(&self) -> (u64, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.sample();
        (self.rss.swap(0, Relaxed), self.in_use.swap(0, Relaxed))
    }
}

impl HourSample {
    /// The columns of [`HourSample::line`].
    pub const HEADER: &'static str = "| day | hour | RSS MiB | anon MiB | file MiB | heap in use MiB | free in arenas MiB | arenas MiB | mmapped MiB | top free MiB | peak RSS MiB | peak in use MiB (storing / delivering) | rewrites | trims | audit files | RSS after a trim MiB |";

    #[allow(clippy::cast_precision_loss)]
    pub fn line(&self, day: u32, hour: usize) -> String {
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let mibu = |b: usize| b as f64 / 1_048_576.0;
        format!(
            "| {day} | {hour} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} ({:.1} / {:.1}) | {} | {} | {} | {:.1} |",
            mib(self.resident.total),
            mib(self.resident.anon),
            mib(self.resident.file),
            mibu(self.heap.in_use),
            mibu(self.heap.free),
            mibu(self.heap.arena),
            mibu(self.heap.mmapped),
            mibu(self.heap.top_free),
            mib(self.peak_rss),
            mibu(self.peak_in_use),
            mibu(self.peak_in_use_enqueue),
            mibu(self.peak_in_use_deliver),
            self.reclaims,
            self.trims,
            self.audit_files,
            mib(self.rss_after_trim),
        )
    }
}

impl DayRow {
    /// The smallest and largest hourly RSS sample of the day (of the hours run).
    pub fn rss_range(&self) -> (u64, u64) {
        let min = self
            .rss_hourly
            .iter()
            .copied()
            .filter(|&b| b > 0)
            .min()
            .unwrap_or(0);
        let max = self.rss_hourly.iter().copied().max().unwrap_or(0);
        (min, max)
    }
}

/// Enqueue-call latencies of the current day, in ms.
type Latencies = Arc<Mutex<Vec<f64>>>;

fn timed_enqueue(
    lat: &Latencies,
    out: Result<Vec<EnqueueOutcome>, vitalsd::queue::QueueError>,
    started: std::time::Instant,
) -> Vec<EnqueueOutcome> {
    lat.lock()
        .unwrap()
        .push(started.elapsed().as_secs_f64() * 1000.0);
    out.unwrap()
}

/// The median, 99th percentile and largest of `v` (sorted here).
fn percentiles(v: &mut [f64]) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i]
    };
    [at(0.5), at(0.99), v[v.len() - 1]]
}

pub const START: OffsetDateTime = time::macros::datetime!(2027-01-01 00:00 UTC);

/// Reading number `n` of `device` at `t`: one heart rate (the soak's and its cases' reading).
pub fn reading(device: &str, t: OffsetDateTime, n: u64) -> Reading {
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
        kind: Kind::HeartRate,
        observed_at: t,
        received_at: t,
        device_time: Some(t),
        values: vec![Value {
            code: "8867-4".into(),
            mdc: Some(147_842),
            name: "heart_rate".into(),
            value: Some(Decimal::from_int(i64::try_from(50 + n % 100).unwrap())),
            unit: Ucum::new("/min"),
            site: None,
            absent: None,
        }],
        flags: vec![],
        waveform: None,
    }
}

/// The reading stored at hour `h` number `i` (the same measurement when replayed): with
/// several devices, readings `0..per_device` are the first device's, spread over the hour, the
/// next ones the second device's, and so on.
fn nth(h: u64, i: u64, per_hour: u64, devices: u32) -> Reading {
    let per_device = per_hour.div_ceil(u64::from(devices.max(1))).max(1);
    let (d, j) = (i / per_device, i % per_device);
    let step = 3_600_000 / per_device;
    let t = START
        + time::Duration::hours(i64::try_from(h).unwrap())
        + time::Duration::milliseconds(i64::try_from(j * step).unwrap());
    let device = if devices <= 1 {
        "soak-cuff".to_string()
    } else {
        format!("soak-cuff-{d}")
    };
    reading(&device, t, h * per_hour + i)
}

pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

/// Runs the soak in `dir`; calls `each` with every day's row.
pub fn run(dir: &Path, a: &SoakArgs, each: impl FnMut(&DayRow)) -> Vec<DayRow> {
    run_with(dir, a, &Shape::default(), each)
}

/// [`run`] with the hours shaped by `shape`.
pub fn run_with(
    dir: &Path,
    a: &SoakArgs,
    shape: &Shape,
    mut each: impl FnMut(&DayRow),
) -> Vec<DayRow> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = Arc::new(Mutex::new(START));
    let t = Arc::clone(&now);
    let clock: vitalsd::audit::clock::Clock = Arc::new(move || *t.lock().unwrap());
    let key = StoreKey::from_bytes([9; 32], "soak");
    let qdir = dir.join("queue");
    let adir = dir.join("audit");
    let retention = Duration::from_secs(u64::from(a.audit_retention_days) * 86_400);
    let log = AuditLog::open(AuditOptions {
        dir: adir.clone(),
        key: Some(key.clone()),
        retention,
        max_bytes: a.audit_max_bytes,
        clock: Arc::clone(&clock),
    })
    .unwrap();
    let sink = SinkId::new("ehr");
    let mut opts = QueueOptions::new(vec![sink.clone()]);
    opts.cache_capacity = 16 << 20;
    opts.audit_retention = retention;
    if let Some(bytes) = shape.history_max_bytes {
        opts.history_max_bytes = bytes;
    }
    opts.audit_log = Some(AuditFiles(Arc::new(log)));
    opts.clock = QueueClock(Arc::clone(&clock));
    let mut reclaim = ReclaimOptions::new(qdir.clone(), opts.cache_capacity, key.clone());
    reclaim.every = Duration::from_secs(5);
    opts.reclaim = Some(reclaim);
    let store = Sealed::open(SledStore::open(&qdir, opts.cache_capacity).unwrap(), &key).unwrap();
    let q = Queue::with_store(Arc::new(store), opts).unwrap();
    let per_hour = u64::from(a.per_day / 24).max(1);
    let mut rows = Vec::new();
    let (mut total, mut sent, mut stored) = (0u64, 0u64, 0u64);
    let (mut inside, mut outside) = (0u64, 0u64);
    let far = time::macros::datetime!(2100-01-01 0:00 UTC);
    let devices = shape.devices.max(1);
    let page = shape.page.max(1);
    let lat: Latencies = Arc::default();
    let trimmer = vitalsd::alloc::Trimmer::global();
    let peaks = Arc::new(Peaks::default());
    let sampler = {
        let peaks = Arc::clone(&peaks);
        std::thread::spawn(move || {
            while !peaks.stop.load(std::sync::atomic::Ordering::Relaxed) {
                peaks.sample();
                std::thread::sleep(PEAK_EVERY);
            }
        })
    };
    let (mut reclaims_before, mut trims_before) = (0, trimmer.done());
    for day in 0..a.days {
        let day_started = std::time::Instant::now();
        let (mut enqueue_secs, mut deliver_secs) = (0.0, 0.0);
        let mut rss_hourly = [0u64; 24];
        let mut hours = [HourSample::default(); 24];
        let mut stopped = false;
        for hour in 0..24u64 {
            let h = u64::from(day) * 24 + hour;
            if shape.hours.is_some_and(|n| h >= n) {
                stopped = true;
                break;
            }
            let slices = u64::from(shape.slices_per_hour.max(1));
            let (mut peak_rss, mut peak_enqueue, mut peak_deliver) = (0u64, 0usize, 0usize);
            for slice in 0..slices {
                let ms = i64::try_from(slice * 3_600_000 / slices).unwrap();
                *now.lock().unwrap() = START
                    + time::Duration::hours(i64::try_from(h).unwrap())
                    + time::Duration::milliseconds(ms);
                let started = std::time::Instant::now();
                let feed = Feed {
                    h,
                    per_hour,
                    devices,
                    parallel: shape.parallel.max(1),
                    page,
                    slice: (slice, slices),
                };
                let (n, s) = enqueue_slice(&rt, &q, &lat, &feed);
                (sent, stored) = (sent + n, stored + s);
                // Replays, with the hour's last slice: a day ago (inside the 7-day window)
                // and 8 days ago (outside).
                if slice + 1 == slices && h >= 24 {
                    let t = std::time::Instant::now();
                    let r = rt.block_on(q.enqueue(vec![nth(h - 24, 0, per_hour, devices)]));
                    let out = timed_enqueue(&lat, r, t);
                    inside += u64::from(out[0] == EnqueueOutcome::Stored);
                }
                if slice + 1 == slices && h >= 8 * 24 {
                    let t = std::time::Instant::now();
                    let r = rt.block_on(q.enqueue(vec![nth(h - 8 * 24, 1, per_hour, devices)]));
                    let out = timed_enqueue(&lat, r, t);
                    outside += u64::from(out[0] == EnqueueOutcome::Stored);
                }
                enqueue_secs += started.elapsed().as_secs_f64();
                let (rss, in_use) = peaks.take();
                peak_rss = peak_rss.max(rss);
                peak_enqueue = peak_enqueue.max(in_use);
                let started = std::time::Instant::now();
                loop {
                    let page = q.pending(&sink, page, far).unwrap();
                    if page.is_empty() {
                        break;
                    }
                    let done = page
                        .into_iter()
                        .map(|p| (p.reading.id.unwrap(), Settle::Delivered))
                        .collect();
                    rt.block_on(q.settle_audited(&sink, done)).unwrap();
                }
                deliver_secs += started.elapsed().as_secs_f64();
                let (rss, in_use) = peaks.take();
                peak_rss = peak_rss.max(rss);
                peak_deliver = peak_deliver.max(in_use);
            }
            total += per_hour;
            let resident = vitalsd::alloc::resident();
            let heap = vitalsd::alloc::heap();
            let st = q.stats().unwrap();
            let trims_now = trimmer.done();
            let i = usize::try_from(hour).unwrap();
            rss_hourly[i] = resident.total;
            hours[i] = HourSample {
                resident,
                heap,
                peak_rss,
                peak_in_use: peak_enqueue.max(peak_deliver),
                peak_in_use_enqueue: peak_enqueue,
                peak_in_use_deliver: peak_deliver,
                reclaims: st.reclaims - reclaims_before,
                trims: trims_now - trims_before,
                audit_files: st.history.audit_files,
                rss_after_trim: 0,
            };
            (reclaims_before, trims_before) = (st.reclaims, trims_now);
            if PROBE_TRIM.load(std::sync::atomic::Ordering::Relaxed) {
                vitalsd::alloc::trim();
                hours[i].rss_after_trim = rss_bytes();
            }
        }
        let mut calls = std::mem::take(&mut *lat.lock().unwrap());
        // The size on disk is refreshed by the writer at most every 250 ms.
        std::thread::sleep(Duration::from_millis(260));
        rt.block_on(q.ping()).unwrap();
        let s = q.stats().unwrap();
        let row = DayRow {
            day: day + 1,
            readings: total,
            sent,
            stored,
            rss_bytes: rss_bytes(),
            store_disk_bytes: dir_bytes(&qdir),
            store_live_bytes: s.live_bytes,
            dedupe_bytes: s.history.dedupe_bytes,
            audit_files: s.history.audit_files,
            audit_bytes: dir_bytes(&adir),
            reclaims: s.reclaims,
            replays_stored_inside: inside,
            replays_stored_outside: outside,
            heap: vitalsd::alloc::heap(),
            enqueue_secs,
            deliver_secs,
            total_secs: day_started.elapsed().as_secs_f64(),
            rss_hourly,
            enqueue_calls: calls.len(),
            enqueue_ms: percentiles(&mut calls),
            trims: trimmer.done(),
            trim_max_ms: trimmer.take_longest().as_secs_f64() * 1000.0,
            hours,
        };
        each(&row);
        rows.push(row);
        if stopped {
            break;
        }
    }
    peaks.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    rt.block_on(q.close()).unwrap();
    rows
}

/// What [`enqueue_slice`] stores: slice `slice.0` of `slice.1` of hour `h`'s readings.
struct Feed {
    h: u64,
    per_hour: u64,
    devices: u32,
    parallel: u32,
    page: usize,
    slice: (u64, u64),
}

/// Stores one slice of hour `h`'s readings: each device's share of the slice (its readings
/// whose place in the hour falls in the slice) in pages of `page`, `parallel` devices at a time.
/// Returns how many were sent and how many of them the queue answered `Stored`.
fn enqueue_slice(rt: &tokio::runtime::Runtime, q: &Queue, lat: &Latencies, f: &Feed) -> (u64, u64) {
    let Feed {
        h,
        per_hour,
        devices,
        page,
        ..
    } = *f;
    let per_device = per_hour.div_ceil(u64::from(devices)).max(1);
    let (s, n) = f.slice;
    let mut ranges: Vec<(u64, u64)> = (0..per_hour)
        .step_by(usize::try_from(per_device).unwrap())
        .map(|first| {
            let start = (first + per_device * s / n).min(per_hour);
            let end = (first + per_device * (s + 1) / n).min(per_hour);
            (start, end)
        })
        .filter(|(start, end)| start < end)
        .collect();
    ranges.reverse();
    let mut total = (0u64, 0u64);
    while !ranges.is_empty() {
        let wave: Vec<(u64, u64)> = (0..f.parallel).filter_map(|_| ranges.pop()).collect();
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (first, end) in wave {
                let q = q.clone();
                let lat = Arc::clone(lat);
                tasks.spawn(async move {
                    let (mut i, mut stored) = (first, 0usize);
                    while i < end {
                        let n = (end - i).min(page as u64);
                        let batch: Vec<Reading> =
                            (i..i + n).map(|k| nth(h, k, per_hour, devices)).collect();
                        let t = std::time::Instant::now();
                        let r = q.enqueue(batch).await;
                        let out = timed_enqueue(&lat, r, t);
                        stored += out.iter().filter(|o| **o == EnqueueOutcome::Stored).count();
                        i += n;
                    }
                    (end - first, stored as u64)
                });
            }
            while let Some(done) = tasks.join_next().await {
                let (n, s) = done.unwrap();
                total = (total.0 + n, total.1 + s);
            }
        });
    }
    total
}

pub fn header() -> &'static str {
    "| day | readings | RSS MiB | store on disk MiB | store live MiB | dedupe KiB | audit files | audit MiB | reclaims |\n|---|---|---|---|---|---|---|---|---|"
}

#[allow(clippy::cast_precision_loss)]
pub fn line(r: &DayRow) -> String {
    let mib = |b: u64| b as f64 / 1_048_576.0;
    format!(
        "| {} | {} | {:.1} | {:.1} | {:.2} | {:.0} | {} | {:.1} | {} |",
        r.day,
        r.readings,
        mib(r.rss_bytes),
        mib(r.store_disk_bytes),
        mib(r.store_live_bytes),
        r.dedupe_bytes as f64 / 1024.0,
        r.audit_files,
        mib(r.audit_bytes),
        r.reclaims
    )
}
