//! Tests of the `polar-ecg` decoder: the docs/ecg.md#polar-h10-polar-ecg vector literally, continuity, errors.

use super::*;
use proptest::prelude::*;
use time::macros::datetime;

const VECTOR: &str = "00 68 02 86 96 AA 67 A3 09 00 E2 FF FF 10 00 00 A6 04 00 00 FE FF";

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h.replace(' ', "")).unwrap()
}

fn dec() -> PolarEcg {
    PolarEcg::new(Payload::Binary, 130.0, ("ecg", 131_328))
}

fn frame(ts: u64, samples: &[i32]) -> Vec<u8> {
    let mut b = vec![0u8];
    b.extend_from_slice(&ts.to_le_bytes());
    b.push(0);
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes()[..3]);
    }
    b
}

fn one(d: &mut PolarEcg, b: &[u8]) -> DecodeEvent {
    let mut out = Vec::new();
    d.feed(b, &mut out);
    d.finish(&mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

#[test]
fn the_protocols_vector_decodes_to_four_microvolt_samples_ending_at_its_timestamp() {
    let DecodeEvent::Samples(c) = one(&mut dec(), &bytes(VECTOR)) else {
        panic!("not samples")
    };
    assert_eq!(c.leads[0].samples, [-30, 16, 1190, -512]);
    assert_eq!(c.leads[0].scale_uv, 1.0);
    assert_eq!(c.leads[0].mdc, 131_328);
    assert_eq!(c.fs_hz, 130.0);
    let last = datetime!(2022-01-03 08:12:29.912654440 UTC);
    // First sample = ts − 3 · (1e9 / 130) ns.
    let first = last - time::Duration::nanoseconds(23_076_923);
    assert_eq!(c.t0, Some(DeviceTime::Absolute(first)));
    assert!(!c.gap_before);
}

#[test]
fn the_vector_as_hex_text_decodes_the_same() {
    let mut d = PolarEcg::new(Payload::Hex, 130.0, ("ecg", 131_328));
    let ev = one(&mut d, VECTOR.as_bytes());
    assert!(matches!(ev, DecodeEvent::Samples(c) if c.leads[0].samples == [-30, 16, 1190, -512]));
}

#[test]
fn a_lost_frame_marks_a_gap_and_contiguous_frames_do_not() {
    let mut d = dec();
    let p = 1e9 / 130.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ts = |n: f64| (1_000_000_000_000.0 + n * p).round() as u64;
    let s = [1, 2, 3, 4];
    let ev = |d: &mut PolarEcg, t| match one(d, &frame(t, &s)) {
        DecodeEvent::Samples(c) => c.gap_before,
        other => panic!("{other:?}"),
    };
    assert!(!ev(&mut d, ts(3.0)));
    assert!(!ev(&mut d, ts(7.0)));
    // Frame 8..11 lost: 12..15 follows with a jump of 5 periods (within tolerance) ...
    assert!(!ev(&mut d, ts(15.0)));
    // ... 40 periods is a gap.
    assert!(ev(&mut d, ts(59.0)));
}

#[test]
fn duplicate_and_out_of_order_frames_are_errors_and_flag_the_next_chunk() {
    let mut d = dec();
    let _ = one(&mut d, &frame(2_000_000_000, &[1, 2]));
    assert!(matches!(
        one(&mut d, &frame(2_000_000_000, &[1, 2])),
        DecodeEvent::Error(_)
    ));
    assert!(matches!(
        one(&mut d, &frame(1_000_000_000, &[1, 2])),
        DecodeEvent::Error(_)
    ));
    let DecodeEvent::Samples(c) = one(&mut d, &frame(2_015_384_615, &[3, 4])) else {
        panic!()
    };
    assert_eq!(
        c.flags,
        [
            Flag::new("ecg:duplicate_frame"),
            Flag::new("ecg:out_of_order_frame")
        ]
    );
}

#[test]
fn short_compressed_non_ecg_and_ragged_frames_are_errors_with_reasons() {
    let cases: [(&str, Vec<u8>); 4] = [
        ("shorter", vec![0, 1, 2]),
        ("compressed", {
            let mut f = frame(5, &[1]);
            f[9] = 0x80;
            f
        }),
        ("not ECG", {
            let mut f = frame(5, &[1]);
            f[0] = 0x02;
            f
        }),
        ("whole 3-byte", {
            let mut f = frame(5, &[1]);
            f.push(0);
            f
        }),
    ];
    for (why, b) in cases {
        let DecodeEvent::Error(e) = one(&mut dec(), &b) else {
            panic!("{why}")
        };
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
    let mut big = frame(5, &[]);
    big.resize(MAX_FRAME + 3, 0);
    assert!(matches!(
        one(&mut dec(), &big),
        DecodeEvent::Error(DecodeError::Oversized(_))
    ));
}

proptest! {
    #[test]
    fn arbitrary_payloads_never_panic(payloads in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..80), 0..20)) {
        let mut d = dec();
        let mut h = PolarEcg::new(Payload::Hex, 130.0, ("ecg", 131_328));
        let mut out = Vec::new();
        for p in payloads {
            d.feed(&p, &mut out);
            h.feed(&p, &mut out);
        }
        d.finish(&mut out);
    }
}
