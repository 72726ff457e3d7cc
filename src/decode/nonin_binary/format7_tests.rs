//! Tests of the `nonin-7` decoder.

use super::super::test_support::{error_labels, flag_names, messages, pair, run, run_bytewise};
use super::super::{ACK, NAK};
use super::*;
use proptest::prelude::*;

/// The first 8 frames of the docs/devices/nonin.md#format-7 vector, literally (HR-D 72, SpO2-D 97, SREV 0x29,
/// timer 5, green perfusion).
const VECTOR_FIRST_8: [[u8; 5]; 8] = [
    [0x83, 0x75, 0x30, 0x00, 0x28],
    [0x82, 0x77, 0x21, 0x48, 0x62],
    [0x82, 0x78, 0xF3, 0x61, 0x4E],
    [0x82, 0x7A, 0x89, 0x29, 0xAE],
    [0x82, 0x7B, 0xC8, 0x00, 0xC5],
    [0x82, 0x7C, 0x9E, 0x00, 0x9C],
    [0x82, 0x7C, 0xFC, 0x05, 0xFF],
    [0x82, 0x7C, 0xDC, 0x00, 0xDA],
];

/// One frame with its checksum.
fn frame(status: u8, pleth: u16, float: u8) -> [u8; 5] {
    let [m, l] = pleth.to_be_bytes();
    let chk = [status, m, l, float]
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b));
    [status, m, l, float, chk]
}

/// Floats for frames 9–25 of a packet with the given display values.
fn tail_floats(spo2_d: u8, hr_d: u16) -> [u8; 17] {
    let (msb, lsb) = (
        u8::try_from(hr_d >> 7).unwrap(),
        u8::try_from(hr_d & 0x7F).unwrap(),
    );
    // Frames: 9 SpO2-D, 10 fast, 11 B-B, 12-13 R, 14-15 E-HR, 16 E-SpO2, 17 E-SpO2-D, 18-19 R,
    // 20-21 HR-D, 22-23 E-HR-D, 24-25 R.
    [
        spo2_d, spo2_d, spo2_d, 0, 0, msb, lsb, spo2_d, spo2_d, 0, 0, msb, lsb, msb, lsb, 0, 0,
    ]
}

/// The docs/devices/nonin.md#format-7 vector completed into a full, valid 25-frame packet.
fn vector_packet() -> Vec<u8> {
    let mut bytes: Vec<u8> = VECTOR_FIRST_8.concat();
    for (i, f) in tail_floats(97, 72).into_iter().enumerate() {
        let pleth = 0x7C00 - u16::try_from(i).unwrap() * 0x100;
        bytes.extend_from_slice(&frame(0x82, pleth, f));
    }
    bytes
}

/// A full packet: all frames with `status` (SYNC added on frame 1) and the given values.
fn packet(status: u8, spo2_d: u8, hr_d: u16, stat2: u8) -> Vec<u8> {
    let (msb, lsb) = (
        u8::try_from(hr_d >> 7).unwrap(),
        u8::try_from(hr_d & 0x7F).unwrap(),
    );
    let head = [msb, lsb, spo2_d, 0x29, 0, 0, 5, stat2];
    let floats = head.into_iter().chain(tail_floats(spo2_d, hr_d));
    floats
        .enumerate()
        .flat_map(|(i, f)| {
            let s = if i == 0 { status | 0x81 } else { status | 0x80 };
            frame(s, 0x8100 + u16::try_from(i).unwrap(), f)
        })
        .collect()
}

fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
    run(&mut Nonin7::default(), bytes)
}

#[test]
fn the_protocols_first_8_frames_in_a_completed_packet_decode_as_hr_72_spo2_97() {
    let bytes = vector_packet();
    assert_eq!(bytes.len(), 125);
    let out = decode(&bytes);
    assert_eq!(out.len(), 2, "{out:?}");
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(97), Some(72)));
    assert!(m[0].flags.is_empty(), "green perfusion raises no flag");
}

#[test]
fn each_literal_frame_of_the_vector_has_a_valid_checksum() {
    for f in VECTOR_FIRST_8 {
        assert_eq!(frame(f[0], u16::from_be_bytes([f[1], f[2]]), f[3]), f);
    }
}

#[test]
fn hr_200_and_the_missing_codes_use_the_documented_msb_lsb_split() {
    let m = decode(&packet(0x02, 97, 200, 0));
    assert_eq!(
        pair(messages(&m)[0], messages(&m)[1]),
        (Some(97), Some(200))
    );
    let both_missing = decode(&packet(0x02, 127, 511, 0));
    assert_eq!(both_missing, vec![DecodeEvent::Idle { episode_end: true }]);
}

#[test]
fn nothing_is_published_before_the_25th_valid_frame() {
    let bytes = vector_packet();
    let mut d = Nonin7::default();
    let mut out = Vec::new();
    d.feed(&bytes[..124], &mut out);
    assert!(out.is_empty());
    d.feed(&bytes[124..], &mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn status_and_stat2_bits_become_device_flags() {
    let out = decode(&packet(0x06 | 0x20, 96, 80, 0x21));
    let m = messages(&out);
    assert_eq!(
        flag_names(m[0]),
        [
            "device:marginal_perfusion",
            "device:artifact",
            "device:smartpoint",
            "device:low_battery"
        ]
    );
    let out = decode(&packet(0x04 | 0x10, 96, 80, 0));
    assert_eq!(
        flag_names(messages(&out)[0]),
        ["device:out_of_track", "device:low_perfusion"]
    );
}

#[test]
fn a_sensor_alarm_with_missing_display_values_ends_the_episode() {
    let out = decode(&packet(0x08, 127, 80, 0));
    assert_eq!(out, vec![DecodeEvent::Idle { episode_end: true }]);
    let held = decode(&packet(0x08, 96, 80, 0));
    assert_eq!(flag_names(messages(&held)[0]), ["device:sensor_alarm"]);
}

#[test]
fn a_bad_checksum_drops_the_packet_with_one_error_and_the_next_packet_decodes() {
    let mut bytes = vector_packet();
    bytes[11 * 5 + 4] ^= 0x01; // frame 12's CHK
    bytes.extend(vector_packet());
    let out = decode(&bytes);
    assert_eq!(error_labels(&out), ["checksum"], "{out:?}");
    assert_eq!(messages(&out).len(), 2);
}

#[test]
fn a_clear_status_bit_inside_a_packet_is_malformed_and_the_packet_is_dropped() {
    let mut bytes = vector_packet();
    bytes[3 * 5] = 0x02;
    bytes[3 * 5 + 4] = bytes[3 * 5 + 4].wrapping_sub(0x80);
    let out = decode(&bytes);
    assert_eq!(error_labels(&out), ["malformed"]);
    assert!(messages(&out).is_empty());
}

#[test]
fn garbage_before_the_first_packet_is_one_error_then_the_packet_decodes() {
    let mut bytes = vec![0x00, 0x83, 0x01, 0x02, 0x03, 0xFF, 0x42];
    bytes.extend(vector_packet());
    let out = decode(&bytes);
    assert!(matches!(
        &out[0],
        DecodeEvent::Error(DecodeError::Malformed(r)) if r == "nonin-7: skipped 7 bytes looking for a frame start"
    ));
    assert_eq!(messages(&out).len(), 2);
}

#[test]
fn joining_mid_packet_skips_to_the_next_sync_frame() {
    let mut bytes = vector_packet()[37..].to_vec();
    bytes.extend(packet(0x02, 98, 65, 0));
    let out = decode(&bytes);
    assert_eq!(error_labels(&out), ["malformed"]);
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(98), Some(65)));
}

#[test]
fn a_packet_cut_short_by_a_sync_frame_is_an_error_and_the_new_packet_counts() {
    let mut bytes = vector_packet()[..24 * 5].to_vec();
    bytes.extend(packet(0x02, 98, 65, 0));
    let out = decode(&bytes);
    assert!(matches!(
        &out[0],
        DecodeEvent::Error(DecodeError::Malformed(r)) if r.contains("cut short after 24 of 25 frames")
    ));
    assert_eq!(messages(&out).len(), 2);
}

#[test]
fn a_26th_frame_without_sync_is_an_error() {
    let mut bytes = vector_packet();
    bytes.extend_from_slice(&frame(0x82, 0x1234, 0));
    bytes.extend(vector_packet());
    let out = decode(&bytes);
    assert_eq!(error_labels(&out), ["malformed"]);
    assert_eq!(messages(&out).len(), 4);
}

#[test]
fn a_packet_truncated_at_the_end_of_input_is_reported_at_finish() {
    let out = decode(&vector_packet()[..61]);
    assert!(matches!(
        &out[..],
        [DecodeEvent::Error(DecodeError::Malformed(r))] if r.contains("after 12 of 25 frames and 1 more bytes")
    ));
}

#[test]
fn replies_between_packets_do_not_break_framing() {
    let mut d = Nonin7::default();
    d.on_connect();
    let mut bytes = vector_packet();
    bytes.push(ACK);
    bytes.extend(vector_packet());
    let out = run(&mut d, &bytes);
    assert!(error_labels(&out).is_empty(), "{out:?}");
    assert_eq!(messages(&out).len(), 4);
    d.on_connect();
    let mut bytes = vector_packet();
    bytes.push(NAK);
    bytes.extend(vector_packet());
    let out = run(&mut d, &bytes);
    assert_eq!(error_labels(&out), ["unsupported"]);
    assert_eq!(messages(&out).len(), 4);
}

#[test]
fn byte_by_byte_feeding_gives_the_same_events() {
    let mut bytes = vec![0x99, 0x01];
    bytes.extend(vector_packet());
    bytes.extend(packet(0x06, 95, 130, 0x20));
    bytes.truncate(bytes.len() - 3);
    let whole = decode(&bytes);
    assert_eq!(whole.len(), 4);
    assert_eq!(run_bytewise(&mut Nonin7::default(), &bytes), whole);
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic_and_the_buffer_stays_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..12)) {
        let mut d = Nonin7::default();
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
            prop_assert!(d.buf.len() < FRAME);
        }
        d.finish(&mut out);
    }

    #[test]
    fn valid_packets_with_a_pleth_full_of_high_bits_decode(pleths in proptest::collection::vec(any::<u16>(), 25),
        spo2 in 0u8..127, hr in 0u16..511) {
        let good = packet(0x02, spo2, hr, 0);
        let bytes: Vec<u8> = good.chunks(5).zip(&pleths)
            .flat_map(|(f, p)| frame(f[0], *p, f[3])).collect();
        let out = decode(&bytes);
        let m = messages(&out);
        prop_assert_eq!(m.len(), 2);
        prop_assert_eq!(pair(m[0], m[1]), (Some(i64::from(spo2)), Some(i64::from(hr))));
    }
}
