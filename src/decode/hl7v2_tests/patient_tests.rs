//! Arbitrary input never panicking, and the patient identity: PID-3 systems, the
//! `patient_system` option, the no-patient placeholder.

use super::*;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
        proptest::collection::vec(prop_oneof![
            Just(SB), Just(EB), Just(CR), Just(b'|'), Just(b'^'), Just(b'\\'), any::<u8>()
        ], 0..300), 0..8), mqtt: bool) {
        let mut d = Hl7v2::new(if mqtt { Transport::Mqtt } else { Transport::Serial });
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
        for c in &chunks {
            let _ = parse_ack(c);
            let _ = parse_oru(c);
        }
    }

    #[test]
    fn mutated_example_messages_never_panic(cut in 0usize..2000, byte: u8, at in 0usize..2000) {
        let mut m = message(&EXAMPLE);
        let at = at.min(m.len() - 1);
        m[at] = byte;
        m.truncate(cut.max(1));
        let _ = parse_oru(&m);
        let _ = decode(&mllp_frame(&m));
    }

    #[test]
    fn escaping_then_unescaping_gives_the_text_back(s in "[ -~]{0,40}") {
        let d = Delimiters::STANDARD;
        prop_assert_eq!(d.unescape(&d.escape(&s)), s);
    }
}

fn pid3_patient(pid3: &str) -> crate::reading::PatientRef {
    let msg = EXAMPLE
        .iter()
        .map(|s| {
            if s.starts_with("PID|") {
                format!("PID|||{pid3}")
            } else {
                (*s).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r");
    parse_oru(msg.as_bytes()).unwrap().patient.unwrap()
}

#[test]
fn patient_system_is_attached_to_pid3_ids_that_name_no_uri_system() {
    let sys = Some("urn:oid:1.2.3.4");
    let bare = with_patient_system(pid3_patient("MRN1^^^^MR"), sys);
    assert_eq!(
        (bare.id.as_str(), bare.system.as_str()),
        ("MRN1", "urn:oid:1.2.3.4")
    );
    let namespace = with_patient_system(pid3_patient("MRN1^^^CLINIC_A^MR"), sys);
    assert_eq!(namespace.system, "urn:oid:1.2.3.4");
    // PID-3's own universal id wins over the option.
    let own = with_patient_system(pid3_patient("MRN1^^^&2.16.840.1&ISO^MR"), sys);
    assert_eq!(own.system, "urn:oid:2.16.840.1");
    // Without the option nothing changes.
    assert_eq!(
        with_patient_system(pid3_patient("MRN1^^^CLINIC_A^MR"), None).system,
        "CLINIC_A"
    );
}

#[test]
fn the_patient_system_option_is_checked_like_the_barcode_system() {
    use crate::decode::registry::validate_options;
    let opts = |v: &str| -> crate::decode::Options {
        [("patient_system".to_string(), v.to_string())]
            .into_iter()
            .collect()
    };
    assert!(validate_options("hl7v2", &opts("urn:oid:1.2.3")).is_empty());
    assert!(validate_options("hl7v2", &opts("https://clinic.example/mrn")).is_empty());
    let errs = validate_options("hl7v2", &opts("CLINIC_A"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "patient_system");
    assert_eq!(patient_system(&opts("urn:x")), Some("urn:x"));
}
