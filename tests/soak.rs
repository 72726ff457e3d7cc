//! Months unattended, accelerated (small numbers for CI; `cargo bench --bench soak_days` runs
//! 90 days): simulated days pass in seconds through the injected clock; the audit files rotate
//! daily and are pruned after their retention, the dedupe window ages out (a replay of a week
//! ago is new, one of a day ago is not), and RSS and disk stay flat after the warm-up.

#[path = "soak/driver.rs"]
mod driver;

#[test]
fn simulated_weeks_keep_memory_and_disk_flat_and_age_history_out() {
    let tmp = tempfile::tempdir().unwrap();
    let args = driver::SoakArgs {
        days: 16,
        per_day: 2400,
        audit_retention_days: 4,
        audit_max_bytes: u64::MAX,
    };
    eprintln!("{}", driver::header());
    let rows = driver::run(tmp.path(), &args, |r| eprintln!("{}", driver::line(r)));
    let last = rows.last().unwrap();
    assert_eq!(last.readings, 16 * 2400);
    // Rotation and retention: today's file plus the days within the retention.
    assert!(
        (4..=6).contains(&last.audit_files),
        "{} audit files",
        last.audit_files
    );
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("audit"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("2027-01-01")),
        "the first day was pruned: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("2027-01-16.jsonl")),
        "{names:?}"
    );
    // The dedupe window: replays of a day ago were duplicates, of 8 days ago new.
    assert_eq!(last.replays_stored_inside, 0);
    assert_eq!(last.replays_stored_outside, (16 - 8) * 24);
    // Flat after the warm-up (the dedupe window and the audit retention are full by day 9).
    let warm = &rows[8];
    assert!(
        last.dedupe_bytes <= warm.dedupe_bytes + warm.dedupe_bytes / 5,
        "dedupe grew: {} -> {}",
        warm.dedupe_bytes,
        last.dedupe_bytes
    );
    assert!(
        last.audit_bytes <= warm.audit_bytes + warm.audit_bytes / 2,
        "audit grew: {} -> {}",
        warm.audit_bytes,
        last.audit_bytes
    );
    let slack = 8 << 20;
    assert!(
        last.store_disk_bytes <= warm.store_disk_bytes + warm.store_disk_bytes / 2 + slack,
        "store on disk grew: {} -> {}",
        warm.store_disk_bytes,
        last.store_disk_bytes
    );
    assert!(
        last.rss_bytes <= warm.rss_bytes + warm.rss_bytes / 2 + slack,
        "RSS grew: {} -> {}",
        warm.rss_bytes,
        last.rss_bytes
    );
    // Every entry kept still chains.
    let key = vitalsd::queue::cipher::StoreKey::from_bytes([9; 32], "soak");
    let cipher = vitalsd::audit::AuditLog::cipher_for(Some(&key));
    let rep = vitalsd::audit::verify(&tmp.path().join("audit"), cipher.as_ref()).unwrap();
    assert!(rep.first_break.is_none(), "{rep:?}");
}

/// The big variant with numbers from the environment, for measuring (not CI):
/// `VITALSD_SOAK_DAYS=90 VITALSD_SOAK_PER_DAY=25920 cargo test --release --test soak -- --ignored --nocapture`
/// (the same run as `cargo bench --bench soak_days`).
#[test]
#[ignore = "minutes long: run on purpose"]
fn soak_days_from_the_environment() {
    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let args = driver::SoakArgs {
        days: env("VITALSD_SOAK_DAYS", 90),
        per_day: env("VITALSD_SOAK_PER_DAY", 25_920),
        audit_retention_days: env("VITALSD_SOAK_RETENTION_DAYS", 90),
        audit_max_bytes: u64::MAX,
    };
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    println!("{}", driver::header());
    let rows = driver::run(tmp.path(), &args, |r| println!("{}", driver::line(r)));
    let last = rows.last().unwrap();
    println!(
        "took {:?}; replays inside the window stored again: {}, outside: {}",
        started.elapsed(),
        last.replays_stored_inside,
        last.replays_stored_outside
    );
    assert_eq!(last.replays_stored_inside, 0);
}
