//! The direct writer against serde_json, byte for byte: every escape, every number shape, and
//! every Observation and Bundle of the golden fixture set.

use super::*;
use crate::reading::Decimal;
use crate::sink::fhir::golden_tests::fixtures;
use crate::sink::fhir::{observation, transaction_bundle};

fn ours(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, s);
    out
}

#[test]
fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
    // Every byte an escape can meet on its own, then runs around it.
    for c in (0u32..0x80).chain([0xe9, 0x2013, 0x1f600]) {
        let c = char::from_u32(c).expect("char");
        for s in [c.to_string(), format!("a{c}b"), format!("{c}{c}xyz{c}")] {
            let theirs = serde_json::to_vec(&s).expect("json");
            assert_eq!(ours(&s), theirs, "{s:?}");
        }
    }
    // Eight bytes are checked at once: an escape at every position of longer strings, among
    // ASCII and among multi-byte characters.
    for special in (0u8..0x20).chain([b'"', b'\\', 0x7f, b'!', b'#', b'[', b']']) {
        for base in ["abcdefghijklmnopqrstuvwxyz0123", "äöüßéèêëçñåøæœ–—"] {
            let chars: Vec<char> = base.chars().collect();
            for at in 0..=chars.len() {
                let mut s: String = chars[..at].iter().collect();
                s.push(char::from(special));
                s.extend(&chars[at..]);
                assert_eq!(ours(&s), serde_json::to_vec(&s).expect("json"), "{s:?}");
            }
        }
    }
    let mixed = "Zimmer \"3\" – Süd\\Nord\n\t\u{1}\u{1f}\u{7f}/ok";
    assert_eq!(ours(mixed), serde_json::to_vec(mixed).expect("json"));
    assert_eq!(ours(""), b"\"\"");
}

#[test]
fn decimals_are_written_as_their_exact_text() {
    let mantissas = [
        0,
        1,
        -1,
        5,
        -5,
        9,
        10,
        99,
        100,
        120,
        3760,
        -3760,
        123_456_789,
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
    ];
    for m in mantissas {
        for scale in 0..=crate::reading::MAX_SCALE {
            let d = Decimal::new(m, scale);
            let mut out = Vec::new();
            decimal(&mut out, d);
            assert_eq!(out, d.to_string().into_bytes(), "{m} e-{scale}");
            assert_eq!(out, serde_json::to_vec(&d).expect("json"), "{m} e-{scale}");
        }
    }
}

#[test]
fn integers_are_written_as_serde_writes_them() {
    for v in [0u64, 1, 9, 10, 4_294_967_295, u64::MAX] {
        let mut out = Vec::new();
        unsigned(&mut out, v);
        assert_eq!(out, serde_json::to_vec(&v).expect("json"));
    }
}

#[test]
fn every_observation_and_the_bundle_are_serdes_bytes() {
    let readings = fixtures();
    for r in &readings {
        let o = observation(r);
        let mut out = Vec::new();
        o.write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            serde_json::to_string(&o).expect("json")
        );
    }
    let theirs = serde_json::to_vec(&transaction_bundle(&readings)).expect("json");
    let mut whole = Vec::new();
    transaction_bundle(&readings).write_json(&mut whole);
    assert_eq!(whole, theirs);
    let mut streamed = b"kept".to_vec();
    crate::sink::fhir::observation::write_transaction_bundle(&readings, &mut streamed);
    assert_eq!(&streamed[..4], b"kept", "appends, never clears");
    assert_eq!(&streamed[4..], &theirs[..]);
    // One entry and none.
    for batch in [&readings[..1], &readings[..0]] {
        let mut one = Vec::new();
        crate::sink::fhir::observation::write_transaction_bundle(batch, &mut one);
        assert_eq!(
            one,
            serde_json::to_vec(&transaction_bundle(batch)).expect("json")
        );
    }
}
