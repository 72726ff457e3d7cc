//! The ingest side of the MQTT source: routes each PUBLISH to its device, decodes it with the
//! device's stage, stores it through the device's [`DeviceIngest`] and acknowledges it — only
//! after the durable flush, in receive order.
//!
//! Messages are taken from the poll loop as they wait (all of them at once, up to [`BATCH`])
//! and decoded one after another (so a device's spot-check and ECG state see them in order).
//! Consecutive messages of one device become ONE batch: their readings are stored by one
//! commit (one request to the queue's writer), and the batch's messages are acknowledged
//! together, in receive order, once that commit is durable. At most [`COMMITS_IN_FLIGHT`]
//! batches wait for their commit; messages arriving meanwhile wait in the channel and make
//! the next batch, so a busy source stores many messages per group commit. At most
//! [`WINDOW`] messages are held unacknowledged. Results are taken strictly in
//! receive order, so acks go out in order. A full queue (or a failing store) leaves the whole
//! batch unacknowledged: the source turns not-ready, takes no new message and tries the same
//! readings again every second until they store, then acks and resumes. A message that will
//! never decode is acknowledged (in its place in the order), counted and recorded with its
//! reason in the queue's rejected log (without its content).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Publish};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::device::MqttDevice;
use super::route;
use crate::decode::DecodeError;
use crate::ingest::{DeviceIngest, Ingest, IngestError, IngestOutcome, Prepared};

/// Messages taken from the broker and not yet acknowledged, at most (decoded, waiting for
/// their durable flush or their ack). A broker that allows fewer unacknowledged messages per
/// client (Mosquitto's `max_inflight_messages`) bounds it first (docs/throughput.md).
pub const WINDOW: usize = 256;
/// Most messages stored by one commit (one batch).
pub const BATCH: usize = 256;
/// Batches waiting for their commit at once. While they wait, new messages gather in the
/// channel and become the next batch: the busier the source, the larger its batches, and the
/// fewer group commits (each costs a dedupe chunk, a segment and an audit line however few
/// readings it holds). One batch is applied while the one before is being synced.
pub const COMMITS_IN_FLIGHT: usize = 2;
/// How often a message refused by a full queue is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Counters and readiness the admin API and tests read.
#[derive(Debug, Default)]
pub struct SourceState {
    /// False while the queue refuses messages (full or failing).
    pub ready: AtomicBool,
    pub connected: AtomicBool,
    pub acked: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    /// Commits made for device messages (one per batch).
    pub commits: AtomicU64,
    /// Messages those commits covered.
    pub committed_messages: AtomicU64,
    /// Time from a batch's commit request to its durable answer, summed, in microseconds.
    pub commit_wait_us: AtomicU64,
    /// Most messages held unacknowledged at once.
    pub peak_unacked: AtomicU64,
}

/// A PUBLISH as the poll loop received it.
pub struct Incoming {
    pub publish: Publish,
    pub received_at: OffsetDateTime,
}

/// One message of a batch.
struct Part {
    msg: Incoming,
    /// Readings it added to the batch (normalised, to store or to hold).
    readings: usize,
    /// Frames of the payload that failed to decode.
    errors: Vec<DecodeError>,
    /// Why it was refused before decoding (no device, not hex, a bad patient context).
    refused: Option<String>,
    /// The device its topic belongs to (named when it is refused).
    device: Option<usize>,
}

/// Messages stored by one commit and acknowledged together, in receive order.
struct Batch {
    parts: Vec<Part>,
    /// The device whose readings they are (`None`: nothing to store, or a patient context).
    device: Option<usize>,
    /// What is not stored yet (kept for a retry after a full queue).
    prepared: Prepared,
    scans: Vec<(String, OffsetDateTime)>,
    result: Result<IngestOutcome, IngestError>,
    /// How long the commit waited for its durable answer.
    waited: Option<Duration>,
}

impl Batch {
    fn new(device: Option<usize>) -> Self {
        Batch {
            parts: Vec::new(),
            device,
            prepared: Prepared::default(),
            scans: Vec::new(),
            result: Ok(IngestOutcome::default()),
            waited: None,
        }
    }
}

enum Step {
    Stop,
    Take(usize),
    Done(Box<Result<Batch, tokio::task::JoinError>>),
}

/// The `[mqtt] patient_topic` subscription: retained `{"id","system"}` per room.
pub struct PatientTopic {
    pub filter: String,
    pub contexts: crate::context::ContextStore,
}

pub struct Ingester {
    pub devices: Vec<MqttDevice>,
    pub patient: Option<PatientTopic>,
    pub ingest: Ingest,
    pub client: AsyncClient,
    pub state: Arc<SourceState>,
}

impl Ingester {
    /// Runs until `cancel` fires (or the poll loop goes away), then acks what is stored.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Incoming>, cancel: CancellationToken) {
        let mut inflight: VecDeque<JoinHandle<Batch>> = VecDeque::new();
        let mut taken: Vec<Incoming> = Vec::with_capacity(BATCH);
        let mut unacked = 0usize;
        loop {
            let take = if inflight.len() < COMMITS_IN_FLIGHT {
                (WINDOW - unacked).min(BATCH)
            } else {
                0
            };
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => Step::Stop,
                done = front(&mut inflight), if !inflight.is_empty() => Step::Done(Box::new(done)),
                n = rx.recv_many(&mut taken, take), if take > 0 => {
                    if n == 0 { Step::Stop } else { Step::Take(n) }
                }
            };
            match step {
                Step::Stop => break,
                Step::Take(n) => {
                    unacked += n;
                    self.state
                        .peak_unacked
                        .fetch_max(unacked as u64, Ordering::Relaxed);
                    self.start(taken.drain(..), &mut inflight);
                }
                Step::Done(done) => match *done {
                    Ok(batch) => {
                        inflight.pop_front();
                        unacked -= batch.parts.len();
                        if !self.settle(batch, &cancel).await {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "mqtt: storing a message failed; ingest stops and unacknowledged messages stay at the broker (restart vitalsd)");
                        return;
                    }
                },
            }
        }
        // Shutdown: what is already stored is acknowledged; the rest stays at the broker.
        for h in inflight {
            if let Ok(batch) = h.await {
                if batch.result.is_ok() {
                    self.finish(batch).await;
                }
            }
        }
        // ECG strips in progress are stored (the samples' messages were acknowledged).
        let now = OffsetDateTime::now_utc();
        for dev in &mut self.devices {
            let readings = dev.stage.finish_strips(now);
            if !readings.is_empty() {
                let p = dev.ingest.prepare(Vec::new(), readings, now, None);
                dev.ingest.commit_until_stored(p).await;
            }
        }
        self.summary();
        let _ = self.client.try_disconnect();
    }

    /// Decodes `msgs` in receive order and starts storing them: consecutive messages of one
    /// device share a batch (one commit); a patient context is a batch of its own.
    fn start(
        &mut self,
        msgs: impl Iterator<Item = Incoming>,
        inflight: &mut VecDeque<JoinHandle<Batch>>,
    ) {
        let mut open: Option<Batch> = None;
        for msg in msgs {
            if let Some(p) = &self.patient {
                if let Some(room) = route::plus_level(&p.filter, &msg.publish.topic) {
                    let (room, contexts) = (room.to_string(), p.contexts.clone());
                    if let Some(b) = open.take() {
                        inflight.push_back(self.spawn(b));
                    }
                    inflight.push_back(tokio::spawn(patient_context(msg, room, contexts)));
                    continue;
                }
            }
            let (part, decoded) = self.decode(msg);
            let device = decoded.as_ref().map(|d| d.0);
            let fits = open.as_ref().is_some_and(|b| {
                b.parts.len() < BATCH
                    && (device.is_none() || b.device.is_none_or(|d| Some(d) == device))
            });
            if !fits {
                if let Some(b) = open.take() {
                    inflight.push_back(self.spawn(b));
                }
            }
            let batch = open.get_or_insert_with(|| Batch::new(device));
            if let Some((idx, prepared, scans)) = decoded {
                batch.device = Some(idx);
                batch.prepared.append(prepared);
                batch.scans.extend(scans);
            }
            batch.parts.push(part);
        }
        if let Some(b) = open.take() {
            inflight.push_back(self.spawn(b));
        }
    }

    /// Routes and decodes one message: its part of a batch and, when it belongs to a device,
    /// the device, its prepared readings and its patient scans.
    #[allow(clippy::type_complexity)]
    fn decode(
        &mut self,
        msg: Incoming,
    ) -> (
        Part,
        Option<(usize, Prepared, Vec<(String, OffsetDateTime)>)>,
    ) {
        let refused = |msg, device, reason: &str| Part {
            msg,
            readings: 0,
            errors: Vec::new(),
            refused: Some(reason.to_string()),
            device,
        };
        let topic = &msg.publish.topic;
        let Some(idx) = route::route(self.devices.iter().map(|d| d.filter.as_str()), topic) else {
            return (
                refused(msg, None, "no configured device subscribes to this topic"),
                None,
            );
        };
        let dev = &mut self.devices[idx];
        let decoded = match route::payload_bytes(dev.payload, &msg.publish.payload) {
            Ok(bytes) => {
                dev.set_topic(topic);
                Ok(dev.stage.message(&bytes, msg.received_at))
            }
            Err(reason) => Err(reason),
        };
        let decoded = match decoded {
            Ok(d) => d,
            Err(reason) => return (refused(msg, Some(idx), &reason), None),
        };
        let prepared =
            dev.ingest
                .prepare(decoded.messages, decoded.readings, msg.received_at, None);
        let part = Part {
            msg,
            readings: prepared.len(),
            errors: decoded.errors,
            refused: None,
            device: Some(idx),
        };
        (part, Some((idx, prepared, decoded.scans)))
    }

    /// Starts the commit of `batch` (nothing to commit: it is answered at once).
    fn spawn(&self, mut batch: Batch) -> JoinHandle<Batch> {
        let ingest = batch.device.map(|i| self.devices[i].ingest.clone());
        tokio::spawn(async move {
            if let Some(ingest) = ingest {
                ingest.apply_scans(std::mem::take(&mut batch.scans)).await;
                if !batch.prepared.is_empty() {
                    let started = Instant::now();
                    batch.result = ingest.commit(&mut batch.prepared).await;
                    batch.waited = Some(started.elapsed());
                }
            }
            batch
        })
    }

    fn device_ingest(&self, batch: &Batch) -> Option<DeviceIngest> {
        batch.device.map(|i| self.devices[i].ingest.clone())
    }

    /// Handles the oldest result: retries a refused store until it succeeds, then acks.
    /// Returns false when shutdown came while the batch still waited for space.
    async fn settle(&mut self, mut batch: Batch, cancel: &CancellationToken) -> bool {
        if let (Err(_), Some(ingest)) = (&batch.result, self.device_ingest(&batch)) {
            // Batches in flight behind a refused one were refused too; once the store takes
            // writes again each goes in at once instead of waiting its own second.
            batch.result = ingest.commit(&mut batch.prepared).await;
        }
        if let Err(first) = &batch.result {
            let device = batch.device.map(|i| self.devices[i].id.to_string());
            tracing::error!(device, error = %first, "queue refuses the message: not acknowledging it, taking no new messages, retrying every second (the broker keeps them)");
            self.state.ready.store(false, Ordering::Relaxed);
            let Some(ingest) = self.device_ingest(&batch) else {
                // A patient context that could not be stored: the broker resends it.
                self.state.ready.store(true, Ordering::Relaxed);
                return true;
            };
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return false,
                    () = tokio::time::sleep(RETRY_EVERY) => {}
                }
                let r = ingest.commit(&mut batch.prepared).await;
                let ok = r.is_ok();
                batch.result = r;
                if ok {
                    tracing::info!(device, "queue accepts messages again; resuming");
                    break;
                }
            }
            self.state.ready.store(true, Ordering::Relaxed);
        }
        self.finish(batch).await;
        true
    }

    /// Records, counts and acknowledges the messages of a settled batch, in receive order.
    async fn finish(&mut self, batch: Batch) {
        let Ok(outcome) = &batch.result else { return };
        self.state
            .stored
            .fetch_add(outcome.stored + outcome.held, Ordering::Relaxed);
        self.state
            .duplicates
            .fetch_add(outcome.duplicates, Ordering::Relaxed);
        if let Some(waited) = batch.waited {
            self.state.commits.fetch_add(1, Ordering::Relaxed);
            self.state
                .committed_messages
                .fetch_add(batch.parts.len() as u64, Ordering::Relaxed);
            self.state.commit_wait_us.fetch_add(
                u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        for part in batch.parts {
            let refused = match (&part.refused, part.errors.first()) {
                (Some(reason), _) => Some(reason.clone()),
                (None, Some(e)) if part.readings == 0 => Some(format!("{}: {e}", e.label())),
                _ => None,
            };
            if let Some(reason) = refused {
                let device = part.device.map(|i| self.devices[i].id.to_string());
                self.record_refused(device.as_deref(), &part.msg, &reason)
                    .await;
            }
            if let Err(e) = self.client.ack(&part.msg.publish).await {
                tracing::warn!(error = %e, "mqtt: cannot send an acknowledgement; the broker will resend");
            } else {
                self.state.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts, logs (without content) and records a payload that will never be stored.
    async fn record_refused(&mut self, device: Option<&str>, msg: &Incoming, reason: &str) {
        self.state.rejected.fetch_add(1, Ordering::Relaxed);
        let label = reason.split(':').next().unwrap_or("undecodable");
        let topic = &msg.publish.topic;
        let payload = &msg.publish.payload;
        tracing::warn!(device, topic = %topic, len = payload.len(), reason = label, "mqtt payload refused; acknowledged and recorded (queue rejected log)");
        let dev = device.unwrap_or("-");
        if let Err(e) = self.ingest.reject(dev, topic, reason, payload).await {
            tracing::error!(error = %e, "cannot record a refused payload");
        }
    }

    /// Logs how the source's commits went (counts and times only).
    fn summary(&self) {
        let s = &self.state;
        let commits = s.commits.load(Ordering::Relaxed);
        if commits == 0 {
            return;
        }
        let messages = s.committed_messages.load(Ordering::Relaxed);
        let wait_us = s.commit_wait_us.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let (per_commit, wait_ms) = (
            messages as f64 / commits as f64,
            wait_us as f64 / commits as f64 / 1000.0,
        );
        tracing::info!(
            commits,
            messages,
            per_commit = format!("{per_commit:.1}"),
            mean_commit_wait_ms = format!("{wait_ms:.2}"),
            peak_unacked = s.peak_unacked.load(Ordering::Relaxed),
            "mqtt ingest: batches stored"
        );
    }
}

/// Stores a `[mqtt] patient_topic` message's context; durable (and audited) before the
/// message is acknowledged.
async fn patient_context(
    msg: Incoming,
    room: String,
    contexts: crate::context::ContextStore,
) -> Batch {
    let mut batch = Batch::new(None);
    let mut refused = None;
    match contexts.set_from_mqtt(&room, &msg.publish.payload).await {
        Ok(()) => {}
        Err(crate::context::ContextError::Store(e)) => {
            batch.result = Err(IngestError::Store(e.to_string()));
        }
        Err(e) => refused = Some(format!("patient context: {e}")),
    }
    batch.parts.push(Part {
        msg,
        readings: 0,
        errors: Vec::new(),
        refused,
        device: None,
    });
    batch
}

async fn front(
    inflight: &mut VecDeque<JoinHandle<Batch>>,
) -> Result<Batch, tokio::task::JoinError> {
    match inflight.front_mut() {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
