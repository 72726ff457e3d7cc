//! The running serial and MLLP devices, each with its own cancellation token so that a reload
//! can stop, start or restart one alone, and the status list the admin API reads.
//!
//! MQTT devices share one connection (`super::mqtt`); their statuses are published here too
//! ([`DeviceSet::set_fixed`]) so the status page lists every device.

use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::running::{Plan, RunningSet};
use super::Stages;
use crate::config::{Config, DeviceConfig, DeviceTransport};
use crate::decode;
use crate::ingest::DevicePipeline;
use crate::reading::DeviceId;
use crate::source::serial::SerialSource;
use crate::status::{DeviceList, DeviceStatus};

/// What runs one serial or MLLP device.
struct Handle {
    cancel: CancellationToken,
    status: Arc<DeviceStatus>,
}

impl Handle {
    fn stop(self) {
        self.cancel.cancel();
        self.status.set_connected(false);
    }
}

/// The running serial/MLLP devices plus the statuses of the MQTT ones, published through one
/// [`DeviceList`].
#[derive(Default)]
pub struct DeviceSet {
    running: RunningSet<DeviceId, DeviceConfig, Handle>,
    fixed: Vec<Arc<DeviceStatus>>,
    list: DeviceList,
}

fn is_managed(d: &DeviceConfig) -> bool {
    !matches!(d.transport, DeviceTransport::Mqtt(_))
}

impl DeviceSet {
    /// The list the admin API reads.
    pub fn list(&self) -> DeviceList {
        self.list.clone()
    }

    fn publish(&self) {
        let mut all: Vec<_> = self.running.handles().map(|h| h.status.clone()).collect();
        all.extend(self.fixed.iter().cloned());
        self.list.set(all);
    }

    /// Records a device started with `cancel`.
    pub fn insert(
        &mut self,
        d: &DeviceConfig,
        cancel: CancellationToken,
        status: Arc<DeviceStatus>,
    ) {
        if let Some(old) = self
            .running
            .insert(d.id.clone(), d.clone(), Handle { cancel, status })
        {
            old.stop();
        }
        self.publish();
    }

    /// Statuses of the devices on the shared MQTT connection.
    pub fn set_fixed(&mut self, statuses: Vec<Arc<DeviceStatus>>) {
        self.fixed = statuses;
        self.publish();
    }

    /// Applies a validated config: starts, stops and restarts serial/MLLP devices through
    /// `spawn` (`spawn(device, its token)`), leaves unchanged ones running untouched.
    pub fn apply<F>(
        &mut self,
        new: &Config,
        parent: &CancellationToken,
        mut spawn: F,
    ) -> Plan<DeviceId>
    where
        F: FnMut(&DeviceConfig, &CancellationToken) -> anyhow::Result<Arc<DeviceStatus>>,
    {
        let managed: Vec<&DeviceConfig> = new.devices.iter().filter(|d| is_managed(d)).collect();
        let p = self.running.plan(managed.iter().map(|d| (&d.id, *d)));
        for id in p.stop.iter().chain(&p.restart) {
            if let Some(h) = self.running.remove(id) {
                h.stop();
            }
            tracing::info!(device = %id, "device stopped by reload");
        }
        for d in managed.iter().filter(|d| p.starts(&d.id)) {
            let cancel = parent.child_token();
            match spawn(d, &cancel) {
                Ok(status) => {
                    tracing::info!(device = %d.id, "device started by reload");
                    self.running
                        .insert(d.id.clone(), (*d).clone(), Handle { cancel, status });
                }
                Err(e) => {
                    tracing::error!(device = %d.id, error = %e, "device not started by reload")
                }
            }
        }
        // Keep the configuration order.
        let order: Vec<DeviceId> = managed.iter().map(|d| d.id.clone()).collect();
        self.running.sort(&order);
        self.publish();
        p
    }
}

/// Starts one serial or MLLP device (its pipeline and its source) under `cancel`.
pub(super) fn spawn_device(
    d: &DeviceConfig,
    cfg: &Config,
    stages: &Stages,
    cancel: &CancellationToken,
) -> anyhow::Result<Arc<DeviceStatus>> {
    let ingest = &stages.ingest;
    let status = DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
    let device_ingest = stages.intake.device(d, cfg, status.clone())?;
    match &d.transport {
        DeviceTransport::Serial(settings) => {
            // The decoder for the device's own transport: a `ble-gatt` gateway on a serial
            // port reads lines, the same driver on MQTT reads one value per message.
            let decoder = decode::registry::build_for(&d.driver, d.transport.kind(), &d.options)
                .map_err(|errs| {
                    let msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
                    anyhow::anyhow!("device {}: {}", d.id, msgs.join("; "))
                })?;
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let (wr_tx, wr_rx) = mpsc::channel(16);
            let pipeline = DevicePipeline::new(d, decoder, device_ingest, wr_tx)?;
            ingest.spawn(pipeline.run(ev_rx));
            let src = SerialSource {
                device: d.id.clone(),
                settings: settings.clone(),
                inactivity_timeout: d.inactivity_timeout,
                status: Some(status.clone()),
            };
            ingest.spawn(src.run(ev_tx, wr_rx, cancel.clone()));
        }
        DeviceTransport::Mllp(settings) => {
            // Message-based: the listener parses each message once and hands it to the
            // device's ingest, answering AA only once it is durable.
            let i = cfg.devices.iter().position(|x| x.id == d.id).unwrap_or(0);
            let carries_messages = decode::driver_info(&d.driver).is_some_and(|info| {
                matches!(
                    info.patient_ids,
                    decode::registry::PatientIds::InMessage { .. }
                ) && info.supports(decode::Transport::Mllp)
            });
            if !carries_messages {
                bail!(
                    "device[{i}].mllp: the mllp transport carries HL7 v2 only (driver \"hl7v2\")"
                );
            }
            let listener = crate::source::mllp::bind(settings.listen).with_context(|| {
                format!(
                    "device[{i}].mllp.listen: cannot listen on {}",
                    settings.listen
                )
            })?;
            let src = crate::source::mllp::MllpSource {
                device: d.id.clone(),
                limits: crate::source::mllp::MllpLimits::from_settings(settings),
                allow: settings.allow.clone(),
                tls: match &settings.tls {
                    Some(t) => Some(
                        crate::source::mllp::acceptor(t)
                            .with_context(|| format!("device[{i}].mllp.tls: cannot set up TLS"))?,
                    ),
                    None => None,
                },
                status: status.clone(),
                ingest: device_ingest,
            };
            ingest.spawn(src.run(listener, cancel.clone()));
        }
        DeviceTransport::Mqtt(_) => {
            bail!(
                "device {}: mqtt devices are started together by spawn_mqtt",
                d.id
            )
        }
    }
    Ok(status)
}
