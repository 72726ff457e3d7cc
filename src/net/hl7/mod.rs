//! HL7 v2 on the wire, shared by the MLLP source, the MLLP sink and the `hl7v2` decoder: MLLP
//! framing ([`mllp`]), the ER7 reader and writer's escapes and times ([`er7`]), why a message
//! was not accepted ([`Hl7Error`]) and ACK building and reading ([`ack`]). Turning an ORU^R01
//! into device messages stays a decoder (`crate::decode::hl7v2`), which imports this layer;
//! this layer names no decoder.

pub mod ack;
pub mod er7;
mod error;
pub mod mllp;

pub use ack::{
    ack, ack_message, error_code_text, parse_ack, Ack, AckCode, AckError, AckHeader, MshFields,
    Severity,
};
pub use er7::{dtm, format_dtm, Delimiters, MAX_SEGMENTS};
pub use error::Hl7Error;
pub use mllp::{mllp_frame, Frame, MllpFramer, CR, EB, MAX_MESSAGE, SB};
