//! Decode: a device's bytes → device messages. Pure, bounded, no I/O.
//!
//! Receives the raw bytes a transport delivered (a serial read, an MQTT payload, an MLLP frame)
//! and emits [`DecodeEvent`]s in order: device messages in the device's own units, or errors
//! with a reason. A decoder owns its framing state (a bounded buffer), resynchronises after
//! garbage, and never panics or grows without bound on any input. Mapping to LOINC/MDC codes,
//! UCUM canonical units, plausibility and ids is `normalize`'s job, not the decoder's.
//!
//! One file per wire format; [`registry`] lists the drivers and builds decoders from options.

pub mod barcode;
pub mod ble_gatt;
pub mod framing;
pub mod hl7v2;
pub mod ieee11073;
pub mod json;
pub mod lines;
pub mod masimo;
pub mod nonin_ascii;
pub mod nonin_binary;
pub mod openbci;
pub mod polar_ecg;
pub mod redact;
pub mod registry;
pub mod samples;
pub mod suntech;
pub mod suretemp;

use std::collections::BTreeMap;

use time::{OffsetDateTime, PrimitiveDateTime};

use crate::reading::{AbsentReason, Decimal, Flag, Kind, Ucum};

pub use registry::{build, driver_info, drivers, DriverInfo, Transport};
pub use samples::{ChunkLead, SampleChunk};

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

/// A device's bytes → events. Implementations are pure state machines over a bounded buffer.
pub trait Decoder: Send {
    /// Feeds bytes exactly as they arrived; appends the events they complete to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>);

    /// The stream ended (EOF, disconnect, end of `decode` input): emit or drop what is
    /// buffered. A trailing partial frame is reported as an error.
    fn finish(&mut self, out: &mut Vec<DecodeEvent>);

    /// Bytes the host must send right after the port opens (format select, clock set).
    fn on_connect(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// For host-polled devices: how often the host must ask for data while connected.
    fn poll_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// The bytes of one poll, sent every [`Decoder::poll_every`] while connected.
    fn poll(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// Driver options (`options = {...}` in config, `--opt K=V` in `decode`), as strings.
pub type Options = BTreeMap<String, String>;

/// A bad driver option, reported by `check-config` as `device[N].options.KEY`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct OptionError {
    pub key: String,
    pub reason: String,
}

/// Fuzzing entry point shared by the `fuzz/` targets: builds `driver` with `options` and feeds it
/// `data`, split into chunks whose sizes come from the data itself, then finishes the stream.
/// Panics only when a decoder misbehaves (which is what the fuzzer looks for).
pub fn fuzz_decoder(driver: &str, options: &[(&str, &str)], data: &[u8]) {
    let opts: Options = options
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let Ok(mut decoder) = build(driver, &opts) else {
        panic!("fuzz target names an unknown driver or bad options: {driver}");
    };
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let take = usize::from(n % 64).min(tail.len()).max(1).min(tail.len());
        if take == 0 {
            break;
        }
        let (chunk, after) = tail.split_at(take);
        decoder.feed(chunk, &mut out);
        out.clear();
        rest = after;
    }
    decoder.finish(&mut out);
}
