//! The placeholder patient identity vitalsd writes in HL7 v2 PID-3 when a reading has no
//! patient (location mode).
//!
//! Receives nothing: constants. Promises: one definition the HL7 decoder reads (so a message
//! vitalsd itself sent is not taken as naming a patient) and the outbound encoder can share;
//! a test in the decoder keeps the encoder's copy equal to these.

/// PID-3.1 of a message whose reading has no patient.
pub const NO_PATIENT_ID: &str = "VITALSD-UNKNOWN";
/// PID-3.4 (assigning authority namespace) of [`NO_PATIENT_ID`]: vitalsd's own, so the
/// placeholder can never be taken for an identifier a clinic issued.
pub const NO_PATIENT_AUTHORITY: &str = "VITALSD-NO-PATIENT";
