//! MQTT devices: each configured device with its topic filter, payload mode and a small pool
//! of [`DevicePipeline`]s (so several of its messages can wait for the same group commit).
//!
//! A message is one whole payload, so a pipeline keeps no state between messages for the
//! message-based drivers; a continuous driver (spot-check reduction across messages) gets a
//! pool of one, which keeps its messages in order through one reporter.
//!
//! `ble-gatt`: the characteristic comes from the option `characteristic`, else from the
//! topic's last segment (`gw/exam3/AA:BB/2A1C`), else from the JSON envelope's `chr`. With
//! `payload = "json"` the topic is not used (the envelope names the characteristic). The
//! device's `mqtt.payload` decides the decoder's `payload` option: hex and base64 are decoded
//! by the source, so the decoder sees binary; `json` sets `payload = json`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::{Config, DeviceConfig, DeviceTransport, MqttDeviceSettings, PayloadMode};
use crate::decode::ble_gatt::{self, BleGatt, PayloadFormat};
use crate::decode::registry::{self, Transport};
use crate::decode::{DecodeEvent, Decoder};
use crate::pipeline::{DevicePipeline, PatientLink};
use crate::queue::Queue;
use crate::reading::DeviceId;
use crate::status::DeviceStatus;

use super::MqttError;

/// Most pipelines per device for message-based drivers (made on demand: an idle device has
/// one).
pub const POOL_MAX: usize = 128;
/// No characteristic from the topic.
const NO_CHR: u32 = u32::MAX;

/// One configured MQTT device.
pub struct MqttDevice {
    pub id: DeviceId,
    pub filter: String,
    pub payload: PayloadMode,
    pub status: Arc<DeviceStatus>,
    /// Boxed: a pipeline (~4 KB) moves into a task and back for every message.
    #[allow(clippy::vec_box)]
    pub(super) idle: Vec<Box<Worker>>,
    /// Pipelines made so far, idle or busy.
    made: usize,
    max: usize,
    factory: Factory,
}

/// What a new pipeline of the device is made from.
struct Factory {
    device: DeviceConfig,
    cfg: Config,
    queue: Queue,
    link: Option<PatientLink>,
}

/// One pipeline of a device, and where it learns the message's topic characteristic.
pub struct Worker {
    pub(super) pipeline: DevicePipeline,
    topic_chr: Option<Arc<AtomicU32>>,
}

impl Worker {
    /// Tells a `ble-gatt` decoder the characteristic of the next message's topic.
    pub(super) fn set_topic(&self, topic: &str) {
        if let Some(cell) = &self.topic_chr {
            let chr = super::route::topic_characteristic(topic).map_or(NO_CHR, u32::from);
            cell.store(chr, Ordering::Relaxed);
        }
    }
}

impl MqttDevice {
    /// Builds the device and its first pipeline (which checks every option). `status` is
    /// shared with the app's status list; `link` gives readings their room's patient (and
    /// holds them in `hold` mode).
    pub fn build(
        d: &DeviceConfig,
        settings: &MqttDeviceSettings,
        cfg: &Config,
        queue: &Queue,
        status: Arc<DeviceStatus>,
        link: Option<&PatientLink>,
    ) -> Result<MqttDevice, MqttError> {
        let continuous = registry::driver_info(&d.driver).is_some_and(|i| i.continuous);
        let mut dev = MqttDevice {
            id: d.id.clone(),
            filter: settings.topic.clone(),
            payload: settings.payload,
            status,
            idle: Vec::new(),
            made: 0,
            max: if continuous { 1 } else { POOL_MAX },
            factory: Factory {
                device: d.clone(),
                cfg: cfg.clone(),
                queue: queue.clone(),
                link: link.cloned(),
            },
        };
        let first = dev.make()?;
        dev.idle.push(first);
        Ok(dev)
    }

    /// An idle pipeline, made when none is idle and the pool may grow; `None` when all are
    /// busy (or a new one cannot be made).
    pub(super) fn take(&mut self) -> Option<Box<Worker>> {
        if let Some(w) = self.idle.pop() {
            return Some(w);
        }
        if self.made >= self.max {
            return None;
        }
        match self.make() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot make another pipeline");
                self.max = self.made.max(1);
                None
            }
        }
    }

    fn make(&mut self) -> Result<Box<Worker>, MqttError> {
        let f = &self.factory;
        let d = &f.device;
        let bad = |reason: String| MqttError::Device {
            device: d.id.to_string(),
            reason,
        };
        let DeviceTransport::Mqtt(settings) = &d.transport else {
            return Err(bad("not an mqtt device".into()));
        };
        let (decoder, topic_chr) = decoder(d, settings.payload).map_err(bad)?;
        // MQTT devices take no host commands: the writer channel has no reader.
        let (wr_tx, _) = mpsc::channel(1);
        let mut pipeline = DevicePipeline::new(
            d,
            &f.cfg,
            decoder,
            f.queue.clone(),
            self.status.clone(),
            wr_tx,
        )
        .map_err(|e| bad(format!("{e:#}")))?;
        if let Some(link) = &f.link {
            pipeline = pipeline.with_patient_link(link.clone());
        }
        self.made += 1;
        Ok(Box::new(Worker {
            pipeline,
            topic_chr,
        }))
    }
}

fn join(errs: &[crate::decode::OptionError]) -> String {
    let msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
    msgs.join("; ")
}

type Built = (Box<dyn Decoder>, Option<Arc<AtomicU32>>);

fn decoder(d: &DeviceConfig, mode: PayloadMode) -> Result<Built, String> {
    if d.driver != "ble-gatt" {
        let dec =
            registry::build_for(&d.driver, Transport::Mqtt, &d.options).map_err(|e| join(&e))?;
        return Ok((dec, None));
    }
    let mut opts = d.options.clone();
    match mode {
        PayloadMode::Json => {
            opts.insert("payload".into(), "json".into());
        }
        PayloadMode::Hex | PayloadMode::Base64 => {
            opts.insert("payload".into(), "binary".into());
        }
        // A binary transport leaves the driver's own `payload` option (text inside a payload).
        PayloadMode::Binary => {}
    }
    // Validates every option the same way the registry does.
    registry::build_for(&d.driver, Transport::Mqtt, &opts).map_err(|e| join(&e))?;
    let configured = opts
        .get("characteristic")
        .map(|v| ble_gatt::parse_characteristic(v))
        .transpose()?;
    let format = opts
        .get("payload")
        .map_or(Ok(PayloadFormat::Binary), |v| PayloadFormat::parse(v))?;
    let use_topic = configured.is_none() && format != PayloadFormat::Json;
    let cell = use_topic.then(|| Arc::new(AtomicU32::new(NO_CHR)));
    let dec = TopicGatt {
        inner: BleGatt::new(configured, format),
        configured,
        topic: cell.clone(),
    };
    Ok((Box::new(dec), cell))
}

/// `ble-gatt` that takes the characteristic from the message's topic when none is configured.
struct TopicGatt {
    inner: BleGatt,
    configured: Option<u16>,
    topic: Option<Arc<AtomicU32>>,
}

impl Decoder for TopicGatt {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        let from_topic = self
            .topic
            .as_ref()
            .and_then(|c| u16::try_from(c.load(Ordering::Relaxed)).ok());
        self.inner
            .set_characteristic(self.configured.or(from_topic));
        self.inner.feed(bytes, out);
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        self.inner.finish(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Options;

    fn device(options: &[(&str, &str)]) -> DeviceConfig {
        DeviceConfig {
            id: DeviceId::new("cuff"),
            driver: "ble-gatt".into(),
            room: "exam-3".into(),
            transport: crate::config::DeviceTransport::Mqtt(MqttDeviceSettings {
                topic: "gw/#".into(),
                payload: PayloadMode::Binary,
            }),
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<Options>(),
            inactivity_timeout: std::time::Duration::from_secs(60),
        }
    }

    /// 0x2A1C: flags 0 (Celsius, no time), FLOAT 36.6 (366 × 10^-1).
    const TEMP: [u8; 5] = [0x00, 0x6e, 0x01, 0x00, 0xff];

    fn messages(dec: &mut Built, topic: &str, bytes: &[u8]) -> usize {
        if let Some(cell) = &dec.1 {
            let chr = super::super::route::topic_characteristic(topic).map_or(NO_CHR, u32::from);
            cell.store(chr, Ordering::Relaxed);
        }
        let mut out = Vec::new();
        dec.0.feed(bytes, &mut out);
        out.iter()
            .filter(|e| matches!(e, DecodeEvent::Message(_)))
            .count()
    }

    #[test]
    fn a_gatt_value_takes_its_characteristic_from_the_topic() {
        let mut dec = decoder(&device(&[]), PayloadMode::Binary).unwrap();
        assert_eq!(messages(&mut dec, "gw/exam3/2A1C", &TEMP), 1);
        assert_eq!(messages(&mut dec, "gw/exam3/unknown", &TEMP), 0);
    }

    #[test]
    fn a_configured_characteristic_wins_over_the_topic() {
        let mut dec = decoder(&device(&[("characteristic", "2A1C")]), PayloadMode::Binary).unwrap();
        assert!(dec.1.is_none());
        assert_eq!(messages(&mut dec, "gw/exam3/2A35", &TEMP), 1);
    }

    #[test]
    fn a_json_payload_reads_the_envelope_and_ignores_the_topic() {
        let mut dec = decoder(&device(&[]), PayloadMode::Json).unwrap();
        assert!(dec.1.is_none());
        let env = br#"{"chr":"2A1C","data_hex":"006e0100ff"}"#;
        assert_eq!(messages(&mut dec, "gw/exam3/2A35", env), 1);
    }
}
