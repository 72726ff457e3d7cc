//! The Ingest seam: the one path from the sources to the store (docs/ingest.md).
//!
//! Receives, per device, the device messages its decoder (or its source, for a message parsed
//! on the wire such as an HL7 ORU) produced, the ECG readings finished from its samples, the
//! patient scans it read and, for message-based devices, the patient the message named.
//! Promises:
//! - **normalize → attribution → hold or enqueue → durable flush**, in that order: every
//!   reading gets a fresh [`ReadingId`], its room's patient when one context covers the whole
//!   time it could have been measured in ([`attribution`]), and in `hold` mode a reading
//!   without a patient is held for review instead of queued for the sinks.
//! - [`DeviceIngest::commit`] returns only after the queue's flush + fdatasync that holds every
//!   reading it reports, with a typed [`IngestOutcome`] (stored, held, duplicates, quarantined,
//!   and readings that could not be normalised). A full queue or a failed flush is an
//!   [`IngestError`]: the caller must not acknowledge upstream; the [`Prepared`] batch keeps
//!   exactly what is not stored yet, so a retry never stores a reading twice.
//! - Concurrent commits (several MQTT messages in flight, several MLLP connections) are
//!   independent calls on a cloned handle: the queue's writer groups them into one flush.
//! - [`Ingest::reject`] records a payload that will never decode in the queue's rejected log
//!   (reason, length and hash; never its content).
//!
//! Sources never see the queue; they only hold an [`Ingest`] / [`DeviceIngest`].

pub mod attribution;
mod pipeline;
mod stage;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::{Config, DeviceConfig, PatientMode};
use crate::context::audit::ContextSource;
use crate::context::quality::Quality;
use crate::context::ContextStore;
use crate::decode::registry::PatientIds;
use crate::decode::{self, DeviceMessage};
use crate::model::zone::local_zone;
use crate::normalize::{self, NormalizeContext};
use crate::queue::{EnqueueOutcome, Queue, QueueError};
use crate::reading::{PatientRef, Reading, ReadingId};
use crate::status::DeviceStatus;

pub use pipeline::DevicePipeline;
pub use stage::{Decoded, DeviceStage};

/// How readings find their patient (shared by every device of a daemon).
#[derive(Clone)]
pub struct PatientLink {
    pub contexts: ContextStore,
    pub mode: PatientMode,
    pub quality: Arc<Quality>,
    /// `[patient] review`: readings bound for the sinks wait on the review list instead
    /// (docs/review.md).
    pub review: bool,
}

/// The daemon's ingest handle: cloneable, built once by the app, handed to every source.
#[derive(Clone)]
pub struct Ingest {
    queue: Queue,
    link: Option<PatientLink>,
}

/// One device's side of [`Ingest`]: its normalisation context, status and patient options.
/// Cloneable; clones share the device and may commit concurrently.
#[derive(Clone)]
pub struct DeviceIngest {
    ingest: Ingest,
    device: Arc<Device>,
}

struct Device {
    ctx: NormalizeContext,
    status: Arc<DeviceStatus>,
    /// Patient scans: the system their ids belong to (`None`: scans are ignored).
    scan_system: Option<String>,
    /// Messages naming their patient: the system of ids that carry none.
    message_system: Option<String>,
}

/// What one commit did. Counts are readings, except `decoded` (device messages offered).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Device messages offered (after spot-check reduction).
    pub decoded: u64,
    /// Stored for the sinks.
    pub stored: u64,
    /// Stored and held for review (no patient in `hold` mode).
    pub held: u64,
    /// Already stored before (same dedupe key); nothing new written.
    pub duplicates: u64,
    /// Failed a hard plausibility limit: stored in quarantine, sent nowhere.
    pub quarantined: u64,
    /// Device messages that could not be normalised: never stored.
    pub rejected: u64,
}

impl IngestOutcome {
    /// Readings durably in the store (new, held, quarantined or from before).
    pub fn kept(&self) -> u64 {
        self.stored + self.held + self.duplicates + self.quarantined
    }
}

/// Why readings were not stored; the caller must not acknowledge them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("queue full ({size} of {max} bytes)")]
    Full { size: u64, max: u64 },
    #[error("store failed: {0}")]
    Store(String),
}

impl From<QueueError> for IngestError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full { size, max } => IngestError::Full { size, max },
            other => IngestError::Store(other.to_string()),
        }
    }
}

/// Why a device's ingest could not be set up (its options).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device {device}: {reasons}")]
pub struct SetupError {
    pub device: String,
    pub reasons: String,
}

/// Normalised, attributed readings not yet (all) stored. Built by [`DeviceIngest::prepare`];
/// [`DeviceIngest::commit`] removes what it stored, so committing again stores only the rest.
#[derive(Debug, Default)]
pub struct Prepared {
    ready: Vec<Reading>,
    held: Vec<Reading>,
    outcome: IngestOutcome,
}

impl Prepared {
    /// Nothing left to store.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.held.is_empty()
    }

    /// What was done so far (normalisation failures are counted at once).
    pub fn outcome(&self) -> IngestOutcome {
        self.outcome
    }

    /// Readings left to store (for the sinks or held).
    pub fn len(&self) -> usize {
        self.ready.len() + self.held.len()
    }

    /// Adds what `other` holds (the next message of the same device), so one commit stores
    /// both: readings keep their order, counts add up.
    pub fn append(&mut self, mut other: Prepared) {
        self.ready.append(&mut other.ready);
        self.held.append(&mut other.held);
        let (a, b) = (&mut self.outcome, other.outcome);
        a.decoded += b.decoded;
        a.stored += b.stored;
        a.held += b.held;
        a.duplicates += b.duplicates;
        a.quarantined += b.quarantined;
        a.rejected += b.rejected;
    }
}

impl Ingest {
    /// `link` attaches patient contexts (the daemon always sets one).
    pub fn new(queue: Queue, link: Option<PatientLink>) -> Self {
        Self { queue, link }
    }

    /// The ingest of one configured device; `status` is its live counters.
    pub fn device(
        &self,
        d: &DeviceConfig,
        cfg: &Config,
        status: Arc<DeviceStatus>,
    ) -> Result<DeviceIngest, SetupError> {
        let info = decode::driver_info(&d.driver).ok_or_else(|| SetupError {
            device: d.id.to_string(),
            reasons: format!("unknown driver `{}`", d.driver),
        })?;
        let option = |key: &str| d.options.get(key).cloned();
        let (scan_system, message_system) = match info.patient_ids {
            PatientIds::None => (None, None),
            PatientIds::Scans { system_option } => (option(system_option), None),
            PatientIds::InMessage { system_option } => (None, option(system_option)),
        };
        Ok(DeviceIngest {
            ingest: self.clone(),
            device: Arc::new(Device {
                ctx: NormalizeContext {
                    device: d.id.clone(),
                    driver: d.driver.clone(),
                    room: Some(d.room.clone()),
                    clock_skew_tolerance: cfg.daemon.clock_skew_tolerance,
                    zone: local_zone(),
                },
                status,
                scan_system,
                message_system,
            }),
        })
    }

    /// An ingest over an in-memory store whose flush takes `sync_delay` (tests of sources).
    #[cfg(test)]
    pub(crate) fn in_memory(sync_delay: Duration) -> Self {
        let store = Arc::new(crate::queue::MemoryStore::with_sync_delay(sync_delay));
        let opts = crate::queue::QueueOptions::new(vec![crate::reading::SinkId::new("outbox")]);
        let queue = Queue::with_store(store, opts).expect("an in-memory queue opens");
        Self::new(queue, None)
    }

    /// Durable flushes the store has made since it was opened (concurrent commits share one).
    pub fn sync_count(&self) -> u64 {
        self.queue.sync_count()
    }

    /// Records a payload that will never decode (reason, length and hash; not its content).
    pub async fn reject(
        &self,
        device: &str,
        topic: &str,
        reason: &str,
        payload: &[u8],
    ) -> Result<(), IngestError> {
        let queue = self.queue.clone();
        let (device, topic, reason, payload) = (
            device.to_string(),
            topic.to_string(),
            reason.to_string(),
            payload.to_vec(),
        );
        tokio::task::spawn_blocking(move || {
            queue.rejected().reject(&device, &topic, &reason, &payload)
        })
        .await
        .map_err(|e| IngestError::Store(e.to_string()))?
        .map_err(IngestError::from)
    }
}

impl DeviceIngest {
    /// The device's normalisation context (ECG strips become readings with it).
    pub fn context(&self) -> &NormalizeContext {
        &self.device.ctx
    }

    pub fn status(&self) -> &Arc<DeviceStatus> {
        &self.device.status
    }

    /// Sets the room's patient from each scan, in order, durably (audited).
    pub async fn apply_scans(&self, scans: Vec<(String, OffsetDateTime)>) {
        if scans.is_empty() {
            return;
        }
        let dev = &self.device;
        let (Some(link), Some(system)) = (&self.ingest.link, &dev.scan_system) else {
            tracing::warn!(device = %dev.ctx.device, count = scans.len(), "barcode scan ignored: no patient context for this device");
            return;
        };
        let room = dev.ctx.room.clone().unwrap_or_default();
        for (id, at) in scans {
            let patient = PatientRef {
                id,
                system: system.clone(),
            };
            let by = dev.ctx.device.to_string();
            match link
                .contexts
                .set(&room, patient, None, ContextSource::Scan, &by, at)
                .await
            {
                // A scan the patient lookup refused is logged and audited by the context store.
                Ok(()) | Err(crate::context::ContextError::Refused(_)) => {}
                Err(e) => {
                    tracing::error!(device = %dev.ctx.device, %room, error = %e, "scan not applied: the room keeps its previous context");
                }
            }
        }
    }

    /// Normalises `messages` (received at `received_at`), adds the finished `readings` (ECG),
    /// attaches `patient` (a message's own, e.g. PID-3) or else the room's, and splits them
    /// into readings for the sinks and readings to hold. No I/O.
    pub fn prepare(
        &self,
        messages: Vec<DeviceMessage>,
        mut readings: Vec<Reading>,
        received_at: OffsetDateTime,
        patient: Option<PatientRef>,
    ) -> Prepared {
        let dev = &self.device;
        let mut outcome = IngestOutcome {
            decoded: messages.len() as u64,
            ..IngestOutcome::default()
        };
        let mut all = Vec::with_capacity(messages.len() + readings.len());
        for m in messages {
            match normalize::normalize(m, received_at, &dev.ctx) {
                Ok(mut r) => {
                    r.id = Some(ReadingId::new());
                    all.push(r);
                }
                Err(e) => {
                    outcome.rejected += 1;
                    dev.status.frame_bad();
                    tracing::warn!(device = %dev.ctx.device, error = %e, "reading not normalised");
                }
            }
        }
        all.append(&mut readings);
        if let Some(p) = patient {
            let p = decode::hl7v2::with_patient_system(p, dev.message_system.as_deref());
            for r in &mut all {
                r.patient = Some(p.clone());
            }
        }
        let (ready, held) = match &self.ingest.link {
            Some(link) => attribution::route(all, link, &dev.ctx),
            None => (all, Vec::new()),
        };
        Prepared {
            ready,
            held,
            outcome,
        }
    }

    /// Stores what `p` still holds; returns only after the durable flush. On an error the
    /// readings not stored stay in `p`.
    pub async fn commit(&self, p: &mut Prepared) -> Result<IngestOutcome, IngestError> {
        let queue = &self.ingest.queue;
        if let Some(link) = &self.ingest.link {
            // The readings' patient-lookup fallbacks are audited before the readings are stored.
            if let Err(e) = link.contexts.flush_audit().await {
                tracing::warn!(error = %e, "cannot record patient lookup fallbacks yet; will try again");
            }
        }
        if !p.held.is_empty() {
            let outcomes = queue.held().hold(p.held.clone()).await?;
            let held = std::mem::take(&mut p.held);
            self.count(&held, &outcomes, &mut p.outcome, true);
        }
        if !p.ready.is_empty() {
            let outcomes = if self.ingest.link.as_ref().is_some_and(|l| l.review) {
                queue.review().add(p.ready.clone()).await?
            } else {
                queue.enqueue(p.ready.clone()).await?
            };
            let ready = std::mem::take(&mut p.ready);
            self.count(&ready, &outcomes, &mut p.outcome, false);
        }
        Ok(p.outcome)
    }

    /// [`prepare`](Self::prepare) and [`commit`](Self::commit) in one call (for one message).
    pub async fn ingest(
        &self,
        messages: Vec<DeviceMessage>,
        received_at: OffsetDateTime,
        patient: Option<PatientRef>,
    ) -> Result<IngestOutcome, IngestError> {
        let mut p = self.prepare(messages, Vec::new(), received_at, patient);
        self.commit(&mut p).await
    }

    /// Commits `p`, retrying every second while the queue is full (never dropping); a failed
    /// store is logged and its readings given up (the store stays failed until reopened).
    pub async fn commit_until_stored(&self, mut p: Prepared) {
        let dev = &self.device;
        let mut warned = false;
        while !p.is_empty() {
            match self.commit(&mut p).await {
                Ok(_) => return,
                Err(IngestError::Full { size, max }) => {
                    if !warned {
                        tracing::error!(device = %dev.ctx.device, size, max, "queue full: holding readings until space returns");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    let count = p.ready.len() + p.held.len();
                    tracing::error!(device = %dev.ctx.device, error = %e, count, "readings could not be stored");
                    return;
                }
            }
        }
    }

    /// Counts one store's outcomes into the device's status and `outcome`.
    fn count(
        &self,
        readings: &[Reading],
        outcomes: &[EnqueueOutcome],
        outcome: &mut IngestOutcome,
        held: bool,
    ) {
        let dev = &self.device;
        let (mut stored, mut duplicates, mut quarantined) = (0, 0, 0);
        for (r, o) in readings.iter().zip(outcomes) {
            match o {
                EnqueueOutcome::Stored => {
                    stored += 1;
                    dev.status.stored_kind(r.kind.as_str());
                }
                EnqueueOutcome::Duplicate(_) => duplicates += 1,
                EnqueueOutcome::Rejected(_) => quarantined += 1,
            }
        }
        if held {
            outcome.held += stored;
        } else {
            outcome.stored += stored;
        }
        outcome.duplicates += duplicates;
        outcome.quarantined += quarantined;
        dev.status.stored(stored, duplicates, quarantined);
        if quarantined > 0 {
            tracing::warn!(device = %dev.ctx.device, count = quarantined, "reading failed a hard plausibility limit; quarantined, sent nowhere until a person releases it (`vitalsd queue quarantine`)");
        }
        tracing::debug!(device = %dev.ctx.device, stored, duplicates, "readings stored");
    }
}

#[cfg(test)]
mod tests;
