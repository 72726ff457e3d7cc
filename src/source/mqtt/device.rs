//! MQTT devices: each configured device with its topic filter, payload mode, its decoding
//! stage ([`DeviceStage`]) and its [`DeviceIngest`].
//!
//! A message is one whole payload; it is decoded (and, for continuous drivers, spot-check
//! reduced) in receive order by the device's one stage, then stored through the device's
//! ingest. Several messages of a device may wait for the durable flush at once: they share
//! the queue's group commit.
//!
//! `ble-gatt`: the characteristic comes from the option `characteristic`, else from the
//! topic's last segment (`gw/exam3/AA:BB/2A1C`), else from the JSON envelope's `chr`. With
//! `payload = "json"` the topic is not used (the envelope names the characteristic). The
//! device's `mqtt.payload` decides the decoder's `payload` option: hex and base64 are decoded
//! by the source, so the decoder sees binary; `json` sets `payload = json`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::config::{Config, DeviceConfig, MqttDeviceSettings, PayloadMode};
use crate::decode::ble_gatt::{self, BleGatt, PayloadFormat};
use crate::decode::registry::{self, Transport};
use crate::decode::{DecodeEvent, Decoder};
use crate::ingest::{DeviceIngest, DeviceStage, Ingest};
use crate::reading::DeviceId;
use crate::status::DeviceStatus;

use super::MqttError;

/// No characteristic from the topic.
const NO_CHR: u32 = u32::MAX;

/// One configured MQTT device.
pub struct MqttDevice {
    pub id: DeviceId,
    pub filter: String,
    pub payload: PayloadMode,
    pub status: Arc<DeviceStatus>,
    pub(super) stage: DeviceStage,
    pub(super) ingest: DeviceIngest,
    /// Where a `ble-gatt` decoder learns the characteristic of the message's topic.
    topic_chr: Option<Arc<AtomicU32>>,
}

impl MqttDevice {
    /// Builds the device (which checks every option). `status` is shared with the app's
    /// status list; `ingest` stores its readings (with their room's patient).
    pub fn build(
        d: &DeviceConfig,
        settings: &MqttDeviceSettings,
        cfg: &Config,
        ingest: &Ingest,
        status: Arc<DeviceStatus>,
    ) -> Result<MqttDevice, MqttError> {
        let bad = |reason: String| MqttError::Device {
            device: d.id.to_string(),
            reason,
        };
        let (decoder, topic_chr) = decoder(d, settings.payload).map_err(bad)?;
        let ingest = ingest
            .device(d, cfg, status.clone())
            .map_err(|e| bad(e.reasons))?;
        let stage = DeviceStage::new(d, decoder, &ingest).map_err(|e| bad(e.reasons))?;
        Ok(MqttDevice {
            id: d.id.clone(),
            filter: settings.topic.clone(),
            payload: settings.payload,
            status,
            stage,
            ingest,
            topic_chr,
        })
    }

    /// Tells a `ble-gatt` decoder the characteristic of the next message's topic.
    pub(super) fn set_topic(&self, topic: &str) {
        if let Some(cell) = &self.topic_chr {
            let chr = super::route::topic_characteristic(topic).map_or(NO_CHR, u32::from);
            cell.store(chr, Ordering::Relaxed);
        }
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
