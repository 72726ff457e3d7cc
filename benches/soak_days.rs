//! `cargo bench --bench soak_days -- [--days 90] [--per-day 25920] [--retention-days 90]
//! [--audit-max-bytes N]`: the accelerated soak of `tests/soak.rs` with big numbers. 90
//! simulated days at a clinic's rate (0.3 readings/s: 25,920 a day) pass in minutes; prints a
//! markdown row per simulated day (RSS, store on disk and live, dedupe, audit files) and a
//! summary with the bytes on disk per reading retained. `cargo test --all-targets` runs it
//! without `--bench`: then only 2 small days, as a smoke test (CI runs `tests/soak.rs`).

#[path = "../tests/soak/driver.rs"]
mod driver;

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
    let tmp = tempfile::tempdir().expect("temp dir");
    let started = std::time::Instant::now();
    println!(
        "soak_days: {} days, {} readings a day ({:.2}/s simulated), audit retention {} days, audit cap {} B, malloc: {tuning:?}",
        a.days,
        a.per_day,
        f64::from(a.per_day) / 86_400.0,
        a.audit_retention_days,
        a.audit_max_bytes
    );
    println!("{}", driver::header());
    let rows = driver::run(tmp.path(), &a, |r| println!("{}", driver::line(r)));
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
