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

use crate::admin::{self, AdminState};
use crate::config::{Config, DeviceConfig, DeviceTransport, MqttConfig, OutboxFormat, SinkConfig};
use crate::context::quality::Quality;
use crate::context::ContextStore;
use crate::decode;
use crate::pipeline::{DevicePipeline, PatientLink};
use crate::queue::{Queue, QueueOptions};
use crate::sink::{self, DeliveryEvent, FileFormat, FileSink, RetryPolicy, Sink};
use crate::source::serial::SerialSource;
use crate::status::DeviceStatus;

mod reload;
mod service;

/// A sink whose oldest pending reading waited longer than this makes `/readyz` red.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(600);
/// How often the queue depth is sampled for the status page.
const DEPTH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What a running daemon exposes to its caller (the demo prints deliveries).
pub struct Hooks {
    /// Every delivered reading is sent here when set.
    pub deliveries: Option<broadcast::Sender<DeliveryEvent>>,
    /// The config file, re-read on SIGHUP (without it SIGHUP is logged and ignored).
    pub config_path: Option<std::path::PathBuf>,
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
    if let Some(listen) = cfg.daemon.admin_listen {
        admin::check_access(listen, cfg.daemon.admin_token_file.as_deref()).context("admin API")?;
    }
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for s in &cfg.sinks {
        sinks.push(build_sink(s, cfg.mqtt.as_ref())?);
    }
    let queue = open_queue(&cfg)?;
    let contexts = ContextStore::open(queue.clone(), cfg.patient.context_ttl)
        .context("cannot load the rooms' patient contexts")?;
    let link = PatientLink {
        contexts: contexts.clone(),
        mode: cfg.patient.mode,
        quality: Arc::new(Quality::new()),
    };
    let expiry_cancel = CancellationToken::new();
    let expiry = tokio::spawn(contexts.clone().run_expiry(expiry_cancel.clone()));

    // The status page and /metrics see every delivery, with or without the caller's hook.
    let deliveries = hooks
        .deliveries
        .clone()
        .unwrap_or_else(|| broadcast::channel(1024).0);
    let ops = admin::metrics::Ops::new(cfg.daemon.data_dir.clone(), STUCK_AFTER);
    let ops_cancel = CancellationToken::new();
    let ops_task = tokio::spawn(ops.clone().run(
        queue.clone(),
        deliveries.subscribe(),
        DEPTH_EVERY,
        ops_cancel.clone(),
    ));
    let delivery_cancel = CancellationToken::new();
    let delivery = TaskTracker::new();
    for s in sinks {
        tracing::info!(sink = %s.id(), "sink ready");
        delivery.spawn(sink::run_delivery(
            queue.clone(),
            s,
            RetryPolicy::default(),
            delivery_cancel.clone(),
            Some(deliveries.clone()),
        ));
    }

    let source_cancel = CancellationToken::new();
    let ingest = TaskTracker::new();
    let mut statuses = Vec::new();
    let mut devices = reload::DeviceSet::default();
    for d in &cfg.devices {
        if matches!(d.transport, DeviceTransport::Mqtt(_)) {
            continue; // one shared broker connection for all of them, below
        }
        // Each device has its own token so that a reload can stop it alone.
        let cancel = source_cancel.child_token();
        let status = spawn_device(d, &cfg, &queue, &link, &ingest, &cancel)?;
        devices.insert(d, cancel, status);
    }
    statuses.extend(spawn_mqtt(
        &cfg,
        &queue,
        &link,
        &ops,
        &ingest,
        &source_cancel,
    )?);
    devices.set_fixed(statuses);
    delivery.close();
    ingest.close();
    let admin_cancel = CancellationToken::new();
    let admin = match cfg.daemon.admin_listen {
        Some(listen) => {
            let state = AdminState {
                queue: queue.clone(),
                contexts: contexts.clone(),
                devices: devices.list(),
                quality: link.quality.clone(),
                mode: cfg.patient.mode,
                hold_for: cfg.patient.hold_for,
                token: None,
                ops: ops.clone(),
            };
            let token_file = cfg.daemon.admin_token_file.as_deref();
            let (_, task) = admin::start(listen, token_file, state, admin_cancel.clone())
                .await
                .context("admin API")?;
            Some(task)
        }
        None => None,
    };
    tracing::info!(
        devices = cfg.devices.len(),
        sinks = cfg.sinks.len(),
        data_dir = %cfg.daemon.data_dir.display(),
        "vitalsd ready"
    );
    service::ready(&format!(
        "running: {} devices, {} sinks",
        cfg.devices.len(),
        cfg.sinks.len()
    ));
    let watchdog_cancel = CancellationToken::new();
    let watchdog = service::spawn_watchdog(queue.clone(), watchdog_cancel.clone());

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = hangup.recv() => reload::on_hangup(
                hooks.config_path.as_deref(),
                &cfg,
                &mut devices,
                &source_cancel,
                |d, cancel, new| spawn_device(d, new, &queue, &link, &ingest, cancel),
            ),
        }
    }
    service::stopping("stopping: draining the queue");
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
    admin_cancel.cancel();
    expiry_cancel.cancel();
    let _ = expiry.await;
    if let Some(task) = admin {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    watchdog_cancel.cancel();
    ops_cancel.cancel();
    let _ = ops_task.await;
    if let Some(task) = watchdog {
        let _ = task.await;
    }
    queue.close().await.context("closing the queue")?;
    for s in devices.list().all() {
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
    link: &PatientLink,
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
    let pipeline = DevicePipeline::new(d, cfg, decoder, queue.clone(), status.clone(), wr_tx)?
        .with_patient_link(link.clone());
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
        DeviceTransport::Mllp(settings) => {
            // Message-based: the source drives its own pipeline through `ingest_message` so it
            // answers AA only once a message is durable. The byte pipeline spawned above stays
            // idle; its channel is kept open until the listener stops so that it cannot clear
            // `connected` under a live connection.
            let i = cfg.devices.iter().position(|x| x.id == d.id).unwrap_or(0);
            if d.driver != "hl7v2" {
                bail!(
                    "device[{i}].mllp: the mllp transport carries HL7 v2 only (driver \"hl7v2\")"
                );
            }
            let decoder =
                decode::registry::build_for(&d.driver, decode::Transport::Mllp, &d.options)
                    .map_err(|errs| {
                        let msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
                        anyhow::anyhow!("device {}: {}", d.id, msgs.join("; "))
                    })?;
            let (mllp_wr, _) = mpsc::channel(1);
            let pipeline =
                DevicePipeline::new(d, cfg, decoder, queue.clone(), status.clone(), mllp_wr)?
                    .with_patient_link(link.clone());
            let listener = crate::source::mllp::bind(settings.listen).with_context(|| {
                format!(
                    "device[{i}].mllp.listen: cannot listen on {}",
                    settings.listen
                )
            })?;
            let src = crate::source::mllp::MllpSource {
                device: d.id.clone(),
                limits: crate::source::mllp::MllpLimits::default(),
                status: status.clone(),
            };
            let cancel = cancel.clone();
            ingest.spawn(async move {
                src.run(listener, pipeline, cancel).await;
                drop((ev_tx, wr_rx));
            });
        }
        DeviceTransport::Mqtt(_) => {
            bail!(
                "device {}: mqtt devices are started together by spawn_mqtt",
                d.id
            )
        }
    }
    Ok(status)
}

fn build_sink(s: &SinkConfig, mqtt: Option<&MqttConfig>) -> anyhow::Result<Box<dyn Sink>> {
    match s {
        SinkConfig::File(f) => {
            let format = match f.format {
                OutboxFormat::Fhir => FileFormat::Fhir,
                OutboxFormat::Reading => FileFormat::Reading,
                OutboxFormat::Hl7 => FileFormat::Hl7,
            };
            let sink = FileSink::open(f.id.clone(), &f.dir, format)
                .with_context(|| format!("sink {}: cannot use outbox {}", f.id, f.dir.display()))?;
            Ok(Box::new(sink))
        }
        SinkConfig::Fhir(f) => {
            let sink = sink::fhir::FhirSink::new(f)
                .with_context(|| format!("sink {}: cannot set up the FHIR client", f.id))?;
            sink.spawn_health_check();
            Ok(Box::new(sink))
        }
        SinkConfig::Mllp(m) => {
            let sink = sink::mllp::MllpSink::new(m)
                .with_context(|| format!("sink {}: cannot set up the MLLP client", m.id))?;
            Ok(Box::new(sink))
        }
        SinkConfig::Mqtt(m) => {
            let sink = crate::sink::mqtt::MqttSink::start(m, mqtt)
                .with_context(|| format!("sink {}: cannot set up the MQTT client", m.id))?;
            Ok(Box::new(sink))
        }
    }
}

/// Every device with an `mqtt` transport shares ONE connection to the `[mqtt]` broker; each
/// keeps its own pipelines. Returns their statuses.
fn spawn_mqtt(
    cfg: &Config,
    queue: &Queue,
    link: &PatientLink,
    ops: &admin::metrics::Ops,
    ingest: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<Arc<DeviceStatus>>> {
    use crate::source::mqtt::{MqttDevice, MqttSource};
    let mut devices = Vec::new();
    let mut statuses = Vec::new();
    for d in &cfg.devices {
        let DeviceTransport::Mqtt(settings) = &d.transport else {
            continue;
        };
        let status = DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
        devices.push(MqttDevice::build(
            d,
            settings,
            cfg,
            queue,
            status.clone(),
            Some(link),
        )?);
        statuses.push(status);
    }
    let patient_topic = cfg.mqtt.as_ref().and_then(|m| m.patient_topic.as_ref());
    if devices.is_empty() && patient_topic.is_none() {
        return Ok(statuses);
    }
    let Some(broker) = &cfg.mqtt else {
        bail!("mqtt devices need the [mqtt] table with the broker's url");
    };
    let source = MqttSource::new(broker, devices, Some(link.contexts.clone()), queue.clone())?;
    let _ = ops.mqtt.set(source.handle());
    tracing::info!(devices = statuses.len(), broker = %broker.url, "mqtt source ready");
    ingest.spawn(source.run(cancel.clone()));
    Ok(statuses)
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
