//! `hl7v2`: monitors that push HL7 v2 ORU^R01 (IHE PCD-01) messages (docs/hl7-inbound.md).
//!
//! Receives MLLP-framed messages (`0x0B` … `0x1C 0x0D`, docs/hl7-inbound.md#mllp-framing) on the mllp and serial
//! transports, or one message per MQTT payload (framed or not). [`MllpFramer`] discards bytes
//! outside frames (reported once per run as [`DecodeError::Malformed`]), handles frames split
//! across reads and several frames per read, and bounds a frame at [`MAX_MESSAGE`] bytes.
//!
//! [`parse_oru`] reads one message in ER7 syntax (docs/hl7-inbound.md#er7-encoding): segments end with CR, LF or CR LF;
//! the delimiters come from MSH-1/MSH-2; `\F\ \S\ \T\ \R\ \E\` escapes are decoded. MSH-9 must
//! be `ORU^R01`, MSH-10 (the control id) present, MSH-12 a `2.x` version. Each OBX with value
//! type `NM` and result status `F`, `C` or `R` whose OBX-3 is a known MDC code (components
//! 1–3) or LOINC code (components 4–6, or 1–3) becomes a [`DeviceValue`]: OBX-5 the exact
//! value (empty → absent), OBX-6 the unit (UCUM, or an MDC unit code mapped back to UCUM),
//! OBX-14 (else OBR-7) the device time, OBX-18 the equipment id (serial; component 2 the
//! model). Rows of the same kind, OBR, time and equipment are grouped into one
//! [`DeviceMessage`] (systolic, diastolic and mean make one blood pressure). Other OBX rows
//! (device-level `X` rows, deleted `D`/`W` results, text, unknown codes such as perfusion
//! index) are counted in [`Oru::skipped`]. A known code with a non-numeric value, an unknown
//! or unconvertible unit, or a bad time rejects the whole message ([`Hl7Error`], which says
//! which ACK code and table 0357 error to answer with).
//!
//! PID-3 is returned as [`Oru::patient`] for the MLLP source; it never appears in an error.
//! The option `patient_system` names the identifier system of PID-3 ids that carry none
//! ([`with_patient_system`], applied by the device pipeline).
//! MLLP framing, the ER7 reader, [`Hl7Error`] and the ACKs the MLLP source answers with
//! (docs/hl7-inbound.md#ack-and-nak-rules) are the net layer's ([`crate::net::hl7`]).

mod oru;

pub use oru::{parse_oru, Oru};

use super::barcode::check_system;
use super::lines::NUMERIC_KINDS;
use super::registry::{OptionSpec, Transport, SERIAL_9600_8N1};
use super::{DecodeError, DecodeEvent, Decoder, DriverInfo, Options};
// MLLP framing, the ER7 reader and its errors are the net layer's (shared with the MLLP source
// and sink); this decoder imports them from there and re-exports none of them.
use crate::net::hl7::{Hl7Error, MllpFramer, MAX_MESSAGE, SB};
use crate::reading::PatientRef;

/// The `hl7v2` driver entry for the registry.
pub static INFO: DriverInfo = DriverInfo {
    name: "hl7v2",
    devices: "monitors sending HL7 v2 ORU^R01 (IHE PCD-01): GE, Mindray, Welch Allyn Connex",
    transports: &[Transport::Mllp, Transport::Serial, Transport::Mqtt],
    kinds: &NUMERIC_KINDS,
    framing: "MLLP frames 0x0B … 0x1C 0x0D (mllp, serial); one message per MQTT payload",
    experimental: false,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::InMessage {
        system_option: "patient_system",
    },
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &[OptionSpec {
        key: "patient_system",
        help: "identifier system (urn:oid:…, urn:…, https://…) of PID-3 ids that name none",
        check: check_system,
    }],
    build: |t, _| Ok(Box::new(Hl7v2::new(t))),
};

/// The `patient_system` option of an `hl7v2` device (validated by the registry).
pub fn patient_system(opts: &Options) -> Option<&str> {
    opts.get("patient_system").map(String::as_str)
}

/// PID-3's patient with the configured system attached: `system` (the `patient_system`
/// option) replaces the patient's system when PID-3 named none, or named its assigning
/// authority only by a local namespace id (no `:`, so not a URI: `CLINIC_A`). A URI or OID
/// that PID-3 itself carries is kept. Without the option the patient is unchanged.
pub fn with_patient_system(patient: PatientRef, system: Option<&str>) -> PatientRef {
    match system {
        Some(s) if !patient.system.contains(':') => PatientRef {
            system: s.to_string(),
            ..patient
        },
        _ => patient,
    }
}

/// The `hl7v2` decoder: [`MllpFramer`] (mllp, serial) or one message per feed (mqtt), then
/// [`parse_oru`].
#[derive(Debug, Clone)]
pub struct Hl7v2 {
    per_message: bool,
    framer: MllpFramer,
}

impl Hl7v2 {
    pub fn new(transport: Transport) -> Self {
        Self {
            per_message: transport == Transport::Mqtt,
            framer: MllpFramer::new(),
        }
    }
}

/// The decode events of one message.
pub fn decode_message(msg: &[u8], out: &mut Vec<DecodeEvent>) {
    if matches!(msg, [0x06] | [0x15]) {
        out.push(DecodeEvent::Idle { episode_end: false });
        return;
    }
    match parse_oru(msg) {
        Ok(oru) if oru.messages.is_empty() => out.push(DecodeEvent::Idle { episode_end: false }),
        Ok(oru) => out.extend(oru.messages.into_iter().map(DecodeEvent::Message)),
        Err(e) => out.push(DecodeEvent::Error(match e {
            Hl7Error::TooLarge(n) => DecodeError::Oversized(n),
            Hl7Error::UnsupportedType(_) | Hl7Error::UnsupportedVersion(_) => {
                DecodeError::Unsupported(format!("hl7v2: {e}"))
            }
            _ => DecodeError::Malformed(format!("hl7v2: {e}")),
        })),
    }
}

impl Decoder for Hl7v2 {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        let mut frames = Vec::new();
        if self.per_message && bytes.first() != Some(&SB) {
            if bytes.len() > MAX_MESSAGE {
                out.push(DecodeEvent::Error(DecodeError::Oversized(MAX_MESSAGE)));
            } else if bytes.iter().all(u8::is_ascii_whitespace) {
                out.push(DecodeEvent::Idle { episode_end: false });
            } else {
                decode_message(bytes, out);
            }
            return;
        }
        self.framer.feed(bytes, &mut frames);
        if self.per_message {
            self.framer.finish(&mut frames);
        }
        for f in frames {
            match f {
                Ok(msg) => decode_message(&msg, out),
                Err(e) => out.push(DecodeEvent::Error(e)),
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        let mut frames = Vec::new();
        self.framer.finish(&mut frames);
        out.extend(
            frames
                .into_iter()
                .filter_map(Result::err)
                .map(DecodeEvent::Error),
        );
    }
}

#[cfg(test)]
#[path = "hl7v2_tests.rs"]
mod tests;
