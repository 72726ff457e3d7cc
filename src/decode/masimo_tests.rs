//! Tests of `masimo-ascii`: the docs/devices/masimo.md vectors literally, field rules, flags, errors.

use super::*;
use crate::decode::Decoder;
use proptest::prelude::*;

fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut d = MasimoAscii::new();
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    d.finish(&mut out);
    out
}

fn message(ev: &DecodeEvent) -> &DeviceMessage {
    match ev {
        DecodeEvent::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn value_of(m: &DeviceMessage) -> Option<Decimal> {
    match m.values[0].value {
        Measured::Value(d) => Some(d),
        Measured::Absent(_) => None,
    }
}

fn local(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> DeviceTime {
    let date = Date::from_calendar_date(y, Month::try_from(mo).unwrap(), d).unwrap();
    DeviceTime::Local(PrimitiveDateTime::new(
        date,
        Time::from_hms(h, mi, s).unwrap(),
    ))
}

fn is_malformed(ev: &DecodeEvent) -> bool {
    matches!(ev, DecodeEvent::Error(DecodeError::Malformed(_)))
}

const VECTOR_1: &[u8] = b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n";
const VECTOR_2: &[u8] = b"12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820\r\n";

#[test]
fn protocols_vector_1_from_a_real_rad8_decodes_to_spo2_98_and_pulse_97() {
    let out = decode(VECTOR_1);
    assert_eq!(out.len(), 2, "{out:?}");
    let (spo2, pr) = (message(&out[0]), message(&out[1]));
    assert_eq!(spo2.kind, Kind::Spo2);
    assert_eq!(spo2.values[0].name, "spo2");
    assert_eq!(spo2.values[0].unit.as_str(), "%");
    assert_eq!(spo2.values[0].mdc, Some(150_456));
    assert_eq!(value_of(spo2), Some(Decimal::from_int(98)));
    assert_eq!(pr.kind, Kind::HeartRate);
    assert_eq!(pr.values[0].name, "heart_rate");
    assert_eq!(pr.values[0].unit.as_str(), "/min");
    assert_eq!(pr.values[0].mdc, Some(149_530));
    assert_eq!(value_of(pr), Some(Decimal::from_int(97)));
    for m in [spo2, pr] {
        assert_eq!(m.device_time, Some(local(2016, 2, 22, 22, 47, 45)));
        assert_eq!(m.serial.as_deref(), Some("0000056661"));
        assert!(
            m.flags.is_empty(),
            "SET mode alone is normal: {:?}",
            m.flags
        );
    }
}

#[test]
fn protocols_vector_2_with_the_sensor_off_the_patient_is_not_forwarded() {
    assert_eq!(
        decode(VECTOR_2),
        vec![DecodeEvent::Idle { episode_end: true }]
    );
}

#[test]
fn the_shorter_radical5_line_decodes_and_its_alarm_bit_becomes_a_flag() {
    let out = decode(b"03/04/21 08:15:00 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n");
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(value_of(message(&out[0])), Some(Decimal::from_int(97)));
    assert_eq!(value_of(message(&out[1])), Some(Decimal::from_int(64)));
    assert_eq!(message(&out[0]).serial, None);
    assert_eq!(
        message(&out[1]).flags,
        vec![Flag::new("device:alarm_silenced")]
    );
}

#[test]
fn every_no_signal_exception_bit_stops_the_line_from_being_forwarded() {
    for bit in [
        0x1u32, 0x2, 0x20, 0x80, 0x100, 0x1000, 0x2000, 0x4000, 0x8000, 0x10000, 0x40000,
    ] {
        let line = format!(
            "02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=0000 EXC={:06X}\r\n",
            bit | EXC_SET_MODE
        );
        assert_eq!(
            decode(line.as_bytes()),
            vec![DecodeEvent::Idle { episode_end: true }],
            "EXC bit {bit:#x}"
        );
    }
}

#[test]
fn quality_exceptions_are_forwarded_with_their_flag_and_questionable() {
    let out = decode(b"02/22/16 22:47:45 SPO2=094% BPM=081 ALARM=0000 EXC=000804\r\n");
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        message(&out[0]).flags,
        vec![
            Flag::new("device:low_perfusion"),
            Flag::new("device:questionable")
        ]
    );
    let out = decode(b"02/22/16 22:47:45 SPO2=094% BPM=081 ALARM=0000 EXC=000C00\r\n");
    assert_eq!(
        message(&out[1]).flags,
        vec![
            Flag::new("device:low_signal_iq"),
            Flag::new("device:questionable")
        ]
    );
}

#[test]
fn informational_exceptions_and_alarms_are_flags_without_questionable() {
    let out = decode(b"02/22/16 22:47:45 SPO2=088% BPM=120 ALARM=0056 EXC=220800\r\n");
    assert_eq!(
        message(&out[0]).flags,
        vec![
            Flag::new("device:spo2_low_limit"),
            Flag::new("device:pulse_rate_high_limit"),
            Flag::new("device:alarm_active"),
            Flag::new("device:low_battery"),
            Flag::new("device:sensor_calibrating"),
            Flag::new("device:spco_low_confidence"),
        ]
    );
}

#[test]
fn bits_the_tables_do_not_name_become_numbered_flags() {
    assert_eq!(
        flags(0x8080, 0x800200),
        vec![
            Flag::new("device:alarm_bit_0x0080"),
            Flag::new("device:alarm_bit_0x8000"),
            Flag::new("device:exc_bit_0x000200"),
            Flag::new("device:exc_bit_0x800000"),
        ]
    );
}

#[test]
fn one_dashed_value_is_absent_and_the_other_is_still_reported() {
    let out = decode(b"02/22/16 22:47:45 SPO2=---% BPM=072 ALARM=0000 EXC=000800\r\n");
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        message(&out[0]).values[0].value,
        Measured::Absent(AbsentReason::Unknown)
    );
    assert_eq!(value_of(message(&out[1])), Some(Decimal::from_int(72)));
}

#[test]
fn both_values_dashed_ends_the_episode() {
    assert_eq!(
        decode(b"02/22/16 22:47:45 SPO2=---% BPM=--- ALARM=0000 EXC=000808\r\n"),
        vec![DecodeEvent::Idle { episode_end: true }]
    );
}

#[test]
fn fields_may_be_separated_by_several_blanks_and_come_in_any_order() {
    let out = decode(b"02/22/16  22:47:45\tEXC=000800  BPM=070   SPO2=099% ALARM=0\r\n");
    assert_eq!(value_of(message(&out[0])), Some(Decimal::from_int(99)));
    assert_eq!(value_of(message(&out[1])), Some(Decimal::from_int(70)));
}

#[test]
fn text_without_an_spo2_field_is_idle() {
    assert_eq!(
        decode(b"Masimo Rad-8  V1.2\r\n02/22/16 22:47:45 098 097 03.6\r\n"),
        vec![
            DecodeEvent::Idle { episode_end: false },
            DecodeEvent::Idle { episode_end: false }
        ]
    );
}

#[test]
fn a_data_line_missing_a_required_field_is_rejected_whole() {
    for line in [
        &b"02/22/16 22:47:45 SPO2=098% ALARM=0000 EXC=000800\r\n"[..],
        b"02/22/16 22:47:45 SPO2=098% BPM=097 EXC=000800\r\n",
        b"02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=0000\r\n",
        b"SPO2=098% BPM=097 ALARM=0000 EXC=000800\r\n",
    ] {
        let out = decode(line);
        assert!(matches!(out[..], [ref e] if is_malformed(e)), "{out:?}");
    }
}

#[test]
fn bad_values_dates_and_repeated_fields_are_malformed() {
    for line in [
        &b"02/22/16 22:47:45 SPO2=9x8% BPM=097 ALARM=0000 EXC=000800\r\n"[..],
        b"02/22/16 22:47:45 SPO2=0980% BPM=097 ALARM=0000 EXC=000800\r\n",
        b"02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=00G0 EXC=000800\r\n",
        b"02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=0000 EXC=123456789\r\n",
        b"13/22/16 22:47:45 SPO2=098% BPM=097 ALARM=0000 EXC=000800\r\n",
        b"02/30/16 22:47:45 SPO2=098% BPM=097 ALARM=0000 EXC=000800\r\n",
        b"02/22/16 24:00:00 SPO2=098% BPM=097 ALARM=0000 EXC=000800\r\n",
        b"02/22/16 22:47:45 SPO2=098% SPO2=097% BPM=097 ALARM=0000 EXC=000800\r\n",
        b"02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=0000 EXC=000800 junk\r\n",
    ] {
        let out = decode(line);
        assert!(
            matches!(out[..], [ref e] if is_malformed(e)),
            "{}: {out:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn binary_garbage_is_malformed_and_the_next_line_decodes() {
    let mut bytes = b"\x00\xff\x81SPO2=\r\n".to_vec();
    bytes.extend_from_slice(VECTOR_1);
    let out = decode(&bytes);
    assert!(is_malformed(&out[0]), "{out:?}");
    assert_eq!(out.len(), 3);
    assert_eq!(value_of(message(&out[1])), Some(Decimal::from_int(98)));
}

#[test]
fn a_very_long_line_is_oversized_and_decoding_resumes() {
    let mut bytes = vec![b'S'; MAX_LINE + 10];
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(VECTOR_1);
    let out = decode(&bytes);
    assert_eq!(out[0], DecodeEvent::Error(DecodeError::Oversized(MAX_LINE)));
    assert_eq!(out.len(), 3);
}

#[test]
fn a_truncated_last_line_is_reported_at_finish() {
    let out = decode(&VECTOR_1[..60]);
    assert!(matches!(out[..], [ref e] if is_malformed(e)), "{out:?}");
}

#[test]
fn a_line_split_across_reads_decodes_once() {
    let mut d = MasimoAscii::new();
    let mut out = Vec::new();
    for chunk in VECTOR_1.chunks(7) {
        d.feed(chunk, &mut out);
    }
    d.finish(&mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn the_registry_entry_describes_a_continuous_9600_8n1_oximeter() {
    assert_eq!(INFO.name, "masimo-ascii");
    assert!(INFO.continuous);
    assert!(!INFO.experimental);
    assert_eq!(INFO.serial, Some(SERIAL_9600_8N1));
    assert_eq!(INFO.kinds, &[Kind::Spo2, Kind::HeartRate]);
    let mut d = (INFO.build)(Transport::Serial, &Default::default()).unwrap();
    let mut out = Vec::new();
    d.feed(VECTOR_1, &mut out);
    assert_eq!(out.len(), 2);
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
        let mut d = MasimoAscii::new();
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
    }

    #[test]
    fn near_valid_lines_never_panic(line in "[0-9/: A-Z=%.+-]{0,120}") {
        let mut out = Vec::new();
        decode_line(line.as_bytes(), &mut out);
        prop_assert!(!out.is_empty());
    }
}
