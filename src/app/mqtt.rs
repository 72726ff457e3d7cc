//! The shared MQTT connection as the app runs it: every device with an `mqtt` transport (and
//! the `[mqtt] patient_topic`) on ONE connection to the `[mqtt]` broker.
//!
//! A reload that changes `[mqtt]` or any MQTT device (added, removed, changed, reordered —
//! the first matching filter wins) builds the new source first, then stops the old one (it
//! acknowledges what it stored; the rest stays at the broker and comes again) and starts the
//! new one. Filters no device uses any more are unsubscribed (the session is persistent).
//! Devices that did not change keep their status and counters.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::running::{Plan, RunningSet};
use super::Stages;
use crate::config::{Config, DeviceConfig, DeviceTransport, MqttConfig};
use crate::reading::DeviceId;
use crate::source::mqtt::{MqttDevice, MqttSource, SourceHandle};
use crate::status::DeviceStatus;

/// What the one connection is built from: `[mqtt]` and the MQTT devices in config order (the
/// first matching filter wins, so order counts). Equal means "no restart".
#[derive(Debug, Clone, PartialEq)]
pub struct Wiring {
    broker: Option<MqttConfig>,
    devices: Vec<DeviceConfig>,
}

impl Wiring {
    pub fn of(cfg: &Config) -> Self {
        Self {
            broker: cfg.mqtt.clone(),
            devices: cfg
                .devices
                .iter()
                .filter(|d| matches!(d.transport, DeviceTransport::Mqtt(_)))
                .cloned()
                .collect(),
        }
    }
}

/// The MQTT devices on the running connection, each with its status.
type MqttDevices = RunningSet<DeviceId, DeviceConfig, Arc<DeviceStatus>>;

/// The running connection (or none).
#[derive(Default)]
pub struct MqttRun {
    wiring: Option<Wiring>,
    devices: MqttDevices,
    filters: Vec<String>,
    handle: Option<SourceHandle>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

/// A connection built for a config, not started yet.
pub struct Next {
    wiring: Wiring,
    devices: MqttDevices,
    /// The MQTT devices this connection adds, removes, changes and keeps.
    pub plan: Plan<DeviceId>,
    filters: Vec<String>,
    source: Option<MqttSource>,
}

impl MqttRun {
    /// The MQTT devices' statuses, in config order.
    pub fn statuses(&self) -> Vec<Arc<DeviceStatus>> {
        self.devices.handles().cloned().collect()
    }

    /// Builds the connection `cfg` asks for; `None` when it equals the running one.
    pub fn prepare(&self, cfg: &Config, stages: &Stages) -> anyhow::Result<Option<Next>> {
        let wiring = Wiring::of(cfg);
        if self.wiring.as_ref() == Some(&wiring) {
            return Ok(None);
        }
        let plan = self.devices.plan(wiring.devices.iter().map(|d| (&d.id, d)));
        let mut built = Vec::new();
        let mut devices = MqttDevices::default();
        for d in &cfg.devices {
            let DeviceTransport::Mqtt(settings) = &d.transport else {
                continue;
            };
            // An unchanged device keeps its status (counters, last frame).
            let status = self
                .devices
                .get_unchanged(&d.id, d)
                .cloned()
                .unwrap_or_else(|| DeviceStatus::new(d.id.clone(), &d.driver, &d.room));
            built.push(MqttDevice::build(
                d,
                settings,
                cfg,
                &stages.intake,
                status.clone(),
            )?);
            devices.insert(d.id.clone(), d.clone(), status);
        }
        let patient_topic = cfg.mqtt.as_ref().and_then(|m| m.patient_topic.clone());
        let mut filters: Vec<String> = built.iter().map(|d| d.filter.clone()).collect();
        filters.extend(patient_topic.clone());
        let source = if built.is_empty() && patient_topic.is_none() {
            None
        } else {
            let Some(broker) = &cfg.mqtt else {
                bail!("mqtt devices need the [mqtt] table with the broker's url");
            };
            let gone: Vec<String> = self
                .filters
                .iter()
                .filter(|f| !filters.contains(f))
                .cloned()
                .collect();
            let mut source = MqttSource::new(
                broker,
                built,
                Some(stages.link.contexts.clone()),
                stages.intake.clone(),
            )?
            .unsubscribing(gone);
            if let Some(h) = &self.handle {
                source = source.sharing(h);
            }
            Some(source)
        };
        Ok(Some(Next {
            wiring,
            devices,
            plan,
            filters,
            source,
        }))
    }

    /// Stops the running connection (waiting up to `within`) and starts `next`.
    pub async fn replace(&mut self, next: Next, stages: &Stages, within: Duration) {
        if let Some((cancel, mut task)) = self.running.take() {
            cancel.cancel();
            if tokio::time::timeout(within, &mut task).await.is_err() {
                tracing::warn!("the mqtt source did not stop in time; aborted (unacknowledged messages stay at the broker)");
                task.abort();
                let _ = task.await;
            }
            for s in self.devices.handles() {
                s.set_connected(false);
            }
            tracing::info!("mqtt source stopped by reload");
        }
        self.wiring = Some(next.wiring);
        self.devices = next.devices;
        *stages
            .ops
            .mqtt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            next.source.as_ref().map(|s| s.handle());
        if let Some(source) = next.source {
            let handle = source.handle();
            self.handle = Some(handle);
            // Filters unsubscribed by this run are no longer the session's.
            self.filters = next.filters;
            let cancel = stages.source_cancel.child_token();
            let task = stages.ingest.spawn(source.run(cancel.clone()));
            tracing::info!(devices = self.devices.len(), "mqtt source ready");
            self.running = Some((cancel, task));
        }
        // Without a source, the old filters stay the session's until a later run
        // unsubscribes them.
    }
}
