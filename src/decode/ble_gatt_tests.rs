//! Tests of `ble-gatt`: every vector of docs/devices/ble-gatt.md and docs/fhir-codes.md#worked-example-ble-bytes-to-fhir, literally.

use super::*;
use crate::decode::{DeviceMessage, DeviceTime, Measured};
use crate::reading::{AbsentReason, Decimal, Flag, Kind};
use proptest::prelude::*;
use time::macros::datetime;

fn hex_bytes(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).unwrap()
}

fn decode(chr: u16, hex: &str) -> Vec<DecodeEvent> {
    let mut out = Vec::new();
    decode_value(chr, &hex_bytes(hex), None, &mut out);
    out
}

fn feed(d: &mut BleGatt, bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    d.finish(&mut out);
    out
}

fn messages(out: &[DecodeEvent]) -> Vec<&DeviceMessage> {
    out.iter()
        .map(|e| match e {
            DecodeEvent::Message(m) => m,
            other => panic!("expected only messages, got {other:?}"),
        })
        .collect()
}

fn num(m: &DeviceMessage, i: usize) -> Decimal {
    match m.values[i].value {
        Measured::Value(d) => d,
        Measured::Absent(r) => panic!("value {i} absent: {r:?}"),
    }
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn flags(m: &DeviceMessage) -> Vec<&str> {
    m.flags.iter().map(Flag::as_str).collect()
}

#[track_caller]
fn assert_malformed(out: &[DecodeEvent], needle: &str) {
    match out {
        [DecodeEvent::Error(DecodeError::Malformed(r))] => {
            assert!(r.contains(needle), "reason `{r}` lacks `{needle}`");
        }
        other => panic!("expected one Malformed error, got {other:?}"),
    }
}

#[test]
fn the_last_topic_level_names_the_characteristic() {
    assert_eq!(topic_characteristic("gw/exam3/AA:BB/2A1C"), Some(0x2A1C));
    assert_eq!(topic_characteristic("gw/exam3/0x2a35"), Some(0x2A35));
    assert_eq!(topic_characteristic("gw/exam3/json"), None);
    assert_eq!(topic_characteristic("gw/exam3/FFFF"), None);
}

#[test]
fn over_mqtt_the_topic_names_the_characteristic_unless_an_option_or_envelope_does() {
    const TEMP: [u8; 5] = [0x00, 0x6e, 0x01, 0x00, 0xff];
    let count = |out: Vec<DecodeEvent>| {
        out.iter()
            .filter(|e| matches!(e, DecodeEvent::Message(_)))
            .count()
    };
    let mut d = BleGatt::new(None, PayloadFormat::Binary);
    d.set_topic("gw/exam3/2A1C");
    assert_eq!(count(feed(&mut d, &TEMP)), 1);
    d.set_topic("gw/exam3/status");
    assert_eq!(count(feed(&mut d, &TEMP)), 0, "an unknown level names none");
    let mut d = BleGatt::new(Some(0x2A1C), PayloadFormat::Binary);
    d.set_topic("gw/exam3/2A35");
    assert_eq!(count(feed(&mut d, &TEMP)), 1, "the option wins");
    let mut d = BleGatt::new(None, PayloadFormat::Json);
    d.set_topic("gw/exam3/2A35");
    let env = br#"{"chr":"2A1C","data_hex":"006e0100ff"}"#;
    assert_eq!(count(feed(&mut d, env)), 1, "the envelope names its own");
    let opts = |payload| (INFO.mqtt_topic.as_ref().unwrap().options)(&Options::new(), payload);
    assert_eq!(opts(MqttPayload::Json)["payload"], "json");
    assert_eq!(opts(MqttPayload::DecodedText)["payload"], "binary");
    assert!(!opts(MqttPayload::AsReceived).contains_key("payload"));
}

#[path = "ble_gatt_tests/payloads_tests.rs"]
mod payloads;
#[path = "ble_gatt_tests/vitals_tests.rs"]
mod vitals;
#[path = "ble_gatt_tests/weight_and_malformed_tests.rs"]
mod weight_and_malformed;
