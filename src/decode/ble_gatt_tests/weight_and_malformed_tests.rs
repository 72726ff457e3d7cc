//! Weight scale values (BMI, stored height, imperial units) and malformed values: short
//! values, impossible time stamps, trailing bytes, characteristic names.

use super::*;

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
