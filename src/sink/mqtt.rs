//! The `mqtt` sink: publishes each reading (reading JSON or a FHIR Observation) at QoS 1 on a
//! topic made from a template (`{room}`, `{kind}`, `{device}`), on the `[mqtt]` broker or the
//! sink's own `url`.
//!
//! Receives batches from the delivery loop; reports `Delivered` for a reading only once the
//! broker's PUBACK for its PUBLISH arrived. The event loop runs in its own task, which is also
//! the only place that hands publishes to the client: so the order in which publishes reach
//! the event loop is the order of their `Outgoing::Publish(pkid)` events, which ties each
//! packet id to its reading. A lost connection fails every reading not yet acknowledged
//! (`Retry`): the session is clean, rumqttc drops them, and the delivery loop sends them again.
//! No PUBACK within the timeout is `Retry` too. Receivers see a reading at least once; its
//! `id` tells a repeat.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{DeliverFuture, Outcome, Sink};
use crate::config::{MqttConfig, MqttSinkConfig, PublishFormat};
use crate::net::backoff::Backoff;
use crate::net::mqtt::{mqtt_options, Broker, MqttError};
use crate::reading::{Reading, SinkId};

/// How long a reading may wait for its PUBACK.
pub const PUBACK_TIMEOUT: Duration = Duration::from_secs(10);

struct Job {
    topic: String,
    payload: Vec<u8>,
    done: oneshot::Sender<()>,
}

/// See the module docs.
pub struct MqttSink {
    id: SinkId,
    topic: String,
    format: PublishFormat,
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
    _stop: tokio_util::sync::DropGuard,
}

impl MqttSink {
    /// Connects in the background (call inside a tokio runtime); `shared` is the `[mqtt]`
    /// broker, used when the sink has no `url` of its own.
    pub fn start(cfg: &MqttSinkConfig, shared: Option<&MqttConfig>) -> Result<Self, MqttError> {
        let broker = match (&cfg.url, shared) {
            (Some(url), _) => Broker::from_url(url, &format!("vitalsd-sink-{}", cfg.id))?,
            (None, Some(m)) => {
                let mut b = Broker::from(m);
                b.client_id = format!("{}-sink-{}", m.client_id, cfg.id);
                b
            }
            (None, None) => {
                return Err(MqttError::Url {
                    url: String::new(),
                    reason: format!("sink {}: no url and no [mqtt] broker", cfg.id),
                })
            }
        };
        let opts = mqtt_options(&broker, &broker.client_id, true)?;
        let (client, eventloop) = AsyncClient::new(opts, 1024);
        let (tx, rx) = mpsc::channel(256);
        let stop = CancellationToken::new();
        tokio::spawn(publisher(
            client,
            eventloop,
            rx,
            stop.clone(),
            broker.url.clone(),
        ));
        Ok(Self {
            id: cfg.id.clone(),
            topic: cfg.topic.clone(),
            format: cfg.format,
            jobs: tx,
            timeout: PUBACK_TIMEOUT,
            _stop: stop.drop_guard(),
        })
    }

    /// Shortens the PUBACK timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The topic of `reading`: `{room}`, `{kind}` and `{device}` replaced; wildcard characters and
/// `/` inside a value become `_` so a value never adds a level or a wildcard.
pub fn topic_for(template: &str, reading: &Reading) -> String {
    let clean = |v: &str| v.replace(['/', '+', '#'], "_");
    template
        .replace("{room}", &clean(reading.room.as_deref().unwrap_or("none")))
        .replace("{kind}", &clean(reading.kind.as_str()))
        .replace("{device}", &clean(reading.device.id.as_str()))
}

fn encode(reading: &Reading, format: PublishFormat) -> Result<Vec<u8>, String> {
    let r = match format {
        PublishFormat::Reading => serde_json::to_vec(reading),
        PublishFormat::Fhir => serde_json::to_vec(&super::fhir::observation(reading)),
    };
    r.map_err(|e| format!("cannot encode reading: {e}"))
}

impl Sink for MqttSink {
    fn id(&self) -> &SinkId {
        &self.id
    }

    fn max_batch(&self) -> usize {
        100
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Reading]) -> DeliverFuture<'a> {
        Box::pin(async move {
            let mut waits: Vec<Result<oneshot::Receiver<()>, Outcome>> = Vec::new();
            for r in batch {
                let payload = match encode(r, self.format) {
                    Ok(p) => p,
                    Err(e) => {
                        waits.push(Err(Outcome::Rejected(e)));
                        continue;
                    }
                };
                let (done, wait) = oneshot::channel();
                let job = Job {
                    topic: topic_for(&self.topic, r),
                    payload,
                    done,
                };
                if self.jobs.send(job).await.is_err() {
                    waits.push(Err(Outcome::Retry("mqtt publisher stopped".into())));
                } else {
                    waits.push(Ok(wait));
                }
            }
            let deadline = tokio::time::Instant::now() + self.timeout;
            let mut out = Vec::with_capacity(waits.len());
            for w in waits {
                out.push(match w {
                    Err(o) => o,
                    Ok(wait) => match tokio::time::timeout_at(deadline, wait).await {
                        Ok(Ok(())) => Outcome::Delivered,
                        Ok(Err(_)) => Outcome::Retry("mqtt connection lost before PUBACK".into()),
                        Err(_) => Outcome::Retry(format!(
                            "no PUBACK within {}",
                            humantime::format_duration(self.timeout)
                        )),
                    },
                });
            }
            out
        })
    }
}

/// The event loop: hands publishes to the client and ties PUBACKs back to them.
async fn publisher(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    mut jobs: mpsc::Receiver<Job>,
    stop: CancellationToken,
    url: String,
) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut connected = false;
    // Handed to the client, not yet written (in order); written, waiting for the PUBACK.
    let mut unsent: VecDeque<oneshot::Sender<()>> = VecDeque::new();
    let mut sent: HashMap<u16, oneshot::Sender<()>> = HashMap::new();
    loop {
        let step = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            ev = eventloop.poll() => Ok(ev),
            job = jobs.recv(), if connected => Err(job),
        };
        match step {
            Err(None) => break,
            Err(Some(job)) => {
                if client
                    .try_publish(job.topic, QoS::AtLeastOnce, false, job.payload)
                    .is_ok()
                {
                    unsent.push_back(job.done);
                }
            }
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                tracing::info!(broker = %url, "mqtt sink connected");
                connected = true;
                backoff.reset();
            }
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if let Some(done) = unsent.pop_front() {
                    sent.insert(pkid, done);
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(done) = sent.remove(&ack.pkid) {
                    let _ = done.send(());
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                // rumqttc drops every unacknowledged publish of a clean session: fail them all.
                connected = false;
                unsent.clear();
                sent.clear();
                let wait = backoff.next_delay();
                tracing::warn!(broker = %url, error = %e, "mqtt sink connection lost; reconnecting");
                // Readings that arrive meanwhile fail fast (Retry) instead of waiting.
                let sleep = tokio::time::sleep(wait);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        () = stop.cancelled() => return,
                        job = jobs.recv() => if job.is_none() { return },
                    }
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_take_room_kind_and_device_and_never_gain_levels() {
        let r: Reading = serde_json::from_value(serde_json::json!({
            "id": null, "device": {"id": "exam3-cuff", "driver": "ble-gatt"},
            "room": "exam/3+#", "patient": null, "kind": "blood_pressure",
            "observed_at": "2026-11-27T12:00:00Z", "received_at": "2026-11-27T12:00:01Z",
            "values": []
        }))
        .unwrap();
        let t = topic_for("clinic/{room}/{kind}/{device}", &r);
        assert_eq!(t, "clinic/exam_3__/blood_pressure/exam3-cuff");
    }
}
