//! Encoder tests: the documented layout (`docs/hl7.md`) with literal messages, precision,
//! absent values, flags, escaping, and a round trip through vitalsd's own ORU parser.

use time::macros::datetime;

use super::*;
use crate::decode::hl7v2::parse_oru;
use crate::decode::Measured;
use crate::model::fixtures;
use crate::reading::{AbsentReason, Decimal, DeviceId, Flag, Kind, PatientRef};

const ID: &str = "01938f4e-7b2a-7c4d-9a51-3f0c2b1d9e77";

fn bp() -> Reading {
    fixtures::blood_pressure("120", "80", "93")
        .id(ID.parse().expect("uuid"))
        .patient("MRN0012345", "urn:oid:2.16.840.1.113883.3.999")
        .observed(datetime!(2024-03-15 10:29:30 +01:00))
        .received(datetime!(2024-03-15 10:30:05 +01:00))
        .build()
}

fn header() -> Header {
    Header {
        waveform: false,
        sending_application: "VITALSD".into(),
        sending_facility: "CLINIC_A".into(),
        receiving_application: "EHR".into(),
        receiving_facility: "CLINIC_A".into(),
        processing_id: "P".into(),
    }
}

fn text(r: &Reading) -> String {
    String::from_utf8(oru_r01(r, &header())).expect("utf-8")
}

/// Fields of the first segment named `seg`; for MSH, index n is MSH-n.
fn fields(msg: &str, seg: &str) -> Vec<String> {
    let line = msg
        .split('\r')
        .find(|l| l.starts_with(seg))
        .unwrap_or_else(|| panic!("no {seg} in {msg:?}"));
    let mut f: Vec<String> = line.split('|').map(str::to_string).collect();
    if seg == "MSH" {
        f.insert(1, "|".into());
    }
    f
}

#[test]
fn a_blood_pressure_reading_becomes_the_pcd01_message_of_the_protocol_example() {
    let expected = [
        format!("MSH|^~\\&|VITALSD|CLINIC_A|EHR|CLINIC_A|20240315103005+0100||ORU^R01^ORU_R01|{ID}|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"),
        "PID|||MRN0012345^^^&2.16.840.1.113883.3.999&ISO^MR||^^^^^^U".to_string(),
        "PV1||O|^exam-3".to_string(),
        format!("OBR|1|{ID}^VITALSD|{ID}^VITALSD|182777000^monitoring of patient^SCT|||20240315102930+0100"),
        "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC^8480-6^Systolic blood pressure^LN|1.1.1.1|120|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||F|||20240315102930+0100||||exam3-cuff".to_string(),
        "OBX|2|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC^8462-4^Diastolic blood pressure^LN|1.1.1.2|80|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||F|||20240315102930+0100||||exam3-cuff".to_string(),
        "OBX|3|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC^8478-0^Mean blood pressure^LN|1.1.1.3|93|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||F|||20240315102930+0100||||exam3-cuff".to_string(),
    ];
    let want: String = expected.iter().map(|s| format!("{s}\r")).collect();
    assert_eq!(text(&bp()), want);
}

#[test]
fn the_fields_sit_where_protocols_section_4_4_puts_them() {
    let m = text(&bp());
    assert!(!m.contains('\n'), "segments end with CR only");
    let msh = fields(&m, "MSH");
    assert_eq!(msh[9], "ORU^R01^ORU_R01");
    assert_eq!(msh[10], ID);
    assert_eq!(msh[11], "P");
    assert_eq!(msh[12], "2.6");
    assert_eq!((msh[15].as_str(), msh[16].as_str()), ("AL", "NE"));
    assert_eq!(msh[18], "UNICODE UTF-8");
    assert_eq!(msh[21], PROFILE);
    let obx = fields(&m, "OBX");
    assert_eq!(obx[2], "NM");
    assert_eq!(obx[5], "120");
    assert_eq!(obx[11], "F");
    assert_eq!(obx[14], "20240315102930+0100");
    assert_eq!(obx[18], "exam3-cuff");
    assert_eq!(fields(&m, "PV1")[3], "^exam-3");
}

#[test]
fn a_temperature_keeps_its_precision_and_its_site_code() {
    let mut r = bp();
    r.kind = Kind::BodyTemperature;
    let mut t = fixtures::value("8310-5", 150_364, "temperature", "37.0", "Cel");
    t.site = Some("oral".into());
    r.values = vec![t];
    let obx = fields(&text(&r), "OBX");
    assert_eq!(
        obx[3],
        "188424^MDC_TEMP_ORAL^MDC^8310-5^Body temperature^LN"
    );
    assert_eq!(obx[5], "37.0");
    assert_eq!(obx[6], "268192^MDC_DIM_DEGC^MDC^Cel^Cel^UCUM");
}

#[test]
fn a_reading_without_patient_names_the_vitalsd_placeholder_and_an_unknown_name() {
    let mut r = bp();
    r.patient = None;
    let m = text(&r);
    assert!(
        m.contains("\rPID|||VITALSD-UNKNOWN^^^VITALSD-NO-PATIENT^U||^^^^^^U\rPV1||O|^exam-3\rOBR|"),
        "{m:?}"
    );
    r.room = None;
    assert!(text(&r).contains("^U||^^^^^^U\rPV1||O|\rOBR|"));
}

#[test]
fn vitalsd_does_not_read_its_placeholder_back_as_a_patient() {
    let mut r = bp();
    r.patient = None;
    let oru = parse_oru(&oru_r01(&r, &header())).expect("parses");
    assert_eq!(oru.patient, None);
}

#[test]
fn a_patient_without_a_name_still_has_pid_5_of_name_type_unspecified() {
    let m = text(&bp());
    let pid = fields(&m, "PID");
    assert_eq!(pid[5], "^^^^^^U");
    assert_eq!(pid.len(), 6, "nothing after PID-5: {pid:?}");
}

#[test]
fn a_room_longer_than_pl_2_allows_is_cut_there_and_sent_whole_in_pl_9() {
    let mut r = bp();
    r.room = Some("cardiology-exam-room-12".into());
    assert_eq!(
        fields(&text(&r), "PV1")[3],
        "^cardiology-exam-room^^^^^^^cardiology-exam-room-12"
    );
    // The cut never splits an escape sequence: 6 × "\\F\\" = 18, one more would be 21.
    r.room = Some("||||||||".into());
    let pl = fields(&text(&r), "PV1")[3].clone();
    let comps: Vec<&str> = pl.split('^').collect();
    assert_eq!(comps[1], "\\F\\".repeat(6));
    assert_eq!(comps[8], "\\F\\".repeat(8));
    r.room = Some("x".repeat(20));
    assert_eq!(fields(&text(&r), "PV1")[3], format!("^{}", "x".repeat(20)));
}

#[test]
fn a_reading_released_after_a_hard_limit_is_preliminary_abnormal_and_noted() {
    let mut r = bp();
    r.values[0].value = Some("320".parse().expect("decimal"));
    r.values[2].value = None;
    r.values[2].absent = Some(AbsentReason::NotANumber);
    r.flags = vec![Flag::new("rejected:systolic 320 mm[Hg] > 300")];
    let m = text(&r);
    assert!(
        m.contains("\rNTE|1||failed a hard plausibility limit (systolic 320 mm[Hg] > 300); released from quarantine after review\rOBX|1|"),
        "{m:?}"
    );
    let rows: Vec<Vec<&str>> = m
        .split('\r')
        .filter(|l| l.starts_with("OBX"))
        .map(|l| l.split('|').collect())
        .collect();
    let got: Vec<(&str, &str)> = rows.iter().map(|f| (f[8], f[11])).collect();
    assert_eq!(got, [("A", "P"), ("", "P"), ("", "X")]);
}

#[test]
fn a_released_reading_whose_reason_names_two_values_flags_both() {
    let mut r = bp();
    r.values[0].value = Some("70".parse().expect("decimal"));
    r.flags = vec![Flag::new("rejected:systolic <= diastolic")];
    let m = text(&r);
    let got: Vec<(String, String)> = m
        .split('\r')
        .filter(|l| l.starts_with("OBX"))
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[8].to_string(), f[11].to_string())
        })
        .collect();
    let want = [("A", "P"), ("A", "P"), ("", "P")].map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(got, want);
    // A reason that names no value marks them all, except an absent one.
    r.flags = vec![Flag::new("rejected:implausible")];
    r.values[2].value = None;
    let m = text(&r);
    let abnormal: Vec<&str> = m
        .split('\r')
        .filter(|l| l.starts_with("OBX"))
        .map(|l| l.split('|').nth(8).unwrap_or(""))
        .collect();
    assert_eq!(abnormal, ["A", "A", ""]);
}

#[test]
fn normal_readings_stay_final() {
    let m = text(&bp());
    assert!(m
        .split('\r')
        .filter(|l| l.starts_with("OBX"))
        .all(|l| l.split('|').nth(11) == Some("F")));
    assert!(!m.contains("NTE"));
}

#[test]
fn a_url_patient_system_is_sent_as_a_uri_authority() {
    let mut r = bp();
    r.patient = Some(PatientRef {
        id: "42".into(),
        system: "https://clinic.example/mrn".into(),
    });
    assert_eq!(
        fields(&text(&r), "PID")[3],
        "42^^^&https://clinic.example/mrn&URI^MR"
    );
}

#[test]
fn out_of_range_values_are_flagged_abnormal_and_flags_become_notes() {
    let mut r = bp();
    r.flags = vec![Flag::clock_untrusted(), Flag::out_of_range("diastolic")];
    let m = text(&r);
    assert!(
        m.contains("\rNTE|1||clock_untrusted\rNTE|2||out_of_range:diastolic\rOBX|1|"),
        "{m:?}"
    );
    let rows: Vec<&str> = m.split('\r').filter(|l| l.starts_with("OBX")).collect();
    let abnormal: Vec<String> = rows
        .iter()
        .map(|l| l.split('|').nth(8).unwrap_or("").to_string())
        .collect();
    assert_eq!(abnormal, ["", "A", ""]);
}

#[test]
fn an_absent_value_is_an_x_row_with_a_note_saying_why() {
    let mut r = bp();
    r.values[2].value = None;
    r.values[2].absent = Some(AbsentReason::NotANumber);
    let m = text(&r);
    assert!(
        m.ends_with("|1.1.1.3||266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||X|||20240315102930+0100||||exam3-cuff\rNTE|1||data absent: not-a-number\r"),
        "{m:?}"
    );
}

#[test]
fn delimiters_in_every_data_field_are_escaped() {
    let mut r = bp();
    r.room = Some("a|b^c~d\\e&".into());
    r.device.id = DeviceId::new("dev|1");
    r.patient = Some(PatientRef {
        id: "M&R^N".into(),
        system: "urn:oid:1.2.3".into(),
    });
    let m = text(&r);
    assert_eq!(fields(&m, "PV1")[3], "^a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\");
    assert_eq!(fields(&m, "PID")[3], "M\\T\\R\\S\\N^^^&1.2.3&ISO^MR");
    assert_eq!(fields(&m, "PID")[5], "^^^^^^U");
    assert_eq!(fields(&m, "OBX")[18], "dev\\F\\1");
    assert_eq!(m.matches('\r').count(), 7, "no extra segments");
}

#[test]
fn the_encoder_is_deterministic_so_resends_are_byte_identical() {
    assert_eq!(oru_r01(&bp(), &header()), oru_r01(&bp(), &header()));
}

#[test]
fn vitalsd_reads_its_own_message_back_with_the_same_values_and_patient() {
    let oru = parse_oru(&oru_r01(&bp(), &header())).expect("our own message parses");
    assert_eq!(oru.control_id, ID);
    assert_eq!(oru.skipped, 0);
    let p = oru.patient.expect("patient");
    assert_eq!(
        (p.id.as_str(), p.system.as_str()),
        ("MRN0012345", "urn:oid:2.16.840.1.113883.3.999")
    );
    assert_eq!(oru.messages.len(), 1);
    let got: Vec<(String, Measured)> = oru.messages[0]
        .values
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    let want: Vec<(String, Measured)> = [("systolic", 120), ("diastolic", 80), ("mean", 93)]
        .iter()
        .map(|(n, v)| (n.to_string(), Measured::Value(Decimal::from_int(*v))))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn an_outbox_record_is_a_line_group_ending_with_an_empty_line() {
    let rec = outbox_record(&bp(), &header());
    assert!(rec.ends_with(std::str::from_utf8(RECORD_END).expect("ascii")));
    assert_eq!(rec.lines().count(), 8, "7 segments and the empty line");
    let first = rec.lines().next().expect("MSH line");
    assert_eq!(
        outbox_line_id(first.as_bytes()),
        Some(Some(ID.parse().expect("id")))
    );
    assert_eq!(outbox_line_id(b"OBX|1|NM\r\n"), None);
    assert_eq!(outbox_line_id(b"MSH|^~\\&|A|||||||x\r\n"), Some(None));
}
