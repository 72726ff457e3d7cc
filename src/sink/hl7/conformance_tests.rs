//! Awkward readings through the encoder, every message checked by `tests/hl7/validate.py`
//! (hl7apy at its strict level plus vitalsd's own OBX, MSH-10 and escaping rules), and the
//! validator itself shown to fail on what it must refuse. Needs `python3` with `hl7apy`
//! (installed by `scripts/test`); without them these tests fail.

use std::io::Write;
use std::process::{Command, Stdio};

use time::macros::datetime;

use super::*;
use crate::model::fixtures;
use crate::reading::{AbsentReason, DeviceId, Flag, Kind, Lead, PatientRef, Waveform};

/// Runs the validator on `input` with `args`; (exit success, output).
fn validate(input: &[u8], args: &[&str]) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hl7/validate.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/test installs what the tests need)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to validate.py");
    let out = child.wait_with_output().expect("validate.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        out.status.code(),
        Some(2),
        "hl7apy is missing: run scripts/test\n{text}"
    );
    (out.status.success(), text)
}

#[track_caller]
fn assert_valid(input: &[u8], args: &[&str]) {
    let (ok, text) = validate(input, args);
    assert!(ok, "validate.py refused:\n{text}");
}

fn bp() -> Reading {
    fixtures::blood_pressure("120", "80", "93")
        .patient("MRN0012345", "urn:oid:2.16.840.1.113883.3.999")
        .observed(datetime!(2026-11-27 10:29:30 +01:00))
        .received(datetime!(2026-11-27 10:30:05 +01:00))
        .build()
}

fn ecg() -> Reading {
    let mut r = bp();
    r.kind = Kind::Ecg;
    r.device.id = DeviceId::new("exam3-ecg");
    r.values = vec![fixtures::value(
        "147240",
        147_240,
        "rr_interval",
        "833",
        "ms",
    )];
    let lead = |mdc: u32, name: &str, scale_uv: f64| Lead {
        mdc,
        name: name.into(),
        scale_uv,
        samples: (-50..50).map(|i| i * 7).collect(),
    };
    r.waveform = Some(Waveform {
        fs_hz: 250.0,
        t0: r.observed_at,
        leads: vec![lead(131_329, "lead_i", 0.5), lead(131_330, "lead_ii", 2.86)],
        r_peaks: vec![10, 60],
        rr_ms: vec![833],
    });
    r
}

fn header(waveform: bool) -> Header {
    Header {
        sending_application: "VITALSD".into(),
        sending_facility: "CLINIC|A^B".into(),
        receiving_application: "EHR&1".into(),
        receiving_facility: "CLINIC~A".into(),
        processing_id: "P".into(),
        waveform,
    }
}

/// The awkward readings, each with the field checks that prove its escaping.
fn awkward() -> Vec<(&'static str, Reading, Header, Vec<String>)> {
    let mut out = Vec::new();
    out.push(("plain", bp(), header(false), vec![]));

    let mut r = bp();
    r.patient = None;
    out.push((
        "location mode",
        r.clone(),
        header(false),
        vec![
            format!("PID-3.1={NO_PATIENT_ID}"),
            format!("PID-3.4={NO_PATIENT_AUTHORITY}"),
            "PID-3.5=U".into(),
            "PID-5.7=U".into(),
            "PV1-3.2=exam-3".into(),
        ],
    ));
    r.room = None;
    r.id = Some(crate::reading::ReadingId::new());
    out.push(("no patient, no room", r, header(false), vec![]));

    let mut r = bp();
    r.patient = None;
    r.room = Some(r"exam|3^a~b\c&d, cardiology wing".into());
    out.push((
        "long room with delimiters",
        r,
        header(false),
        vec![
            r"PV1-3.2=exam|3^a~b\c".into(),
            r"PV1-3.9=exam|3^a~b\c&d, cardiology wing".into(),
        ],
    ));

    let mut r = bp();
    r.patient = Some(PatientRef {
        id: r"M&R^N|1~x\y".into(),
        system: "https://clinic.example/mrn?a=1&b=2".into(),
    });
    r.device.id = DeviceId::new(r"cuff|1^a&b");
    out.push((
        "delimiters in patient, system and device",
        r,
        header(false),
        vec![
            r"PID-3.1=M&R^N|1~x\y".into(),
            r"OBX-18=cuff|1^a&b".into(),
            "MSH-4=CLINIC|A^B".into(),
            "MSH-5=EHR&1".into(),
            "MSH-6=CLINIC~A".into(),
        ],
    ));

    let mut r = bp();
    for v in &mut r.values {
        v.value = None;
        v.absent = Some(AbsentReason::NotANumber);
    }
    r.values[1].absent = None;
    r.flags = vec![
        Flag::clock_untrusted(),
        Flag::device("artifact"),
        Flag::new(r"device:lead|off^x~y\z&w"),
    ];
    out.push((
        "absent values and flags",
        r,
        header(false),
        vec![r"NTE-3=clock_untrusted".into()],
    ));

    let mut r = bp();
    r.values[1].value = Some("45".parse().expect("decimal"));
    r.flags = vec![Flag::out_of_range("diastolic")];
    out.push(("out of range", r, header(false), vec![]));

    let mut r = bp();
    r.values[0].value = Some("320".parse().expect("decimal"));
    r.flags = vec![Flag::new("rejected:systolic 320 mm[Hg] > 300")];
    out.push((
        "released after review",
        r,
        header(false),
        vec!["OBX-11=P".into(), "OBX-8=A".into()],
    ));

    let mut r = bp();
    r.kind = Kind::BodyTemperature;
    let mut t = fixtures::value("8310-5", 150_364, "temperature", "37.0", "Cel");
    t.site = Some("oral".into());
    r.values = vec![t];
    out.push(("temperature", r, header(false), vec!["OBX-5=37.0".into()]));

    out.push(("ECG strip off", ecg(), header(false), vec![]));
    out.push(("ECG strip on", ecg(), header(true), vec!["OBX-2=NM".into()]));
    let mut r = ecg();
    r.flags = vec![Flag::new("rejected:implausible")];
    out.push(("ECG strip released", r, header(true), vec![]));
    out
}

#[test]
fn every_awkward_reading_passes_strict_validation_with_its_fields_intact() {
    let mut all = Vec::new();
    for (what, r, h, expects) in awkward() {
        let msg = oru_r01(&r, &h);
        let args: Vec<String> = expects.iter().map(|e| format!("--expect={e}")).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, text) = validate(&msg, &args);
        assert!(
            ok,
            "{what}: {}\n{text}",
            String::from_utf8_lossy(&msg).replace('\r', "\n")
        );
        all.extend(msg);
    }
    // Together: every MSH-10 differs.
    let n = awkward().len().to_string();
    assert_valid(&all, &["--min", &n]);
}

#[test]
fn the_waveform_rows_are_na_with_numbers_and_released_strips_are_preliminary() {
    let m = String::from_utf8(oru_r01(&ecg(), &header(true))).expect("utf-8");
    let na: Vec<&str> = m.split('\r').filter(|l| l.starts_with("OBX|2|")).collect();
    assert!(na[0].starts_with("OBX|2|NA|131329^"), "{m:?}");
    let mut r = ecg();
    r.flags = vec![Flag::new("rejected:implausible")];
    let m = String::from_utf8(oru_r01(&r, &header(true))).expect("utf-8");
    let statuses: Vec<&str> = m
        .split('\r')
        .filter(|l| l.starts_with("OBX"))
        .map(|l| l.split('|').nth(11).unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["P"; 5], "{m:?}");
}

#[test]
fn outbox_records_validate_as_one_message_each() {
    let text: String = awkward()
        .iter()
        .map(|(_, r, h, _)| outbox_record(r, h))
        .collect();
    let n = awkward().len().to_string();
    assert_valid(text.as_bytes(), &["--min", &n]);
}

// ---- the validator refuses what it must (so the checks above can fail)

fn plain() -> String {
    String::from_utf8(oru_r01(&bp(), &header(false))).expect("utf-8")
}

#[track_caller]
fn assert_refused(msg: &str, args: &[&str], why: &str) {
    let (ok, text) = validate(msg.as_bytes(), args);
    assert!(!ok, "validate.py accepted {msg:?}:\n{text}");
    assert!(text.contains(why), "expected `{why}` in:\n{text}");
}

#[test]
fn the_validator_refuses_a_message_without_pid_5_or_pid_3() {
    let m = plain().replace("||^^^^^^U\r", "\r");
    assert_refused(&m, &[], "PID.PID_5");
    let m = plain().replace(
        "PID|||MRN0012345^^^&2.16.840.1.113883.3.999&ISO^MR",
        "PID|||",
    );
    assert_refused(&m, &[], "PID.PID_3");
}

#[test]
fn the_validator_refuses_a_repeated_control_id_and_a_wrong_value_type() {
    let m = plain();
    assert_refused(&format!("{m}{m}"), &[], "repeats an earlier message");
    assert_refused(
        &m.replace("|1.1.1.1|120|", "|1.1.1.1|12O|"),
        &[],
        "not a number",
    );
    assert_refused(
        &m.replace("|1.1.1.1|120|", "|1.1.1.1|1^2|"),
        &[],
        "not a number",
    );
    assert_refused(&m.replace("|1.1.1.1|120|", "|1.1.1.1||"), &[], "expected X");
}

#[test]
fn the_validator_refuses_bad_escapes_status_and_preliminary_rows_without_a_note() {
    let m = plain();
    assert_refused(&m.replace("^exam-3", r"^exam\3"), &[], "starts no escape");
    assert_refused(
        &m.replace("|||||F|||", "|||||Q|||"),
        &[],
        "not in HL7 table 0085",
    );
    assert_refused(
        &m.replace("|||||F|||", "||A|||P|||"),
        &[],
        "'released after review' note",
    );
    assert_refused(&m, &["--expect=PV1-3.2=exam-4"], "expected 'exam-4'");
    assert_refused("", &[], "expected at least 1 messages");
}
