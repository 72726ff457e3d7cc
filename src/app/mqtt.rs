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

use super::reload::fingerprint as device_fingerprint;
use super::Stages;
use crate::config::{Config, DeviceTransport};
use crate::reading::DeviceId;
use crate::source::mqtt::{MqttDevice, MqttSource, SourceHandle};
use crate::status::DeviceStatus;

/// `[mqtt]` and the MQTT devices in order; equal means "no restart". Compared only.
pub fn fingerprint(cfg: &Config) -> String {
    let devices: Vec<String> = cfg
        .devices
        .iter()
        .filter(|d| matches!(d.transport, DeviceTransport::Mqtt(_)))
        .map(device_fingerprint)
        .collect();
    format!("{:?}|{devices:?}", cfg.mqtt)
}

/// The running connection (or none).
#[derive(Default)]
pub struct MqttRun {
    fingerprint: Option<String>,
    devices: Vec<(DeviceId, String, Arc<DeviceStatus>)>,
    filters: Vec<String>,
    handle: Option<SourceHandle>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

/// A connection built for a config, not started yet.
pub struct Next {
    fingerprint: String,
    devices: Vec<(DeviceId, String, Arc<DeviceStatus>)>,
    filters: Vec<String>,
    source: Option<MqttSource>,
}

impl MqttRun {
    /// The MQTT devices' statuses, in config order.
    pub fn statuses(&self) -> Vec<Arc<DeviceStatus>> {
        self.devices.iter().map(|(_, _, s)| s.clone()).collect()
    }

    /// Builds the connection `cfg` asks for; `None` when it equals the running one.
    pub fn prepare(&self, cfg: &Config, stages: &Stages) -> anyhow::Result<Option<Next>> {
        let fp = fingerprint(cfg);
        if self.fingerprint.as_deref() == Some(fp.as_str()) {
            return Ok(None);
        }
        let mut built = Vec::new();
        let mut devices = Vec::new();
        for d in &cfg.devices {
            let DeviceTransport::Mqtt(settings) = &d.transport else {
                continue;
            };
            let dfp = device_fingerprint(d);
            // An unchanged device keeps its status (counters, last frame).
            let status = self
                .devices
                .iter()
                .find(|(id, f, _)| id == &d.id && f == &dfp)
                .map(|(_, _, s)| s.clone())
                .unwrap_or_else(|| DeviceStatus::new(d.id.clone(), &d.driver, &d.room));
            built.push(MqttDevice::build(
                d,
                settings,
                cfg,
                &stages.intake,
                status.clone(),
            )?);
            devices.push((d.id.clone(), dfp, status));
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
            fingerprint: fp,
            devices,
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
            for (_, _, s) in &self.devices {
                s.set_connected(false);
            }
            tracing::info!("mqtt source stopped by reload");
        }
        self.fingerprint = Some(next.fingerprint);
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
