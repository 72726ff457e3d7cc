//! The CLI commands behind `vitalsd <command>`: each takes parsed arguments, does its job and
//! returns the process exit code. `anyhow` lives here and in `app` only.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, LogFormat};
use crate::decode::{self, DecodeEvent, Options};
use crate::normalize::{self, NormalizeContext};
use crate::reading::DeviceId;

pub mod audit;
mod ops;
mod queue;
mod repair;
pub use ops::{completions, man, status, Shell};
pub use queue::{
    queue_dead, queue_discard, queue_purge_dead, queue_quarantine, queue_release, queue_retry,
    queue_stats, ReleaseArgs,
};
pub use repair::{queue_compact, queue_salvage, queue_verify};

/// Sets up logging to stderr: `RUST_LOG` overrides `default` (e.g. "info"); with
/// `JOURNAL_STREAM` set (running under systemd) text lines have no timestamps or colours, and
/// colours only when stderr is a terminal.
pub fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Under systemd stderr goes to the journal, which stamps every line itself and shows
    // escape codes raw: plain text without time or colours there.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
    // Colours only for a person at a terminal: a log redirected to a file or a pipe stays
    // plain text that grep and log shippers read as it is.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = match (format, journal) {
        (LogFormat::Text, false) => builder.with_ansi(colour).try_init(),
        (LogFormat::Text, true) => builder.with_ansi(false).without_time().try_init(),
        (LogFormat::Json, false) => builder.json().try_init(),
        (LogFormat::Json, true) => builder.json().with_ansi(false).try_init(),
    };
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    crate::model::zone::init_local_zone();
    crate::tls::init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load(path: &Path) -> anyhow::Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A token cancelled by SIGTERM or SIGINT (Ctrl-C).
pub fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        t.cancel();
    });
    Ok(token)
}

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    // SIGHUP (reload) kills a process that has no handler for it. Install one before reading
    // the config: a SIGHUP from here until the daemon's own reload handler is listening is
    // merely dropped (the daemon reads the file as it starts anyway). tokio keeps the handler
    // installed after this stream is dropped.
    rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map(drop)
            .context("installing the SIGHUP handler")
    })?;
    let cfg = load(config_path)?;
    init_logging("info", cfg.daemon.log_format);
    log_allocator();
    tracing::info!(
        zone = %crate::model::zone::local_zone(),
        "device wall-clock times are read in this time zone"
    );
    for w in &cfg.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    rt.block_on(async {
        let token = shutdown_on_signals()?;
        crate::app::run(
            cfg,
            token,
            crate::app::Hooks {
                deliveries: None,
                config_path: Some(config_path.to_path_buf()),
            },
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One line at start: the allocator setting in force (docs/store-bounds.md).
fn log_allocator() {
    use crate::alloc::{Tuning, ENV_VAR, MMAP_THRESHOLD};
    match crate::alloc::outcome() {
        Some(Tuning::Applied) => tracing::info!(
            bytes = MMAP_THRESHOLD,
            "malloc: mmap threshold fixed by vitalsd"
        ),
        Some(Tuning::FromEnvironment) => {
            tracing::info!("malloc: mmap threshold taken from {ENV_VAR} in the environment")
        }
        Some(Tuning::Refused) => tracing::warn!(
            env = ENV_VAR,
            "malloc: glibc refused the mmap threshold setting; memory use while draining a backlog may grow (set the variable to 131072 in the environment)"
        ),
        Some(Tuning::Default) => tracing::warn!(
            switch = crate::alloc::SWITCH_VAR,
            "malloc: glibc's defaults kept; memory use while draining a backlog may grow"
        ),
        None => {}
    }
}

pub fn check_config(config_path: &Path) -> anyhow::Result<ExitCode> {
    match config::load(config_path) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            if let Err(e) = crate::app::store_key(&cfg) {
                eprintln!("{}: {e}", config_path.display());
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "{}: ok ({} device{}, {} sink{})",
                config_path.display(),
                cfg.devices.len(),
                if cfg.devices.len() == 1 { "" } else { "s" },
                cfg.sinks.len(),
                if cfg.sinks.len() == 1 { "" } else { "s" },
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprint!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn demo(for_: Option<Duration>, dir: &Path, review: bool) -> anyhow::Result<ExitCode> {
    init_logging("warn", LogFormat::Text);
    let rt = runtime()?;
    rt.block_on(crate::demo::run(for_, dir, review))?;
    Ok(ExitCode::SUCCESS)
}

pub fn simulate(
    driver: &str,
    serial: &Path,
    every: Duration,
    count: Option<u64>,
    ecg: crate::simulate::EcgSettings,
) -> anyhow::Result<ExitCode> {
    init_logging("info", LogFormat::Text);
    let rt = runtime()?;
    rt.block_on(async {
        let token = shutdown_on_signals()?;
        crate::simulate::run_serial(driver, serial, every, count, ecg, token).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `vitalsd simulate DRIVER --mqtt URL --topic T`.
pub fn simulate_mqtt(
    driver: &str,
    url: &str,
    topic: &str,
    every: Duration,
    count: Option<u64>,
    ecg: crate::simulate::EcgSettings,
) -> anyhow::Result<ExitCode> {
    init_logging("info", LogFormat::Text);
    let rt = runtime()?;
    rt.block_on(async {
        let token = shutdown_on_signals()?;
        crate::simulate::run_mqtt(driver, url, topic, every, count, ecg, token).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn parse_opts(opts: &[String]) -> anyhow::Result<Options> {
    let mut out = Options::new();
    for o in opts {
        let Some((k, v)) = o.split_once('=') else {
            bail!("--opt `{o}`: expected K=V");
        };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

pub fn decode(
    driver: &str,
    opts: &[String],
    hex_input: Option<&str>,
    file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    crate::model::zone::init_local_zone();
    if decode::driver_info(driver).is_none() {
        let names: Vec<_> = decode::drivers().iter().map(|d| d.name).collect();
        bail!("unknown driver `{driver}`; drivers: {}", names.join(", "));
    }
    let options = parse_opts(opts)?;
    let mut decoder = decode::build(driver, &options).map_err(|errs| {
        let msgs: Vec<_> = errs.iter().map(|e| format!("--opt {e}")).collect();
        anyhow::anyhow!("{}", msgs.join("\n"))
    })?;
    let input = match (hex_input, file) {
        (Some(h), _) => {
            let clean: String = h.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(&clean).context("--hex is not valid hex")?
        }
        (None, Some(f)) => {
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (None, None) => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            buf
        }
    };
    let mut events = Vec::new();
    decoder.feed(&input, &mut events);
    decoder.finish(&mut events);
    let ctx = NormalizeContext {
        device: DeviceId::new(driver),
        driver: driver.to_string(),
        room: None,
        clock_skew_tolerance: Duration::from_secs(300),
        zone: crate::model::zone::local_zone(),
    };
    let now = time::OffsetDateTime::now_utc();
    let (mut printed, mut failed) = (0usize, 0usize);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for ev in events {
        match ev {
            DecodeEvent::Message(m) => match normalize::normalize(m, now, &ctx) {
                Ok(r) => {
                    writeln!(out, "{}", serde_json::to_string(&r)?)?;
                    printed += 1;
                }
                Err(e) => {
                    eprintln!("reading not normalised: {e}");
                    failed += 1;
                }
            },
            DecodeEvent::Scan(s) => {
                writeln!(out, "{}", serde_json::json!({ "scan": s }))?;
                printed += 1;
            }
            DecodeEvent::Idle { .. } => {}
            DecodeEvent::Samples(c) => {
                let leads: Vec<&str> = c.leads.iter().map(|l| l.name).collect();
                let line = serde_json::json!({
                    "samples": c.len(),
                    "fs_hz": c.fs_hz,
                    "leads": leads,
                    "gap_before": c.gap_before,
                    "saturated": c.saturated,
                });
                writeln!(out, "{line}")?;
                printed += 1;
            }
            DecodeEvent::Error(e) => {
                eprintln!("frame failed: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 || printed == 0 {
        if printed == 0 && failed == 0 {
            eprintln!("no valid frame in the input");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn drivers() -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for d in decode::drivers() {
        let transports: Vec<_> = d.transports.iter().map(|t| t.as_str()).collect();
        let kinds: Vec<_> = d.kinds.iter().map(|k| k.as_str()).collect();
        let kinds = if kinds.is_empty() {
            "none (sets patient context)".to_string()
        } else {
            kinds.join(", ")
        };
        let status = if d.experimental {
            "experimental"
        } else {
            "stable"
        };
        writeln!(
            out,
            "{:<14} {:<13} transports: {:<18} kinds: {kinds}",
            d.name,
            status,
            transports.join(", "),
        )?;
        writeln!(out, "{:<14} devices: {}", "", d.devices)?;
        writeln!(out, "{:<14} framing: {}", "", d.framing)?;
        let keys = d.accepted_keys();
        if !keys.is_empty() {
            writeln!(out, "{:<14} options: {}", "", keys.join(", "))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the store of a stopped daemon, runs `f` on it, closes it.
fn with_queue<T, F, Fut>(config_path: &Path, f: F) -> anyhow::Result<T>
where
    F: FnOnce(crate::queue::Queue) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let cfg = load(config_path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let queue = crate::app::open_queue(&cfg).context(
            "is the daemon running? The store allows one process at a time: stop vitalsd first",
        )?;
        let r = f(queue.clone()).await;
        queue.close().await?;
        r
    })
}

/// Asks the running daemon's admin API for `path`; `Ok(None)` when no daemon answers there.
fn ask_daemon(cfg: &Config, path: &str) -> anyhow::Result<Option<serde_json::Value>> {
    call_daemon(cfg, path, None)
}

/// GET `path` (or POST `body` to it) on the running daemon's admin API; `Ok(None)` when the
/// config has no admin API or no daemon answers there (the request was not sent: the caller
/// works on the store instead).
fn call_daemon(
    cfg: &Config,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<Option<serde_json::Value>> {
    use crate::admin::client::{AdminClient, ClientError};
    crate::tls::init();
    let Some(client) = AdminClient::from_config(cfg)? else {
        return Ok(None);
    };
    let rt = runtime()?;
    let answer = rt.block_on(async {
        match body {
            Some(b) => client.post(path, b).await,
            None => client.get(path).await,
        }
    });
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(ClientError::Unreachable(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `vitalsd queue held`: through the admin API while the daemon runs, else from the store.
pub fn queue_held(config_path: &Path, limit: usize) -> anyhow::Result<ExitCode> {
    let cfg = load(config_path)?;
    if let Some(v) = ask_daemon(&cfg, &format!("/api/held?limit={limit}"))? {
        for e in v.as_array().into_iter().flatten() {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let hold_for = cfg.patient.hold_for;
    with_queue(config_path, |q| async move {
        let now = time::OffsetDateTime::now_utc();
        for e in q.held().list(limit)? {
            let mut v = serde_json::to_value(&e)?;
            let state = if e.in_review(hold_for, now) {
                "review"
            } else {
                "held"
            };
            v["state"] = serde_json::json!(state);
            println!("{}", serde_json::to_string(&v)?);
        }
        Ok(ExitCode::SUCCESS)
    })
}
