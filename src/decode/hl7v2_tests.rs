use super::*;
use crate::decode::{DeviceMessage, DeviceTime, Measured};
use crate::reading::{Flag, Kind};
use proptest::prelude::*;
use time::OffsetDateTime;

/// docs/hl7-inbound.md#a-complete-example, segment by segment (joined with CR on the wire).
const EXAMPLE: [&str; 11] = [
    r"MSH|^~\&|VITALSD^0012345678ABCDEF^EUI-64|CLINIC_A|EHR|CLINIC_A|20240315103005+0100||ORU^R01^ORU_R01|VD-20240315-000042|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
    "PID|||MRN123456^^^CLINIC_A^MR||DOE^JANE^^^^^L||19800101|F",
    "PV1||O|CLINIC_A^EXAM1^1",
    "OBR|1|VD-20240315-000042^VITALSD^0012345678ABCDEF^EUI-64|VD-20240315-000042^VITALSD^0012345678ABCDEF^EUI-64|182777000^monitoring of patient^SCT|||20240315102930+0100",
    "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC^8480-6^Systolic blood pressure^LN|1.1.1.1|120|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|2|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC^8462-4^Diastolic blood pressure^LN|1.1.1.2|80|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|3|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC^8478-0^Mean blood pressure^LN|1.1.1.3|93|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|4|NM|149546^MDC_PULS_RATE_NON_INV^MDC^8867-4^Heart rate^LN|1.1.1.4|72|264864^MDC_DIM_BEAT_PER_MIN^MDC^/min^/min^UCUM|||||R|||20240315102930+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|5|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC^59408-5^Oxygen saturation in Arterial blood by Pulse oximetry^LN|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC^%^%^UCUM|||||R|||20240315102945+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|6|NM|188424^MDC_TEMP_ORAL^MDC^8310-5^Body temperature^LN|1.3.1.1|37.0|268192^MDC_DIM_DEGC^MDC^Cel^Cel^UCUM|||||R|||20240315102810+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
    "OBX|7|NM|188736^MDC_MASS_BODY_ACTUAL^MDC^29463-7^Body weight^LN|1.4.1.1|72.5|263875^MDC_DIM_KILO_G^MDC^kg^kg^UCUM|||||R|||20240315102500+0100||||0012345678ABCDEF^^0012345678ABCDEF^EUI-64",
];

fn message(segments: &[&str]) -> Vec<u8> {
    let mut m = segments.join("\r").into_bytes();
    m.push(CR);
    m
}

fn framed(segments: &[&str]) -> Vec<u8> {
    mllp_frame(&message(segments))
}

/// The §4.4 MSH/PID/OBR followed by `obx` rows.
fn with_obx(obx: &[&str]) -> Vec<u8> {
    let mut segs: Vec<&str> = EXAMPLE[..4].to_vec();
    segs.extend_from_slice(obx);
    message(&segs)
}

fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
    let mut d = Hl7v2::new(Transport::Mllp);
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    d.finish(&mut out);
    out
}

fn values(m: &DeviceMessage) -> Vec<(String, String, String)> {
    m.values
        .iter()
        .map(|v| {
            let val = match &v.value {
                Measured::Value(d) => d.to_string(),
                Measured::Absent(r) => format!("absent:{}", r.as_str()),
            };
            (v.name.clone(), val, v.unit.as_str().to_string())
        })
        .collect()
}

fn t(s: &str) -> (String, String, String) {
    let mut p = s.split(' ');
    let mut next = || p.next().unwrap_or("").to_string();
    (next(), next(), next())
}

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

#[test]
fn only_final_corrected_and_unverified_results_are_forwarded() {
    let row = |status: &str| {
        format!("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|262688^^MDC|||||{status}|||20240315102945+0100")
    };
    let rows: Vec<String> = ["F", "C", "R", "X", "D", "W", "P", ""]
        .iter()
        .map(|s| row(s))
        .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let oru = parse_oru(&with_obx(&refs)).unwrap();
    assert_eq!(oru.messages.len(), 3);
    assert_eq!(oru.skipped, 5);
    assert!(oru.messages[0].flags.is_empty());
    assert_eq!(oru.messages[1].flags, vec![Flag::new("device:corrected")]);
}

#[test]
fn device_rows_text_values_and_unknown_codes_are_skipped() {
    let oru = parse_oru(&with_obx(&[
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
        "OBX|2|ST|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|high||||||F",
        "OBX|3|NM|150488^MDC_BLD_PERF_INDEX^MDC|1|2.5|262688^^MDC|||||F",
    ]))
    .unwrap();
    assert_eq!((oru.messages.len(), oru.skipped), (0, 3));
    assert_eq!(
        decode(&mllp_frame(&with_obx(&[]))),
        vec![DecodeEvent::Idle { episode_end: false }]
    );
}

#[test]
fn loinc_cuff_codes_and_ucum_units_are_understood() {
    let oru = parse_oru(&with_obx(&[
        "OBX|1|NM|^^^8480-6^Systolic^LN|1|16.0|kPa^^UCUM|||||F",
        "OBX|2|NM|150302^MDC_PRESS_CUFF_DIA^MDC|1|80|mmHg|||||F",
        "OBX|3|NM|8331-1^Oral temperature^LN|1|98.60|266560^MDC_DIM_FAHR^MDC|||||F",
        "OBX|4|NM|151562^MDC_RESP_RATE^MDC|1|16|264928^MDC_DIM_RESP_PER_MIN^MDC|||||F",
        "OBX|5|NM|2708-6^SaO2^LN|1|98||||||F",
    ]))
    .unwrap();
    let m = &oru.messages;
    assert_eq!(
        values(&m[0]),
        vec![t("systolic 16.0 kPa"), t("diastolic 80 mm[Hg]")]
    );
    assert_eq!(m[0].values[1].mdc, None);
    assert_eq!(
        m[0].device_time.map(|_| ()),
        Some(()),
        "OBR-7 is the fallback time"
    );
    assert_eq!(values(&m[1]), vec![t("temperature 98.60 [degF]")]);
    assert_eq!(m[1].values[0].site.as_deref(), Some("oral"));
    assert_eq!(values(&m[2]), vec![t("respiratory_rate 16 /min")]);
    assert_eq!(values(&m[3]), vec![t("spo2 98 %")]);
}

#[test]
fn a_bad_value_unit_or_time_of_a_known_code_rejects_the_message() {
    let bad = |obx: &str| parse_oru(&with_obx(&[obx])).unwrap_err();
    let e = bad("OBX|1|NM|150456^X^MDC|1|9x7|%^^UCUM|||||F");
    assert_eq!(e.to_string(), "OBX[1]-5: NM value is not a number");
    assert_eq!((e.ack_code(), e.ack_error().code), (AckCode::AE, 102));
    let e = bad("OBX|1|NM|150456^X^MDC|1|97|kg^^UCUM|||||F");
    assert_eq!(
        e.to_string(),
        "OBX[1]-6: unit `kg` cannot be converted to `%`"
    );
    let e = bad("OBX|1|NM|150456^X^MDC|1|97|%^^UCUM|||||F|||20241399");
    assert!(e.to_string().starts_with("OBX[1]-14: not an HL7 time"));
    let e = bad("OBX|1|NM|150456^X^MDC|1|97|%^^UCUM|||||F|||202403151029+2500");
    assert!(matches!(e, Hl7Error::BadField { .. }));
}

#[test]
fn an_empty_value_is_absent() {
    let oru = parse_oru(&with_obx(&["OBX|1|NM|150456^X^MDC|1||%^^UCUM|||||F"])).unwrap();
    assert_eq!(values(&oru.messages[0]), vec![t("spo2 absent:unknown %")]);
}

#[test]
fn a_second_value_of_the_same_component_starts_a_new_message() {
    let oru = parse_oru(&with_obx(&[
        "OBX|1|NM|150456^X^MDC|1|97|%^^UCUM|||||F|||20240315102945+0100|||",
        "OBX|2|NM|150456^X^MDC|1|96|%^^UCUM|||||F|||20240315102945+0100",
    ]))
    .unwrap();
    assert_eq!(oru.messages.len(), 2);
}

#[test]
fn hl7_times_read_with_and_without_offset() {
    let abs = time::macros::datetime!(2024-03-15 10:29:30.25 -05:30);
    assert_eq!(
        dtm("20240315102930.25-0530"),
        Ok(Some(DeviceTime::Absolute(abs)))
    );
    let local = time::macros::datetime!(2024-03-15 10:29);
    assert_eq!(dtm("202403151029"), Ok(Some(DeviceTime::Local(local))));
    assert_eq!(dtm(""), Ok(None));
    assert!(dtm("20240315").is_err());
    assert!(dtm("20240230102930").is_err());
    assert_eq!(format_dtm(abs), "20240315102930-0530");
}

#[test]
fn mllp_frames_split_across_reads_and_several_per_read_are_handled() {
    let one = framed(&EXAMPLE);
    let mut two = one.clone();
    two.extend_from_slice(&one);
    assert_eq!(decode(&two).len(), 10);
    let mut d = Hl7v2::new(Transport::Serial);
    let mut out = Vec::new();
    for chunk in one.chunks(7) {
        d.feed(chunk, &mut out);
    }
    d.finish(&mut out);
    assert_eq!(out.len(), 5);
}

#[test]
fn garbage_between_frames_is_reported_once_and_decoding_resumes() {
    let mut bytes = b"\r\nnoise!".to_vec();
    bytes.extend_from_slice(&framed(&EXAMPLE));
    let out = decode(&bytes);
    assert_eq!(
        out[0],
        DecodeEvent::Error(DecodeError::Malformed(
            "hl7v2: 6 bytes outside an MLLP frame".into()
        ))
    );
    assert_eq!(out.len(), 6);
}

#[test]
fn a_truncated_frame_is_reported_and_an_interrupted_one_too() {
    let one = framed(&EXAMPLE);
    let out = decode(&one[..100]);
    assert!(matches!(
        out[..],
        [DecodeEvent::Error(DecodeError::Malformed(_))]
    ));
    let mut bytes = one[..100].to_vec();
    bytes.extend_from_slice(&one);
    let out = decode(&bytes);
    assert!(matches!(
        out[0],
        DecodeEvent::Error(DecodeError::Malformed(_))
    ));
    assert_eq!(out.len(), 6);
}

#[test]
fn an_oversized_frame_is_dropped_and_the_next_decodes() {
    let mut bytes = vec![SB];
    bytes.resize(MAX_MESSAGE + 10, b'A');
    bytes.extend_from_slice(&[EB, CR]);
    bytes.extend_from_slice(&framed(&EXAMPLE));
    let out = decode(&bytes);
    assert_eq!(
        out[0],
        DecodeEvent::Error(DecodeError::Oversized(MAX_MESSAGE))
    );
    assert_eq!(out.len(), 6);
}

#[test]
fn too_many_segments_are_refused() {
    let mut segs = EXAMPLE[..1].to_vec();
    segs.extend(std::iter::repeat_n("NTE|1", MAX_SEGMENTS));
    assert_eq!(
        parse_oru(&message(&segs)),
        Err(Hl7Error::TooManySegments(MAX_SEGMENTS))
    );
}

#[test]
fn mqtt_payloads_are_one_message_framed_or_not() {
    let mut d = Hl7v2::new(Transport::Mqtt);
    let mut out = Vec::new();
    d.feed(&message(&EXAMPLE), &mut out);
    d.feed(&framed(&EXAMPLE), &mut out);
    d.feed(&framed(&EXAMPLE)[..50], &mut out);
    assert_eq!(out.len(), 11);
    assert!(matches!(
        out[10],
        DecodeEvent::Error(DecodeError::Malformed(_))
    ));
}

#[test]
fn mllp_commit_blocks_are_idle() {
    assert_eq!(
        decode(&[SB, 0x06, EB, CR]),
        vec![DecodeEvent::Idle { episode_end: false }]
    );
}

#[test]
fn errors_never_carry_patient_data() {
    let mut segs = EXAMPLE.to_vec();
    segs[4] = "OBX|1|NM|150021^X^MDC|1|DOE JANE|mm[Hg]^^UCUM|||||F";
    let e = parse_oru(&message(&segs)).unwrap_err().to_string();
    assert!(!e.contains("DOE") && !e.contains("MRN"), "{e}");
}

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

#[test]
fn the_no_patient_placeholder_is_the_one_the_hl7_encoder_writes() {
    // The decoder reads the placeholder from the model; the encoder must write the same one.
    assert_eq!(
        crate::model::hl7::NO_PATIENT_ID,
        crate::sink::hl7::NO_PATIENT_ID
    );
    assert_eq!(
        crate::model::hl7::NO_PATIENT_AUTHORITY,
        crate::sink::hl7::NO_PATIENT_AUTHORITY
    );
}
