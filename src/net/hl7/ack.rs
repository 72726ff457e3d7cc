//! ACK / NAK (`docs/hl7.md`): building the MLLP-framed ACK vitalsd answers with (the MLLP
//! source), and parsing the ACKs a receiving system sends back (the HL7 sink).
//!
//! Receives control ids, codes and ERR content, or an ACK's bytes; promises ACKs in ER7 with
//! standard delimiters, framed for MLLP, and [`Hl7Error`]s that never quote patient data. The
//! ER7 reader is [`super::er7`].

use time::OffsetDateTime;

use super::er7::{as_text, clip, field, format_dtm, Delimiters, Er7};
use super::mllp::{mllp_frame, unframe, MAX_MESSAGE};
use super::Hl7Error;

/// An acknowledgement code (HL7 table 0008, MSA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Application accept.
    AA,
    /// Application error: do not resend unchanged.
    AE,
    /// Application reject: resend later.
    AR,
    /// Enhanced-mode commit accept / error / reject.
    CA,
    CE,
    CR,
}

impl AckCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        [
            AckCode::AA,
            AckCode::AE,
            AckCode::AR,
            AckCode::CA,
            AckCode::CE,
            AckCode::CR,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// The content of an ERR segment: ERR-2 location (`PID^1^3`, raw ER7), ERR-3 table 0357
/// code, ERR-8 user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    pub location: String,
    pub code: u16,
    pub text: String,
}

/// The display of a table 0357 code.
pub fn error_code_text(code: u16) -> &'static str {
    match code {
        0 => "Message accepted",
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        104 => "Value too long",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        204 => "Unknown key identifier",
        205 => "Duplicate key identifier",
        206 => "Application record locked",
        _ => "Application internal error",
    }
}

/// The header of an ACK we send (raw ER7 field text, already escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckHeader {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub time: OffsetDateTime,
    /// The ACK's own MSH-10 (a new id).
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
}

/// The MSH fields of a received message that its ACK's header answers (raw ER7 text, still
/// escaped): the `hl7v2` decoder's ORU^R01 gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MshFields<'a> {
    pub sending_application: &'a str,
    pub sending_facility: &'a str,
    pub receiving_application: &'a str,
    pub receiving_facility: &'a str,
    pub processing_id: &'a str,
    pub version: &'a str,
}

impl AckHeader {
    /// The header answering the message `received`: applications and facilities swapped, same
    /// processing id and version.
    pub fn reply_to<'a>(
        received: impl Into<MshFields<'a>>,
        control_id: &str,
        time: OffsetDateTime,
    ) -> Self {
        let oru: MshFields<'a> = received.into();
        let or = |s: &str, d: &str| {
            if s.is_empty() {
                d.to_string()
            } else {
                s.to_string()
            }
        };
        Self {
            sending_application: or(oru.receiving_application, "VITALSD"),
            sending_facility: oru.receiving_facility.to_string(),
            receiving_application: oru.sending_application.to_string(),
            receiving_facility: oru.sending_facility.to_string(),
            time,
            control_id: Delimiters::STANDARD.escape(control_id),
            processing_id: or(oru.processing_id, "P"),
            version: or(oru.version, "2.6"),
        }
    }
}

/// An MLLP-framed ACK (`ACK^R01^ACK`) acknowledging control id `acked`, with an ERR
/// segment when `error` is given. Segments end with CR.
pub fn ack_message(h: &AckHeader, acked: &str, code: AckCode, error: Option<&AckError>) -> Vec<u8> {
    let d = Delimiters::STANDARD;
    let mut m = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK^R01^ACK|{}|{}|{}\rMSA|{}|{}\r",
        h.sending_application,
        h.sending_facility,
        h.receiving_application,
        h.receiving_facility,
        format_dtm(h.time),
        h.control_id,
        h.processing_id,
        h.version,
        code.as_str(),
        d.escape(acked),
    );
    if let Some(e) = error {
        m.push_str(&format!(
            "ERR||{}|{}^{}^HL70357|E||||{}\r",
            e.location,
            e.code,
            error_code_text(e.code),
            d.escape(&e.text)
        ));
    }
    mllp_frame(m.as_bytes())
}

/// An MLLP-framed ACK from vitalsd for `oru_control_id`, stamped now. For AE/AR a non-empty
/// `text` goes into an ERR segment with code 207; use [`ack_message`] with
/// [`Hl7Error::ack_error`] for a precise one.
pub fn ack(oru_control_id: &str, code: AckCode, text: &str) -> Vec<u8> {
    let h = AckHeader {
        sending_application: "VITALSD".into(),
        sending_facility: String::new(),
        receiving_application: String::new(),
        receiving_facility: String::new(),
        time: OffsetDateTime::now_utc(),
        control_id: Delimiters::STANDARD.escape(&format!("ACK-{oru_control_id}")),
        processing_id: "P".into(),
        version: "2.6".into(),
    };
    let err = AckError {
        location: String::new(),
        code: 207,
        text: text.to_string(),
    };
    let with_err = code != AckCode::AA && !text.is_empty();
    ack_message(&h, oru_control_id, code, with_err.then_some(&err))
}

/// ERR-4 severity (HL7 table 0516).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Information,
    Warning,
}

impl Severity {
    /// The table 0516 code: `E`, `F`, `I` or `W`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Fatal => "F",
            Severity::Information => "I",
            Severity::Warning => "W",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "E" => Some(Severity::Error),
            "F" => Some(Severity::Fatal),
            "I" => Some(Severity::Information),
            "W" => Some(Severity::Warning),
            _ => None,
        }
    }
}

/// A received ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub code: AckCode,
    /// MSA-2: the control id of the message acknowledged.
    pub acked_control_id: String,
    /// MSH-10 of the ACK itself.
    pub control_id: String,
    /// MSA-3 text, when sent.
    pub text: Option<String>,
    /// The first ERR segment, when sent.
    pub error: Option<AckError>,
    /// ERR-4 of the first ERR segment, when it is a table 0516 code.
    pub severity: Option<Severity>,
}

/// Parses an ACK (MLLP framing optional).
pub fn parse_ack(bytes: &[u8]) -> Result<Ack, Hl7Error> {
    let bytes = unframe(bytes);
    if bytes.len() > MAX_MESSAGE {
        return Err(Hl7Error::TooLarge(MAX_MESSAGE));
    }
    if matches!(bytes, [0x06] | [0x15]) {
        return Err(Hl7Error::NotAck(
            "an MLLP commit block, not an HL7 ACK".into(),
        ));
    }
    let text = as_text(bytes);
    let er7 = Er7::parse(&text)?;
    let (d, msh) = (er7.d, er7.msh());
    if d.comp(field(msh, 9), 1) != "ACK" {
        return Err(Hl7Error::NotAck(format!(
            "MSH-9 is `{}`",
            clip(field(msh, 9))
        )));
    }
    let seg = |id: &str| er7.segments.iter().find(|s| field(s, 0) == id);
    let msa = seg("MSA").ok_or_else(|| Hl7Error::NotAck("no MSA segment".into()))?;
    let code_text = d.text(field(msa, 1), 1);
    let code = AckCode::parse(&code_text).ok_or_else(|| {
        Hl7Error::NotAck(format!("MSA-1 `{}` is not an ack code", clip(&code_text)))
    })?;
    let acked_control_id = d.unescape(field(msa, 2)).trim().to_string();
    if acked_control_id.is_empty() {
        return Err(Hl7Error::MissingField("MSA-2"));
    }
    let text = Some(d.unescape(field(msa, 3)).trim().to_string()).filter(|t| !t.is_empty());
    let error = seg("ERR").map(|e| AckError {
        location: field(e, 2).to_string(),
        code: d.text(field(e, 3), 1).parse().unwrap_or(207),
        text: d.unescape(field(e, 8)).trim().to_string(),
    });
    let severity = seg("ERR").and_then(|e| Severity::parse(&d.text(field(e, 4), 1)));
    Ok(Ack {
        code,
        acked_control_id,
        control_id: d.unescape(field(msh, 10)).trim().to_string(),
        text,
        error,
        severity,
    })
}
