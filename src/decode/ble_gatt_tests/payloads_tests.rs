//! Driver options and payload formats: hex, base64, JSON envelopes, binary payload bounds,
//! arbitrary input never panicking, every vector through normalisation.

use super::*;

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
