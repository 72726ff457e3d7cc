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
fn escaped_texts_in_a_transaction_response_read_like_plain_ones() {
    // Texts are borrowed from the body where they can be; an escape makes an owned copy.
    let body = r#"{"resourceType":"Bundl\u0065","type":"transaction\u002dresponse","entry":[
      {"response":{"status":"201\u0020Created"}},{"response":{"status":"200 OK"}}]}"#;
    let r = transaction_response(body.as_bytes(), 2).unwrap();
    assert_eq!(
        r.iter().map(|e| e.status).collect::<Vec<_>>(),
        vec![201, 200]
    );
    assert_eq!(
        answer(200, body.as_bytes(), 2),
        TransactionAnswer::PerEntry(r)
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

// ------------------------------------------------- every answer a server gives to a transaction

use crate::sink::outcome::{classify_fhir, Outcome};

/// The outcome of each of `sent` entries for an answer, as the sink decides it (a failed
/// transaction of one entry; `None` for "nothing known, resend").
fn outcomes(status: u16, body: &[u8], sent: usize) -> Option<Vec<Outcome>> {
    match answer(status, body, sent) {
        TransactionAnswer::Committed { .. } => Some(vec![Outcome::Delivered; sent]),
        TransactionAnswer::PerEntry(e) => Some(
            e.iter()
                .map(|e| classify_fhir(e.status, e.diagnostics.as_deref().unwrap_or("")))
                .collect(),
        ),
        TransactionAnswer::Failed {
            status,
            diagnostics,
        } => Some(vec![
            classify_fhir(
                status,
                diagnostics.as_deref().unwrap_or("")
            );
            sent
        ]),
        TransactionAnswer::Unknown(_) => None,
    }
}

#[test]
fn a_2xx_without_a_body_commits_every_entry() {
    for status in [200, 201, 202, 204] {
        assert_eq!(
            answer(status, b"", 3),
            TransactionAnswer::Committed { warnings: 0 },
            "{status}"
        );
        assert_eq!(outcomes(status, b"", 3), Some(vec![Outcome::Delivered; 3]));
    }
}

#[test]
fn a_2xx_whose_body_is_not_json_commits_every_entry() {
    for body in [
        &b"<html>OK</html>"[..],
        b"OK",
        b"{\"resourceType\":\"Patient\"}",
    ] {
        assert_eq!(
            answer(200, body, 2),
            TransactionAnswer::Committed { warnings: 0 }
        );
    }
}

#[test]
fn a_transaction_response_with_entries_is_read_per_entry() {
    assert_eq!(
        outcomes(200, OK_TWO.as_bytes(), 2),
        Some(vec![Outcome::Delivered, Outcome::Delivered])
    );
    // A transaction-response that does not match what was sent: still atomic, committed.
    assert_eq!(
        answer(200, OK_TWO.as_bytes(), 3),
        TransactionAnswer::Committed { warnings: 0 }
    );
}

#[test]
fn a_batch_response_with_mixed_statuses_decides_each_entry() {
    let b = br#"{"resourceType":"Bundle","type":"batch-response","entry":[
      {"response":{"status":"201 Created"}},
      {"response":{"status":"200 OK"}},
      {"response":{"status":"400 Bad Request","outcome":{"resourceType":"OperationOutcome",
        "issue":[{"severity":"error","code":"invalid","diagnostics":"bad code"}]}}},
      {"response":{"status":"503"}},
      {"response":{"status":"412 Precondition Failed"}},
      {"response":{"status":"429"}}]}"#;
    let o = outcomes(200, b, 6).expect("per entry");
    assert_eq!(o[0], Outcome::Delivered);
    assert_eq!(o[1], Outcome::Delivered);
    assert_eq!(o[2], Outcome::Rejected("HTTP 400: bad code".into()));
    assert!(o[3].is_retry());
    assert!(matches!(&o[4], Outcome::Rejected(r) if r.contains("duplicates exist")));
    assert!(o[5].is_retry());
}

#[test]
fn a_batch_response_that_does_not_match_the_sent_entries_is_resent() {
    let b = br#"{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"201"}}]}"#;
    assert!(matches!(
        answer(200, b, 2),
        TransactionAnswer::Unknown(ResponseError::EntryCount { sent: 2, got: 1 })
    ));
    assert_eq!(outcomes(200, b, 2), None);
}

#[test]
fn a_412_on_a_conditional_create_that_matched_several_is_rejected_not_retried() {
    let oo = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"duplicate","diagnostics":"Multiple resources found matching identifier"}]}"#;
    let o = outcomes(412, oo, 1).unwrap();
    assert_eq!(
        o,
        vec![Outcome::Rejected(
            "HTTP 412: duplicates exist on the server (Multiple resources found matching identifier)"
                .into()
        )]
    );
}

#[test]
fn warnings_on_a_2xx_are_counted_and_the_transaction_is_committed() {
    let oo = br#"{"resourceType":"OperationOutcome","issue":[
      {"severity":"warning","code":"informational","diagnostics":"MRN123 looks odd"},
      {"severity":"information","code":"informational"}]}"#;
    assert_eq!(
        answer(200, oo, 4),
        TransactionAnswer::Committed { warnings: 2 }
    );
    assert_eq!(outcome_warnings(b"{}"), 0);
}

#[test]
fn a_4xx_with_an_operation_outcome_rejects_with_its_diagnostics() {
    let oo = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Observation.status: missing"}]}"#;
    assert_eq!(
        answer(422, oo, 1),
        TransactionAnswer::Failed {
            status: 422,
            diagnostics: Some("Observation.status: missing".into())
        }
    );
    assert_eq!(
        outcomes(400, oo, 1),
        Some(vec![Outcome::Rejected(
            "HTTP 400: Observation.status: missing".into()
        )])
    );
}

#[test]
fn timeouts_throttling_and_server_errors_are_retried() {
    for status in [408, 429, 500, 502, 503, 504] {
        let o = outcomes(status, b"", 2).unwrap();
        assert!(o.iter().all(Outcome::is_retry), "{status}: {o:?}");
    }
}
