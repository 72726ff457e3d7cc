use std::time::{Duration, SystemTime};

use super::*;

const OK_TWO: &str = r#"{"resourceType":"Bundle","type":"transaction-response","entry":[
  {"response":{"status":"201 Created","location":"Observation/201/_history/1"}},
  {"response":{"status":"200 OK","location":"Observation/7/_history/1"}}]}"#;

#[test]
fn a_transaction_response_gives_one_status_per_entry_in_order() {
    let r = transaction_response(OK_TWO.as_bytes(), 2).unwrap();
    assert_eq!(
        r,
        vec![
            EntryResponse {
                status: 201,
                diagnostics: None
            },
            EntryResponse {
                status: 200,
                diagnostics: None
            }
        ]
    );
}

#[test]
fn a_response_with_fewer_entries_than_sent_is_an_error() {
    assert_eq!(
        transaction_response(OK_TWO.as_bytes(), 3),
        Err(ResponseError::EntryCount { sent: 3, got: 2 })
    );
}

#[test]
fn a_body_that_is_not_a_transaction_response_is_an_error() {
    let oo = br#"{"resourceType":"OperationOutcome","issue":[]}"#;
    assert!(matches!(
        transaction_response(oo, 1),
        Err(ResponseError::NotTransactionResponse(_))
    ));
    let tx = br#"{"resourceType":"Bundle","type":"transaction","entry":[]}"#;
    assert!(matches!(
        transaction_response(tx, 0),
        Err(ResponseError::NotTransactionResponse(_))
    ));
    assert!(matches!(
        transaction_response(b"<html>", 1),
        Err(ResponseError::NotJson(_))
    ));
}

#[test]
fn an_entry_without_a_readable_status_is_an_error() {
    let b = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"Created"}}]}"#;
    assert_eq!(
        transaction_response(b, 1),
        Err(ResponseError::BadStatus {
            index: 0,
            status: "Created".into()
        })
    );
    let b = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[{}]}"#;
    assert!(matches!(
        transaction_response(b, 1),
        Err(ResponseError::BadStatus { index: 0, .. })
    ));
}

#[test]
fn a_batch_response_entry_carries_its_operation_outcome() {
    let b = br#"{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"412 Precondition Failed",
      "outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"duplicate","diagnostics":"Multiple matches"}]}}}]}"#;
    assert_eq!(
        transaction_response(b, 1).unwrap(),
        vec![EntryResponse {
            status: 412,
            diagnostics: Some("Multiple matches".into())
        }]
    );
}

#[test]
fn status_codes_are_read_from_the_first_word() {
    assert_eq!(status_code("201 Created"), Some(201));
    assert_eq!(status_code("200"), Some(200));
    assert_eq!(status_code(" 412 Precondition Failed"), Some(412));
    assert_eq!(status_code("2010 Created"), None);
    assert_eq!(status_code("099"), None);
    assert_eq!(status_code(""), None);
}

#[test]
fn operation_outcome_diagnostics_join_every_issue() {
    let b = br#"{"resourceType":"OperationOutcome","issue":[
      {"severity":"error","code":"invalid","diagnostics":"Unknown code 9999-9"},
      {"severity":"error","code":"invalid","details":{"text":"bad unit"}},
      {"severity":"error","code":"processing"}]}"#;
    assert_eq!(
        operation_outcome(b).as_deref(),
        Some("Unknown code 9999-9; bad unit; processing")
    );
    assert_eq!(operation_outcome(br#"{"resourceType":"Bundle"}"#), None);
    assert_eq!(operation_outcome(b"not json"), None);
}

#[test]
fn redaction_removes_every_patient_identifier_longest_first() {
    let text = "No Patient matches identifier=urn:oid:1.2|MRN12 (MRN1 is close)";
    assert_eq!(
        redact(text, &["MRN1", "MRN12", ""]),
        "No Patient matches identifier=urn:oid:1.2|<patient> (<patient> is close)"
    );
}

#[test]
fn bounded_text_is_cut_with_an_ellipsis_and_loses_control_characters() {
    assert_eq!(bounded("a\nb", 10), "a b");
    assert_eq!(bounded("abcdef", 4), "abc…");
    assert_eq!(bounded("abcd", 4), "abcd");
}

#[test]
fn retry_after_reads_seconds() {
    let now = SystemTime::UNIX_EPOCH;
    assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        retry_after("99999999999999999999999", now),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(retry_after("-5", now), None);
    assert_eq!(retry_after("soon", now), None);
    assert_eq!(retry_after("", now), None);
}

#[test]
fn retry_after_reads_an_http_date_relative_to_now() {
    // Sun, 06 Nov 1994 08:49:37 GMT = 784111777.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 - 30);
    assert_eq!(
        retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(Duration::from_secs(30))
    );
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 + 30);
    assert_eq!(
        retry_after("Sun, 06 Nov 1994 08:49:37 GMT", later),
        Some(Duration::ZERO)
    );
    let long_before = SystemTime::UNIX_EPOCH;
    assert_eq!(
        retry_after("Sun, 06 Nov 1994 08:49:37 GMT", long_before),
        Some(MAX_RETRY_AFTER)
    );
}

#[test]
fn the_fhir_version_comes_from_a_capability_statement_only() {
    let cap = br#"{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","status":"active"}"#;
    assert_eq!(fhir_version(cap).as_deref(), Some("4.0.1"));
    assert_eq!(
        fhir_version(br#"{"resourceType":"Bundle","fhirVersion":"4.0.1"}"#),
        None
    );
    assert_eq!(fhir_version(b"{}"), None);
}
