//! `cargo bench --bench soak_days -- [--days 90] [--per-day 25920] [--retention-days 90]
//! [--audit-max-bytes N] [--history-max-bytes N] [--devices 1] [--parallel 1] [--page 1000]
//! [--slices-per-hour 1] [--hours H] [--probe-trim]`:
//! the accelerated soak of `tests/soak.rs` with big numbers. 90 simulated days at a clinic's
//! rate (0.3 readings/s: 25,920 a day) pass in minutes; prints a markdown row per simulated day
//! (RSS at the end of the day and the range of its 24 hourly samples, store on disk and live,
//! dedupe, audit files; glibc's heap counters; the latency of the day's enqueue calls, the heap
//! trims and the longest one; where the day's wall time went) and a summary with the bytes on
//! disk per reading retained. The hourly RSS samples themselves go to stderr, a line a day,
//! followed by a table row per simulated hour: RSS (anonymous and file pages), glibc's heap
//! counters, the largest RSS and heap in use sampled during the hour, and the rewrites and
//! trims that ran in it. `--probe-trim` trims the heap after each hourly sample and samples
//! RSS again (what a trim cannot give back).
//! `cargo test --all-targets` runs it without `--bench`: then only 2 small days, as a smoke
//! test (CI runs `tests/soak.rs`).
//!
//! For high rates: `--devices N` spreads each hour's readings over N devices (sent one device
//! after the other, each in device-time order), `--parallel P` lets P devices enqueue at once
//! (their calls share group commits), `--page` sets the readings per enqueue call and per
//! delivery page. One device at 50/s puts 180,000 readings in one dedupe bucket an hour
//! (docs/store-bounds.md, "The hash index of a cached device-hour").
//!
//! `--slices-per-hour S` feeds each simulated hour in S slices, each device's share of a slice
//! stored and then delivered before the next one (60: a minute at a time, as the daemon sees a
//! steady rate); the default 1 stores the whole hour, then delivers it. `--hours H` stops after
//! H simulated hours (for heap profiles of a few hours). Each hourly row splits the hour's
//! largest heap in use into what was sampled while storing and while delivering.
//!
//! `--case one-device` and `--case reclaim-pause` run the focused cases of
//! `soak_days/cases.rs` instead (see there).

#[path = "../tests/soak/driver.rs"]
mod driver;

#[path = "soak_days/cases.rs"]
mod cases;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[allow(clippy::cast_precision_loss)]
fn main() {
    // The store runs in this process: give it the allocator setting `vitalsd run` makes.
    let tuning = vitalsd::alloc::tune();
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let a = driver::SoakArgs {
        days: arg(&args, "--days", if full { 90 } else { 2 }),
        per_day: arg(&args, "--per-day", if full { 25_920 } else { 500 }),
        audit_retention_days: arg(&args, "--retention-days", 90),
        audit_max_bytes: arg(&args, "--audit-max-bytes", u64::MAX),
    };
    let shape = driver::Shape {
        devices: arg(&args, "--devices", 1),
        parallel: arg(&args, "--parallel", 1),
        page: arg(&args, "--page", 1000),
        history_max_bytes: args
            .iter()
            .any(|a| a == "--history-max-bytes")
            .then(|| arg(&args, "--history-max-bytes", 512 << 20)),
        slices_per_hour: arg(&args, "--slices-per-hour", 1),
        hours: args
            .iter()
            .any(|a| a == "--hours")
            .then(|| arg(&args, "--hours", 24)),
    };
    // `--dir` keeps the store somewhere other than the temp dir (it is removed at the end).
    let tmp = match args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
    {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    // `--case one-device` / `--case reclaim-pause`: the focused cases of `soak_days/cases.rs`.
    match args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        Some("one-device") => return cases::one_device(tmp.path(), &args),
        Some("reclaim-pause") => return cases::reclaim_pause(tmp.path(), &args),
        Some(other) => panic!("unknown --case {other}"),
        None => {}
    }
    if args.iter().any(|a| a == "--probe-trim") {
        driver::PROBE_TRIM.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let started = std::time::Instant::now();
    println!(
        "soak_days: {} days, {} readings a day ({:.2}/s simulated), audit retention {} days, audit cap {} B, malloc: {tuning:?}",
        a.days,
        a.per_day,
        f64::from(a.per_day) / 86_400.0,
        a.audit_retention_days,
        a.audit_max_bytes
    );
    println!("{shape:?}");
    println!(
        "{} RSS MiB hourly (min–max) | heap MiB (in use / free in arenas / arenas / mmapped) | enqueue calls | enqueue ms (p50 / p99 / max) | trims (longest ms) | enqueue s | deliver s | day s |",
        driver::header()
            .lines()
            .next()
            .unwrap_or_default()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let rows = driver::run_with(tmp.path(), &a, &shape, |r| {
        let mib = |b: usize| b as f64 / 1_048_576.0;
        let (lo, hi) = r.rss_range();
        println!(
            "{} {:.1}–{:.1} | {:.1} / {:.1} / {:.1} / {:.1} | {} | {:.1} / {:.1} / {:.1} | {} ({:.1}) | {:.0} | {:.0} | {:.0} |",
            driver::line(r),
            lo as f64 / 1_048_576.0,
            hi as f64 / 1_048_576.0,
            mib(r.heap.in_use),
            mib(r.heap.free),
            mib(r.heap.arena),
            mib(r.heap.mmapped),
            r.enqueue_calls,
            r.enqueue_ms[0],
            r.enqueue_ms[1],
            r.enqueue_ms[2],
            r.trims,
            r.trim_max_ms,
            r.enqueue_secs,
            r.deliver_secs,
            r.total_secs
        );
        let hourly: Vec<String> = r
            .rss_hourly
            .iter()
            .map(|b| format!("{:.1}", *b as f64 / 1_048_576.0))
            .collect();
        eprintln!("day {} RSS MiB by hour: {}", r.day, hourly.join(" "));
        if r.day == 1 {
            eprintln!("{}", driver::HourSample::HEADER);
        }
        // Hours not run (`--hours`) are left out.
        for (i, h) in r
            .hours
            .iter()
            .enumerate()
            .filter(|(_, h)| h.resident.total > 0)
        {
            eprintln!("{}", h.line(r.day, i + 1));
        }
    });
    let last = rows.last().expect("a day");
    let retained_days = u64::from(a.audit_retention_days.min(a.days));
    let retained = u64::from(a.per_day) * retained_days;
    println!(
        "took {:?}; at the end: store {} B on disk, audit files {} B: {:.1} B of audit file per reading retained ({} readings in {} days), dedupe {:.1} B per reading of its 7-day window; replays inside the window stored again: {}, outside it stored: {}",
        started.elapsed(),
        last.store_disk_bytes,
        last.audit_bytes,
        last.audit_bytes as f64 / retained as f64,
        retained,
        retained_days,
        last.dedupe_bytes as f64 / (f64::from(a.per_day) * 7.0),
        last.replays_stored_inside,
        last.replays_stored_outside
    );
}
