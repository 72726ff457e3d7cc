//! Model: the plain data and pure tables that decode, ecg and normalize share.
//!
//! Receives nothing and does no I/O; imports only [`crate::reading`] (the canonical reading,
//! which stays in its own module) and outside crates.
//! Promises one definition of everything the stages hand each other, so no stage imports
//! another (docs/ARCHITECTURE.md, "Modules and their imports"):
//! - [`message`]: [`DeviceMessage`] and its values and times, [`DecodeEvent`], [`DecodeError`];
//! - [`samples`]: [`SampleChunk`], waveform samples as decoders hand them on;
//! - [`options`]: driver [`Options`], [`OptionError`], [`OptionSpec`], the spot-check
//!   [`Report`] mode;
//! - [`ecg_options`]: the strip options every ECG driver accepts;
//! - [`codes`]: the LOINC / IEEE 11073 MDC / UCUM code table (docs/fhir-codes.md);
//! - [`units`]: UCUM unit checks and exact conversions;
//! - [`plausibility`]: the physiological limits and the flags they give;
//! - [`time`], [`zone`]: device times on the time line, the device's [`NormalizeContext`];
//! - [`hl7`]: vitalsd's HL7 "no patient" placeholder identity;
//! - [`identifier`]: the check of a patient identifier's system (a device option, a context);
//! - [`redact`]: parser messages without the payload's quoted text (logs, rejected payloads);
//! - [`audit`]: the audit trail's events and entries (room contexts, held, review, quarantine,
//!   delivery, reload), named by the patient context, the store and the audit files.
//! - `fixtures` (tests only): readings for the unit tests of every stage.

pub mod audit;
pub mod codes;
pub mod ecg_options;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod hl7;
pub mod identifier;
pub mod message;
pub mod options;
pub mod plausibility;
pub mod redact;
pub mod samples;
pub mod time;
pub mod units;
pub mod zone;

pub use message::{DecodeError, DecodeEvent, DeviceMessage, DeviceTime, DeviceValue, Measured};
pub use options::{OptionError, OptionSpec, Options, Report};
pub use samples::{ChunkLead, SampleChunk};
pub use time::{NormalizeContext, TimeOutOfRange};
