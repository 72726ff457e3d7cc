//! The example message, segment ends, ACK and NAK building and parsing, escapes, the
//! assigning authority, and MSH problems.

use super::*;

#[test]
fn the_protocols_example_message_decodes_into_five_grouped_messages() {
    let oru = parse_oru(&framed(&EXAMPLE)).unwrap();
    assert_eq!(oru.control_id, "VD-20240315-000042");
    assert_eq!(oru.sending_application, "VITALSD^0012345678ABCDEF^EUI-64");
    assert_eq!(oru.version, "2.6");
    assert_eq!(oru.skipped, 0);
    let p = oru.patient.as_ref().unwrap();
    assert_eq!(
        (p.id.as_str(), p.system.as_str()),
        ("MRN123456", "CLINIC_A")
    );
    let m = &oru.messages;
    let kinds: Vec<Kind> = m.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::BloodPressure,
            Kind::HeartRate,
            Kind::Spo2,
            Kind::BodyTemperature,
            Kind::BodyWeight
        ]
    );
    assert_eq!(
        values(&m[0]),
        vec![
            t("systolic 120 mm[Hg]"),
            t("diastolic 80 mm[Hg]"),
            t("mean 93 mm[Hg]")
        ]
    );
    assert_eq!(values(&m[1]), vec![t("heart_rate 72 /min")]);
    assert_eq!(m[1].values[0].mdc, Some(149_546));
    assert_eq!(values(&m[2]), vec![t("spo2 97 %")]);
    assert_eq!(values(&m[3]), vec![t("temperature 37.0 Cel")]);
    assert_eq!(m[3].values[0].site.as_deref(), Some("oral"));
    assert_eq!(m[3].values[0].mdc, Some(188_424));
    assert_eq!(values(&m[4]), vec![t("weight 72.5 kg")]);
    let at = time::macros::datetime!(2024-03-15 10:29:30 +01:00);
    assert_eq!(m[0].device_time, Some(DeviceTime::Absolute(at)));
    let at = time::macros::datetime!(2024-03-15 10:29:45 +01:00);
    assert_eq!(m[2].device_time, Some(DeviceTime::Absolute(at)));
    assert!(m
        .iter()
        .all(|m| m.serial.as_deref() == Some("0012345678ABCDEF")));
    assert!(m.iter().all(|m| m.model.is_none() && m.flags.is_empty()));
    assert_eq!(decode(&framed(&EXAMPLE)).len(), 5);
}

#[test]
fn lf_and_cr_lf_segment_ends_are_accepted() {
    for sep in ["\n", "\r\n"] {
        let oru = parse_oru(EXAMPLE.join(sep).as_bytes()).unwrap();
        assert_eq!(oru.messages.len(), 5);
    }
}

#[test]
fn the_protocols_ack_is_built_byte_for_byte_and_is_142_bytes() {
    let h = AckHeader {
        sending_application: "EHR".into(),
        sending_facility: "CLINIC_A".into(),
        receiving_application: "VITALSD^0012345678ABCDEF^EUI-64".into(),
        receiving_facility: "CLINIC_A".into(),
        time: time::macros::datetime!(2024-03-15 10:30:06 +01:00),
        control_id: "EHR-778899".into(),
        processing_id: "P".into(),
        version: "2.6".into(),
    };
    let ack = ack_message(&h, "VD-20240315-000042", AckCode::AA, None);
    let want = framed(&[
        r"MSH|^~\&|EHR|CLINIC_A|VITALSD^0012345678ABCDEF^EUI-64|CLINIC_A|20240315103006+0100||ACK^R01^ACK|EHR-778899|P|2.6",
        "MSA|AA|VD-20240315-000042",
    ]);
    assert_eq!(ack, want);
    assert_eq!(ack.len(), 142);
    assert_eq!(hex::encode(&ack[..16]), "0b4d53487c5e7e5c267c4548527c434c");
    assert_eq!(hex::encode(&ack[134..]), "30303034320d1c0d");

    let nak = ack_message(
        &AckHeader {
            control_id: "EHR-778900".into(),
            ..h
        },
        "VD-20240315-000042",
        AckCode::AE,
        Some(&AckError {
            location: "PID^1^3".into(),
            code: 101,
            text: "Patient identifier missing".into(),
        }),
    );
    assert_eq!(
        nak,
        framed(&[
            r"MSH|^~\&|EHR|CLINIC_A|VITALSD^0012345678ABCDEF^EUI-64|CLINIC_A|20240315103006+0100||ACK^R01^ACK|EHR-778900|P|2.6",
            "MSA|AE|VD-20240315-000042",
            "ERR||PID^1^3|101^Required field missing^HL70357|E||||Patient identifier missing",
        ])
    );
}

#[test]
fn the_protocols_ack_and_nak_parse() {
    let ack = parse_ack(&framed(&[
        r"MSH|^~\&|EHR|CLINIC_A|VITALSD^0012345678ABCDEF^EUI-64|CLINIC_A|20240315103006+0100||ACK^R01^ACK|EHR-778899|P|2.6",
        "MSA|AA|VD-20240315-000042",
    ]))
    .unwrap();
    assert_eq!(ack.code, AckCode::AA);
    assert_eq!(ack.acked_control_id, "VD-20240315-000042");
    assert_eq!(ack.control_id, "EHR-778899");
    assert_eq!((ack.text, ack.error), (None, None));

    let nak = parse_ack(&message(&[
        r"MSH|^~\&|EHR|CLINIC_A|VITALSD^0012345678ABCDEF^EUI-64|CLINIC_A|20240315103006+0100||ACK^R01^ACK|EHR-778900|P|2.6",
        "MSA|AE|VD-20240315-000042",
        "ERR||PID^1^3|101^Required field missing^HL70357|E||||Patient identifier missing",
    ]))
    .unwrap();
    assert_eq!(nak.code, AckCode::AE);
    assert_eq!(
        nak.error,
        Some(AckError {
            location: "PID^1^3".into(),
            code: 101,
            text: "Patient identifier missing".into()
        })
    );
}

#[test]
fn ack_answers_a_control_id_and_parses_back() {
    let a = parse_ack(&ack("VD-1|x", AckCode::AR, "try later")).unwrap();
    assert_eq!(a.code, AckCode::AR);
    assert_eq!(a.acked_control_id, "VD-1|x");
    assert_eq!(
        a.error.map(|e| (e.code, e.text)),
        Some((207, "try later".into()))
    );
    let a = parse_ack(&ack("VD-2", AckCode::AA, "")).unwrap();
    assert_eq!((a.code, a.error), (AckCode::AA, None));
}

#[test]
fn a_reply_header_swaps_applications_and_keeps_version() {
    let oru = parse_oru(&framed(&EXAMPLE)).unwrap();
    let h = AckHeader::reply_to(&oru, "EHR-1", OffsetDateTime::UNIX_EPOCH);
    assert_eq!(h.sending_application, "EHR");
    assert_eq!(h.receiving_application, "VITALSD^0012345678ABCDEF^EUI-64");
    assert_eq!((h.processing_id.as_str(), h.version.as_str()), ("P", "2.6"));
}

#[test]
fn parse_ack_refuses_other_messages_and_commit_blocks() {
    assert!(matches!(
        parse_ack(&framed(&EXAMPLE)),
        Err(Hl7Error::NotAck(_))
    ));
    assert!(matches!(
        parse_ack(&[SB, 0x06, EB, CR]),
        Err(Hl7Error::NotAck(_))
    ));
    let no_msa = message(&[r"MSH|^~\&|EHR||||20240315103006||ACK|1|P|2.6"]);
    assert!(matches!(parse_ack(&no_msa), Err(Hl7Error::NotAck(_))));
}

#[test]
fn escapes_are_decoded_with_the_declared_delimiters() {
    let d = Delimiters::STANDARD;
    assert_eq!(d.unescape(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
    assert_eq!(
        d.unescape(r"keep \X0D\ and \unterminated"),
        r"keep \X0D\ and \unterminated"
    );
    assert_eq!(d.escape(r"a|b^c&d~e\f"), r"a\F\b\S\c\T\d\R\e\E\f");
    let msg = message(&[
        "MSH#$%!*#A##B##20240315103005##ORU$R01#ID!E!1#P#2.6",
        "PID###M!F!1$$$AUTH$MR",
        "OBX#1#NM#150456$X$MDC#1#97#262688$$MDC#####F###20240315102945+0100",
    ]);
    let oru = parse_oru(&msg).unwrap();
    assert_eq!(oru.control_id, "ID!1");
    assert_eq!(oru.patient.unwrap().id, "M#1");
    assert_eq!(values(&oru.messages[0]), vec![t("spo2 97 %")]);
}

#[test]
fn an_oid_assigning_authority_becomes_the_patient_system() {
    let mut segs = EXAMPLE.to_vec();
    segs[1] = "PID|||X1^^^OTHER^PI~MRN7^^^CLINIC&2.16.840.1.113883.3.999&ISO^MR";
    let p = parse_oru(&message(&segs)).unwrap().patient.unwrap();
    assert_eq!(
        (p.id.as_str(), p.system.as_str()),
        ("MRN7", "urn:oid:2.16.840.1.113883.3.999")
    );
    assert!(!format!("{p:?}").contains("MRN7"));
}

#[test]
fn a_missing_or_bad_msh_is_an_error() {
    let no_msh = message(&EXAMPLE[1..]);
    assert_eq!(parse_oru(&no_msh), Err(Hl7Error::NoMsh));
    assert_eq!(parse_oru(b""), Err(Hl7Error::NoMsh));
    assert!(matches!(
        parse_oru(b"MSH|^~|X\r"),
        Err(Hl7Error::BadEncoding(_))
    ));
    assert!(matches!(
        parse_oru(b"MSH|^^\\&|X\r"),
        Err(Hl7Error::BadEncoding(_))
    ));
    let out = decode(&mllp_frame(&no_msh));
    assert_eq!(
        out,
        vec![DecodeEvent::Error(DecodeError::Malformed(
            "hl7v2: the message does not start with an MSH segment".into()
        ))]
    );
}

#[test]
fn wrong_type_version_or_missing_control_id_say_how_to_answer() {
    let mut segs = EXAMPLE.to_vec();
    segs[0] = r"MSH|^~\&|A|B|C|D|20240315103005||ADT^A01|X1|P|2.6";
    let e = parse_oru(&message(&segs)).unwrap_err();
    assert_eq!((e.ack_code(), e.ack_error().code), (AckCode::AR, 200));
    assert!(matches!(
        decode(&framed(&segs))[..],
        [DecodeEvent::Error(DecodeError::Unsupported(_))]
    ));
    segs[0] = r"MSH|^~\&|A|B|C|D|20240315103005||ORU^R01|X1|P|3.0";
    let e = parse_oru(&message(&segs)).unwrap_err();
    assert_eq!((e.ack_code(), e.ack_error().code), (AckCode::AR, 203));
    segs[0] = r"MSH|^~\&|A|B|C|D|20240315103005||ORU^R01||P|2.6";
    let e = parse_oru(&message(&segs)).unwrap_err();
    assert_eq!(e, Hl7Error::MissingField("MSH-10"));
    assert_eq!(e.ack_error().location, "MSH^1^10");
    assert_eq!((e.ack_code(), e.ack_error().code), (AckCode::AE, 101));
}
