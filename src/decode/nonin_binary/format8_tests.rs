//! Tests of the `nonin-8` decoder.

use super::super::test_support::{error_labels, flag_names, messages, pair, run, run_bytewise};
use super::*;
use crate::decode::DecodeError;
use proptest::prelude::*;

fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
    run(&mut Nonin8::default(), bytes)
}

#[test]
fn the_protocols_vector_80_48_61_00_is_hr_72_spo2_97_without_flags() {
    let out = decode(&[0x80, 0x48, 0x61, 0x00]);
    assert_eq!(out.len(), 2);
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(97), Some(72)));
    assert!(m[0].flags.is_empty());
    assert_eq!(m[0].device_time, None);
}

#[test]
fn the_protocols_vector_81_48_61_00_is_hr_200_spo2_97() {
    let out = decode(&[0x81, 0x48, 0x61, 0x00]);
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(97), Some(200)));
}

#[test]
fn the_protocols_vector_83_7f_7f_08_is_missing_data_with_snsa_and_ends_the_episode() {
    assert_eq!(
        decode(&[0x83, 0x7F, 0x7F, 0x08]),
        vec![DecodeEvent::Idle { episode_end: true }]
    );
}

#[test]
fn both_values_missing_without_snsa_also_ends_the_episode() {
    assert_eq!(
        decode(&[0x83, 0x7F, 0x7F, 0x00]),
        vec![DecodeEvent::Idle { episode_end: true }]
    );
}

#[test]
fn one_missing_value_is_absent_and_the_other_is_still_reported() {
    let out = decode(&[0x80, 0x48, 0x7F, 0x00]);
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (None, Some(72)));
    let out = decode(&[0x83, 0x7F, 0x61, 0x00]);
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(97), None));
}

#[test]
fn snsa_with_one_value_missing_ends_the_episode() {
    assert_eq!(
        decode(&[0x80, 0x48, 0x7F, 0x08]),
        vec![DecodeEvent::Idle { episode_end: true }]
    );
}

#[test]
fn snsa_with_held_values_reports_them_flagged_as_sensor_alarm() {
    let out = decode(&[0x80, 0x48, 0x61, 0x08]);
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(97), Some(72)));
    assert_eq!(flag_names(m[0]), ["device:sensor_alarm"]);
}

#[test]
fn every_status_bit_becomes_its_device_flag() {
    // Status 1: OOT 0x20 | LPRF 0x10 | MPRF 0x08 | ARTF 0x04 (reserved 0x40 ignored).
    // Status 2: SPA 0x20 | LOW BAT 0x01 (reserved bits ignored).
    let out = decode(&[0xFC, 0x48, 0x61, 0x67]);
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(97), Some(72)));
    assert_eq!(
        flag_names(m[0]),
        [
            "device:out_of_track",
            "device:low_perfusion",
            "device:marginal_perfusion",
            "device:artifact",
            "device:smartpoint",
            "device:low_battery"
        ]
    );
    let out = decode(&[0x90, 0x48, 0x61, 0x00]);
    assert_eq!(flag_names(messages(&out)[0]), ["device:low_perfusion"]);
}

#[test]
fn garbage_before_a_frame_is_one_error_and_the_frame_still_decodes() {
    let out = decode(&[0x01, 0x02, 0x7F, 0x80, 0x48, 0x61, 0x00]);
    assert!(matches!(
        &out[0],
        DecodeEvent::Error(DecodeError::Malformed(r)) if r == "nonin-8: skipped 3 bytes looking for a frame start"
    ));
    assert_eq!(messages(&out).len(), 2);
    assert_eq!(out.len(), 3);
}

#[test]
fn a_frame_cut_short_by_the_next_sync_byte_is_an_error_and_the_next_frame_decodes() {
    let out = decode(&[0x80, 0x48, 0x81, 0x48, 0x61, 0x00]);
    assert!(matches!(
        &out[0],
        DecodeEvent::Error(DecodeError::Malformed(r)) if r.contains("cut short after 2 of 4 bytes")
    ));
    let m = messages(&out);
    assert_eq!(pair(m[0], m[1]), (Some(97), Some(200)));
}

#[test]
fn a_truncated_last_frame_is_reported_at_finish() {
    let out = decode(&[0x80, 0x48, 0x61, 0x00, 0x80, 0x48]);
    assert_eq!(messages(&out).len(), 2);
    assert_eq!(error_labels(&out), ["malformed"]);
    assert!(matches!(out.last(), Some(DecodeEvent::Error(_))));
}

#[test]
fn the_decoder_is_reusable_after_finish() {
    let mut d = Nonin8::default();
    run(&mut d, &[0x80, 0x48]);
    assert_eq!(messages(&run(&mut d, &[0x80, 0x48, 0x61, 0x00])).len(), 2);
}

#[test]
fn a_stream_of_frames_decodes_the_same_fed_byte_by_byte() {
    let bytes = [
        0x80, 0x48, 0x61, 0x00, 0x81, 0x48, 0x62, 0x20, 0x83, 0x7F, 0x7F, 0x08,
    ];
    let whole = decode(&bytes);
    assert_eq!(whole.len(), 5);
    assert_eq!(run_bytewise(&mut Nonin8::default(), &bytes), whole);
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut d = Nonin8::default();
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
            prop_assert!(d.len < 4);
        }
        d.finish(&mut out);
    }

    #[test]
    fn any_valid_frame_round_trips(hr in 0u16..511, spo2 in 0u8..127, s1 in 0u8..0x40, s2 in 0u8..0x80) {
        let s2 = s2 & !0x08;
        let frame = [0x80 | (s1 & 0x3C) | u8::try_from(hr >> 7).unwrap(), u8::try_from(hr & 0x7F).unwrap(), spo2, s2];
        let out = decode(&frame);
        let m = messages(&out);
        prop_assert_eq!(m.len(), 2);
        prop_assert_eq!(pair(m[0], m[1]), (Some(i64::from(spo2)), Some(i64::from(hr))));
    }
}
