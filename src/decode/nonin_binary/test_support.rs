//! Helpers shared by the tests of the Nonin binary decoders and simulators.

use crate::decode::{DecodeEvent, Decoder, DeviceMessage, Measured};
use crate::reading::Flag;

/// Feeds `bytes` in one piece, then finishes.
pub fn run(d: &mut dyn Decoder, bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    d.finish(&mut out);
    out
}

/// Feeds `bytes` one byte at a time, then finishes.
pub fn run_bytewise(d: &mut dyn Decoder, bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut out = Vec::new();
    for b in bytes {
        d.feed(std::slice::from_ref(b), &mut out);
    }
    d.finish(&mut out);
    out
}

/// The messages among `events`.
pub fn messages(events: &[DecodeEvent]) -> Vec<&DeviceMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            DecodeEvent::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The errors among `events`, as their metric labels.
pub fn error_labels(events: &[DecodeEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            DecodeEvent::Error(e) => Some(e.label()),
            _ => None,
        })
        .collect()
}

/// The first value of `m` as an integer, `None` when absent.
pub fn int(m: &DeviceMessage) -> Option<i64> {
    match m.values.first().map(|v| &v.value) {
        Some(Measured::Value(d)) if d.scale() == 0 => Some(d.mantissa()),
        Some(Measured::Value(d)) => panic!("unexpected scale in {d:?}"),
        _ => None,
    }
}

/// `(spo2, heart_rate)` of a decoded pair of messages, checking their shape.
#[track_caller]
pub fn pair(spo2: &DeviceMessage, hr: &DeviceMessage) -> (Option<i64>, Option<i64>) {
    use crate::reading::Kind;
    assert_eq!(spo2.kind, Kind::Spo2);
    assert_eq!(spo2.values.len(), 1);
    assert_eq!(spo2.values[0].name, "spo2");
    assert_eq!(spo2.values[0].unit.as_str(), "%");
    assert_eq!(spo2.values[0].mdc, Some(150_456));
    assert_eq!(hr.kind, Kind::HeartRate);
    assert_eq!(hr.values.len(), 1);
    assert_eq!(hr.values[0].name, "heart_rate");
    assert_eq!(hr.values[0].unit.as_str(), "/min");
    assert_eq!(hr.values[0].mdc, Some(149_530));
    assert_eq!(spo2.flags, hr.flags);
    assert_eq!(spo2.device_time, hr.device_time);
    (int(spo2), int(hr))
}

/// Flags as strings.
pub fn flag_names(m: &DeviceMessage) -> Vec<&str> {
    m.flags.iter().map(Flag::as_str).collect()
}
