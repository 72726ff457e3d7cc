//! Device → FHIR listener latency: one `json` device on a pseudo-terminal writing timestamped
//! readings at a fixed rate through the real daemon to the listener; latency is the listener's
//! receipt minus the frame's write time (both wall clock on this machine).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use time::OffsetDateTime;
use tokio::runtime::Runtime;

use crate::listener::Listener;
use crate::proc::{self, Daemon, Pty};

pub struct Latency {
    pub sent: usize,
    pub received: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// A one-Observation Bundle posted straight to the listener: p50 round trip (the floor).
    pub floor_p50: Duration,
    /// The daemon's CPU while doing it, % of one core.
    pub cpu_pct: f64,
}

/// The send time as the frame carries it: whole microseconds, so the text round-trips.
fn now_micros() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

/// A `json` driver line: a body weight whose value is unique within 100 s (the queue dedupes
/// equal values in the same second of the same device).
pub fn frame(i: usize, at: OffsetDateTime) -> String {
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "{{\"kind\":\"body_weight\",\"device_time\":\"{at}\",\"values\":[{{\"name\":\"weight\",\"value\":{}.{:02},\"unit\":\"kg\"}}]}}\n",
        40 + (i % 10_000) / 100,
        i % 100
    )
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
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

/// Writes `n` frames at `rate` per second on `pty`, paced on absolute deadlines; the send
/// times (unix nanoseconds) in order.
pub fn write_paced(pty: &Pty, n: usize, rate: f64, progress: &AtomicUsize) -> Vec<i128> {
    let t0 = Instant::now();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        #[allow(clippy::cast_precision_loss)]
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = now_micros();
        pty.send(frame(i, at).as_bytes());
        sent.push(at.unix_timestamp_nanos());
        progress.store(i + 1, Ordering::Relaxed);
    }
    sent
}

/// Round trips of one-Observation Bundles straight to the listener (no daemon).
async fn floor(base_url: &str, body: Vec<u8>, n: usize) -> Duration {
    let client = reqwest::Client::new();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = client
            .post(base_url)
            .header("content-type", "application/fhir+json")
            .body(body.clone())
            .send()
            .await
            .expect("post to the listener");
        let _ = resp.bytes().await;
        times.push(t.elapsed());
    }
    times.sort();
    percentile(&times, 0.5)
}

pub fn run(rt: &Runtime, tmp: &Path, seconds: f64, rate: f64) -> Latency {
    let listener = rt.block_on(Listener::start());
    listener.reset(true);
    let pty = Pty::new();
    let dev = proc::serial_device("bench-scale", "json", "exam-1", &pty.path, "");
    let cfg_path = tmp.join("latency.toml");
    let text = proc::config(&tmp.join("latency-data"), &dev, &listener.base_url(), "");
    std::fs::write(&cfg_path, text).expect("write config");
    let mut daemon = Daemon::start(&cfg_path, &tmp.join("latency.log"));
    let (addr, _) = daemon.wait_ready(Duration::from_secs(30));
    proc::set_patient(&addr, "exam-1");
    proc::wait_connected(&addr, 1, Duration::from_secs(30));
    // One reading through first: the connection to the listener is open before the clock starts.
    pty.send(frame(99_999, now_micros()).as_bytes());
    let until = Instant::now() + Duration::from_secs(20);
    while listener.stored() == 0 {
        assert!(
            Instant::now() < until,
            "no reading reached the listener:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    listener.reset(true);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (seconds * rate).round() as usize;
    let ticks0 = proc::cpu_ticks(daemon.pid());
    let t0 = Instant::now();
    let sent = write_paced(&pty, n, rate, &AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(30);
    while listener.stored() < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    #[allow(clippy::cast_precision_loss)]
    let cpu_pct = (proc::cpu_ticks(daemon.pid()) - ticks0) as f64
        / proc::clock_ticks()
        / t0.elapsed().as_secs_f64()
        * 100.0;
    let receipts: HashMap<i128, SystemTime> = listener.with(|s| {
        let mut m = HashMap::new();
        for (t, at) in &s.receipts {
            m.entry(*t).or_insert(*at);
        }
        m
    });
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|t| {
            let at = receipts.get(t)?;
            let since = at.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_nanos();
            let sent_ns = u128::try_from(*t).ok()?;
            Some(Duration::from_nanos(
                u64::try_from(since.saturating_sub(sent_ns)).unwrap_or(u64::MAX),
            ))
        })
        .collect();
    lat.sort();
    daemon.stop();
    let mut body = Vec::new();
    vitalsd::sink::fhir::write_transaction_bundle(&[crate::backlog::reading(0)], &mut body);
    let floor_p50 = rt.block_on(floor(&listener.base_url(), body, 300));
    Latency {
        sent: n,
        received: lat.len(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        floor_p50,
        cpu_pct,
    }
}
