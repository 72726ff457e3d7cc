//! What the MLLP source answers: the ACK code and ERR content for an ingest outcome, the ACK
//! refusing a message that did not parse, and the control id read from such a message.
//!
//! Receives an ingest result or a message's bytes; promises `AA` only for a durable outcome
//! that kept every reading, and ERR texts that never quote the message.

use time::OffsetDateTime;

use crate::ingest::{IngestError, IngestOutcome};
use crate::net::hl7::{ack_message, AckCode, AckError, AckHeader, Delimiters, Hl7Error};

/// Table 0357 "application internal error": the code of every refusal that is ours.
const INTERNAL_ERROR: u16 = 207;

/// The ACK code and ERR content for what the ingest did with a parsed message.
pub fn answer(result: &Result<IngestOutcome, IngestError>) -> (AckCode, Option<AckError>) {
    let err = |text: String| {
        Some(AckError {
            location: String::new(),
            code: INTERNAL_ERROR,
            text,
        })
    };
    match result {
        Err(IngestError::Full { .. }) => (AckCode::AR, err("queue full; resend later".into())),
        Err(IngestError::Store(_)) => (AckCode::AR, err("store failed; resend later".into())),
        Ok(r) => {
            let (kept, decoded) = (r.kept(), r.decoded);
            if decoded > kept {
                let lost = decoded - kept;
                (
                    AckCode::AE,
                    err(format!(
                        "{lost} of {decoded} readings could not be normalised"
                    )),
                )
            } else {
                (AckCode::AA, None)
            }
        }
    }
}

/// The ACK refusing a message that did not parse.
pub(super) fn refusal(message: &[u8], e: &Hl7Error, now: OffsetDateTime) -> Vec<u8> {
    let header = AckHeader {
        sending_application: "VITALSD".into(),
        sending_facility: String::new(),
        receiving_application: String::new(),
        receiving_facility: String::new(),
        time: now,
        control_id: new_ack_id(),
        processing_id: "P".into(),
        version: "2.6".into(),
    };
    ack_message(
        &header,
        &control_id_hint(message),
        e.ack_code(),
        Some(&e.ack_error()),
    )
}

/// MSH-10 of a message that may not parse: the 10th field of a first segment starting with
/// `MSH` and its field separator, unescaped with the standard delimiters, at most 199
/// characters; empty when there is none.
pub fn control_id_hint(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let text = text.trim_start();
    let mut chars = text.chars();
    if chars.by_ref().take(3).collect::<String>() != "MSH" {
        return String::new();
    }
    let Some(sep) = chars.next() else {
        return String::new();
    };
    if sep.is_alphanumeric() || sep.is_whitespace() {
        return String::new();
    }
    let first = text.split(['\r', '\n']).next().unwrap_or("");
    let raw = first.split(sep).nth(9).unwrap_or("");
    let id = Delimiters::STANDARD.unescape(raw);
    id.trim().chars().take(199).collect()
}

/// A new MSH-10 for an ACK we send.
pub(super) fn new_ack_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
