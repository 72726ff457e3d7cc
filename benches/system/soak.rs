//! `cargo bench --bench system -- soak --minutes N --rate R [--up S --down S]`: the real daemon
//! fed R readings/s by a `json` device on a pseudo-terminal for N minutes while the FHIR
//! listener flaps (up S seconds, down S seconds). Prints a line a minute (elapsed, RSS, queue
//! pending, delivered) and at the end checks that every reading written reached the listener
//! exactly once. Not for CI: it takes as long as asked.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::latency::write_paced;
use crate::listener::Listener;
use crate::proc::{self, Daemon, Pty};

pub struct SoakArgs {
    pub minutes: f64,
    pub rate: f64,
    pub up: Duration,
    pub down: Duration,
}

fn mib(b: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = b as f64 / 1_048_576.0;
    format!("{m:.1} MiB")
}

/// Runs the soak; `true` when nothing was lost or duplicated.
pub fn run(rt: &Runtime, tmp: &Path, a: &SoakArgs) -> bool {
    let mut listener = rt.block_on(Listener::start());
    listener.reset(true);
    let pty = Pty::new();
    let dev = proc::serial_device("soak-scale", "json", "exam-1", &pty.path, "");
    let cfg = tmp.join("soak.toml");
    std::fs::write(
        &cfg,
        proc::config(&tmp.join("soak-data"), &dev, &listener.base_url(), ""),
    )
    .expect("config");
    let mut d = Daemon::start(&cfg, &tmp.join("soak.log"));
    let (addr, _) = d.wait_ready(Duration::from_secs(30));
    proc::set_patient(&addr, "exam-1");
    assert!(
        proc::wait_connected(&addr, 1, Duration::from_secs(30)),
        "the device's port did not open:\n{}",
        d.log()
    );
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (a.minutes * 60.0 * a.rate).round() as usize;
    println!(
        "soak: {n} readings at {}/s over {} min; listener {} s up / {} s down; daemon pid {}",
        a.rate,
        a.minutes,
        a.up.as_secs(),
        a.down.as_secs(),
        d.pid()
    );
    println!(
        "{:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "elapsed", "rss", "peak rss", "written", "pending", "delivered", "resent", "listener"
    );
    let progress = Arc::new(AtomicUsize::new(0));
    let rate = a.rate;
    let writer = {
        let progress = progress.clone();
        std::thread::spawn(move || {
            let sent = write_paced(&pty, n, rate, &progress);
            (sent, pty)
        })
    };
    let t0 = Instant::now();
    let cycle = a.up + a.down;
    let mut next_report = Duration::from_secs(60);
    let line = |listener: &Listener, elapsed: Duration| {
        let (rss, hwm) = proc::rss(d.pid());
        let pending = proc::queue_status(&addr, "ehr").map_or("?".into(), |(p, _)| p.to_string());
        let (stored, resent) = listener.with(|s| (s.stored.len(), s.resent));
        println!(
            "{:>7.1}m {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8}",
            elapsed.as_secs_f64() / 60.0,
            mib(rss),
            mib(hwm),
            progress.load(Ordering::Relaxed),
            pending,
            stored,
            resent,
            if listener.is_up() { "up" } else { "down" }
        );
    };
    while !writer.is_finished() {
        let e = t0.elapsed();
        let in_cycle = Duration::from_nanos(
            u64::try_from(e.as_nanos() % cycle.as_nanos().max(1)).unwrap_or(0),
        );
        if in_cycle < a.up {
            rt.block_on(listener.up());
        } else {
            rt.block_on(listener.down());
        }
        if e >= next_report {
            line(&listener, e);
            next_report += Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (sent, _pty) = writer.join().expect("writer");
    rt.block_on(listener.up());
    println!("soak: writing done; listener up; waiting for the queue to drain");
    let drain0 = Instant::now();
    let deadline = drain0 + Duration::from_secs(900);
    let mut settled = false;
    while Instant::now() < deadline {
        let pending = proc::queue_status(&addr, "ehr").map(|(p, _)| p);
        if listener.stored() >= n && pending == Some(0) {
            settled = true;
            break;
        }
        if t0.elapsed() >= next_report {
            line(&listener, t0.elapsed());
            next_report += Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    line(&listener, t0.elapsed());
    let (_, status) = proc::http(&addr, "GET", "/api/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let dead = v["sinks"][0]["dead"].as_u64().unwrap_or(0);
    let (rss, hwm) = proc::rss(d.pid());
    d.stop();

    let (stored, dup, resent, posts, arrived) = listener.with(|s| {
        let arrived: HashSet<i128> = s.receipts.iter().map(|(t, _)| *t).collect();
        (
            s.stored.len(),
            s.stored.values().filter(|c| **c > 1).count(),
            s.resent,
            s.posts,
            arrived,
        )
    });
    let lost = sent.iter().filter(|t| !arrived.contains(t)).count();
    let extra = stored.saturating_sub(n);
    let ok = settled && lost == 0 && dup == 0 && extra == 0 && dead == 0;
    println!("soak summary");
    println!("  written                {n}");
    println!("  stored at the listener {stored} (Observations created)");
    println!("  lost                   {lost}");
    println!("  duplicates created     {dup}");
    println!("  unexpected extra       {extra}");
    println!("  re-sent, answered 200  {resent} (at-least-once; conditional create held)");
    println!("  dead-lettered          {dead}");
    println!("  POSTs                  {posts}");
    println!(
        "  final drain            {:.1} s after writing stopped",
        drain0.elapsed().as_secs_f64()
    );
    println!("  RSS at the end         {} (peak {})", mib(rss), mib(hwm));
    println!(
        "  result                 {}",
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}
