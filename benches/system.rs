//! `cargo bench --bench system`: the whole daemon, measured through the real release binary
//! with config files in a temp dir. Prints one table (figure, value, same-run baseline, ratio,
//! docs/ARCHITECTURE.md#performance-targets target, met?) with the command and the machine:
//! - device → FHIR listener latency at 100 readings/s (serial device on a pseudo-terminal);
//! - a backlog of N readings (default 1,000,000): restart time to `/readyz`, RSS holding and
//!   draining it, drain rate in 50-reading Bundles against the listener's own ceiling, bytes on
//!   disk per reading and whether the space comes back;
//! - RSS and CPU at idle with 20 silent serial devices (baseline: no devices).
//!
//! Flags (after `--`): `--n N`, `--latency-secs S`, `--rate R`, `--devices D`, `--settle S`,
//! `--idle-secs S`, `--only latency,backlog,idle`, `--rows FILE` (appends the rows as TSV),
//! `--concurrency K` (Bundles in flight for the drain; default the sink's), `--waits` (the
//! draining daemon logs its DEBUG timings and the table gets where the drain waited: median
//! and p99 per part). `VITALSD_BIN` names another daemon binary to measure.
//! `-- soak --minutes N --rate R [--up S] [--down S]` runs the soak instead (see `soak`).
//! Under `cargo test` (no `--bench` argument) it runs every part briefly, as a smoke test.

#[path = "system/backlog.rs"]
mod backlog;
#[path = "system/idle.rs"]
mod idle;
#[path = "system/latency.rs"]
mod latency;
#[path = "system/listener.rs"]
mod listener;
#[path = "system/proc.rs"]
mod proc;
#[path = "../tests/support/pty.rs"]
mod pty;
#[path = "system/soak.rs"]
mod soak;

use std::io::Write;
use std::time::Duration;

/// `a / b`, NaN when `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

struct Row {
    figure: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
    met: String,
}

fn row(figure: &str, value: String, baseline: String, ratio: Option<f64>) -> Row {
    Row {
        figure: figure.into(),
        value,
        baseline,
        ratio: ratio
            .filter(|r| r.is_finite())
            .map_or("—".into(), |r| format!("{r:.2}")),
        target: "—".into(),
        met: "—".into(),
    }
}

impl Row {
    fn target(mut self, target: &str, met: bool) -> Row {
        self.target = target.into();
        self.met = if met { "yes" } else { "**no**" }.into();
        self
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[allow(clippy::cast_precision_loss)]
fn mb(b: u64) -> String {
    if b < 1_000_000 {
        format!("{:.0} kB", b as f64 / 1e3)
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

#[allow(clippy::cast_precision_loss)]
fn f(b: u64) -> f64 {
    b as f64
}

fn rate(r: f64) -> String {
    format!("{r:.0}/s")
}

/// `nproc`, MemTotal, CPU model, kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".into(), |kb| {
            format!("{:.1} GiB", f(kb) / 1024.0 / 1024.0)
        });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?".into(), |(_, m)| m.trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores, {mem} MemTotal, {cpu}, Linux {}",
        kernel.trim()
    )
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    vitalsd::tls::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let command: Vec<&str> = args
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    println!("# vitalsd system benchmark");
    println!(
        "command: cargo bench --bench system -- {}",
        command.join(" ")
    );
    println!("binary: {}", proc::binary().display());
    println!("machine: {}", machine());

    if args.iter().any(|a| a == "soak") {
        let a = soak::SoakArgs {
            minutes: arg(&args, "--minutes", 30.0),
            rate: arg(&args, "--rate", 50.0),
            up: Duration::from_secs(arg(&args, "--up", 120)),
            down: Duration::from_secs(arg(&args, "--down", 60)),
        };
        let ok = soak::run(&rt, tmp.path(), &a);
        std::process::exit(if ok { 0 } else { 1 });
    }

    let only: String = arg(&args, "--only", "latency,backlog,idle".to_string());
    let (lat_secs, n, devices, settle, idle_secs) = if full {
        (30.0, 1_000_000, 20, 10, 30)
    } else {
        (2.0, 2_000, 3, 1, 2)
    };
    let lat_secs: f64 = arg(&args, "--latency-secs", lat_secs);
    let lat_rate: f64 = arg(&args, "--rate", 100.0);
    let n: u64 = arg(&args, "--n", n);
    let devices: usize = arg(&args, "--devices", devices);
    let settle = Duration::from_secs(arg(&args, "--settle", settle));
    let idle_window = Duration::from_secs(arg(&args, "--idle-secs", idle_secs));
    let mut rows = Vec::new();

    if only.contains("latency") {
        eprintln!("latency: {lat_rate} readings/s for {lat_secs} s");
        let l = latency::run(&rt, tmp.path(), lat_secs, lat_rate);
        let what = format!("{lat_rate} readings/s, {lat_secs} s, one serial device");
        rows.push(
            row(
                &format!("device → FHIR listener latency p50 ({what})"),
                ms(l.p50),
                format!("listener round trip alone p50: {}", ms(l.floor_p50)),
                Some(ratio(l.p50.as_secs_f64(), l.floor_p50.as_secs_f64())),
            )
            .target("≤ 20 ms", l.p50 <= Duration::from_millis(20)),
        );
        rows.push(
            row(
                "device → FHIR listener latency p99",
                ms(l.p99),
                "—".into(),
                None,
            )
            .target("≤ 100 ms", l.p99 <= Duration::from_millis(100)),
        );
        rows.push(row(
            "  latency max; readings delivered",
            format!("{}; {} of {}", ms(l.max), l.received, l.sent),
            "—".into(),
            None,
        ));
        rows.push(row(
            &format!("daemon CPU at {lat_rate} readings/s (% of one core)"),
            format!("{:.1} %", l.cpu_pct),
            "—".into(),
            None,
        ));
    }
    if only.contains("backlog") {
        eprintln!("backlog: {n} readings");
        let drain = backlog::DrainArgs {
            concurrency: args
                .iter()
                .position(|a| a == "--concurrency")
                .map(|_| arg(&args, "--concurrency", 4)),
            waits: args.iter().any(|a| a == "--waits"),
        };
        let b = backlog::run(&rt, tmp.path(), n, drain);
        rows.push(row(
            &format!(
                "backlog built through the library queue ({} B reading JSON)",
                b.reading_bytes
            ),
            rate(b.build_rate),
            "—".into(),
            None,
        ));
        let one_s = Duration::from_secs(1);
        rows.push(
            row(
                &format!("restart with {n} queued → /readyz 200 (listener down)"),
                ms(b.ready_full),
                format!("empty store: {}", ms(b.ready_empty)),
                Some(ratio(
                    b.ready_full.as_secs_f64(),
                    b.ready_empty.as_secs_f64(),
                )),
            )
            .target("≤ 1 s", b.ready_full <= one_s),
        );
        rows.push(
            row(
                &format!("restart with {n} queued → /readyz 200 (again, listener up)"),
                ms(b.ready_full_again),
                format!("empty store: {}", ms(b.ready_empty)),
                Some(ratio(
                    b.ready_full_again.as_secs_f64(),
                    b.ready_empty.as_secs_f64(),
                )),
            )
            .target("≤ 1 s", b.ready_full_again <= one_s),
        );
        let cap = 64_000_000;
        rows.push(
            row(
                &format!(
                    "RSS holding {n} (VmRSS 5 s after ready; peak VmHWM), cache_size {}",
                    b.cache_size
                ),
                format!("{} (peak {})", mb(b.rss_holding), mb(b.hwm_holding)),
                "—".into(),
                None,
            )
            .target("≤ 64 MB", b.hwm_holding <= cap),
        );
        rows.push(
            row(
                &format!("RSS draining {n} (peak VmHWM; largest VmRSS sampled)"),
                format!(
                    "{} ({})",
                    mb(b.hwm_draining),
                    mb(b.rss_max_sampled_draining)
                ),
                "—".into(),
                None,
            )
            .target("≤ 64 MB", b.hwm_draining <= cap),
        );
        rows.push(
            row(
                &format!(
                    "backlog drain to the local FHIR listener, 50-reading Bundles, {} in flight",
                    b.concurrency
                ),
                rate(b.drain_rate),
                format!(
                    "listener alone, same Bundles, {} clients: {}",
                    b.concurrency,
                    rate(b.ceiling_pipelined)
                ),
                Some(ratio(b.drain_rate, b.ceiling_pipelined)),
            )
            .target(
                "≥ 0.60 of the listener",
                ratio(b.drain_rate, b.ceiling_pipelined) >= 0.6,
            ),
        );
        rows.push(row(
            "  the same drain against the listener with one client",
            rate(b.drain_rate),
            format!("listener alone, one client: {}", rate(b.ceiling)),
            Some(ratio(b.drain_rate, b.ceiling)),
        ));
        rows.push(row(
            "  entries re-sent to the listener during the drain (none stored twice)",
            format!("{}", b.resent),
            "—".into(),
            None,
        ));
        rows.push(row(
            "daemon CPU while draining (% of one core)",
            format!("{:.0} %", b.drain_cpu_pct),
            "—".into(),
            None,
        ));
        for w in &b.waits {
            rows.push(row(
                &format!(
                    "  drain wait: {} (median / p99, µs; {} samples)",
                    w.part, w.count
                ),
                format!("{} / {}", w.median_us, w.p99_us),
                "—".into(),
                None,
            ));
        }
        let per = ratio(f(b.disk_full.saturating_sub(b.disk_empty)), f(b.n));
        rows.push(row(
            "bytes on disk per queued reading",
            format!("{per:.0} B"),
            format!("reading JSON: {} B", b.reading_bytes),
            Some(ratio(per, f(u64::try_from(b.reading_bytes).unwrap_or(0)))),
        ));
        // History (the dedupe window, the audit trail) stays after a drain by design: the
        // space has come back when what is left is the empty store plus that history, within
        // a tenth of what the backlog took.
        let k = b.kept;
        let tenth = b.disk_full.saturating_sub(b.disk_empty) / 10;
        let kept_by_design = b.disk_empty.max(k.by_design());
        let back = |size: u64| size <= kept_by_design + tenth;
        rows.push(
            row(
                "data_dir size: full / after drain / after restart",
                format!(
                    "{} / {} / {}",
                    mb(b.disk_full),
                    mb(b.disk_drained),
                    mb(b.disk_restarted)
                ),
                format!(
                    "empty store + the history kept: {} (empty store alone: {})",
                    mb(kept_by_design),
                    mb(b.disk_empty)
                ),
                Some(ratio(f(b.disk_restarted), f(kept_by_design))),
            )
            .target("space comes back", back(b.disk_restarted)),
        );
        rows.push(
            row(
                "data_dir size after `vitalsd queue compact` (daemon stopped); its time",
                format!(
                    "{}; {:.1} s",
                    mb(b.disk_compacted),
                    b.compact_took.as_secs_f64()
                ),
                format!("empty store + the history kept: {}", mb(kept_by_design)),
                Some(ratio(f(b.disk_compacted), f(kept_by_design))),
            )
            .target("space comes back", back(b.disk_compacted)),
        );
        rows.push(row(
            "  of it: audit files / store (sled's files) / other",
            format!(
                "{} / {} / {}",
                mb(k.audit_dir),
                mb(k.queue_dir),
                mb(k.other)
            ),
            format!(
                "audit: {:.0} B per delivery; empty store's files: {}",
                ratio(f(k.audit_dir), f(b.n)),
                mb(k.empty_queue_dir)
            ),
            None,
        ));
        rows.push(row(
            "  store live bytes: undelivered / dedupe / audit in store / rejected",
            format!(
                "{} / {} / {} / {}",
                mb(k.undelivered),
                mb(k.dedupe),
                mb(k.audit_in_store),
                mb(k.rejected)
            ),
            format!(
                "dedupe: {:.1} B per reading; sled's files / live: {:.2}",
                ratio(f(k.dedupe), f(b.n)),
                ratio(f(k.queue_dir), f(k.live))
            ),
            None,
        ));
    }
    if only.contains("idle") {
        eprintln!("idle: {devices} silent devices, then none");
        let with = idle::run(&rt, tmp.path(), devices, settle, idle_window);
        let none = idle::run(&rt, tmp.path(), 0, settle, idle_window);
        rows.push(
            row(
                &format!(
                    "RSS idle, {} silent serial devices (VmRSS; VmHWM)",
                    with.devices
                ),
                format!("{} ({})", mb(with.rss), mb(with.hwm)),
                format!("no devices: {} ({})", mb(none.rss), mb(none.hwm)),
                Some(ratio(f(with.rss), f(none.rss))),
            )
            .target("≤ 32 MB", with.rss <= 32_000_000),
        );
        rows.push(
            row(
                &format!(
                    "CPU idle, {} silent devices, over {} s (% of one core)",
                    with.devices,
                    with.window.as_secs()
                ),
                format!("{:.2} %", with.cpu_pct),
                format!("no devices: {:.2} %", none.cpu_pct),
                Some(ratio(with.cpu_pct, none.cpu_pct)),
            )
            .target("≤ 1 %", with.cpu_pct <= 1.0),
        );
    }
    print_table(&rows);
    if let Some(path) = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
    {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("rows file");
        for r in &rows {
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}",
                r.figure, r.value, r.baseline, r.ratio, r.target, r.met
            );
        }
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| figure | value | baseline in the same run | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.figure, r.value, r.baseline, r.ratio, r.target, r.met
        );
    }
}
