use super::*;
use proptest::prelude::*;

fn opts(pairs: &[(&str, &str)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn decoder(pairs: &[(&str, &str)]) -> Barcode {
    Barcode::from_options(&opts(pairs)).unwrap()
}

fn decode(d: &mut Barcode, bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    d.finish(&mut out);
    out
}

const SYSTEM: (&str, &str) = ("system", "urn:oid:2.16.840.1.113883.3.999");

#[test]
fn scans_ending_in_cr_lf_or_cr_lf_are_each_one_scan() {
    let mut d = decoder(&[SYSTEM]);
    let out = decode(&mut d, b"MRN0012345\rMRN0012346\nMRN0012347\r\n");
    assert_eq!(
        out,
        vec![
            DecodeEvent::Scan("MRN0012345".into()),
            DecodeEvent::Scan("MRN0012346".into()),
            DecodeEvent::Scan("MRN0012347".into()),
        ]
    );
}

#[test]
fn a_scan_split_across_reads_is_joined_and_trimmed() {
    let mut d = decoder(&[SYSTEM]);
    let mut out = Vec::new();
    d.feed(b"  MRN00", &mut out);
    d.feed(b"12345 \r", &mut out);
    assert_eq!(out, vec![DecodeEvent::Scan("MRN0012345".into())]);
}

#[test]
fn a_non_matching_scan_is_malformed_without_the_scanned_text() {
    let mut d = decoder(&[SYSTEM, ("pattern", r"MRN[0-9]{7}")]);
    let out = decode(&mut d, b"XYZ9876543\rMRN0012345\r");
    assert_eq!(
        out[0],
        DecodeEvent::Error(DecodeError::Malformed(
            "barcode: scan does not match pattern".into()
        ))
    );
    assert!(!format!("{:?}", out[0]).contains("9876543"));
    assert_eq!(out[1], DecodeEvent::Scan("MRN0012345".into()));
}

#[test]
fn the_pattern_must_match_the_whole_scan() {
    let mut d = decoder(&[SYSTEM, ("pattern", r"MRN[0-9]{7}")]);
    let out = decode(&mut d, b"MRN00123456789\r");
    assert!(matches!(out[..], [DecodeEvent::Error(_)]));
}

#[test]
fn strip_prefix_removes_a_symbology_prefix_before_matching() {
    let mut d = decoder(&[SYSTEM, ("strip_prefix", "]C1"), ("pattern", "^MRN\\d{7}$")]);
    let out = decode(&mut d, b"]C1MRN0012345\rMRN0012346\r]C1\r");
    assert_eq!(out[0], DecodeEvent::Scan("MRN0012345".into()));
    assert_eq!(out[1], DecodeEvent::Scan("MRN0012346".into()));
    assert!(matches!(
        out[2],
        DecodeEvent::Error(DecodeError::Malformed(_))
    ));
}

#[test]
fn control_characters_and_binary_are_rejected_without_the_text() {
    let mut d = decoder(&[SYSTEM]);
    let out = decode(&mut d, b"MRN\x1b0012345\r\xffMRN\r");
    assert_eq!(out.len(), 2);
    for ev in &out {
        let DecodeEvent::Error(DecodeError::Malformed(r)) = ev else {
            panic!("expected an error, got {ev:?}");
        };
        assert!(!r.contains("MRN"));
    }
}

#[test]
fn an_overlong_scan_is_oversized_and_the_next_scan_decodes() {
    let mut d = decoder(&[SYSTEM]);
    let mut bytes = vec![b'7'; MAX_SCAN + 1];
    bytes.extend_from_slice(b"\rMRN0012345\r");
    let out = decode(&mut d, &bytes);
    assert_eq!(
        out,
        vec![
            DecodeEvent::Error(DecodeError::Oversized(MAX_SCAN)),
            DecodeEvent::Scan("MRN0012345".into())
        ]
    );
}

#[test]
fn a_scan_without_terminator_is_reported_at_finish() {
    let mut d = decoder(&[SYSTEM]);
    assert!(matches!(
        decode(&mut d, b"MRN00123")[..],
        [DecodeEvent::Error(DecodeError::Malformed(_))]
    ));
}

#[test]
fn system_is_required_and_must_look_like_a_uri_or_oid() {
    let errs = Barcode::from_options(&opts(&[])).unwrap_err();
    assert_eq!(errs[0].key, "system");
    assert!(errs[0].reason.starts_with("required"));
    assert!(check_system("urn:oid:2.16.840.1.113883.3.999").is_ok());
    assert!(check_system("urn:example:mrn").is_ok());
    assert!(check_system("https://clinic.example/mrn").is_ok());
    assert!(check_system("urn:oid:2.16.x").is_err());
    assert!(check_system("urn:oid:").is_err());
    assert!(check_system("CLINIC_A").is_err());
    assert!(check_system("http://has space").is_err());
}

#[test]
fn bad_pattern_and_prefix_options_are_reported_together() {
    let errs = Barcode::from_options(&opts(&[
        SYSTEM,
        ("pattern", "(unclosed"),
        ("strip_prefix", ""),
    ]))
    .unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["pattern", "strip_prefix"]);
    assert!(errs[0].reason.starts_with("not a valid regex"));
}

#[test]
fn a_huge_pattern_is_refused_by_the_size_limit() {
    let r = check_pattern(r"(?:\w{100}){100}").unwrap_err();
    assert!(r.contains("regex"), "{r}");
}

#[test]
fn unknown_options_name_the_accepted_ones() {
    let errs = Barcode::from_options(&opts(&[SYSTEM, ("colour", "red")])).unwrap_err();
    assert_eq!(errs[0].key, "colour");
    assert!(errs[0].reason.contains("system, pattern, strip_prefix"));
}

#[test]
fn the_driver_entry_builds_a_decoder_from_options() {
    assert_eq!(INFO.name, "barcode");
    assert!(INFO.kinds.is_empty());
    let mut d = (INFO.build)(Transport::Serial, &opts(&[SYSTEM])).unwrap();
    let mut out = Vec::new();
    d.feed(b"MRN0012345\r", &mut out);
    assert_eq!(out, vec![DecodeEvent::Scan("MRN0012345".into())]);
    assert!((INFO.build)(Transport::Serial, &opts(&[])).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
        let mut d = decoder(&[SYSTEM, ("pattern", "MRN[0-9]+"), ("strip_prefix", "]C1")]);
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
        for ev in &out {
            if let DecodeEvent::Scan(s) = ev {
                prop_assert!(s.len() <= MAX_SCAN && s.starts_with("MRN"));
            }
        }
    }
}
