//! Tests of the `nonin-13` decoder.

use super::super::test_support::{error_labels, flag_names, messages, pair, run, run_bytewise};
use super::*;
use proptest::prelude::*;
use time::macros::datetime;

/// The docs/devices/nonin.md#format-13 vector, literally.
const VECTOR: [u8; 22] = [
    0x00, 0x02, 0x00, 0x0D, 0x00, 0x0E, 0x20, 0x24, 0x03, 0x15, 0x10, 0x30, 0x00, 0x00, 0x02, 0x00,
    0x00, 0x48, 0x00, 0x61, 0x47, 0x03,
];

/// A packet around `data`, with a correct length and checksum.
fn packet(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).unwrap().to_be_bytes();
    let mut p = vec![0x00, 0x02, 0x00, 0x0D, len[0], len[1]];
    p.extend_from_slice(data);
    p.push(data.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
    p.push(0x03);
    p
}

/// The data section of the vector with other status, HR and SpO2 bytes.
fn data(st_msb: u8, st_lsb: u8, hr: [u8; 2], spo2: u8) -> Vec<u8> {
    let mut d = VECTOR[6..20].to_vec();
    d[8] = st_msb;
    d[9] = st_lsb;
    d[10] = hr[0];
    d[11] = hr[1];
    d[13] = spo2;
    d
}

fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
    run(&mut Nonin13::default(), bytes)
}

#[test]
fn the_protocols_vector_decodes_as_2024_03_15_10_30_00_smartpoint_hr_72_spo2_97() {
    assert_eq!(
        packet(&VECTOR[6..20]),
        VECTOR,
        "the helper agrees with the vector"
    );
    let out = decode(&VECTOR);
    assert_eq!(out.len(), 2, "{out:?}");
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(97), Some(72)));
    assert_eq!(
        m[0].device_time,
        Some(DeviceTime::Local(datetime!(2024-03-15 10:30:00)))
    );
    assert_eq!(flag_names(m[0]), ["device:smartpoint"]);
}

#[test]
fn hr_uses_only_bit_0_of_the_msb() {
    let out = decode(&packet(&data(0, 0, [0x01, 0x2C], 95)));
    assert_eq!(
        pair(messages(&out)[0], messages(&out)[1]),
        (Some(95), Some(300))
    );
    let out = decode(&packet(&data(0, 0, [0xFE, 0x48], 95)));
    assert_eq!(
        pair(messages(&out)[0], messages(&out)[1]),
        (Some(95), Some(72))
    );
}

#[test]
fn noms_is_no_reading_and_ends_the_episode() {
    let out = decode(&packet(&data(0x01, 0, [0x00, 0x48], 97)));
    assert_eq!(out, vec![DecodeEvent::Idle { episode_end: true }]);
}

#[test]
fn both_values_missing_is_no_reading() {
    let out = decode(&packet(&data(0, 0, [0x01, 0xFF], 0x7F)));
    assert_eq!(out, vec![DecodeEvent::Idle { episode_end: true }]);
    let one = decode(&packet(&data(0, 0, [0x01, 0xFF], 96)));
    assert_eq!(pair(messages(&one)[0], messages(&one)[1]), (Some(96), None));
}

#[test]
fn mem_and_low_battery_become_flags() {
    let out = decode(&packet(&data(0x00, 0x11, [0x00, 0x48], 97)));
    assert_eq!(
        flag_names(messages(&out)[0]),
        ["device:low_battery", "device:from_memory"]
    );
}

#[test]
fn a_longer_data_section_is_read_by_its_length_and_the_extra_bytes_are_ignored() {
    let mut d = VECTOR[6..20].to_vec();
    d.extend_from_slice(&[0xAA, 0x55, 0x00, 0x02]);
    let out = decode(&packet(&d));
    assert_eq!(
        pair(messages(&out)[0], messages(&out)[1]),
        (Some(97), Some(72))
    );
}

#[test]
fn a_wrong_checksum_is_an_error_and_the_next_packet_decodes() {
    let mut bytes = VECTOR.to_vec();
    bytes[20] = 0x48;
    bytes.extend_from_slice(&VECTOR);
    let out = decode(&bytes);
    assert!(matches!(
        &out[0],
        DecodeEvent::Error(DecodeError::Checksum(r)) if r == "nonin-13: packet CHK 0x48, data sums to 0x47"
    ));
    assert_eq!(out.len(), 3, "{out:?}");
}

#[test]
fn an_absurd_length_is_rejected_without_waiting_for_it_and_framing_resyncs() {
    let mut bytes = vec![0x00, 0x02, 0x00, 0x0D, 0x01, 0x01];
    bytes.extend_from_slice(&VECTOR);
    let out = decode(&bytes);
    assert_eq!(out[0], DecodeEvent::Error(DecodeError::Oversized(256)));
    assert_eq!(out.len(), 3, "{out:?}");
    let mut short = vec![0x00, 0x02, 0x00, 0x0D, 0x00, 0x0D];
    short.extend_from_slice(&VECTOR);
    assert_eq!(error_labels(&decode(&short)), ["malformed"]);
}

#[test]
fn the_largest_accepted_length_is_256() {
    let mut d = VECTOR[6..20].to_vec();
    d.resize(256, 0x11);
    let out = decode(&packet(&d));
    assert_eq!(messages(&out).len(), 2, "{out:?}");
}

#[test]
fn a_missing_etx_is_malformed() {
    let mut bytes = VECTOR.to_vec();
    bytes[21] = 0x04;
    let out = decode(&bytes);
    assert!(matches!(
        &out[..],
        [DecodeEvent::Error(DecodeError::Malformed(r))] if r.contains("no ETX")
    ));
}

#[test]
fn a_non_bcd_time_is_malformed_and_an_impossible_date_means_the_clock_is_not_set() {
    let mut d = VECTOR[6..20].to_vec();
    d[2] = 0x1A;
    assert_eq!(error_labels(&decode(&packet(&d))), ["malformed"]);
    let mut d = VECTOR[6..20].to_vec();
    d[2] = 0x00; // month 00
    d[3] = 0x00;
    let out = decode(&packet(&d));
    assert_eq!(messages(&out)[0].device_time, Some(DeviceTime::ClockNotSet));
}

#[test]
fn garbage_and_false_starts_before_a_packet_are_one_error() {
    let mut bytes = vec![0x55, 0x00, 0x02, 0x00, 0x00, 0x48, 0x00];
    bytes.extend_from_slice(&VECTOR);
    let out = decode(&bytes);
    assert!(matches!(
        &out[0],
        DecodeEvent::Error(DecodeError::Malformed(r)) if r == "nonin-13: skipped 7 bytes looking for a frame start"
    ));
    assert_eq!(out.len(), 3);
}

#[test]
fn a_truncated_packet_is_reported_at_finish() {
    let out = decode(&VECTOR[..15]);
    assert!(matches!(
        &out[..],
        [DecodeEvent::Error(DecodeError::Malformed(r))] if r.contains("cut short after 15 bytes")
    ));
}

#[test]
fn byte_by_byte_feeding_gives_the_same_events() {
    let mut bytes = vec![0x07, 0x00];
    bytes.extend_from_slice(&VECTOR);
    bytes.extend(packet(&data(0x00, 0x10, [0x00, 0x50], 96)));
    let whole = decode(&bytes);
    assert_eq!(whole.len(), 5);
    assert_eq!(run_bytewise(&mut Nonin13::default(), &bytes), whole);
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic_and_the_buffer_stays_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..12)) {
        let mut d = Nonin13::default();
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
            prop_assert!(d.buf.len() < 6 + MAX_DATA_LEN + 2);
        }
        d.finish(&mut out);
    }

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(len in 0u16..600, rest in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = vec![0x00, 0x02, 0x00, 0x0D];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend(rest);
        decode(&bytes);
    }
}
