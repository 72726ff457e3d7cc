//! Why an HL7 v2 message was not accepted, and what vitalsd answers for it
//! (docs/hl7-inbound.md#what-vitalsd-answers).
//!
//! Receives the failures of reading ER7 (the ORU^R01 decoder's, the ACK reader's); promises
//! reasons that never contain patient data or values (fields are named by position, values
//! are cut short when quoted at all: message types and versions) and, for each, the ACK code
//! and the table 0357 ERR content to answer with.

use super::ack::{AckCode, AckError};

/// Why a message was not accepted. Reasons never contain patient data or values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hl7Error {
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    #[error("message has more than {0} segments")]
    TooManySegments(usize),
    #[error("the message does not start with an MSH segment")]
    NoMsh,
    #[error("MSH-1/MSH-2 encoding characters: {0}")]
    BadEncoding(String),
    #[error("{0} is missing")]
    MissingField(&'static str),
    #[error("unsupported message type `{0}`; expected ORU^R01")]
    UnsupportedType(String),
    #[error("unsupported HL7 version `{0}`; expected 2.x")]
    UnsupportedVersion(String),
    #[error("not an HL7 ACK: {0}")]
    NotAck(String),
    #[error("{field}: {reason}")]
    BadField { field: String, reason: String },
}

impl Hl7Error {
    /// The acknowledgement code to answer with (docs/hl7-inbound.md#what-vitalsd-answers): AR for type/version, AE for content.
    pub fn ack_code(&self) -> AckCode {
        match self {
            Hl7Error::UnsupportedType(_) | Hl7Error::UnsupportedVersion(_) => AckCode::AR,
            _ => AckCode::AE,
        }
    }

    /// The ERR segment content (table 0357 code, location, text) for the answering ACK.
    pub fn ack_error(&self) -> AckError {
        let (location, code) = match self {
            Hl7Error::UnsupportedType(_) => ("MSH^1^9", 200),
            Hl7Error::UnsupportedVersion(_) => ("MSH^1^12", 203),
            Hl7Error::MissingField(f) => (*f, 101),
            Hl7Error::BadField { .. } => ("", 102),
            Hl7Error::NoMsh | Hl7Error::TooManySegments(_) => ("", 100),
            Hl7Error::TooLarge(_) | Hl7Error::BadEncoding(_) | Hl7Error::NotAck(_) => ("", 207),
        };
        AckError {
            location: location.replacen('-', "^1^", 1),
            code,
            text: self.to_string(),
        }
    }

    /// A field that could not be read, and why (never its value).
    pub(crate) fn bad(field: String, reason: impl Into<String>) -> Self {
        Hl7Error::BadField {
            field,
            reason: reason.into(),
        }
    }
}
