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
fn the_nordic_blood_pressure_vector_decodes_with_all_status_flags() {
    let out = decode(
        0x2A35,
        "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00",
    );
    let m = messages(&out);
    assert_eq!(m.len(), 2);
    let (bp, hr) = (m[0], m[1]);
    assert_eq!(bp.kind, Kind::BloodPressure);
    let names: Vec<&str> = bp.values.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["systolic", "diastolic", "mean"]);
    assert_eq!(
        [num(bp, 0), num(bp, 1), num(bp, 2)],
        [dec("138"), dec("88"), dec("120")]
    );
    assert!(bp.values.iter().all(|v| v.unit.as_str() == "mm[Hg]"));
    // Year 0 is "not known": the clock was never set.
    assert_eq!(bp.device_time, Some(DeviceTime::ClockNotSet));
    assert_eq!(hr.kind, Kind::HeartRate);
    assert_eq!(num(hr, 0), dec("60"));
    assert_eq!(hr.values[0].unit.as_str(), "/min");
    assert_eq!(hr.values[0].mdc, Some(149_546));
    let expected = [
        "device:body_movement",
        "device:cuff_loose",
        "device:irregular_pulse",
        "device:improper_position",
        "device:user:1",
    ];
    assert_eq!(flags(bp), expected);
    assert_eq!(flags(hr), expected);
}

#[test]
fn the_kpa_blood_pressure_vector_keeps_the_device_unit_and_precision() {
    let out = decode(0x2A35, "01 A0 F0 6B F0 80 F0");
    let m = messages(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(
        [num(m[0], 0), num(m[0], 1), num(m[0], 2)],
        [dec("16.0"), dec("10.7"), dec("12.8")]
    );
    assert!(m[0].values.iter().all(|v| v.unit.as_str() == "kPa"));
    assert_eq!(m[0].device_time, None);
    assert!(m[0].flags.is_empty());
}

#[test]
fn a_failed_blood_pressure_measurement_is_no_reading() {
    assert_eq!(
        decode(0x2A35, "00 FF 07 FF 07 FF 07"),
        vec![DecodeEvent::Idle { episode_end: true }]
    );
}

#[test]
fn a_partial_panel_keeps_its_absent_component() {
    let m = decode(0x2A35, "00 78 00 50 00 FE 07");
    let m = messages(&m);
    assert_eq!(
        m[0].values[2].value,
        Measured::Absent(AbsentReason::PositiveInfinity)
    );
}

#[test]
fn the_worked_example_of_5_5_gives_a_panel_and_a_cuff_pulse() {
    let out = decode(0x2A35, "06 78 00 50 00 5D 00 E8 07 03 0F 0A 1D 1E 48 00");
    let m = messages(&out);
    assert_eq!(m.len(), 2);
    let t = Some(DeviceTime::Local(datetime!(2024-03-15 10:29:30)));
    assert_eq!(m[0].kind, Kind::BloodPressure);
    assert_eq!(
        [num(m[0], 0), num(m[0], 1), num(m[0], 2)],
        [dec("120"), dec("80"), dec("93")]
    );
    assert!(m[0].values.iter().all(|v| v.unit.as_str() == "mm[Hg]"));
    assert_eq!(m[0].device_time, t);
    assert_eq!(m[1].kind, Kind::HeartRate);
    assert_eq!(num(m[1], 0), dec("72"));
    assert_eq!(m[1].values[0].mdc, Some(149_546));
    assert_eq!(m[1].device_time, t);
}

#[test]
fn the_worked_example_normalizes_to_the_observation_time_at_plus_one_hour() {
    use crate::normalize::{normalize, NormalizeContext};
    let ctx = NormalizeContext {
        device: crate::reading::DeviceId::new("cuff"),
        driver: "ble-gatt".into(),
        room: None,
        clock_skew_tolerance: std::time::Duration::from_secs(300),
        zone: crate::normalize::LocalZone::fixed(time::UtcOffset::from_hms(1, 0, 0).unwrap()),
    };
    let received = datetime!(2024-03-15 10:29:31 +01:00);
    let out = decode(0x2A35, "06 78 00 50 00 5D 00 E8 07 03 0F 0A 1D 1E 48 00");
    let m = messages(&out);
    let bp = normalize(m[0].clone(), received, &ctx).unwrap();
    assert_eq!(bp.observed_at, datetime!(2024-03-15 10:29:30 +01:00));
    let codes: Vec<_> = bp.values.iter().map(|v| (v.code.as_str(), v.mdc)).collect();
    assert_eq!(
        codes,
        [
            ("8480-6", Some(150_021)),
            ("8462-4", Some(150_022)),
            ("8478-0", Some(150_023))
        ]
    );
    let hr = normalize(m[1].clone(), received, &ctx).unwrap();
    assert_eq!(hr.values[0].code, "8867-4");
    assert_eq!(hr.values[0].mdc, Some(149_546));
}

#[test]
fn the_nordic_temperature_vector_decodes_with_time_and_finger_site() {
    let out = decode(0x2A1C, "06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04");
    let m = messages(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, Kind::BodyTemperature);
    assert_eq!(num(m[0], 0).to_string(), "37.60");
    assert_eq!(m[0].values[0].unit.as_str(), "Cel");
    assert_eq!(m[0].values[0].site.as_deref(), Some("finger"));
    assert_eq!(
        m[0].device_time,
        Some(DeviceTime::Local(datetime!(2012-12-05 11:50:27)))
    );
}

#[test]
fn a_fahrenheit_temperature_keeps_its_unit() {
    let m = decode(0x2A1C, "01 DA 03 00 FF");
    let m = messages(&m);
    assert_eq!(num(m[0], 0), dec("98.6"));
    assert_eq!(m[0].values[0].unit.as_str(), "[degF]");
    assert_eq!(m[0].values[0].site, None);
    assert_eq!(m[0].device_time, None);
}

#[test]
fn a_nan_temperature_is_no_reading_and_an_unknown_type_has_no_site() {
    let idle = vec![DecodeEvent::Idle { episode_end: true }];
    assert_eq!(decode(0x2A1C, "00 FF FF 7F 00"), idle);
    let m = decode(0x2A1C, "04 72 01 00 FF 0A");
    assert_eq!(messages(&m)[0].values[0].site, None);
}

#[test]
fn intermediate_cuff_pressure_and_temperature_are_progress_only() {
    let progress = vec![DecodeEvent::Idle { episode_end: false }];
    assert_eq!(decode(0x2A36, "00 8C 00 FF 07 FF 07"), progress);
    assert_eq!(decode(0x2A1E, "00 72 01 00 FF"), progress);
    assert_malformed(&decode(0x2A36, "00 8C 00"), "diastolic");
}

#[test]
fn the_heart_rate_vectors_decode() {
    let out = decode(0x2A37, "1F 01 01 32 01 01 00 02 01 FF FF");
    let m = messages(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, Kind::HeartRate);
    assert_eq!(num(m[0], 0), dec("257"));
    assert!(m[0].flags.is_empty());
    let out = decode(0x2A37, "16 48 0D 03");
    assert_eq!(num(messages(&out)[0], 0), dec("72"));
    let out = decode(0x2A37, "04 FF");
    let m = messages(&out);
    assert_eq!(num(m[0], 0), dec("255"));
    assert_eq!(flags(m[0]), ["device:no_sensor_contact"]);
}

#[test]
fn heart_rate_fields_promised_but_missing_are_named() {
    assert_malformed(&decode(0x2A37, "01 48"), "heart rate (uint16)");
    assert_malformed(&decode(0x2A37, "08 48 01"), "energy expended");
    assert_malformed(&decode(0x2A37, "10 48"), "RR-interval");
    assert_malformed(&decode(0x2A37, "10 48 0D 03 01"), "half an interval");
}

#[test]
fn the_plx_spot_check_vector_decodes_with_time_and_no_flags() {
    let out = decode(0x2A5E, "03 62 00 48 00 E8 07 03 0F 0A 1E 00 80 00");
    let m = messages(&out);
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].kind, num(m[0], 0)), (Kind::Spo2, dec("98")));
    assert_eq!(m[0].values[0].unit.as_str(), "%");
    assert_eq!(m[0].values[0].mdc, Some(150_456));
    assert_eq!((m[1].kind, num(m[1], 0)), (Kind::HeartRate, dec("72")));
    assert_eq!(m[1].values[0].mdc, Some(149_530));
    let t = Some(DeviceTime::Local(datetime!(2024-03-15 10:30:00)));
    assert_eq!((m[0].device_time, m[1].device_time), (t, t));
    assert!(m[0].flags.is_empty() && m[1].flags.is_empty());
}

#[test]
fn the_plx_continuous_vector_skips_the_pulse_amplitude_index() {
    let out = decode(0x2A5F, "10 61 00 4B 00 19 F0");
    let m = messages(&out);
    assert_eq!((num(m[0], 0), num(m[1], 0)), (dec("97"), dec("75")));
    assert_eq!(m[0].device_time, None);
    // Fast and slow SpO2PR and both status fields, all present.
    let out = decode(
        0x2A5F,
        "0F 61 00 4B 00 60 00 4C 00 62 00 4A 00 00 40 08 00 00",
    );
    let m = messages(&out);
    assert_eq!(
        flags(m[0]),
        [
            "device:questionable_measurement",
            "device:inadequate_signal"
        ]
    );
}

#[test]
fn a_plx_with_no_signal_is_no_reading() {
    let idle = vec![DecodeEvent::Idle { episode_end: true }];
    assert_eq!(decode(0x2A5E, "00 FF 07 FF 07"), idle);
    // Measurement unavailable (bit 13).
    assert_eq!(decode(0x2A5E, "02 62 00 48 00 00 20"), idle);
}

#[test]
fn a_plx_whose_device_clock_is_not_set_says_so() {
    let out = decode(0x2A5E, "11 62 00 48 00 E8 07 03 0F 0A 1E 00");
    assert_eq!(messages(&out)[0].device_time, Some(DeviceTime::ClockNotSet));
}

#[test]
fn plx_demo_test_and_invalid_readings_are_dropped_with_the_reason() {
    for (status, why) in [
        ("00 04", "demonstration"),
        ("00 08", "test data"),
        ("00 80", "invalid"),
    ] {
        let out = decode(0x2A5E, &format!("02 62 00 48 00 {status}"));
        match &out[..] {
            [DecodeEvent::Error(DecodeError::Unsupported(r))] => {
                assert!(r.contains(why) && r.contains("dropped"), "{r}");
            }
            other => panic!("expected a drop, got {other:?}"),
        }
    }
}

#[test]
fn plx_sensor_status_bits_become_flags() {
    let out = decode(0x2A5E, "04 62 00 48 00 22 80 00");
    let expected = [
        "device:equipment_malfunction",
        "device:low_perfusion",
        "device:sensor_disconnected",
    ];
    assert_eq!(flags(messages(&out)[0]), expected);
}

#[test]
fn the_si_weight_vector_gives_weight_and_bmi_but_never_the_stored_height() {
    let out = decode(0x2A9D, "0A A4 38 E8 07 03 0F 07 05 00 ED 00 D6 06");
    let m = messages(&out);
    let kinds: Vec<Kind> = m.iter().map(|m| m.kind).collect();
    // The 1.750 m in the frame is the user's profile height, not a measurement.
    assert_eq!(kinds, [Kind::BodyWeight, Kind::Bmi]);
    // 0.005 kg resolution keeps three fraction digits: 72.500.
    assert_eq!(
        (num(m[0], 0), m[0].values[0].unit.as_str()),
        (dec("72.500"), "kg")
    );
    assert_eq!(
        (num(m[1], 0), m[1].values[0].unit.as_str()),
        (dec("23.7"), "kg/m2")
    );
    let t = Some(DeviceTime::Local(datetime!(2024-03-15 07:05:00)));
    assert!(m.iter().all(|m| m.device_time == t));
    assert_eq!(m[0].values[0].name, "weight");
    assert_eq!(m[1].values[0].name, "bmi");
}

#[test]
fn a_bmi_that_does_not_match_weight_and_stored_height_is_flagged() {
    // 72.500 kg, 1.750 m → 23.67: the frame's 23.7 agrees.
    let ok = decode(0x2A9D, "08 A4 38 ED 00 D6 06");
    assert!(flags(messages(&ok)[1]).is_empty());
    // The same weight with a BMI of 30.0 (0x012C) was computed for someone else's height.
    let off = decode(0x2A9D, "08 A4 38 2C 01 D6 06");
    assert_eq!(flags(messages(&off)[1]), ["bmi_inconsistent"]);
    assert!(
        flags(messages(&off)[0]).is_empty(),
        "the weight itself is fine"
    );
}

#[test]
fn imperial_weight_keeps_its_unit_and_the_stored_height_is_dropped() {
    let out = decode(0x2A9D, "01 52 3E");
    let m = messages(&out);
    assert_eq!(
        (num(m[0], 0), m[0].values[0].unit.as_str()),
        (dec("159.54"), "[lb_av]")
    );
    let out = decode(0x2A9D, "0D 52 3E 02 ED 00 BC 02");
    let m = messages(&out);
    assert_eq!(flags(m[0]), ["device:user:2"]);
    assert_eq!(m.len(), 2, "weight and BMI only");
}

#[test]
fn an_unsuccessful_weighing_is_no_reading_and_an_unknown_user_is_no_flag() {
    let idle = vec![DecodeEvent::Idle { episode_end: true }];
    assert_eq!(decode(0x2A9D, "00 FF FF"), idle);
    assert!(messages(&decode(0x2A9D, "04 A4 38 FF"))[0].flags.is_empty());
}

#[test]
fn a_value_shorter_than_its_flags_promise_is_rejected_naming_the_field() {
    let cases = [
        (
            0x2A35,
            "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27",
            "measurement status",
        ),
        (0x2A35, "06 78 00 50 00 5D 00 E8 07 03", "time stamp"),
        (0x2A35, "04 78 00 50 00 5D 00", "pulse rate"),
        (0x2A35, "08 78 00 50 00 5D 00", "user ID"),
        (0x2A35, "00 78 00", "diastolic"),
        (
            0x2A1C,
            "06 B0 0E 00 FE DC 07 0C 05 0B 32 1B",
            "temperature type",
        ),
        (0x2A1C, "00 B0 0E", "temperature"),
        (0x2A5E, "0F 62 00 48 00", "time stamp"),
        (0x2A5E, "04 62 00 48 00 00 00", "device and sensor status"),
        (0x2A5E, "08 62 00 48 00", "pulse amplitude index"),
        (0x2A5F, "01 61 00 4B 00", "SpO2PR-Fast"),
        (0x2A5F, "02 61 00 4B 00", "SpO2PR-Slow"),
        (0x2A9D, "08 A4 38 ED 00", "height"),
        (0x2A9D, "08 A4 38", "BMI"),
        (0x2A9D, "00 A4", "weight"),
    ];
    for (chr, hex, field) in cases {
        assert_malformed(&decode(chr, hex), field);
    }
    assert_malformed(&decode(0x2A35, ""), "no flags byte");
}

#[test]
fn an_impossible_time_stamp_is_malformed() {
    let out = decode(0x2A35, "02 78 00 50 00 5D 00 E8 07 0D 0F 0A 1D 1E");
    assert_malformed(&out, "month 13");
}

#[test]
fn trailing_bytes_after_the_promised_fields_are_accepted() {
    let out = decode(
        0x2A35,
        "06 78 00 50 00 5D 00 E8 07 03 0F 0A 1D 1E 48 00 AA BB",
    );
    assert_eq!(messages(&out).len(), 2);
}

#[test]
fn characteristics_parse_in_short_hex_and_full_uuid_forms() {
    assert_eq!(parse_characteristic("2A35"), Ok(0x2A35));
    assert_eq!(parse_characteristic("0x2a1c"), Ok(0x2A1C));
    assert_eq!(
        parse_characteristic("00002a9d-0000-1000-8000-00805f9b34fb"),
        Ok(0x2A9D)
    );
    assert!(parse_characteristic("2A19")
        .unwrap_err()
        .contains("not supported"));
    assert!(parse_characteristic("blood").is_err());
    assert!(parse_characteristic("12345").is_err());
}

fn build_with(opts: &[(&str, &str)]) -> Box<dyn Decoder> {
    let opts: Options = opts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (INFO.build)(Transport::Mqtt, &opts).unwrap()
}

#[test]
fn the_options_are_checked_and_build_a_decoder() {
    let check = |key: &str, v: &str| (INFO.options.iter().find(|o| o.key == key).unwrap().check)(v);
    assert!(check("characteristic", "2A35").is_ok());
    assert!(check("characteristic", "2A00").is_err());
    assert!(check("payload", "base64").is_ok());
    assert!(check("payload", "xml").is_err());
    let mut d = build_with(&[("characteristic", "0x2A35")]);
    let mut out = Vec::new();
    d.feed(
        &hex_bytes("06 78 00 50 00 5D 00 E8 07 03 0F 0A 1D 1E 48 00"),
        &mut out,
    );
    assert_eq!(messages(&out).len(), 2);
}

#[test]
fn hex_and_base64_payloads_decode_with_whitespace_and_either_padding() {
    let mut d = BleGatt::new(Some(0x2A1C), PayloadFormat::Hex);
    let out = feed(&mut d, b"01 DA 03 00 FF\n");
    assert_eq!(num(messages(&out)[0], 0), dec("98.6"));
    let mut d = BleGatt::new(Some(0x2A1C), PayloadFormat::Base64);
    for text in ["AdoDAP8=", "AdoDAP8"] {
        assert_eq!(
            num(messages(&feed(&mut d, text.as_bytes()))[0], 0),
            dec("98.6")
        );
    }
    assert_malformed(&feed(&mut d, b"!!"), "not base64");
    let mut d = BleGatt::new(Some(0x2A1C), PayloadFormat::Hex);
    assert_malformed(&feed(&mut d, b"0g"), "not hex");
    assert_malformed(&feed(&mut d, b"  \n"), "empty payload");
}

#[test]
fn the_json_envelope_of_1_1_names_its_characteristic() {
    let env = br#"{"gw":"gw-exam-room-1","mac":"C4:7C:8D:6A:11:22","svc":"1810","chr":"2a35",
        "op":"indicate","rx_time":"2024-03-15T10:29:31.512+01:00","seq":1842,
        "data_hex":"1e8a00580078000000041114293b3c00012700"}"#;
    let mut d = BleGatt::new(None, PayloadFormat::Json);
    let out = feed(&mut d, env);
    let m = messages(&out);
    assert_eq!(num(m[0], 0), dec("138"));
    assert_eq!(m[0].device_time, Some(DeviceTime::ClockNotSet));
}

#[test]
fn a_json_envelope_without_a_time_stamp_takes_the_gateway_receipt_time() {
    let env = br#"{"chr":"2A35","rx_time":"2024-03-15T10:29:31+01:00","data_hex":"01 A0 F0 6B F0 80 F0"}"#;
    let mut d = BleGatt::new(None, PayloadFormat::Json);
    let out = feed(&mut d, env);
    let t = DeviceTime::Absolute(datetime!(2024-03-15 10:29:31 +01:00));
    assert_eq!(messages(&out)[0].device_time, Some(t));
}

#[test]
fn json_envelope_problems_are_reported_and_the_next_line_still_decodes() {
    let mut d = BleGatt::new(None, PayloadFormat::Json);
    let input = b"{\"chr\":\"2a1c\",\"data_hex\":\"01da0300ff\"}\n{not json\n{\"chr\":\"2a1c\",\"data_hex\":\"01da0300ff\"}\n";
    let out = feed(&mut d, input);
    assert_eq!(out.len(), 3);
    assert!(matches!(
        out[1],
        DecodeEvent::Error(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        (&out[0], &out[2]),
        (DecodeEvent::Message(_), DecodeEvent::Message(_))
    ));
    assert_malformed(&feed(&mut d, br#"{"data_hex":"01da0300ff"}"#), "no `chr`");
    assert_malformed(&feed(&mut d, br#"{"chr":"2a1c"}"#), "data_hex");
    assert_malformed(
        &feed(
            &mut d,
            br#"{"chr":"2a1c","rx_time":"noon","data_hex":"01da0300ff"}"#,
        ),
        "rx_time",
    );
    let out = feed(&mut d, br#"{"chr":"2a19","data_hex":"64"}"#);
    assert!(matches!(
        &out[..],
        [DecodeEvent::Error(DecodeError::Unsupported(_))]
    ));
    assert_eq!(
        feed(&mut d, b" \n"),
        vec![DecodeEvent::Idle { episode_end: false }]
    );
    let mut d = BleGatt::new(Some(0x2A35), PayloadFormat::Json);
    assert_malformed(
        &feed(&mut d, br#"{"chr":"2a1c","data_hex":"01da0300ff"}"#),
        "differs",
    );
}

#[test]
fn a_binary_payload_needs_a_characteristic_and_a_bounded_size() {
    let mut d = BleGatt::new(None, PayloadFormat::Binary);
    let out = feed(&mut d, &[0x01, 0xDA, 0x03, 0x00, 0xFF]);
    assert!(matches!(
        &out[..],
        [DecodeEvent::Error(DecodeError::Unsupported(_))]
    ));
    d.set_characteristic(Some(0x2A1C));
    assert_eq!(
        messages(&feed(&mut d, &[0x01, 0xDA, 0x03, 0x00, 0xFF])).len(),
        1
    );
    let big = vec![0u8; MAX_VALUE + 1];
    assert_eq!(
        feed(&mut d, &big),
        vec![DecodeEvent::Error(DecodeError::Oversized(MAX_VALUE))]
    );
}

proptest! {
    #[test]
    fn arbitrary_values_of_every_characteristic_never_panic(
        which in 0usize..SUPPORTED.len(),
        value in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut out = Vec::new();
        decode_value(SUPPORTED[which].0, &value, None, &mut out);
        prop_assert!(!out.is_empty());
    }

    #[test]
    fn arbitrary_payloads_in_every_format_and_chunking_never_panic(
        fmt in 0usize..4,
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6)) {
        let payload = [PayloadFormat::Binary, PayloadFormat::Hex, PayloadFormat::Base64, PayloadFormat::Json][fmt];
        let mut d = BleGatt::new(Some(0x2A35), payload);
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
    }

    #[test]
    fn arbitrary_text_in_envelopes_never_panics(
        chr in "[0-9a-fA-Fx-]{0,40}", data in "[0-9a-fA-F ]{0,80}", rx in ".{0,40}") {
        let env = serde_json::json!({"chr": chr, "data_hex": data, "rx_time": rx}).to_string();
        let mut d = BleGatt::new(None, PayloadFormat::Json);
        let mut out = Vec::new();
        d.feed(env.as_bytes(), &mut out);
        prop_assert_eq!(out.len().min(1), 1);
    }
}

#[test]
fn every_vector_normalizes_and_device_units_are_converted_there() {
    use crate::normalize::{normalize, NormalizeContext};
    let ctx = NormalizeContext {
        device: crate::reading::DeviceId::new("gw"),
        driver: "ble-gatt".into(),
        room: None,
        clock_skew_tolerance: std::time::Duration::from_secs(300),
        zone: crate::normalize::LocalZone::utc(),
    };
    let vectors = [
        (
            0x2A35,
            "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00",
        ),
        (0x2A35, "01 A0 F0 6B F0 80 F0"),
        (0x2A1C, "06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04"),
        (0x2A1C, "01 DA 03 00 FF"),
        (0x2A37, "1F 01 01 32 01 01 00 02 01 FF FF"),
        (0x2A5E, "03 62 00 48 00 E8 07 03 0F 0A 1E 00 80 00"),
        (0x2A5F, "10 61 00 4B 00 19 F0"),
        (0x2A9D, "0A A4 38 E8 07 03 0F 07 05 00 ED 00 D6 06"),
        (0x2A9D, "0D 52 3E 02 ED 00 BC 02"),
    ];
    let now = datetime!(2024-03-15 10:30:00 UTC);
    let mut shown = Vec::new();
    for (chr, hex) in vectors {
        for m in messages(&decode(chr, hex)) {
            let r = normalize(m.clone(), now, &ctx).unwrap_or_else(|e| panic!("{hex}: {e}"));
            for v in &r.values {
                shown.push(format!("{}={}{}", v.name, v.value.unwrap(), v.unit));
            }
        }
    }
    for expected in [
        "systolic=120mm[Hg]",
        "temperature=37.0Cel",
        "weight=72.37kg",
        "bmi=23.7kg/m2",
    ] {
        assert!(
            shown.iter().any(|s| s == expected),
            "{expected} not in {shown:?}"
        );
    }
    assert!(
        !shown.iter().any(|s| s.starts_with("height=")),
        "a scale's stored height is not a measurement: {shown:?}"
    );
}
