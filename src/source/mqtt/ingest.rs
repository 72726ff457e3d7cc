//! The ingest side of the MQTT source: routes each PUBLISH to its device, decodes it with the
//! device's stage, stores it through the device's [`DeviceIngest`] and acknowledges it — only
//! after the durable flush, in receive order.
//!
//! Messages are decoded one after another (so a device's spot-check and ECG state see them in
//! order); up to [`WINDOW`] of them then wait for their durable flush concurrently (the
//! queue's writer groups them into shared flushes); their results are taken strictly in
//! receive order, so acks go out in order. A full queue (or a failing store) leaves the
//! message unacknowledged: the source turns not-ready, takes no new message and tries the same
//! readings again every second until they store, then acks and resumes. A message that will
//! never decode is acknowledged, counted and recorded with its reason in the queue's rejected
//! log (without its content).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Publish};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::device::MqttDevice;
use super::route;
use crate::decode::DecodeError;
use crate::ingest::{DeviceIngest, Ingest, IngestError, IngestOutcome, Prepared};

/// Messages stored concurrently (and so acknowledged at most this far behind receipt).
pub const WINDOW: usize = 256;
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
}

/// A PUBLISH as the poll loop received it.
pub struct Incoming {
    pub publish: Publish,
    pub received_at: OffsetDateTime,
}

enum Handled {
    Ingested(Result<IngestOutcome, IngestError>),
    Refused(String),
}

enum Step {
    Stop,
    Take(Incoming),
    Done(Result<Done, tokio::task::JoinError>),
}

struct Done {
    msg: Incoming,
    device: Option<usize>,
    /// What is not stored yet (kept for a retry after a full queue).
    prepared: Prepared,
    /// Frames of the payload that failed to decode.
    errors: Vec<DecodeError>,
    result: Handled,
}

impl Done {
    fn refused(msg: Incoming, device: Option<usize>, reason: String) -> Self {
        Done {
            msg,
            device,
            prepared: Prepared::default(),
            errors: Vec::new(),
            result: Handled::Refused(reason),
        }
    }
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
        let mut inflight: VecDeque<JoinHandle<Done>> = VecDeque::new();
        loop {
            let can_take = inflight.len() < WINDOW;
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => Step::Stop,
                done = front(&mut inflight), if !inflight.is_empty() => Step::Done(done),
                msg = rx.recv(), if can_take => msg.map_or(Step::Stop, Step::Take),
            };
            match step {
                Step::Stop => break,
                Step::Take(m) => inflight.push_back(self.start(m)),
                Step::Done(Ok(done)) => {
                    inflight.pop_front();
                    if !self.settle(done, &cancel).await {
                        break;
                    }
                }
                Step::Done(Err(e)) => {
                    tracing::error!(error = %e, "mqtt: storing a message failed; ingest stops and unacknowledged messages stay at the broker (restart vitalsd)");
                    return;
                }
            }
        }
        // Shutdown: what is already stored is acknowledged; the rest stays at the broker.
        for h in inflight {
            if let Ok(done) = h.await {
                if let Handled::Ingested(Ok(_)) | Handled::Refused(_) = done.result {
                    self.finish(done).await;
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
        let _ = self.client.try_disconnect();
    }

    /// Decodes `msg` and starts storing it.
    fn start(&mut self, msg: Incoming) -> JoinHandle<Done> {
        let topic = &msg.publish.topic;
        if let Some(p) = &self.patient {
            if let Some(room) = route::plus_level(&p.filter, topic) {
                let (room, contexts) = (room.to_string(), p.contexts.clone());
                return tokio::spawn(async move {
                    // A context is durable (and audited) before the message is acknowledged.
                    let result = match contexts.set_from_mqtt(&room, &msg.publish.payload).await {
                        Ok(()) => Handled::Ingested(Ok(IngestOutcome::default())),
                        Err(crate::context::ContextError::Store(e)) => {
                            Handled::Ingested(Err(IngestError::Store(e.to_string())))
                        }
                        Err(e) => Handled::Refused(format!("patient context: {e}")),
                    };
                    Done {
                        msg,
                        device: None,
                        prepared: Prepared::default(),
                        errors: Vec::new(),
                        result,
                    }
                });
            }
        }
        let Some(idx) = route::route(self.devices.iter().map(|d| d.filter.as_str()), topic) else {
            let done = Done::refused(
                msg,
                None,
                "no configured device subscribes to this topic".into(),
            );
            return tokio::spawn(async move { done });
        };
        let dev = &mut self.devices[idx];
        let bytes = match route::payload_bytes(dev.payload, &msg.publish.payload) {
            Ok(b) => b,
            Err(reason) => {
                let done = Done::refused(msg, Some(idx), reason);
                return tokio::spawn(async move { done });
            }
        };
        dev.set_topic(topic);
        let decoded = dev.stage.message(&bytes, msg.received_at);
        let ingest = dev.ingest.clone();
        let mut prepared =
            ingest.prepare(decoded.messages, decoded.readings, msg.received_at, None);
        let (scans, errors) = (decoded.scans, decoded.errors);
        tokio::spawn(async move {
            ingest.apply_scans(scans).await;
            let result = Handled::Ingested(ingest.commit(&mut prepared).await);
            Done {
                msg,
                device: Some(idx),
                prepared,
                errors,
                result,
            }
        })
    }

    fn device_ingest(&self, done: &Done) -> Option<DeviceIngest> {
        done.device.map(|i| self.devices[i].ingest.clone())
    }

    /// Handles the oldest result: retries a refused store until it succeeds, then acks.
    /// Returns false when shutdown came while the message still waited for space.
    async fn settle(&mut self, mut done: Done, cancel: &CancellationToken) -> bool {
        if let (Handled::Ingested(Err(_)), Some(ingest)) = (&done.result, self.device_ingest(&done))
        {
            // Messages in flight behind a refused one were refused too; once the store takes
            // writes again each goes in at once instead of waiting its own second.
            done.result = Handled::Ingested(ingest.commit(&mut done.prepared).await);
        }
        if let Handled::Ingested(Err(first)) = &done.result {
            let device = done.device.map(|i| self.devices[i].id.to_string());
            tracing::error!(device, error = %first, "queue refuses the message: not acknowledging it, taking no new messages, retrying every second (the broker keeps them)");
            self.state.ready.store(false, Ordering::Relaxed);
            let Some(ingest) = self.device_ingest(&done) else {
                // A patient context that could not be stored: the broker resends it.
                self.state.ready.store(true, Ordering::Relaxed);
                return true;
            };
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return false,
                    () = tokio::time::sleep(RETRY_EVERY) => {}
                }
                let r = ingest.commit(&mut done.prepared).await;
                let ok = r.is_ok();
                done.result = Handled::Ingested(r);
                if ok {
                    tracing::info!(device, "queue accepts messages again; resuming");
                    break;
                }
            }
            self.state.ready.store(true, Ordering::Relaxed);
        }
        self.finish(done).await;
        true
    }

    /// Records, counts and acknowledges a settled message.
    async fn finish(&mut self, done: Done) {
        let device = done.device.map(|i| self.devices[i].id.to_string());
        let refused = match &done.result {
            Handled::Refused(reason) => Some(reason.clone()),
            Handled::Ingested(Ok(r)) => {
                self.state
                    .stored
                    .fetch_add(r.stored + r.held, Ordering::Relaxed);
                self.state
                    .duplicates
                    .fetch_add(r.duplicates, Ordering::Relaxed);
                let none = r.kept() == 0;
                match done.errors.first() {
                    Some(e) if none => Some(format!("{}: {e}", e.label())),
                    _ => None,
                }
            }
            Handled::Ingested(Err(_)) => return,
        };
        if let Some(reason) = refused {
            self.state.rejected.fetch_add(1, Ordering::Relaxed);
            let label = reason.split(':').next().unwrap_or("undecodable");
            tracing::warn!(device, topic = %done.msg.publish.topic, len = done.msg.publish.payload.len(), reason = label, "mqtt payload refused; acknowledged and recorded (queue rejected log)");
            let dev = device.clone().unwrap_or_else(|| "-".into());
            let topic = &done.msg.publish.topic;
            let payload = &done.msg.publish.payload;
            if let Err(e) = self.ingest.reject(&dev, topic, &reason, payload).await {
                tracing::error!(error = %e, "cannot record a refused payload");
            }
        }
        if let Err(e) = self.client.ack(&done.msg.publish).await {
            tracing::warn!(error = %e, "mqtt: cannot send an acknowledgement; the broker will resend");
        } else {
            self.state.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn front(inflight: &mut VecDeque<JoinHandle<Done>>) -> Result<Done, tokio::task::JoinError> {
    match inflight.front_mut() {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
