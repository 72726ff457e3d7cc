//! The ingest side of the MQTT source: routes each PUBLISH to its device, stores it through the
//! device's pipeline and acknowledges it — only after the durable flush, in receive order.
//!
//! Up to [`WINDOW`] messages are stored concurrently (they share group commits); their results
//! are taken strictly in receive order, so acks go out in order. A full queue (or a failing
//! store) leaves the message unacknowledged: the source turns not-ready, takes no new message
//! and tries the same one again every second until it stores, then acks and resumes. A message
//! that will never decode is acknowledged, counted and recorded with its reason in the queue's
//! rejected log (without its content).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Publish};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::device::{MqttDevice, Worker};
use super::route;
use crate::pipeline::{IngestError, IngestReport};
use crate::queue::Queue;

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
    Ingested(Result<IngestReport, IngestError>),
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
    worker: Option<Box<Worker>>,
    bytes: Vec<u8>,
    result: Handled,
}

/// The `[mqtt] patient_topic` subscription: retained `{"id","system"}` per room.
pub struct PatientTopic {
    pub filter: String,
    pub contexts: crate::context::ContextStore,
}

pub struct Ingest {
    pub devices: Vec<MqttDevice>,
    pub patient: Option<PatientTopic>,
    pub queue: Queue,
    pub client: AsyncClient,
    pub state: Arc<SourceState>,
}

impl Ingest {
    /// Runs until `cancel` fires (or the poll loop goes away), then acks what is stored.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Incoming>, cancel: CancellationToken) {
        let mut inflight: VecDeque<JoinHandle<Done>> = VecDeque::new();
        let mut stalled: Option<Incoming> = None;
        loop {
            if let Some(msg) = stalled.take() {
                if let Err(back) = self.start(msg, &mut inflight) {
                    stalled = Some(back);
                }
            }
            let can_take = stalled.is_none() && inflight.len() < WINDOW;
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => Step::Stop,
                done = front(&mut inflight), if !inflight.is_empty() => Step::Done(done),
                msg = rx.recv(), if can_take => msg.map_or(Step::Stop, Step::Take),
            };
            match step {
                Step::Stop => break,
                Step::Take(m) => {
                    if let Err(back) = self.start(m, &mut inflight) {
                        stalled = Some(back);
                    }
                }
                Step::Done(Ok(done)) => {
                    inflight.pop_front();
                    if !self.settle(done, &cancel).await {
                        break;
                    }
                }
                Step::Done(Err(e)) => {
                    tracing::error!(error = %e, "mqtt: a device pipeline failed; ingest stops and unacknowledged messages stay at the broker (restart vitalsd)");
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
        for dev in &mut self.devices {
            for w in &mut dev.idle {
                w.pipeline.flush_strips().await;
            }
        }
        let _ = self.client.try_disconnect();
    }

    /// Starts storing `msg`; gives it back when its device has no free pipeline.
    fn start(
        &mut self,
        msg: Incoming,
        inflight: &mut VecDeque<JoinHandle<Done>>,
    ) -> Result<(), Incoming> {
        let topic = &msg.publish.topic;
        if let Some(p) = &self.patient {
            if let Some(room) = route::plus_level(&p.filter, topic) {
                let (room, contexts) = (room.to_string(), p.contexts.clone());
                inflight.push_back(tokio::spawn(async move {
                    // A context is durable (and audited) before the message is acknowledged.
                    let result = match contexts.set_from_mqtt(&room, &msg.publish.payload).await {
                        Ok(()) => Handled::Ingested(Ok(IngestReport::default())),
                        Err(crate::context::ContextError::Store(e)) => {
                            Handled::Ingested(Err(IngestError::Store(e.to_string())))
                        }
                        Err(e) => Handled::Refused(format!("patient context: {e}")),
                    };
                    Done {
                        msg,
                        device: None,
                        worker: None,
                        bytes: Vec::new(),
                        result,
                    }
                }));
                return Ok(());
            }
        }
        let Some(idx) = route::route(self.devices.iter().map(|d| d.filter.as_str()), topic) else {
            let done = Done {
                msg,
                device: None,
                worker: None,
                bytes: Vec::new(),
                result: Handled::Refused("no configured device subscribes to this topic".into()),
            };
            inflight.push_back(tokio::spawn(async move { done }));
            return Ok(());
        };
        let dev = &mut self.devices[idx];
        let bytes = match route::payload_bytes(dev.payload, &msg.publish.payload) {
            Ok(b) => b,
            Err(reason) => {
                let done = Done {
                    msg,
                    device: Some(idx),
                    worker: None,
                    bytes: Vec::new(),
                    result: Handled::Refused(reason),
                };
                inflight.push_back(tokio::spawn(async move { done }));
                return Ok(());
            }
        };
        let Some(mut worker) = dev.take() else {
            return Err(msg);
        };
        inflight.push_back(tokio::spawn(async move {
            worker.set_topic(&msg.publish.topic);
            let r = worker
                .pipeline
                .ingest_message(&bytes, msg.received_at, None)
                .await;
            Done {
                msg,
                device: Some(idx),
                worker: Some(worker),
                bytes,
                result: Handled::Ingested(r),
            }
        }));
        Ok(())
    }

    /// Handles the oldest result: retries a refused store until it succeeds, then acks.
    /// Returns false when shutdown came while the message still waited for space.
    async fn settle(&mut self, mut done: Done, cancel: &CancellationToken) -> bool {
        if let Handled::Ingested(Err(first)) = &done.result {
            let device = done.device.map(|i| self.devices[i].id.to_string());
            tracing::error!(device, error = %first, "queue refuses the message: not acknowledging it, taking no new messages, retrying every second (the broker keeps them)");
            self.state.ready.store(false, Ordering::Relaxed);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => {
                        self.give_back(done);
                        return false;
                    }
                    () = tokio::time::sleep(RETRY_EVERY) => {}
                }
                let Some(worker) = done.worker.as_mut() else {
                    break;
                };
                worker.set_topic(&done.msg.publish.topic);
                let r = worker
                    .pipeline
                    .ingest_message(&done.bytes, done.msg.received_at, None)
                    .await;
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

    /// Records, counts and acknowledges a settled message; returns its pipeline to the pool.
    async fn finish(&mut self, done: Done) {
        let device = done.device.map(|i| self.devices[i].id.to_string());
        let refused = match &done.result {
            Handled::Refused(reason) => Some(reason.clone()),
            Handled::Ingested(Ok(r)) => {
                self.state.stored.fetch_add(r.stored, Ordering::Relaxed);
                self.state
                    .duplicates
                    .fetch_add(r.duplicates, Ordering::Relaxed);
                let none = r.stored + r.duplicates + r.rejected == 0;
                match r.errors.first() {
                    Some(e) if none => Some(format!("{}: {e}", e.label())),
                    _ => None,
                }
            }
            Handled::Ingested(Err(_)) => return self.give_back(done),
        };
        if let Some(reason) = refused {
            self.state.rejected.fetch_add(1, Ordering::Relaxed);
            let label = reason.split(':').next().unwrap_or("undecodable");
            tracing::warn!(device, topic = %done.msg.publish.topic, len = done.msg.publish.payload.len(), reason = label, "mqtt payload refused; acknowledged and recorded (queue rejected log)");
            let queue = self.queue.clone();
            let dev = device.clone().unwrap_or_else(|| "-".into());
            let topic = done.msg.publish.topic.clone();
            let payload = done.msg.publish.payload.clone();
            let recorded =
                tokio::task::spawn_blocking(move || queue.reject(&dev, &topic, &reason, &payload))
                    .await;
            if let Ok(Err(e)) = recorded {
                tracing::error!(error = %e, "cannot record a refused payload");
            }
        }
        if let Err(e) = self.client.ack(&done.msg.publish).await {
            tracing::warn!(error = %e, "mqtt: cannot send an acknowledgement; the broker will resend");
        } else {
            self.state.acked.fetch_add(1, Ordering::Relaxed);
        }
        self.give_back(done);
    }

    fn give_back(&mut self, done: Done) {
        if let (Some(i), Some(w)) = (done.device, done.worker) {
            self.devices[i].idle.push(w);
        }
    }
}

async fn front(inflight: &mut VecDeque<JoinHandle<Done>>) -> Result<Done, tokio::task::JoinError> {
    match inflight.front_mut() {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}
