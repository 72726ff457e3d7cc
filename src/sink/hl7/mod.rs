//! HL7 v2: readings as ORU^R01 messages (`docs/hl7.md`), for the MLLP sink
//! ([`crate::sink::mllp`]) and the `hl7` file outbox format ([`crate::sink::file`]).
//!
//! Receives canonical [`Reading`]s and the sender's identity ([`Header`]); emits ER7 text.
//! The encoder is pure: the same reading and header always give the same bytes (MSH-7 comes
//! from the reading, MSH-10 is the reading id), which is what makes resends idempotent.
//!
//! # The `hl7` outbox record
//! In a `YYYY-MM-DD.hl7` file each message is one *line group*: its segments, each ending CR LF
//! (CR as on the wire, LF so line tools and editors show one segment per line), then an empty
//! line (CR LF). A group is complete only when that empty line is there, so a torn group is
//! recognised at open and cut off. HL7 readers accept CR, LF and CR LF (`docs/hl7.md`).

mod encode;
pub mod waveform;

pub use encode::{oru_r01, NO_PATIENT_AUTHORITY, NO_PATIENT_ID, PROFILE, SERVICE, UNKNOWN_NAME};

use crate::config::MllpSinkConfig;
use crate::reading::{Reading, ReadingId};

/// Who sends and who receives (MSH-3 … MSH-6, MSH-11). Plain text: the encoder escapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-11: `P` (production).
    pub processing_id: String,
    /// Send ECG strips as waveform OBX rows (the sink's `waveform`, off by default).
    pub waveform: bool,
}

impl Default for Header {
    /// `VITALSD`, no facilities or receiver, production.
    fn default() -> Self {
        Self {
            sending_application: "VITALSD".into(),
            sending_facility: String::new(),
            receiving_application: String::new(),
            receiving_facility: String::new(),
            processing_id: "P".into(),
            waveform: false,
        }
    }
}

impl Header {
    /// The header of an `[[sink]] type = "hl7-mllp"` entry.
    pub fn from_config(c: &MllpSinkConfig) -> Self {
        Self {
            sending_application: c.sending_application.clone(),
            sending_facility: c.sending_facility.clone(),
            receiving_application: c.receiving_application.clone(),
            receiving_facility: c.receiving_facility.clone(),
            processing_id: "P".into(),
            waveform: c.waveform,
        }
    }
}

/// The end of one outbox record: the last segment's CR LF, then an empty line.
pub const RECORD_END: &[u8] = b"\r\n\r\n";

/// One outbox record (see the module doc): segments ending CR LF, then an empty line.
pub fn outbox_record(reading: &Reading, header: &Header) -> String {
    let message = oru_r01(reading, header);
    let text = String::from_utf8_lossy(&message);
    let mut out = String::with_capacity(text.len() + text.len() / 40 + 2);
    for segment in text.split_terminator('\r') {
        out.push_str(segment);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

/// The control id (MSH-10) of an outbox line when it is an MSH segment written by
/// [`outbox_record`]; `Some(None)` for an MSH whose MSH-10 is not a reading id; `None` for any
/// other line.
pub fn outbox_line_id(line: &[u8]) -> Option<Option<ReadingId>> {
    let line = std::str::from_utf8(line).ok();
    let line = line.map(|l| l.trim_end_matches(['\r', '\n']));
    let msh = line.filter(|l| l.starts_with("MSH|"))?;
    // "MSH|^~\&|3|4|5|6|7|8|9|10": after splitting on '|', index 9 is MSH-10.
    Some(msh.split('|').nth(9).and_then(|id| id.parse().ok()))
}

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod outbox_tests;
#[cfg(test)]
mod tests;
