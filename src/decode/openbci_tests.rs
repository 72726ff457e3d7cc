//! Tests of the `openbci` decoder: the docs/ecg.md#openbci-cyton-openbci vector literally, resync, gaps.

use super::*;
use proptest::prelude::*;

const VECTOR: &str = "A0 05 00 03 E8 FF FC 18 7F FF FF 80 00 00 00 00 00 00 00 01 FF FF FF 00 AE C3 00 00 00 00 00 10 C0";

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h.replace(' ', "")).unwrap()
}

fn all8() -> Vec<Channel> {
    parse_channels("1:I,2:II,3:III,4:aVR,5:aVL,6:aVF,7:V1,8:V2").unwrap()
}

fn run(d: &mut OpenBci, b: &[u8]) -> Vec<DecodeEvent> {
    let mut out = Vec::new();
    d.feed(b, &mut out);
    d.finish(&mut out);
    out
}

fn pkt(n: u8, ch1: i32) -> Vec<u8> {
    let mut p = vec![0u8; PACKET];
    p[0] = HEADER;
    p[1] = n;
    p[2..5].copy_from_slice(&ch1.to_be_bytes()[1..]);
    p[32] = 0xC0;
    p
}

#[test]
fn the_protocols_vector_decodes_to_sample_5_and_its_eight_counts() {
    let p = packet(&bytes(VECTOR)).unwrap();
    assert_eq!(p.sample, 5);
    assert_eq!(
        p.counts,
        [1000, -1000, 8_388_607, -8_388_608, 0, 1, -1, 44_739]
    );
    let out = run(&mut OpenBci::new(250.0, 24, all8()), &bytes(VECTOR));
    let [DecodeEvent::Samples(c)] = out.as_slice() else {
        panic!("{out:?}")
    };
    let v: Vec<i32> = c.leads.iter().map(|l| l.samples[0]).collect();
    assert_eq!(v, p.counts);
    // 44739 counts ≈ 1000 µV at gain 24; the full-scale counts mark the chunk saturated.
    assert!((f64::from(v[7]) * c.leads[7].scale_uv - 1000.0).abs() < 0.1);
    assert!((scale_uv(24) - 0.02235).abs() < 0.00001);
    assert!(c.saturated);
}

#[test]
fn garbage_and_a_false_a0_are_skipped_by_the_footer_check() {
    let mut b = vec![0x11, HEADER, 0x22, HEADER];
    b.extend(pkt(1, 10));
    b.extend([HEADER; 5]);
    b.extend(pkt(2, 20));
    let out = run(
        &mut OpenBci::new(250.0, 24, parse_channels("1:II").unwrap()),
        &b,
    );
    let samples: Vec<i32> = out
        .iter()
        .filter_map(|e| match e {
            DecodeEvent::Samples(c) => Some(c.leads[0].samples.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(samples, [10, 20]);
    let errors = out
        .iter()
        .filter(|e| matches!(e, DecodeEvent::Error(_)))
        .count();
    assert_eq!(errors, 2, "{out:?}");
}

#[test]
fn a_sample_number_jump_starts_a_chunk_after_a_gap_and_a_repeat_is_a_duplicate() {
    let mut b = pkt(1, 1);
    b.extend(pkt(2, 2));
    b.extend(pkt(2, 2));
    b.extend(pkt(9, 9));
    let out = run(
        &mut OpenBci::new(250.0, 24, parse_channels("1:II").unwrap()),
        &b,
    );
    let chunks: Vec<&SampleChunk> = out
        .iter()
        .filter_map(|e| match e {
            DecodeEvent::Samples(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].leads[0].samples, [1, 2]);
    assert!(chunks[1].gap_before);
    assert_eq!(chunks[1].flags, [Flag::new("ecg:duplicate_frame")]);
    assert!(out.iter().any(|e| matches!(e, DecodeEvent::Error(_))));
}

#[test]
fn a_truncated_packet_at_the_end_is_an_error() {
    let b = &bytes(VECTOR)[..20];
    let out = run(&mut OpenBci::new(250.0, 24, all8()), b);
    assert!(matches!(&out[..], [DecodeEvent::Error(e)] if e.to_string().contains("truncated")));
}

#[test]
fn channel_maps_are_checked() {
    assert_eq!(parse_channels("1:I, 2:II").unwrap().len(), 2);
    assert!(parse_channels("9:I").is_err());
    assert!(parse_channels("1:I,1:II").is_err());
    assert!(parse_channels("1:X").is_err());
    assert!(parse_channels("").is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..600), split in 1usize..70,
    ) {
        let mut d = OpenBci::new(250.0, 24, all8());
        let mut out = Vec::new();
        for c in data.chunks(split) {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
    }
}
