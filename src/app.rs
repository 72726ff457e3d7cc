//! The app: builds every stage from a validated [`Config`], runs them on task trackers, and
//! owns the one shutdown path.
//!
//! Start-up checks what would otherwise fail later (the data directory and every outbox must
//! be writable, the store must open) and refuses to start half-configured. Shutdown runs in
//! order: sources stop first, the device pipelines drain what they already received into the
//! queue, then each sink finishes its in-flight batch, then the queue is flushed and closed —
//! all under `daemon.shutdown_timeout`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, DeviceConfig, DeviceTransport, OutboxFormat, SinkConfig};
use crate::decode;
use crate::pipeline::DevicePipeline;
use crate::queue::{Queue, QueueOptions};
use crate::sink::{self, DeliveryEvent, FileFormat, FileSink, RetryPolicy, Sink};
use crate::source::serial::SerialSource;
use crate::status::DeviceStatus;

/// What a running daemon exposes to its caller (the demo prints deliveries).
pub struct Hooks {
    /// Every delivered reading is sent here when set.
    pub deliveries: Option<broadcast::Sender<DeliveryEvent>>,
}

/// The store directory inside `data_dir`.
pub fn queue_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("queue")
}

/// Opens the queue of a config (for the daemon and the `queue` commands).
pub fn open_queue(cfg: &Config) -> anyhow::Result<Queue> {
    let mut opts = QueueOptions::new(cfg.sinks.iter().map(|s| s.id().clone()).collect());
    opts.cache_capacity = cfg.daemon.cache_size;
    opts.max_bytes = cfg.daemon.queue_max_bytes;
    let dir = queue_dir(&cfg.daemon.data_dir);
    Queue::open(&dir, opts).with_context(|| format!("cannot open the queue in {}", dir.display()))
}

/// Runs the daemon until `shutdown` fires; returns after an orderly drain.
pub async fn run(cfg: Config, shutdown: CancellationToken, hooks: Hooks) -> anyhow::Result<()> {
    check_writable(&cfg.daemon.data_dir, "daemon.data_dir")?;
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for s in &cfg.sinks {
        sinks.push(build_sink(s)?);
    }
    let queue = open_queue(&cfg)?;

    let delivery_cancel = CancellationToken::new();
    let delivery = TaskTracker::new();
    for s in sinks {
        tracing::info!(sink = %s.id(), "sink ready");
        delivery.spawn(sink::run_delivery(
            queue.clone(),
            s,
            RetryPolicy::default(),
            delivery_cancel.clone(),
            hooks.deliveries.clone(),
        ));
    }

    let source_cancel = CancellationToken::new();
    let ingest = TaskTracker::new();
    let mut statuses = Vec::new();
    for d in &cfg.devices {
        statuses.push(spawn_device(d, &cfg, &queue, &ingest, &source_cancel)?);
    }
    delivery.close();
    ingest.close();
    tracing::info!(
        devices = cfg.devices.len(),
        sinks = cfg.sinks.len(),
        data_dir = %cfg.daemon.data_dir.display(),
        "vitalsd ready"
    );

    shutdown.cancelled().await;
    let deadline = tokio::time::Instant::now() + cfg.daemon.shutdown_timeout;
    tracing::info!("stopping: sources first, then draining the queue");
    source_cancel.cancel();
    if tokio::time::timeout_at(deadline, ingest.wait())
        .await
        .is_err()
    {
        tracing::warn!("device pipelines did not stop in time");
    }
    delivery_cancel.cancel();
    if tokio::time::timeout_at(deadline, delivery.wait())
        .await
        .is_err()
    {
        tracing::warn!("sinks did not finish their in-flight batches in time; they stay queued");
    }
    queue.close().await.context("closing the queue")?;
    for s in statuses {
        let snap = s.snapshot();
        tracing::info!(device = %snap.id, frames_ok = snap.frames_ok, frames_bad = snap.frames_bad, readings = snap.readings, "device totals");
    }
    tracing::info!("vitalsd stopped");
    Ok(())
}

fn spawn_device(
    d: &DeviceConfig,
    cfg: &Config,
    queue: &Queue,
    ingest: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Arc<DeviceStatus>> {
    let decoder = decode::build(&d.driver, &d.options).map_err(|errs| {
        let msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("device {}: {}", d.id, msgs.join("; "))
    })?;
    let status = DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
    let (ev_tx, ev_rx) = mpsc::channel(256);
    let (wr_tx, wr_rx) = mpsc::channel(16);
    let pipeline = DevicePipeline::new(d, cfg, decoder, queue.clone(), status.clone(), wr_tx)?;
    ingest.spawn(pipeline.run(ev_rx));
    match &d.transport {
        DeviceTransport::Serial(settings) => {
            let src = SerialSource {
                device: d.id.clone(),
                settings: settings.clone(),
                inactivity_timeout: d.inactivity_timeout,
            };
            ingest.spawn(src.run(ev_tx, wr_rx, cancel.clone()));
        }
        DeviceTransport::Mqtt(_) | DeviceTransport::Mllp(_) => {
            bail!("device {}: transport not available in this build", d.id)
        }
    }
    Ok(status)
}

fn build_sink(s: &SinkConfig) -> anyhow::Result<Box<dyn Sink>> {
    match s {
        SinkConfig::File(f) => {
            let format = match f.format {
                OutboxFormat::Fhir => FileFormat::Fhir,
                OutboxFormat::Reading => FileFormat::Reading,
                OutboxFormat::Hl7 => bail!(
                    "sink {}: the hl7 outbox format is not available in this build",
                    f.id
                ),
            };
            let sink = FileSink::open(f.id.clone(), &f.dir, format)
                .with_context(|| format!("sink {}: cannot use outbox {}", f.id, f.dir.display()))?;
            Ok(Box::new(sink))
        }
        SinkConfig::Fhir(_) | SinkConfig::Mllp(_) | SinkConfig::Mqtt(_) => {
            bail!("sink {}: type not available in this build", s.id())
        }
    }
}

/// Fails with a clear message when `dir` cannot be created or written.
pub fn check_writable(dir: &Path, key: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{key}: cannot create {}", dir.display()))?;
    let probe = dir.join(format!(".vitalsd-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"ok") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!("{key}: {} is not writable: {e}", dir.display()),
    }
}
