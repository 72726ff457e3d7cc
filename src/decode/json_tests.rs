//! Tests of the `json` driver.

use super::*;
use crate::model::fixtures;
use crate::normalize::{normalize, NormalizeContext};
use crate::reading::{DeviceId, Reading, Value};
use proptest::prelude::*;

const BP: &str = r#"{"id":"01938f4e-7b2a-7c4d-9a51-3f0c2b1d9e77","device":{"id":"exam3-cuff","driver":"ble-gatt","model":"UA-651BLE","serial":"5140123"},"room":"exam-3","patient":{"id":"MRN0012345","system":"urn:oid:2.16.840.1.113883.3.999"},"kind":"blood_pressure","observed_at":"2026-11-27T12:00:00Z","received_at":"2026-11-27T12:00:01.234Z","device_time":"2026-11-27T11:59:58Z","values":[{"code":"8480-6","mdc":150021,"name":"systolic","value":120,"unit":"mm[Hg]"},{"code":"8462-4","mdc":150022,"name":"diastolic","value":80,"unit":"mm[Hg]"},{"code":"8478-0","mdc":150023,"name":"mean","value":93,"unit":"mm[Hg]"}],"flags":[]}"#;

fn events(framing: JsonFraming, bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut d = JsonDecoder::new(framing);
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    d.finish(&mut out);
    out
}

fn one(json: &str) -> Result<DeviceMessage, DecodeError> {
    decode_frame(json.as_bytes())
}

fn reason(json: &str) -> String {
    match one(json) {
        Err(DecodeError::Malformed(r)) => r,
        other => panic!("expected a malformed error, got {other:?}"),
    }
}

#[test]
fn the_design_example_decodes_into_one_message() {
    let m = one(BP).unwrap();
    assert_eq!(m.kind, Kind::BloodPressure);
    assert_eq!(m.values.len(), 3);
    assert_eq!(m.values[0].value, Measured::Value(Decimal::from_int(120)));
    assert_eq!(m.values[0].mdc, Some(150_021));
    assert_eq!(m.model.as_deref(), Some("UA-651BLE"));
    let t = OffsetDateTime::parse("2026-11-27T11:59:58Z", &Rfc3339).unwrap();
    assert_eq!(m.device_time, Some(DeviceTime::Absolute(t)));
}

#[test]
fn lines_on_serial_give_one_message_each_and_resync_after_errors() {
    let input = format!("{BP}\r\nnot json\n\n{BP}\n");
    let out = events(JsonFraming::Lines, input.as_bytes());
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(matches!(out[0], DecodeEvent::Message(_)));
    assert!(matches!(
        out[1],
        DecodeEvent::Error(DecodeError::Malformed(_))
    ));
    assert!(matches!(out[2], DecodeEvent::Message(_)));
}

#[test]
fn an_mqtt_payload_may_span_several_lines() {
    let pretty = "{\n  \"kind\": \"spo2\",\n  \"values\": [{\"name\": \"spo2\", \"value\": 97, \"unit\": \"%\"}]\n}";
    let out = events(JsonFraming::PerMessage, pretty.as_bytes());
    assert!(matches!(out[..], [DecodeEvent::Message(_)]), "{out:?}");
}

#[test]
fn oversized_frames_are_rejected_in_both_framings() {
    let big = vec![b' '; MAX_FRAME + 1];
    let out = events(JsonFraming::PerMessage, &big);
    assert_eq!(
        out,
        vec![DecodeEvent::Error(DecodeError::Oversized(MAX_FRAME))]
    );
    let mut line = vec![b'x'; MAX_FRAME + 1];
    line.push(b'\n');
    let out = events(JsonFraming::Lines, &line);
    assert_eq!(
        out,
        vec![DecodeEvent::Error(DecodeError::Oversized(MAX_FRAME))]
    );
}

#[test]
fn precision_is_kept_from_the_json_text() {
    let m = one(r#"{"kind":"body_temperature","values":[{"name":"temperature","value":37.60,"unit":"Cel","site":"oral"}]}"#).unwrap();
    assert_eq!(m.values[0].value, Measured::Value(Decimal::new(3760, 2)));
    assert_eq!(m.values[0].site.as_deref(), Some("oral"));
}

#[test]
fn errors_name_the_field() {
    let r = reason(r#"{"kind":"pressure","values":[]}"#);
    assert!(r.starts_with("json: kind:"), "{r}");
    let r = reason(r#"{"kind":"spo2","values":[{"name":"sat","value":97,"unit":"%"}]}"#);
    assert!(
        r.starts_with("json: values[0].name: `sat` is not a component of spo2"),
        "{r}"
    );
    let r =
        reason(r#"{"kind":"body_weight","values":[{"name":"weight","value":70,"unit":"stone"}]}"#);
    assert_eq!(
        r,
        "json: values[0].unit: `stone` cannot be converted to `kg`"
    );
    let r = reason(r#"{"kind":"spo2","values":[{"name":"spo2","value":null,"unit":"%"}]}"#);
    assert_eq!(r, "json: values[0].value: null requires `absent`");
    let r = reason(r#"{"kind":"spo2","values":[{"name":"spo2","value":"97","unit":"%"}]}"#);
    assert!(r.starts_with("json: values[0].value:"), "{r}");
    let r = reason(
        r#"{"kind":"spo2","values":[{"name":"spo2","value":97,"unit":"%"}],"device_time":"yesterday"}"#,
    );
    assert_eq!(r, "json: device_time: not an RFC 3339 date-time");
    let r =
        reason(r#"{"kind":"spo2","values":[{"name":"spo2","value":97,"unit":"%"}],"colour":1}"#);
    assert!(r.contains("colour"), "{r}");
    let r = reason(
        r#"{"kind":"spo2","values":[{"code":"8867-4","name":"spo2","value":97,"unit":"%"}]}"#,
    );
    assert!(r.starts_with("json: values[0].code:"), "{r}");
    let r = reason(r#"{"kind":"spo2","values":[]}"#);
    assert!(r.starts_with("json: values:"), "{r}");
}

#[test]
fn patient_data_never_appears_in_an_error() {
    let r = reason(r#"{"patient":{"id":"MRN0012345","system":"x"},"kind":"nope","values":[]}"#);
    assert!(!r.contains("MRN0012345"), "{r}");
}

#[test]
fn an_absent_value_needs_its_reason_and_no_number() {
    let m = one(
        r#"{"kind":"spo2","values":[{"name":"spo2","value":null,"unit":"%","absent":"unknown"}]}"#,
    )
    .unwrap();
    assert_eq!(m.values[0].value, Measured::Absent(AbsentReason::Unknown));
    let r = reason(
        r#"{"kind":"spo2","values":[{"name":"spo2","value":97,"unit":"%","absent":"error"}]}"#,
    );
    assert_eq!(r, "json: values[0].absent: given together with a value");
}

#[test]
fn observed_at_stands_in_for_a_missing_device_time() {
    let m = one(r#"{"kind":"spo2","observed_at":"2026-11-27T12:00:00+01:00","values":[{"name":"spo2","value":97,"unit":"%"}]}"#).unwrap();
    let t = OffsetDateTime::parse("2026-11-27T12:00:00+01:00", &Rfc3339).unwrap();
    assert_eq!(m.device_time, Some(DeviceTime::Absolute(t)));
}

fn ctx() -> NormalizeContext {
    NormalizeContext {
        device: DeviceId::new("bridge"),
        driver: "json".into(),
        room: Some("exam-3".into()),
        clock_skew_tolerance: std::time::Duration::from_secs(300),
        zone: crate::normalize::LocalZone::utc(),
    }
}

fn reading(kind: Kind, values: Vec<Value>, flags: Vec<Flag>, device_time_secs: i64) -> Reading {
    let received = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
    let t = received - time::Duration::seconds(device_time_secs);
    fixtures::reading(kind)
        .device("upstream-cuff", "ble-gatt")
        .model("UA-651BLE")
        .room(Some("elsewhere"))
        .patient("MRN1", "urn:oid:1.2")
        .observed(t)
        .received(received)
        .device_time(Some(t))
        .values(values)
        .flags(flags)
        .build()
}

fn coded(kind: Kind, name: &str, value: Decimal) -> Value {
    let c = codes::component(kind, name).unwrap();
    Value {
        code: c.code(),
        mdc: Some(c.mdc.code),
        name: name.into(),
        value: Some(value),
        unit: Ucum::new(c.ucum),
        site: None,
        absent: None,
    }
}

proptest! {
    #[test]
    fn a_reading_round_trips_through_json_and_normalize(
        mantissa in 300i64..4500, scale in 0u8..3, lag in 0i64..200, marked: bool) {
        let value = Decimal::new(mantissa, scale);
        let flags = if marked { vec![Flag::device("event_mark")] } else { vec![] };
        let original = reading(Kind::BodyTemperature,
            vec![coded(Kind::BodyTemperature, "temperature", value)], flags, lag);
        let json = serde_json::to_string(&original).unwrap();
        let msg = decode_frame(json.as_bytes()).unwrap();
        let back = normalize(msg, original.received_at, &ctx()).unwrap();
        prop_assert_eq!(&back.values, &original.values);
        prop_assert_eq!(back.kind, original.kind);
        prop_assert_eq!(back.observed_at, original.observed_at);
        prop_assert_eq!(back.device_time, original.device_time);
        prop_assert_eq!(&back.device.model, &original.device.model);
        prop_assert_eq!(back.id, None);
        prop_assert_eq!(back.patient, None);
        prop_assert_eq!(back.room.as_deref(), Some("exam-3"));
        // Device flags survive; plausibility may add its own after them.
        prop_assert!(original.flags.iter().all(|f| back.flags.contains(f)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_json_decoder(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6)) {
        for framing in [JsonFraming::Lines, JsonFraming::PerMessage] {
            let mut d = JsonDecoder::new(framing);
            let mut out = Vec::new();
            for c in &chunks {
                d.feed(c, &mut out);
            }
            d.finish(&mut out);
        }
    }
}
