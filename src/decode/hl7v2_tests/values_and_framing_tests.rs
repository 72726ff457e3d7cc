//! OBX values (result status, codes, units, times, absent values) and MLLP framing (split
//! reads, garbage, truncation, oversize), and errors without patient data.

use super::*;

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
