//! The app: builds every stage from a validated [`Config`], runs them on task trackers, and
//! owns the one shutdown path.
//!
//! Start-up checks what would otherwise fail later (the data directory and every outbox must
//! be writable, the store must open) and refuses to start half-configured. Shutdown runs in
//! order: sources stop first, the device pipelines drain what they already received into the
//! queue, then each sink finishes its in-flight batch, then the queue is flushed and closed —
//! all under `daemon.shutdown_timeout`.
//!
//! # Layout
//! - `devices`: the serial/MLLP devices, each on its own token; `sinks`: one delivery loop
//!   per sink; `mqtt`: the shared MQTT connection — each startable and stoppable alone.
//! - `reload`: SIGHUP applies a new config to those three in place.
//! - `service`: systemd readiness, status and watchdog.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::config::{Config, DeviceTransport};
use crate::context::quality::Quality;
use crate::context::ContextStore;
use crate::ingest::{Ingest, PatientLink};
use crate::queue::cipher::{self, KeySource, SealError, Sealed, StoreKey};
use crate::queue::{self, Queue, QueueOptions, SledStore};
use crate::sink::{DeliveryEvent, Sink};

mod devices;
mod lookup;
mod mqtt;
mod reload;
mod running;
mod service;
mod sinks;
mod tokens;

use devices::{spawn_device, DeviceSet};
use mqtt::MqttRun;
use sinks::{SinkSet, SinkSettings};
use tokens::TokenSources;

/// A sink whose oldest pending reading waited longer than this, and that delivered nothing for as
/// long, makes `/readyz` red.
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

/// Opens the queue of a config (for the daemon and the `queue` commands). A store that sled
/// reports as damaged, or that opens without readings or entries its counters record (or
/// without its counters marker: sled recovered an empty log), is refused with [`damaged`]'s
/// one line before anything is written to it.
pub fn open_queue(cfg: &Config) -> anyhow::Result<Queue> {
    let mut opts = QueueOptions::new(cfg.sinks.iter().map(|s| s.id().clone()).collect());
    opts.cache_capacity = cfg.daemon.cache_size;
    opts.max_bytes = cfg.daemon.queue_max_bytes;
    opts.history_max_bytes = cfg.daemon.history_max_bytes;
    opts.audit_retention = cfg.daemon.audit_retention;
    let data = &cfg.daemon.data_dir;
    let dir = queue_dir(data);
    let existed = dir.join("db").exists() || dir.join("conf").exists();
    // The key first: without it nothing is created or opened.
    let key = store_key(cfg)?;
    let mut reclaim =
        queue::reclaim::ReclaimOptions::new(dir.clone(), opts.cache_capacity, key.clone());
    (reclaim.slack_bytes, reclaim.every) = (
        cfg.daemon.store.reclaim_slack,
        cfg.daemon.store.reclaim_every,
    );
    opts.reclaim = Some(reclaim);
    // sled writes a new snapshot file at open: saved to be put back if the store is refused.
    let snapshots = queue::SledSnapshots::save(&dir)
        .with_context(|| format!("cannot read the queue in {}", dir.display()))?;
    let store = match SledStore::open(&dir, opts.cache_capacity) {
        Ok(s) => s,
        Err(e) if e.is_damage() => return Err(damaged(data, &e.to_string())),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the queue in {}", dir.display()))
        }
    };
    // An unencrypted store from an earlier version: sealing values in place would leave the
    // plain ones in sled's log until it reuses the space, so it is sealed and then copied into
    // a fresh store (as `queue compact` does), and the old files are removed.
    let store = if cipher::is_unsealed(&store)? {
        drop(store);
        let rep = queue::compact::compact(&dir, opts.cache_capacity, &key)
            .with_context(|| format!("cannot encrypt the queue store in {}", dir.display()))?;
        tracing::info!(
            keys = rep.keys,
            "the queue store was rewritten encrypted; the unencrypted files were removed"
        );
        SledStore::open(&dir, opts.cache_capacity)
            .with_context(|| format!("cannot open the queue in {}", dir.display()))?
    } else {
        store
    };
    let store = match Sealed::open(store, &key) {
        Ok(s) => s,
        Err(SealError::WrongKey { origin }) => bail!(
            "the store key from {origin} does not open the queue store in data_dir {}: it was \
             encrypted with another key; vitalsd did not start and wrote nothing to it (restore \
             the key file the store was created with, see docs/at-rest.md)",
            data.display()
        ),
        Err(SealError::Store(e)) if e.is_damage() => return Err(damaged(data, &e.to_string())),
        Err(SealError::Store(e)) => {
            return Err(e).with_context(|| format!("cannot open the queue in {}", dir.display()))
        }
    };
    // A store of a newer layout is refused before the audit files are opened (their open
    // finishes what a crash left) or anything is written, and left as it was found.
    let store = snapshots
        .refuse_newer(store)
        .with_context(|| format!("cannot open the queue in {}", dir.display()))?;
    let clock = crate::audit::clock::from_env();
    opts.clock = queue::QueueClock(clock.clone());
    let audit = crate::audit::AuditOptions::for_config(cfg, &key, clock);
    let audit = crate::audit::AuditLog::open(audit).context("cannot open the audit files")?;
    opts.audit_log = Some(queue::AuditFiles(Arc::new(audit)));
    if existed {
        let missing = queue::marker_missing(&store)
            .map_err(|e| damaged(data, &format!("its counters cannot be read: {e}")))?;
        if let Some(why) = missing {
            return Err(damaged(data, &why));
        }
    }
    Queue::with_store(Arc::new(store), opts)
        .with_context(|| format!("cannot open the queue in {}", dir.display()))
}

/// The store key of a config (`[daemon] store_key_file`, or `VITALSD_STORE_KEY_FILE` when set),
/// checked and read; the error names the setting and the file.
pub fn store_key(cfg: &Config) -> anyhow::Result<StoreKey> {
    let source = KeySource::from_env_or(&cfg.daemon.store_key_file)
        .map_err(|e| anyhow::anyhow!("daemon.store_key_file: {e}"))?;
    StoreKey::load(&source).map_err(|e| anyhow::anyhow!("daemon.store_key_file: {e}"))
}

/// How often the daemon checks that its store still takes writes.
const STORE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks every [`STORE_CHECK_EVERY`] that the store still takes writes; the receiver changes
/// once it does not (sled keeps refusing after an I/O error such as ENOSPC until reopened).
fn watch_store(
    queue: Queue,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<Option<String>>,
) {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(STORE_CHECK_EVERY).await;
            let q = queue.clone();
            match tokio::task::spawn_blocking(move || q.check_store()).await {
                Ok(Err(queue::QueueError::Store(e))) => {
                    tracing::error!(error = %e, "the queue store refuses all writes until it is reopened; stopping so that vitalsd is restarted");
                    let _ = tx.send(Some(e.to_string()));
                    return;
                }
                Ok(Err(queue::QueueError::Closed)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    (task, rx)
}

/// The one-line refusal to start on a damaged store.
fn damaged(data_dir: &Path, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the queue store in data_dir {} is damaged ({why}); vitalsd did not start and wrote \
         nothing to it: copy the data_dir aside, then run `vitalsd queue verify` to see what is \
         readable and `vitalsd queue salvage --to NEW_DIR` to export it (README: \"If the store \
         is damaged\")",
        data_dir.display()
    )
}

/// What starting a device, a sink or the MQTT connection needs, at start-up and on reload.
pub(crate) struct Stages {
    queue: Queue,
    link: PatientLink,
    /// The one path from the sources to the store.
    intake: Ingest,
    ops: Arc<admin::metrics::Ops>,
    ingest: TaskTracker,
    delivery: TaskTracker,
    deliveries: broadcast::Sender<DeliveryEvent>,
    source_cancel: CancellationToken,
    delivery_cancel: CancellationToken,
    /// How long a reload waits for a sink or the MQTT connection it stops.
    stop_within: std::time::Duration,
    /// One token source per credential set, for the FHIR sinks (and the lookup) it builds.
    tokens: TokenSources,
}

/// What runs now, and the config it runs (`[daemon]`/`[patient]` as started).
pub(crate) struct Running {
    cfg: Config,
    devices: DeviceSet,
    sinks: SinkSet,
    mqtt: MqttRun,
}

/// Runs the daemon until `shutdown` fires; returns after an orderly drain.
pub async fn run(cfg: Config, shutdown: CancellationToken, hooks: Hooks) -> anyhow::Result<()> {
    // SIGHUP is caught from the very start (its default action kills the process); one that
    // arrives during start-up is handled once the daemon is ready.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tracing::info!("vitalsd starting");
    // Everything vitalsd creates is 0640/0750 at most, whatever umask it was started with.
    queue::restrict_umask();
    check_writable(&cfg.daemon.data_dir, "daemon.data_dir")?;
    crate::reading::mask::load_or_create(&cfg.daemon.data_dir)
        .context("the patient-tag masking key (daemon.data_dir/mask.key)")?;
    if let Some(listen) = cfg.daemon.admin_listen {
        admin::check_access(listen, cfg.daemon.admin_token_file.as_deref()).context("admin API")?;
    }
    // The FHIR sinks and the patient lookup with the same credentials share one token.
    let tokens = TokenSources::default();
    let mut built: Vec<(Box<dyn Sink>, SinkSettings)> = Vec::new();
    for s in &cfg.sinks {
        let settings = SinkSettings::of(s, cfg.mqtt.as_ref());
        built.push((sinks::build_sink(s, cfg.mqtt.as_ref(), &tokens)?, settings));
    }
    let queue = open_queue(&cfg)?;
    let contexts = ContextStore::open(queue.contexts(), queue.audit(), cfg.patient.context_ttl)
        .context("cannot load the rooms' patient contexts")?;
    contexts.set_known_rooms(cfg.devices.iter().map(|d| d.room.clone()));
    contexts.set_lookup(lookup::build_lookup(&cfg, &tokens)?);
    let link = PatientLink {
        contexts: contexts.clone(),
        mode: cfg.patient.mode,
        quality: Arc::new(Quality::new()),
        review: cfg.patient.review,
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
    let stages = Stages {
        queue: queue.clone(),
        link: link.clone(),
        intake: Ingest::new(queue.clone(), Some(link.clone())),
        ops: ops.clone(),
        ingest: TaskTracker::new(),
        delivery: TaskTracker::new(),
        deliveries,
        source_cancel: CancellationToken::new(),
        delivery_cancel: CancellationToken::new(),
        stop_within: cfg.daemon.shutdown_timeout,
        tokens,
    };
    let mut running = Running {
        cfg: cfg.clone(),
        devices: DeviceSet::default(),
        sinks: SinkSet::default(),
        mqtt: MqttRun::default(),
    };
    for (s, settings) in built {
        running.sinks.start(&stages, s, settings);
    }
    for d in &cfg.devices {
        if matches!(d.transport, DeviceTransport::Mqtt(_)) {
            continue; // one shared broker connection for all of them, below
        }
        // Each device has its own token so that a reload can stop it alone.
        let cancel = stages.source_cancel.child_token();
        let status = spawn_device(d, &cfg, &stages, &cancel)?;
        running.devices.insert(d, cancel, status);
    }
    if let Some(next) = running.mqtt.prepare(&cfg, &stages)? {
        running
            .mqtt
            .replace(next, &stages, cfg.daemon.shutdown_timeout)
            .await;
    }
    running.devices.set_fixed(running.mqtt.statuses());
    // Closed trackers still take tasks (a reload spawns more); `wait` ends once all are done.
    stages.delivery.close();
    stages.ingest.close();
    let admin_cancel = CancellationToken::new();
    let admin = match cfg.daemon.admin_listen {
        Some(listen) => {
            let state = AdminState {
                queue: queue.clone(),
                contexts: contexts.clone(),
                devices: running.devices.list(),
                quality: link.quality.clone(),
                mode: cfg.patient.mode,
                hold_for: cfg.patient.hold_for,
                access: Default::default(),
                ops: ops.clone(),
            };
            let token_file = cfg.daemon.admin_token_file.as_deref();
            let hosts = &cfg.daemon.admin_hosts;
            let (_, task) = admin::start(listen, token_file, hosts, state, admin_cancel.clone())
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
    let (store_watch, mut store_down) = watch_store(queue.clone());

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Ok(()) = store_down.changed() => break,
            _ = hangup.recv() => {
                reload::on_hangup(hooks.config_path.as_deref(), &mut running, &stages).await
            }
        }
    }
    service::stopping("stopping: draining the queue");
    let deadline = tokio::time::Instant::now() + cfg.daemon.shutdown_timeout;
    tracing::info!("stopping: sources first, then draining the queue");
    stages.source_cancel.cancel();
    if tokio::time::timeout_at(deadline, stages.ingest.wait())
        .await
        .is_err()
    {
        tracing::warn!("device pipelines did not stop in time");
    }
    stages.delivery_cancel.cancel();
    if tokio::time::timeout_at(deadline, stages.delivery.wait())
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
    store_watch.abort();
    let closed = queue.close().await;
    if let Some(why) = store_down.borrow().clone() {
        bail!(
            "the queue store stopped taking writes ({why}); sled refuses every write after an \
             I/O error until the store is reopened, so vitalsd stopped for the service manager \
             to restart it (unacknowledged messages wait at their senders)"
        );
    }
    closed.context("closing the queue")?;
    for s in running.devices.list().all() {
        let snap = s.snapshot();
        tracing::info!(device = %snap.id, frames_ok = snap.frames_ok, frames_bad = snap.frames_bad, readings = snap.readings, "device totals");
    }
    tracing::info!("vitalsd stopped");
    Ok(())
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
