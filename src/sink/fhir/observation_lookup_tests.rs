//! Observations of readings whose patient a lookup confirmed: the Patient referenced by its
//! logical id, the identifier kept.

use super::super::test_support::bp;
use crate::reading::{Flag, PatientRecord};

fn json(r: &crate::reading::Reading) -> serde_json::Value {
    serde_json::to_value(super::observation(r)).unwrap()
}

#[test]
fn a_looked_up_patient_is_referenced_by_its_logical_id_and_keeps_its_identifier() {
    let mut r = bp();
    r.patient_record = Some(PatientRecord {
        id: "pat-17".into(),
        family: Some("Doe".into()),
        given: vec!["Jane".into()],
        birth_date: Some("1970-01-02".into()),
    });
    let o = json(&r);
    assert_eq!(
        o["subject"],
        serde_json::json!({"reference": "Patient/pat-17", "type": "Patient", "identifier":
            {"system": "urn:oid:2.16.840.1.113883.3.9999", "value": "MRN123456"}})
    );
    let text = o.to_string();
    assert!(
        !text.contains("Doe") && !text.contains("1970"),
        "no name or birth date: {text}"
    );
}

#[test]
fn an_unverified_patient_says_so_in_the_note() {
    let mut r = bp();
    r.flags.push(Flag::new("patient_unverified"));
    let o = json(&r);
    assert_eq!(o["subject"]["reference"], serde_json::Value::Null);
    let note = o["note"][0]["text"].as_str().unwrap();
    assert!(note.contains("identifier only: the record system could not be asked to confirm it [patient_unverified]"), "{note}");
}
