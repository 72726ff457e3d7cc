//! Blood pressure, temperature, heart rate and pulse-oximetry (PLX) characteristics: the
//! published vectors, units, status flags, and what is no reading.

use super::*;

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
