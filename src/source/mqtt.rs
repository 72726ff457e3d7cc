//! The MQTT source: ONE broker connection shared by every device with an `mqtt` transport.
//!
//! Receives PUBLISH packets from the `[mqtt]` broker (MQTT 3.1.1, QoS 1 subscriptions to every
//! device's topic filter, persistent session: stable `client_id`, `clean_session = false`);
//! emits each payload to the device whose filter matches it — the FIRST configured device
//! wins when filters overlap — decoded by that device's stage and stored through its
//! [`DeviceIngest`]. Promises:
//! - A PUBLISH is acknowledged (manual acks) only after its [`DeviceIngest::commit`] returned,
//!   i.e. after the queue's flush + fdatasync that holds its readings; acks go out in receive
//!   order. Messages waiting for their flush share the queue's group commits.
//!   Replays (a gateway publishing the same reading again, a redelivery with dup = 1 after a
//!   crash) are recognised by the queue's dedupe key, stored once, then acknowledged.
//! - A full queue is never a loss: the message stays unacknowledged (the broker keeps it and
//!   every later one), [`SourceHandle::ready`] turns false, and the same message is tried
//!   again every second until it stores.
//! - An undecodable payload is acknowledged (it will never decode), counted, logged without
//!   content and kept in the queue's rejected log with its reason, length and hash.
//! - Reconnects wait a capped exponential backoff with jitter (never a hot loop); subscriptions
//!   are made again at the first ConnAck and whenever the broker says it lost the session.
//!
//! The event loop is polled in its own task and never awaits anything else: rumqttc
//! deadlocks when the poll loop awaits the client (rumqtt#263). Storage and acking run in the
//! ingest task ([`ingest`]); messages between the two wait in a small channel and, while the
//! ingest task is busy, in the poll loop's list (bounded by the broker's
//! `max_inflight_messages`: the broker sends no more unacknowledged messages than that).
//!
//! [`DeviceIngest`]: crate::ingest::DeviceIngest
//! [`DeviceIngest::commit`]: crate::ingest::DeviceIngest::commit

mod device;
mod ingest;
pub mod route;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::ingest::Ingest;
use crate::net::backoff::Backoff;
use crate::source::now_utc_ms;

/// The broker connection is the net layer's (shared with the `mqtt` sink); re-exported.
use crate::net::mqtt::{mqtt_options, Broker, MqttError};
pub use device::MqttDevice;
pub use ingest::{Incoming, SourceState, WINDOW};

/// What the app keeps of a running source: readiness and counters.
#[derive(Debug, Clone)]
pub struct SourceHandle {
    state: Arc<SourceState>,
}

impl SourceHandle {
    /// False while the queue refuses messages (the source holds them at the broker).
    pub fn ready(&self) -> bool {
        self.state.ready.load(Ordering::Relaxed)
    }
    pub fn connected(&self) -> bool {
        self.state.connected.load(Ordering::Relaxed)
    }
    pub fn state(&self) -> &SourceState {
        &self.state
    }
}

/// The shared MQTT connection and its devices.
pub struct MqttSource {
    broker: Broker,
    devices: Vec<MqttDevice>,
    patient: Option<ingest::PatientTopic>,
    ingest: Ingest,
    state: Arc<SourceState>,
    /// Filters a previous run subscribed that this one does not (a reload removed them): the
    /// broker keeps a persistent session's subscriptions, so they are unsubscribed at connect.
    unsubscribe: Vec<String>,
}

/// Requests the client may queue before `try_*` calls fail (acks, subscriptions).
const REQUEST_CAPACITY: usize = 4 * WINDOW + 64;
/// Largest payload accepted (the largest decoder input is 1 MiB of text).
const MAX_PACKET: usize = 2 * 1024 * 1024;

impl MqttSource {
    /// `contexts` receives the `[mqtt] patient_topic` messages when that topic is set.
    pub fn new(
        cfg: &MqttConfig,
        devices: Vec<MqttDevice>,
        contexts: Option<crate::context::ContextStore>,
        ingest: Ingest,
    ) -> Result<Self, MqttError> {
        let state = Arc::new(SourceState::default());
        state.ready.store(true, Ordering::Relaxed);
        Ok(Self {
            broker: Broker::from(cfg),
            devices,
            patient: cfg
                .patient_topic
                .clone()
                .zip(contexts)
                .map(|(filter, contexts)| ingest::PatientTopic { filter, contexts }),
            ingest,
            state,
            unsubscribe: Vec::new(),
        })
    }

    /// Takes over the readiness and counters of a previous run (a reload restarts the
    /// connection; the status page and `/readyz` keep reading the same handle).
    pub fn sharing(mut self, previous: &SourceHandle) -> Self {
        self.state = previous.state.clone();
        self
    }

    /// Unsubscribes `filters` at the first connect (filters a previous run subscribed that
    /// no device of this one uses).
    pub fn unsubscribing(mut self, filters: Vec<String>) -> Self {
        self.unsubscribe = filters;
        self
    }

    pub fn handle(&self) -> SourceHandle {
        SourceHandle {
            state: self.state.clone(),
        }
    }

    /// Runs until `cancel` fires: stops taking messages, acks what was stored, disconnects.
    pub async fn run(self, cancel: CancellationToken) {
        let mut opts = match mqtt_options(&self.broker, &self.broker.client_id, false) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "mqtt source cannot start");
                return;
            }
        };
        opts.set_manual_acks(true);
        opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let (client, eventloop) = AsyncClient::new(opts, REQUEST_CAPACITY);
        let mut filters: Vec<String> = self.devices.iter().map(|d| d.filter.clone()).collect();
        filters.extend(self.patient.as_ref().map(|p| p.filter.clone()));
        let statuses: Vec<_> = self.devices.iter().map(|d| d.status.clone()).collect();
        let (tx, rx) = mpsc::channel(WINDOW);
        let ingest = ingest::Ingester {
            devices: self.devices,
            patient: self.patient,
            ingest: self.ingest,
            client: client.clone(),
            state: self.state.clone(),
        };
        let ingest_done = CancellationToken::new();
        let ingest_task = {
            let done = ingest_done.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                ingest.run(rx, cancel).await;
                done.cancel();
            })
        };
        let poll = PollLoop {
            client,
            filters,
            statuses,
            state: self.state,
            tx,
            backlog: VecDeque::new(),
            url: self.broker.url.clone(),
            unsubscribe: self.unsubscribe,
        };
        poll.run(eventloop, ingest_done).await;
        let _ = ingest_task.await;
    }
}

struct PollLoop {
    client: AsyncClient,
    filters: Vec<String>,
    statuses: Vec<Arc<crate::status::DeviceStatus>>,
    state: Arc<SourceState>,
    tx: mpsc::Sender<Incoming>,
    /// Received, not yet taken by the ingest task (bounded by the broker's inflight limit).
    backlog: VecDeque<Incoming>,
    url: String,
    unsubscribe: Vec<String>,
}

impl PollLoop {
    /// Polls until the ingest task is done, then a little longer so its acks and DISCONNECT
    /// reach the broker.
    async fn run(mut self, mut eventloop: EventLoop, ingest_done: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut first = true;
        let mut failures = 0u32;
        let mut stop_at: Option<tokio::time::Instant> = None;
        let tx = self.tx.clone();
        loop {
            if stop_at.is_none() && ingest_done.is_cancelled() {
                stop_at = Some(tokio::time::Instant::now() + Duration::from_secs(2));
            }
            let grace = stop_at;
            let has_backlog = !self.backlog.is_empty();
            let step = tokio::select! {
                biased;
                () = sleep_until(grace) => Poll::Stop,
                () = ingest_done.cancelled(), if grace.is_none() => Poll::Again,
                permit = tx.reserve(), if has_backlog => Poll::Permit(permit.ok()),
                ev = eventloop.poll() => Poll::Event(ev),
            };
            match step {
                Poll::Stop => break,
                Poll::Again => {}
                Poll::Permit(Some(p)) => {
                    if let Some(m) = self.backlog.pop_front() {
                        p.send(m);
                    }
                }
                Poll::Permit(None) => self.backlog.clear(),
                Poll::Event(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)))
                    if grace.is_some() =>
                {
                    break
                }
                Poll::Event(Ok(ev)) => {
                    if self.event(ev, &mut first, grace.is_some()) {
                        backoff.reset();
                        failures = 0;
                    }
                }
                Poll::Event(Err(e)) => {
                    if grace.is_some() {
                        break;
                    }
                    self.disconnected();
                    failures += 1;
                    let wait = backoff.next_delay();
                    log_failure(&self.url, &e, failures, wait);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = ingest_done.cancelled() => break,
                    }
                }
            }
        }
        self.disconnected();
    }

    /// Handles one event; true on a successful ConnAck.
    fn event(&mut self, ev: Event, first: &mut bool, stopping: bool) -> bool {
        match ev {
            Event::Incoming(Packet::ConnAck(ack)) => {
                tracing::info!(broker = %self.url, session_present = ack.session_present, "mqtt connected");
                self.state.connected.store(true, Ordering::Relaxed);
                for s in &self.statuses {
                    s.set_connected(true);
                }
                if *first {
                    for f in std::mem::take(&mut self.unsubscribe) {
                        tracing::info!(filter = %f, "mqtt unsubscribing a filter no device uses any more");
                        if self.client.try_unsubscribe(f).is_err() {
                            tracing::warn!("mqtt unsubscribe not sent: the request queue is full");
                        }
                    }
                }
                if *first || !ack.session_present {
                    self.subscribe();
                }
                *first = false;
                true
            }
            Event::Incoming(Packet::Publish(publish)) => {
                if !stopping {
                    let m = Incoming {
                        publish,
                        received_at: now_utc_ms(),
                    };
                    if self.backlog.is_empty() {
                        if let Err(mpsc::error::TrySendError::Full(m)) = self.tx.try_send(m) {
                            self.backlog.push_back(m);
                        }
                    } else {
                        self.backlog.push_back(m);
                    }
                }
                false
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    .count();
                if refused > 0 {
                    tracing::error!(broker = %self.url, refused, "the broker refused subscriptions: check its ACL for this client's topics");
                } else {
                    tracing::info!(broker = %self.url, filters = ack.return_codes.len(), "mqtt subscribed");
                }
                false
            }
            _ => false,
        }
    }

    fn subscribe(&self) {
        let subs: Vec<SubscribeFilter> = self
            .filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        if subs.is_empty() {
            return;
        }
        tracing::info!(filters = subs.len(), "mqtt subscribing");
        if self.client.try_subscribe_many(subs.clone()).is_err() {
            // The request channel is full of acks: subscribe from another task (never await
            // the client inside the poll loop).
            let client = self.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.subscribe_many(subs).await {
                    tracing::error!(error = %e, "mqtt subscribe failed");
                }
            });
        }
    }

    fn disconnected(&self) {
        self.state.connected.store(false, Ordering::Relaxed);
        for s in &self.statuses {
            s.set_connected(false);
        }
    }
}

enum Poll<'a> {
    Stop,
    Again,
    Permit(Option<mpsc::Permit<'a, Incoming>>),
    Event(Result<Event, rumqttc::ConnectionError>),
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn log_failure(url: &str, e: &rumqttc::ConnectionError, failures: u32, wait: Duration) {
    let retry_in = humantime::format_duration(Duration::from_millis(
        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    ))
    .to_string();
    match e {
        rumqttc::ConnectionError::Tls(t) => {
            tracing::error!(broker = %url, error = %t, retry_in, "mqtt TLS handshake failed: the broker's certificate is not trusted by mqtt.ca_file, or the host name does not match")
        }
        rumqttc::ConnectionError::ConnectionRefused(code) => {
            tracing::error!(broker = %url, code = ?code, retry_in, "the mqtt broker refused the connection: check username, password_file and client_id")
        }
        _ if failures <= 3 || failures.is_multiple_of(20) => {
            tracing::warn!(broker = %url, error = %e, failures, retry_in, "mqtt connection lost; reconnecting")
        }
        _ => {
            tracing::debug!(broker = %url, error = %e, failures, retry_in, "mqtt connection lost; reconnecting")
        }
    }
}
