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

#[path = "ble_gatt_tests/payloads_tests.rs"]
mod payloads;
#[path = "ble_gatt_tests/vitals_tests.rs"]
mod vitals;
#[path = "ble_gatt_tests/weight_and_malformed_tests.rs"]
mod weight_and_malformed;
