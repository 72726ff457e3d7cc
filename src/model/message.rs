//! The device message: what a decoder reports, in the device's own units and time.
//!
//! Receives nothing: plain data built by decoders (and by tests and simulators).
//! Promises: a [`DeviceMessage`] carries values with the component names of the code table
//! ([`super::codes`]), the unit the device used and the device's time as reported; normalize
//! turns it into a reading. [`DecodeEvent`] is everything a decoder can emit.

use time::{OffsetDateTime, PrimitiveDateTime};

use super::samples::SampleChunk;
use crate::reading::{AbsentReason, Decimal, Flag, Kind, Ucum};

/// A value as the device reported it, before unit conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum Measured {
    Value(Decimal),
    /// The device sent a special value ("no reading", NaN, ...): never a number.
    Absent(AbsentReason),
}

/// One named value of a device message, in the device's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceValue {
    /// Component name as in the code table (`systolic`, `diastolic`, `mean`, `spo2`,
    /// `heart_rate`, `temperature`, `weight`, `height`, `bmi`, `respiratory_rate`).
    pub name: String,
    pub value: Measured,
    /// The unit the device used (`mm[Hg]`, `kPa`, `Cel`, `[degF]`, `kg`, `[lb_av]`, ...).
    pub unit: Ucum,
    /// Temperature site (`oral`, `axillary`, `rectal`, `tympanic`, `ear`, `body`, ...).
    pub site: Option<String>,
    /// MDC code when the device's own code is more specific than the table default
    /// (e.g. 149530 pulse rate from an oximeter).
    pub mdc: Option<u32>,
}

impl DeviceValue {
    pub fn new(name: &str, value: Measured, unit: &str) -> Self {
        Self {
            name: name.to_string(),
            value,
            unit: Ucum::new(unit),
            site: None,
            mdc: None,
        }
    }
}

/// The time a device put on a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceTime {
    /// A time with a known offset (e.g. an RFC 3339 string from the `json` driver).
    Absolute(OffsetDateTime),
    /// A wall-clock time without offset (BLE Date Time, Nonin #13): the local zone of the host
    /// is assumed.
    Local(PrimitiveDateTime),
    /// Only a time of day (`HH:MM:SS` prefix on Nonin ASCII lines): the date of receipt is
    /// assumed.
    TimeOfDay(time::Time),
    /// The device says its clock is not set: use the receipt time and flag it.
    ClockNotSet,
}

/// One measurement event as the device reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMessage {
    pub kind: Kind,
    pub values: Vec<DeviceValue>,
    pub device_time: Option<DeviceTime>,
    /// Device-reported quality facts (`device:artifact`, `device:event_mark`, ...).
    pub flags: Vec<Flag>,
    pub model: Option<String>,
    pub serial: Option<String>,
}

impl DeviceMessage {
    pub fn new(kind: Kind, values: Vec<DeviceValue>) -> Self {
        Self {
            kind,
            values,
            device_time: None,
            flags: Vec::new(),
            model: None,
            serial: None,
        }
    }

    /// True when every value is absent: the device reported "no reading".
    pub fn is_empty_reading(&self) -> bool {
        self.values
            .iter()
            .all(|v| matches!(v.value, Measured::Absent(_)))
    }
}

/// Why a frame was not decoded. The stream continues after every error: decoders resync.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("checksum mismatch: {0}")]
    Checksum(String),
    #[error("frame too long: more than {0} bytes without a frame boundary")]
    Oversized(usize),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl DecodeError {
    /// A short stable label for metrics (`vitalsd_frames_total{result=...}`).
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed",
            DecodeError::Checksum(_) => "checksum",
            DecodeError::Oversized(_) => "oversized",
            DecodeError::Unsupported(_) => "unsupported",
        }
    }
}

/// What a decoder emits.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeEvent {
    /// A complete measurement.
    Message(DeviceMessage),
    /// A complete frame that carried no measurement (device header, "no reading" line, finger
    /// out): the device is alive. `episode_end` is true when the frame says the measurement
    /// episode is over (sensor off, all values missing).
    Idle { episode_end: bool },
    /// A barcode scan (the `barcode` driver).
    Scan(String),
    /// Waveform samples (ECG drivers): the pipeline hands them to the device's strip builder.
    Samples(SampleChunk),
    /// A frame that could not be decoded; bytes were skipped.
    Error(DecodeError),
}
