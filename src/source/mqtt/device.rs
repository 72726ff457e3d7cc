//! MQTT devices: each configured device with its topic filter, payload mode, its decoding
//! stage ([`DeviceStage`]) and its [`DeviceIngest`].
//!
//! A message is one whole payload; it is decoded (and, for continuous drivers, spot-check
//! reduced) in receive order by the device's one stage, then stored through the device's
//! ingest. Several messages of a device may wait for the durable flush at once: they share
//! the queue's group commit.
//!
//! A driver that reads part of each message from its topic (the registry's `TopicInput`: a
//! BLE gateway names the GATT characteristic in the topic's last level) is built with the
//! options that capability gives for the device's `mqtt.payload` (hex and base64 are decoded
//! by the source, so the decoder sees binary; `json` payloads are envelopes), and is told
//! each message's topic before the payload. The source asks the capability, never a driver's
//! name.

use std::sync::Arc;

use crate::config::{Config, DeviceConfig, MqttDeviceSettings, PayloadMode};
use crate::decode::registry::{self, DriverInfo, MqttPayload, Transport};
use crate::decode::{Decoder, Options};
use crate::ingest::{DeviceIngest, DeviceStage, Ingest};
use crate::reading::DeviceId;
use crate::status::DeviceStatus;

use crate::net::mqtt::MqttError;

/// One configured MQTT device.
pub struct MqttDevice {
    pub id: DeviceId,
    pub filter: String,
    pub payload: PayloadMode,
    pub status: Arc<DeviceStatus>,
    pub(super) stage: DeviceStage,
    pub(super) ingest: DeviceIngest,
    /// Whether the decoder reads each message's topic (its driver's `TopicInput`).
    reads_topic: bool,
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
        let info = registry::driver_info(&d.driver)
            .ok_or_else(|| bad(join(&registry::validate_options(&d.driver, &d.options))))?;
        let (decoder, reads_topic) = decoder(info, &d.options, settings.payload).map_err(bad)?;
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
            reads_topic,
        })
    }

    /// Tells a decoder that reads topics the topic of the next message.
    pub(super) fn set_topic(&mut self, topic: &str) {
        if self.reads_topic {
            self.stage.decoder().set_topic(topic);
        }
    }
}

fn join(errs: &[crate::decode::OptionError]) -> String {
    let msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
    msgs.join("; ")
}

/// How the source hands payloads in `mode` to a decoder.
fn handed_as(mode: PayloadMode) -> MqttPayload {
    match mode {
        PayloadMode::Binary => MqttPayload::AsReceived,
        PayloadMode::Hex | PayloadMode::Base64 => MqttPayload::DecodedText,
        PayloadMode::Json => MqttPayload::Json,
    }
}

/// The decoder of driver `info` for MQTT payloads in `mode`, and whether it reads topics.
fn decoder(
    info: &DriverInfo,
    options: &Options,
    mode: PayloadMode,
) -> Result<(Box<dyn Decoder>, bool), String> {
    let opts = match &info.mqtt_topic {
        Some(topic) => (topic.options)(options, handed_as(mode)),
        None => options.clone(),
    };
    let dec = info
        .build_for(Transport::Mqtt, &opts)
        .map_err(|e| join(&e))?;
    Ok((dec, info.mqtt_topic.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::registry::OptionSpec;
    use crate::decode::{DecodeError, DecodeEvent};
    use crate::reading::Kind;

    fn options(pairs: &[(&str, &str)]) -> Options {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn ble() -> &'static DriverInfo {
        registry::driver_info("ble-gatt").unwrap()
    }

    /// 0x2A1C: flags 0 (Celsius, no time), FLOAT 36.6 (366 × 10^-1).
    const TEMP: [u8; 5] = [0x00, 0x6e, 0x01, 0x00, 0xff];

    /// Feeds one message as the device does: the topic first (when read), then the payload.
    fn feed(dec: &mut (Box<dyn Decoder>, bool), topic: &str, bytes: &[u8]) -> Vec<DecodeEvent> {
        if dec.1 {
            dec.0.set_topic(topic);
        }
        let mut out = Vec::new();
        dec.0.feed(bytes, &mut out);
        out
    }

    fn messages(dec: &mut (Box<dyn Decoder>, bool), topic: &str, bytes: &[u8]) -> usize {
        feed(dec, topic, bytes)
            .iter()
            .filter(|e| matches!(e, DecodeEvent::Message(_)))
            .count()
    }

    #[test]
    fn a_gatt_value_takes_its_characteristic_from_the_topic() {
        let mut dec = decoder(ble(), &options(&[]), PayloadMode::Binary).unwrap();
        assert!(dec.1, "ble-gatt declares that it reads topics");
        assert_eq!(messages(&mut dec, "gw/exam3/2A1C", &TEMP), 1);
        assert_eq!(messages(&mut dec, "gw/exam3/unknown", &TEMP), 0);
        assert_eq!(messages(&mut dec, "gw/exam3/AA:BB/0x2a1c", &TEMP), 1);
    }

    #[test]
    fn hex_payloads_decoded_by_the_source_reach_the_decoder_as_binary() {
        // The device's own option says hex; the source already decoded the text.
        let mut dec = decoder(ble(), &options(&[("payload", "hex")]), PayloadMode::Hex).unwrap();
        assert_eq!(messages(&mut dec, "gw/exam3/2A1C", &TEMP), 1);
    }

    #[test]
    fn a_configured_characteristic_wins_over_the_topic() {
        let mut dec = decoder(
            ble(),
            &options(&[("characteristic", "2A1C")]),
            PayloadMode::Binary,
        )
        .unwrap();
        assert_eq!(messages(&mut dec, "gw/exam3/2A35", &TEMP), 1);
        assert_eq!(messages(&mut dec, "gw/exam3/unknown", &TEMP), 1);
    }

    #[test]
    fn a_json_payload_reads_the_envelope_and_ignores_the_topic() {
        let mut dec = decoder(ble(), &options(&[]), PayloadMode::Json).unwrap();
        let env = br#"{"chr":"2A1C","data_hex":"006e0100ff"}"#;
        assert_eq!(messages(&mut dec, "gw/exam3/2A35", env), 1);
    }

    #[test]
    fn a_driver_without_the_capability_is_never_told_a_topic() {
        let json = registry::driver_info("json").unwrap();
        assert!(json.mqtt_topic.is_none());
        let dec = decoder(json, &options(&[]), PayloadMode::Binary).unwrap();
        assert!(!dec.1);
        let bad = decoder(ble(), &options(&[("colour", "red")]), PayloadMode::Binary);
        assert!(bad.err().unwrap().contains("colour"));
    }

    /// A decoder that reports the topic it was told and the payload mode its options name.
    struct Echo {
        handed: String,
        topic: String,
    }

    impl Decoder for Echo {
        fn feed(&mut self, _bytes: &[u8], out: &mut Vec<DecodeEvent>) {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "{} {}",
                self.handed, self.topic
            ))));
        }

        fn finish(&mut self, _out: &mut Vec<DecodeEvent>) {}

        fn set_topic(&mut self, topic: &str) {
            self.topic = topic.to_string();
        }
    }

    fn echo_options(opts: &Options, payload: MqttPayload) -> Options {
        let mut opts = opts.clone();
        opts.insert("handed".into(), format!("{payload:?}"));
        opts
    }

    /// A driver other than `ble-gatt` declaring the capability: only in this test.
    static TOPIC_ECHO: DriverInfo = DriverInfo {
        name: "topic-echo",
        devices: "test only",
        transports: &[Transport::Mqtt],
        kinds: &[Kind::HeartRate],
        framing: "one message per payload",
        experimental: true,
        continuous: false,
        patient_ids: registry::PatientIds::None,
        serial: None,
        mqtt_topic: Some(registry::TopicInput {
            takes: "the whole topic",
            options: echo_options,
        }),
        options: &[OptionSpec {
            key: "handed",
            help: "set by the capability's options",
            check: |_| Ok(()),
        }],
        build: |_, opts| {
            Ok(Box::new(Echo {
                handed: opts.get("handed").cloned().unwrap_or_default(),
                topic: String::new(),
            }))
        },
    };

    #[test]
    fn any_driver_declaring_the_capability_gets_its_options_and_every_topic() {
        let mut dec = decoder(&TOPIC_ECHO, &options(&[]), PayloadMode::Base64).unwrap();
        assert!(dec.1);
        let said = |events: Vec<DecodeEvent>| match events.as_slice() {
            [DecodeEvent::Error(DecodeError::Malformed(m))] => m.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            said(feed(&mut dec, "site/a/first", b"x")),
            "DecodedText site/a/first"
        );
        assert_eq!(
            said(feed(&mut dec, "site/b/second", b"x")),
            "DecodedText site/b/second"
        );
        let mut dec = decoder(&TOPIC_ECHO, &options(&[]), PayloadMode::Json).unwrap();
        assert_eq!(said(feed(&mut dec, "t", b"{}")), "Json t");
    }
}
