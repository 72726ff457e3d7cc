//! Tests of the HL7 MLLP sink: ACK classification, order across an outage, limits.

use super::*;
use crate::net::hl7::{AckError, Severity};

fn ack(code: AckCode, text: Option<&str>, err: Option<(u16, &str)>) -> Ack {
    Ack {
        code,
        acked_control_id: "X".into(),
        control_id: "A1".into(),
        text: text.map(str::to_string),
        error: err.map(|(code, t)| AckError {
            location: String::new(),
            code,
            text: t.into(),
        }),
        severity: None,
    }
}

#[test]
fn application_and_commit_accepts_mean_delivered() {
    for c in [AckCode::AA, AckCode::CA] {
        assert_eq!(classify_ack(&ack(c, None, None), 0, 5), Outcome::Delivered);
    }
}

#[test]
fn an_application_error_is_rejected_with_its_coded_reason_only() {
    let mut a = ack(
        AckCode::AE,
        Some("bad PID"),
        Some((101, "Patient identifier missing")),
    );
    a.severity = Some(Severity::Error);
    assert_eq!(
        classify_ack(&a, 0, 5),
        Outcome::Rejected(
            "AE (application error): ERR 101 Required field missing, severity E".into()
        )
    );
    assert_eq!(
        classify_ack(&ack(AckCode::CE, None, None), 0, 5),
        Outcome::Rejected("CE (commit error): no error code given".into())
    );
}

#[test]
fn patient_data_in_msa_3_and_err_8_never_reaches_the_reason() {
    let text = "MRN0099999 DOE^JANE born 19800101";
    for code in [AckCode::AE, AckCode::AR, AckCode::CE, AckCode::CR] {
        for seen in [1, 5] {
            let a = ack(code, Some(text), Some((103, text)));
            let reason = match classify_ack(&a, seen, 5) {
                Outcome::Rejected(r) | Outcome::Retry(r) => r,
                o => panic!("{code:?}: {o:?}"),
            };
            for word in ["MRN0099999", "DOE", "JANE", "19800101"] {
                assert!(!reason.contains(word), "{code:?} {seen}: {reason}");
            }
            assert!(reason.contains("ERR 103 Table value not found"), "{reason}");
        }
    }
}

#[test]
fn a_code_outside_table_0357_gets_a_fixed_description() {
    let a = ack(AckCode::AE, None, Some((999, "Jane Doe not found")));
    assert_eq!(
        classify_ack(&a, 0, 5),
        Outcome::Rejected("AE (application error): ERR 999 (not an HL7 table 0357 code)".into())
    );
}

#[test]
fn an_application_reject_is_retried_until_the_cap() {
    let a = ack(AckCode::AR, Some("locked"), Some((206, "")));
    let why = "AR (application reject): ERR 206 Application record locked";
    assert_eq!(classify_ack(&a, 1, 3), Outcome::Retry(why.into()));
    assert_eq!(classify_ack(&a, 2, 3), Outcome::Retry(why.into()));
    assert_eq!(
        classify_ack(&a, 3, 3),
        Outcome::Rejected(format!("gave up after 3 AR: {why}"))
    );
}

#[test]
fn a_parsed_error_ack_keeps_code_and_severity_but_not_the_text() {
    let raw = b"MSH|^~\\&|EHR||VITALSD||20261127120000+0000||ACK^R01^ACK|E1|P|2.6\rMSA|AE|X|Jane Doe MRN42\rERR||PID^1^3|101^Required field missing^HL70357|W||||Jane Doe MRN42\r";
    let a = parse_ack(raw).expect("ack");
    assert_eq!(a.severity, Some(Severity::Warning));
    assert_eq!(
        ack_reason(&a),
        "AE (application error): ERR 101 Required field missing, severity W"
    );
}

#[test]
fn a_name_longer_than_hl7_allows_is_refused_at_build() {
    let ok = |f: &dyn Fn(&mut MllpSinkConfig)| {
        let mut cfg = config();
        f(&mut cfg);
        MllpSink::new(&cfg).map(|_| ())
    };
    assert!(ok(&|c| c.sending_application = "A".repeat(20)).is_ok());
    assert!(matches!(
        ok(&|c| c.sending_application = "A".repeat(21)),
        Err(MllpSinkError::NameTooLong("sending_application"))
    ));
    // Escaped: 6 × `\S\` = 18 characters, 7 would be 21.
    assert!(ok(&|c| c.receiving_facility = "^".repeat(6)).is_ok());
    assert!(matches!(
        ok(&|c| c.receiving_facility = "^".repeat(7)),
        Err(MllpSinkError::NameTooLong("receiving_facility"))
    ));
}

fn config() -> MllpSinkConfig {
    MllpSinkConfig {
        id: SinkId::new("engine"),
        address: "127.0.0.1:2575".into(),
        ack_timeout: Duration::from_secs(1),
        tls: false,
        ca_file: None,
        max_ar_retries: 5,
        sending_application: "VITALSD".into(),
        sending_facility: String::new(),
        receiving_application: String::new(),
        receiving_facility: String::new(),
        waveform: false,
    }
}

#[test]
fn a_bad_address_is_refused_at_build() {
    let cfg = MllpSinkConfig {
        id: SinkId::new("engine"),
        address: "no-port".into(),
        ack_timeout: Duration::from_secs(1),
        tls: false,
        ca_file: None,
        max_ar_retries: 5,
        sending_application: "VITALSD".into(),
        sending_facility: String::new(),
        receiving_application: String::new(),
        receiving_facility: String::new(),
        waveform: false,
    };
    assert!(matches!(
        MllpSink::new(&cfg),
        Err(MllpSinkError::BadAddress(a)) if a == "no-port"
    ));
}
