//! HL7 v2 on the wire, shared by the MLLP source and the MLLP sink: MLLP framing ([`mllp`])
//! and ACK building and reading ([`ack`]). Parsing an ORU^R01 into readings stays a decoder
//! (`crate::decode::hl7v2`).

pub mod ack;
pub mod mllp;

pub use ack::{
    ack, ack_message, error_code_text, parse_ack, Ack, AckCode, AckError, AckHeader, Severity,
};
pub use mllp::{mllp_frame, Frame, MllpFramer, CR, EB, MAX_MESSAGE, SB};
