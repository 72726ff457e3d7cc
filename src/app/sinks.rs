//! The running sinks: one delivery loop per `[[sink]]`, each with its own cancellation token
//! so that a reload can stop, start or restart one alone while the others keep delivering.
//!
//! Each started loop gets a fresh [`SinkStatus`] (a sink restarted by a reload starts over:
//! its last success and error described the old settings), kept in `Ops::sinks` for the
//! status page and `/readyz`.
//!
//! A stopped sink finishes and settles its batch in flight; its pending entries stay in the
//! queue (shown as "not configured" in the stats) until it is configured again or purged.

use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::running::{Plan, RunningSet};
use super::tokens::TokenSources;
use super::Stages;
use crate::config::{MqttConfig, OutboxFormat, SinkConfig};
use crate::reading::SinkId;
use crate::sink::delivery::{run_delivery_reporting, Reporting};
use crate::sink::{self, FileFormat, FileSink, RetryPolicy, Sink};
use crate::status::SinkStatus;

/// Sets up the client of one sink (nothing is delivered until [`SinkSet::start`]). A FHIR sink
/// takes the token source of its credentials from `tokens` (shared with the patient lookup
/// and other sinks with the same credentials).
pub fn build_sink(
    s: &SinkConfig,
    mqtt: Option<&MqttConfig>,
    tokens: &TokenSources,
) -> anyhow::Result<Box<dyn Sink>> {
    match s {
        SinkConfig::File(f) => {
            let format = match f.format {
                OutboxFormat::Fhir => FileFormat::Fhir,
                OutboxFormat::Reading => FileFormat::Reading,
                OutboxFormat::Hl7 => FileFormat::Hl7,
            };
            let sink = FileSink::open(f.id.clone(), &f.dir, format)
                .with_context(|| format!("sink {}: cannot use outbox {}", f.id, f.dir.display()))?
                .with_waveform(f.waveform);
            Ok(Box::new(sink))
        }
        SinkConfig::Fhir(f) => {
            let sink =
                sink::fhir::FhirSink::with_tokens(f, tokens.get(&f.auth, f.ca_file.as_deref()))
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

/// Everything that makes a sink what it is: its table, and `[mqtt]` for an MQTT sink without
/// its own `url` (it publishes through the shared broker). Equal settings mean "unchanged".
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSettings {
    pub sink: SinkConfig,
    pub shared_broker: Option<MqttConfig>,
}

impl SinkSettings {
    pub fn of(s: &SinkConfig, mqtt: Option<&MqttConfig>) -> Self {
        let shared_broker = match s {
            SinkConfig::Mqtt(m) if m.url.is_none() => mqtt.cloned(),
            _ => None,
        };
        Self {
            sink: s.clone(),
            shared_broker,
        }
    }
}

/// A running delivery loop.
pub struct Loop {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The running delivery loops, in config order.
#[derive(Default)]
pub struct SinkSet {
    loops: RunningSet<SinkId, SinkSettings, Loop>,
}

impl SinkSet {
    /// What it takes to run `wanted` (`(id, settings)` in config order).
    pub fn plan(&self, wanted: &[(SinkId, SinkSettings)]) -> Plan<SinkId> {
        self.loops.plan(wanted.iter().map(|(k, c)| (k, c)))
    }

    /// Starts the delivery loop of `sink` (its entries must already be in the queue's sink
    /// list: `Queue::set_sinks` comes first).
    pub fn start(&mut self, stages: &Stages, sink: Box<dyn Sink>, settings: SinkSettings) {
        let id = sink.id().clone();
        tracing::info!(sink = %id, "sink ready");
        let cancel = stages.delivery_cancel.child_token();
        let status = SinkStatus::new(id.clone(), time::OffsetDateTime::now_utc());
        stages.ops.sinks.insert(status.clone());
        let report = Reporting {
            events: Some(stages.deliveries.clone()),
            status: Some(status),
        };
        let task = stages.delivery.spawn(run_delivery_reporting(
            stages.queue.clone(),
            sink,
            RetryPolicy::default(),
            cancel.clone(),
            report,
        ));
        if let Some(old) = self.loops.insert(id, settings, Loop { cancel, task }) {
            // Not reached by a reload (it stops a changed sink first); never leave a loop
            // running without a handle.
            old.cancel.cancel();
        }
    }

    /// Stops one sink: it settles its batch in flight, then its loop ends. A loop that takes
    /// longer than `within` is aborted (its unsettled batch stays pending and is sent again).
    pub async fn stop(&mut self, id: &SinkId, within: Duration) {
        let Some(mut l) = self.loops.remove(id) else {
            return;
        };
        l.cancel.cancel();
        if tokio::time::timeout(within, &mut l.task).await.is_err() {
            tracing::warn!(sink = %id, "sink did not finish its batch in time; aborted (the batch stays queued)");
            l.task.abort();
            let _ = l.task.await;
        }
        tracing::info!(sink = %id, "sink stopped by reload");
    }

    /// Puts the loops in `order` (the config's sink order).
    pub fn sort(&mut self, order: &[SinkId]) {
        self.loops.sort(order);
    }
}
