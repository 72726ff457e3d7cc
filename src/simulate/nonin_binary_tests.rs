//! Tests of the Nonin binary simulators: their bytes decode back to the simulated values.

use super::*;
use crate::decode::nonin_binary::test_support::{error_labels, flag_names, messages, pair, run};
use crate::decode::nonin_binary::{Nonin13, Nonin7, Nonin8};
use crate::decode::{DecodeEvent, DeviceTime};
use proptest::prelude::*;
use time::macros::datetime;

fn bytes(steps: &[Step]) -> Vec<u8> {
    steps.iter().flat_map(|s| s.bytes.clone()).collect()
}

/// `(spo2, hr)` of each decoded message pair.
fn pairs(events: &[DecodeEvent]) -> Vec<Sample> {
    let m = messages(events);
    m.chunks(2)
        .map(|p| {
            let (s, h) = pair(p[0], p[1]);
            (
                u8::try_from(s.unwrap()).unwrap(),
                u16::try_from(h.unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_format_8_simulator_sends_one_frame_a_second_then_finger_out_frames() {
    let mut sim = Nonin8Sim::new(7);
    let steps = sim.measurement(OffsetDateTime::now_utc());
    assert_eq!(steps.len(), 18);
    assert!(steps
        .iter()
        .all(|s| s.after == Duration::from_secs(1) && s.bytes.len() == 4));
    assert_eq!(steps[17].bytes, [0x83, 0x7F, 0x7F, 0x08]);
    let out = run(&mut Nonin8::default(), &bytes(&steps));
    let m = messages(&out);
    assert_eq!(flag_names(m[0]), ["device:marginal_perfusion"]);
    assert_eq!(flag_names(m[29]), ["device:smartpoint"]);
}

#[test]
fn the_format_7_simulator_sends_45_packets_at_a_third_of_a_second() {
    let mut sim = Nonin7Sim::new(7);
    let steps = sim.measurement(OffsetDateTime::now_utc());
    assert_eq!(steps.len(), 48);
    assert!(steps
        .iter()
        .all(|s| s.after == PACKET_PERIOD && s.bytes.len() == 125));
    assert_eq!(steps[0].bytes[0], 0x83, "frame 1: SYNC and green perfusion");
    assert_eq!(steps[0].bytes[3 * 5 + 3], 0x29, "frame 4: SREV");
}

#[test]
fn the_format_13_simulator_stamps_its_packet_with_the_time_given() {
    let mut sim = Nonin13Sim::new(1);
    let steps = sim.measurement(datetime!(2026-11-27 13:45:09.5 UTC));
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].bytes[6..13],
        [0x20, 0x26, 0x11, 0x27, 0x13, 0x45, 0x09]
    );
    let out = run(&mut Nonin13::default(), &steps[0].bytes);
    assert_eq!(
        messages(&out)[0].device_time,
        Some(DeviceTime::Local(datetime!(2026-11-27 13:45:09)))
    );
}

#[test]
fn the_encoders_produce_the_protocols_vectors() {
    assert_eq!(frame8(97, 200, 0, 0), [0x81, 0x48, 0x61, 0x00]);
    assert_eq!(frame8(127, 511, 0, 0x08), [0x83, 0x7F, 0x7F, 0x08]);
    let p = packet13(
        datetime!(2024-03-15 10:30:00),
        Status13 {
            smartpoint: true,
            ..Status13::default()
        },
        97,
        72,
    );
    assert_eq!(
        p,
        [
            0x00, 0x02, 0x00, 0x0D, 0x00, 0x0E, 0x20, 0x24, 0x03, 0x15, 0x10, 0x30, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x48, 0x00, 0x61, 0x47, 0x03
        ]
    );
}

proptest! {
    #[test]
    fn format_8_simulated_bytes_decode_back_to_the_simulated_values(seed: u64) {
        let mut sim = Nonin8Sim::new(seed);
        let steps = sim.measurement(OffsetDateTime::now_utc());
        let out = run(&mut Nonin8::default(), &bytes(&steps));
        prop_assert!(error_labels(&out).is_empty());
        prop_assert_eq!(pairs(&out), sim.last().to_vec());
        let ends = out.iter().filter(|e| **e == DecodeEvent::Idle { episode_end: true }).count();
        prop_assert_eq!(ends, 3);
    }

    #[test]
    fn format_7_simulated_bytes_decode_back_to_the_simulated_values(seed: u64, rounds in 1usize..3) {
        let mut sim = Nonin7Sim::new(seed);
        let mut d = Nonin7::default();
        for _ in 0..rounds {
            let steps = sim.measurement(OffsetDateTime::now_utc());
            let mut out = Vec::new();
            crate::decode::Decoder::feed(&mut d, &bytes(&steps), &mut out);
            prop_assert!(error_labels(&out).is_empty());
            prop_assert_eq!(pairs(&out).len(), 45);
            prop_assert_eq!(pairs(&out), sim.last().to_vec());
            prop_assert!(messages(&out).iter().all(|m| m.flags.is_empty()));
            prop_assert_eq!(out.last(), Some(&DecodeEvent::Idle { episode_end: true }));
        }
    }

    #[test]
    fn format_13_simulated_bytes_decode_back_to_the_simulated_values(seed: u64, secs in 946_684_800i64..4_102_444_799) {
        let now = OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let mut sim = Nonin13Sim::new(seed);
        let steps = sim.measurement(now);
        let out = run(&mut Nonin13::default(), &bytes(&steps));
        prop_assert_eq!(pairs(&out), sim.last().to_vec());
        let at = PrimitiveDateTime::new(now.date(), now.time());
        prop_assert_eq!(messages(&out)[0].device_time, Some(DeviceTime::Local(at)));
    }
}
