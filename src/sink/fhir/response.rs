//! What a FHIR server answers, read without I/O: the `transaction-response` Bundle, an
//! OperationOutcome's diagnostics, `Retry-After`, and the CapabilityStatement's `fhirVersion`.
//!
//! Receives response bodies (already bounded by the caller) and header values; emits typed
//! results. The parsing is lenient about what vitalsd does not need (unknown elements are
//! ignored) and strict about what decides delivery: a transaction-response must carry exactly
//! one entry per sent entry, each with a readable `response.status`.
//!
//! [`answer`] reads a whole answer to a transaction (status and body) into a
//! [`TransactionAnswer`]; the table of answers and what vitalsd does with each is in
//! docs/fhir.md.
//!
//! Diagnostics text comes from the server and may quote what we sent (a patient identifier in
//! a conditional reference): [`redact`] removes the batch's patient identifiers before the text
//! becomes a dead-letter reason, and [`bounded`] keeps it short.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// The most characters of server diagnostics kept in a reason.
pub const MAX_DIAGNOSTICS_CHARS: usize = 300;

/// The longest `Retry-After` honoured; a bigger value (or a date further away) is cut to this
/// so a misconfigured server cannot park the sink for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What replaces a patient identifier in server text.
pub const REDACTED: &str = "<patient>";

/// The server's answer for one entry of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryResponse {
    /// The HTTP status of `response.status` (`201 Created` → 201).
    pub status: u16,
    /// The entry's OperationOutcome diagnostics, if it had one.
    pub diagnostics: Option<String>,
}

/// Why a success response could not be read as a transaction-response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("response is not FHIR JSON: {0}")]
    NotJson(String),
    #[error("expected a transaction-response Bundle, got {0}")]
    NotTransactionResponse(String),
    #[error("the server answered {got} entries for {sent} sent")]
    EntryCount { sent: usize, got: usize },
    #[error("entry {index} has no readable response.status (`{status}`)")]
    BadStatus { index: usize, status: String },
}

// The texts of a transaction-response borrow from the body where they can (no escapes in
// them): a 50-entry answer is read without a string allocated per entry.
#[derive(Deserialize)]
struct RawBundle<'a> {
    #[serde(rename = "resourceType", default, borrow)]
    resource_type: Cow<'a, str>,
    #[serde(rename = "type", default, borrow)]
    type_: Cow<'a, str>,
    #[serde(default, borrow)]
    entry: Vec<RawEntry<'a>>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow)]
    response: Option<RawResponse<'a>>,
}

#[derive(Deserialize)]
struct RawResponse<'a> {
    #[serde(default, borrow)]
    status: Cow<'a, str>,
    outcome: Option<RawOutcome>,
}

#[derive(Deserialize)]
struct RawOutcome {
    #[serde(rename = "resourceType", default)]
    resource_type: String,
    #[serde(default)]
    issue: Vec<RawIssue>,
}

#[derive(Deserialize)]
struct RawIssue {
    severity: Option<String>,
    diagnostics: Option<String>,
    details: Option<RawConcept>,
    code: Option<String>,
}

#[derive(Deserialize)]
struct RawConcept {
    text: Option<String>,
}

/// What a server's answer to a `transaction` Bundle says about its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionAnswer {
    /// A 2xx to a transaction: every entry is committed (a transaction is atomic), whatever the
    /// body (empty with `Prefer: return=minimal`, not JSON, an OperationOutcome, a
    /// transaction-response whose entries cannot be matched to ours). `warnings` counts the
    /// warning and information issues of an OperationOutcome body (content never kept).
    Committed { warnings: usize },
    /// The server answered each entry (a transaction-response or a batch-response with one
    /// readable entry per sent entry, in order).
    PerEntry(Vec<EntryResponse>),
    /// The whole request failed (not 2xx), with the OperationOutcome's diagnostics if any.
    Failed {
        status: u16,
        diagnostics: Option<String>,
    },
    /// A 2xx whose body is a `batch-response` that cannot be matched to the sent entries:
    /// some entries may have failed and nobody can say which. Resending is safe (conditional
    /// create).
    Unknown(ResponseError),
}

/// Reads the answer (`status`, bounded `body`) to a transaction of `sent` entries.
pub fn answer(status: u16, body: &[u8], sent: usize) -> TransactionAnswer {
    if !(200..300).contains(&status) {
        return TransactionAnswer::Failed {
            status,
            diagnostics: operation_outcome(body),
        };
    }
    // One parse of the body serves both questions (was it a batch-response; its entries).
    let parsed = serde_json::from_slice::<RawBundle<'_>>(body);
    let is_batch = parsed
        .as_ref()
        .is_ok_and(|b| b.resource_type == "Bundle" && b.type_ == "batch-response");
    let entries = parsed
        .map_err(|e| ResponseError::NotJson(e.to_string()))
        .and_then(|b| entries(b, sent));
    match entries {
        Ok(entries) => TransactionAnswer::PerEntry(entries),
        Err(e) if is_batch => TransactionAnswer::Unknown(e),
        Err(_) => TransactionAnswer::Committed {
            warnings: outcome_warnings(body),
        },
    }
}

/// How many warning or information issues an OperationOutcome body holds (0 for any other
/// body).
pub fn outcome_warnings(body: &[u8]) -> usize {
    serde_json::from_slice::<RawOutcome>(body)
        .ok()
        .filter(|o| o.resource_type == "OperationOutcome")
        .map_or(0, |o| {
            o.issue
                .iter()
                .filter(|i| matches!(i.severity.as_deref(), Some("warning" | "information")))
                .count()
        })
}

/// Reads a `transaction-response` (or `batch-response`) Bundle answering `sent` entries.
pub fn transaction_response(body: &[u8], sent: usize) -> Result<Vec<EntryResponse>, ResponseError> {
    let b: RawBundle<'_> =
        serde_json::from_slice(body).map_err(|e| ResponseError::NotJson(e.to_string()))?;
    entries(b, sent)
}

/// The entries of a parsed answer (see [`transaction_response`]).
fn entries(b: RawBundle<'_>, sent: usize) -> Result<Vec<EntryResponse>, ResponseError> {
    if b.resource_type != "Bundle"
        || !matches!(&*b.type_, "transaction-response" | "batch-response")
    {
        return Err(ResponseError::NotTransactionResponse(format!(
            "{} of type `{}`",
            if b.resource_type.is_empty() {
                "no resourceType"
            } else {
                &b.resource_type
            },
            b.type_
        )));
    }
    if b.entry.len() != sent {
        return Err(ResponseError::EntryCount {
            sent,
            got: b.entry.len(),
        });
    }
    b.entry
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let r = e.response.ok_or_else(|| ResponseError::BadStatus {
                index,
                status: String::new(),
            })?;
            let status = status_code(&r.status).ok_or_else(|| ResponseError::BadStatus {
                index,
                status: bounded(&r.status, 40),
            })?;
            Ok(EntryResponse {
                status,
                diagnostics: r.outcome.and_then(outcome_text),
            })
        })
        .collect()
}

/// The code of a FHIR `response.status` (`"201 Created"`, `"200"`) when it is a valid HTTP
/// status (100..=599).
pub fn status_code(status: &str) -> Option<u16> {
    let code = status.split_whitespace().next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse::<u16>().ok().filter(|c| (100..=599).contains(c))
}

/// The diagnostics of an OperationOutcome body (issues joined with `; `), if it is one.
pub fn operation_outcome(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<RawOutcome>(body)
        .ok()
        .and_then(outcome_text)
}

fn outcome_text(o: RawOutcome) -> Option<String> {
    if o.resource_type != "OperationOutcome" {
        return None;
    }
    let parts: Vec<String> = o
        .issue
        .into_iter()
        .filter_map(|i| {
            i.diagnostics
                .or_else(|| i.details.and_then(|d| d.text))
                .or(i.code)
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `text` with every non-empty `secret` replaced by [`REDACTED`] (longest first, so an id that
/// contains another is removed whole).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut s: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    s.dedup();
    s.into_iter().fold(text.to_string(), |acc, secret| {
        acc.replace(secret, REDACTED)
    })
}

// Server text cut to a length, control characters removed: the net layer's, shared with
// the OAuth client and the patient lookup.
pub use crate::net::http::bounded;

/// How long a `Retry-After` header asks to wait: delay-seconds or an HTTP-date (RFC 9110
/// §10.2.3), relative to `now`; a date in the past is zero. `None` when unreadable.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let wait = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to fit is still "a long time".
        Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The `fhirVersion` of a CapabilityStatement body.
pub fn fhir_version(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Cap {
        #[serde(rename = "resourceType", default)]
        resource_type: String,
        #[serde(rename = "fhirVersion")]
        fhir_version: Option<String>,
    }
    let c: Cap = serde_json::from_slice(body).ok()?;
    (c.resource_type == "CapabilityStatement")
        .then_some(c.fhir_version)
        .flatten()
        .map(|v| bounded(&v, 20))
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
