//! `nonin-8`, `nonin-7`, `nonin-13`: the binary OEM data formats #8, #7 and #13 of Nonin pulse
//! oximeters (Onyx II 9560, OEM III, Xpod, WristOx2; docs/devices/nonin.md).
//!
//! Receives serial bytes (9600 8N1) and emits, per decoded frame or packet, up to two
//! [`DeviceMessage`]s like `nonin-ascii` does: kind `spo2` (value `spo2`, `%`, MDC 150456) and
//! kind `heart_rate` (value `heart_rate`, `/min`, MDC 149530, the oximeter pulse rate). The
//! missing-data codes (HR 511, SpO2 127) are `Measured::Absent(Unknown)`, never numbers. A
//! frame whose values are both missing, or that raises the sensor alarm (finger out) while a
//! value is missing, is [`DecodeEvent::Idle`] with `episode_end: true`.
//!
//! - [`Nonin8`] (format #8): 4-byte frames once per second, no checksum; see `nonin_binary/format8.rs`.
//! - [`Nonin7`] (format #7): 5-byte checksummed frames in 25-frame packets, 3 packets/s; the
//!   display values HR-D / SpO2-D are published only from a packet whose 25 frames were all
//!   valid; see `nonin_binary/format7.rs`.
//! - [`Nonin13`] (format #13): one `NUL STX` packet per completed spot-check measurement, with
//!   the device's BCD date and time as [`DeviceTime::Local`]; see `nonin_binary/format13.rs`.
//!
//! Device quality bits become flags, always in this order: `device:out_of_track`,
//! `device:low_perfusion`, `device:marginal_perfusion`, `device:artifact`,
//! `device:sensor_alarm`, `device:smartpoint`, `device:low_battery`, `device:from_memory`.
//!
//! # Host commands and replies
//! [`on_connect`](super::Decoder::on_connect) returns the format-select command `02 70 02 02 <fmt> 03` for the
//! driver's format (option `select_format`, default `true`), and for `nonin-13` also the
//! set-clock command `02 72 06 YY MM DD hh mm ss 03` with the host's current UTC time (option
//! `set_clock`, default `false`: the device keeps local wall-clock time and #13 timestamps are
//! read as the host's local time, so writing UTC into it is right only on hosts that run in
//! UTC; a site that wants the host to set the clock turns it on).
//!
//! The device answers a format select with `06` (ACK) or `15` (NAK). Neither byte can start a
//! frame of any of these formats, so at a clean frame boundary (stream start or right after a
//! valid frame) an ACK is skipped silently, and a NAK, while a reply is still expected, becomes
//! one `Error(Unsupported("device refused format select"))`. While the decoder is skipping
//! garbage both are counted as garbage: there a `15` is more likely a data byte. Bytes skipped
//! while looking for a frame start are reported as one `Malformed` error per run, unless the
//! run follows an error that already reported the break (`nonin_binary/link.rs`).

mod format13;
mod format7;
mod format8;
mod link;

pub use format13::{decode_packet13, Nonin13, MAX_DATA_LEN};
pub use format7::{decode_packet7, Nonin7, FRAMES_PER_PACKET};
pub use format8::{decode_frame8, Nonin8};

use link::Link;

use time::OffsetDateTime;

use super::nonin_ascii::{MDC_OXIMETER_PULSE_RATE, MDC_SPO2};
use super::registry::{DriverInfo, OptionSpec, Transport, SERIAL_9600_8N1};
use super::{DecodeEvent, DeviceMessage, DeviceTime, DeviceValue, Measured};
use super::{OptionError, Options};
use crate::reading::{AbsentReason, Decimal, Flag, Kind};

/// The heart-rate code for "missing data".
pub const HR_MISSING: u16 = 511;
/// The SpO2 code for "missing data".
pub const SPO2_MISSING: u8 = 127;
/// The device's positive reply to a command.
pub const ACK: u8 = 0x06;
/// The device's negative reply (unsupported command).
pub const NAK: u8 = 0x15;

/// Bytes taken from one `feed` slice before the buffered ones are processed: bounds the buffer.
const CHUNK: usize = 256;

/// One of the three binary data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    F8,
    F7,
    F13,
}

impl Format {
    /// The format number sent in the format-select command.
    pub fn code(self) -> u8 {
        match self {
            Format::F8 => 0x08,
            Format::F7 => 0x07,
            Format::F13 => 0x0D,
        }
    }

    /// The driver name, used in error reasons.
    pub fn driver(self) -> &'static str {
        match self {
            Format::F8 => "nonin-8",
            Format::F7 => "nonin-7",
            Format::F13 => "nonin-13",
        }
    }
}

/// The format-select command `02 70 02 02 <fmt> 03`.
pub fn format_select_command(format: Format) -> [u8; 6] {
    [0x02, 0x70, 0x02, 0x02, format.code(), 0x03]
}

/// The set-clock command `02 72 06 YY MM DD hh mm ss 03`, values in binary. `None` when the
/// year is outside 2000–2099 (the command has no century).
pub fn set_clock_command(now: OffsetDateTime) -> Option<[u8; 10]> {
    let yy = u8::try_from(now.year().checked_sub(2000)?)
        .ok()
        .filter(|y| *y <= 99)?;
    Some([
        0x02,
        0x72,
        0x06,
        yy,
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        0x03,
    ])
}

/// The host-side options of these drivers, resolved with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostOptions {
    /// Send the format-select command on connect (default true).
    pub select_format: bool,
    /// `nonin-13` only: set the device clock to the host's UTC time on connect (default false).
    pub set_clock: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            select_format: true,
            set_clock: false,
        }
    }
}

impl HostOptions {
    /// Reads `select_format` and `set_clock` from `opts` (other keys are left to the registry).
    pub fn from_options(opts: &Options) -> Result<Self, Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut get = |key: &str, default: bool| match opts.get(key).map(|v| parse_bool(v)) {
            None => default,
            Some(Ok(b)) => b,
            Some(Err(reason)) => {
                errors.push(OptionError {
                    key: key.into(),
                    reason,
                });
                default
            }
        };
        let host = Self {
            select_format: get("select_format", true),
            set_clock: get("set_clock", false),
        };
        if errors.is_empty() {
            Ok(host)
        } else {
            Err(errors)
        }
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{v}` is not one of: true, false")),
    }
}

fn check_bool(v: &str) -> Result<(), String> {
    parse_bool(v).map(|_| ())
}

const SELECT_FORMAT: OptionSpec = OptionSpec {
    key: "select_format",
    help: "`true` (default): send the format-select command on connect; `false`: leave the device's stored format alone",
    check: check_bool,
};

const SET_CLOCK: OptionSpec = OptionSpec {
    key: "set_clock",
    help: "`true`: set the device clock to the host's UTC time on connect; `false` (default), because the device keeps local time",
    check: check_bool,
};

fn build8(_: Transport, opts: &Options) -> Result<Box<dyn super::Decoder>, Vec<OptionError>> {
    Ok(Box::new(Nonin8::new(HostOptions::from_options(opts)?)))
}

fn build7(_: Transport, opts: &Options) -> Result<Box<dyn super::Decoder>, Vec<OptionError>> {
    Ok(Box::new(Nonin7::new(HostOptions::from_options(opts)?)))
}

fn build13(_: Transport, opts: &Options) -> Result<Box<dyn super::Decoder>, Vec<OptionError>> {
    Ok(Box::new(Nonin13::new(HostOptions::from_options(opts)?)))
}

/// `nonin-8`: data format #8.
pub static INFO_8: DriverInfo = DriverInfo {
    name: "nonin-8",
    devices: "Nonin OEM oximeters in data format #8 (Onyx II 9560, OEM III, Xpod, WristOx2)",
    transports: &[Transport::Serial],
    kinds: &[Kind::Spo2, Kind::HeartRate],
    framing: "binary 4-byte frames, 1/s, sync on bit 7",
    experimental: false,
    continuous: true,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &[SELECT_FORMAT],
    build: build8,
};

/// `nonin-7`: data format #7.
pub static INFO_7: DriverInfo = DriverInfo {
    name: "nonin-7",
    devices: "Nonin OEM oximeters in data format #7 (Onyx II 9560, OEM III, Xpod, WristOx2)",
    transports: &[Transport::Serial],
    kinds: &[Kind::Spo2, Kind::HeartRate],
    framing: "binary 5-byte checksummed frames, 25-frame packets, 3 packets/s",
    experimental: false,
    continuous: true,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &[SELECT_FORMAT],
    build: build7,
};

/// `nonin-13`: data format #13 (the 9560's factory default).
pub static INFO_13: DriverInfo = DriverInfo {
    name: "nonin-13",
    devices: "Nonin OEM oximeters in data format #13, SmartPoint spot checks (Onyx II 9560)",
    transports: &[Transport::Serial],
    kinds: &[Kind::Spo2, Kind::HeartRate],
    framing: "binary NUL STX packets with length and checksum, one per measurement",
    experimental: false,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &[SELECT_FORMAT, SET_CLOCK],
    build: build13,
};

/// Device-reported quality bits of one frame or packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quality {
    pub out_of_track: bool,
    pub low_perfusion: bool,
    pub marginal_perfusion: bool,
    pub artifact: bool,
    pub sensor_alarm: bool,
    pub smartpoint: bool,
    pub low_battery: bool,
    pub from_memory: bool,
}

impl Quality {
    /// The flags, in the documented order.
    pub fn flags(&self) -> Vec<Flag> {
        [
            (self.out_of_track, "out_of_track"),
            (self.low_perfusion, "low_perfusion"),
            (self.marginal_perfusion, "marginal_perfusion"),
            (self.artifact, "artifact"),
            (self.sensor_alarm, "sensor_alarm"),
            (self.smartpoint, "smartpoint"),
            (self.low_battery, "low_battery"),
            (self.from_memory, "from_memory"),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, what)| Flag::device(what))
        .collect()
    }
}

/// Emits the events of one decoded HR/SpO2 pair: `Idle { episode_end: true }` when both are
/// missing or the sensor alarm is up with a value missing, else a `spo2` and a `heart_rate`
/// message carrying the flags of `quality` and `device_time`.
fn reading_events(
    spo2: u8,
    hr: u16,
    quality: Quality,
    device_time: Option<DeviceTime>,
    out: &mut Vec<DecodeEvent>,
) {
    let spo2_missing = spo2 == SPO2_MISSING;
    let hr_missing = hr == HR_MISSING;
    if (spo2_missing && hr_missing) || (quality.sensor_alarm && (spo2_missing || hr_missing)) {
        out.push(DecodeEvent::Idle { episode_end: true });
        return;
    }
    let measured = |missing: bool, v: u16| {
        if missing {
            Measured::Absent(AbsentReason::Unknown)
        } else {
            Measured::Value(Decimal::from_int(i64::from(v)))
        }
    };
    let flags = quality.flags();
    let message = |kind: Kind, name: &str, value: Measured, unit: &str, mdc: u32| {
        let mut v = DeviceValue::new(name, value, unit);
        v.mdc = Some(mdc);
        let mut m = DeviceMessage::new(kind, vec![v]);
        m.device_time = device_time;
        m.flags = flags.clone();
        DecodeEvent::Message(m)
    };
    out.push(message(
        Kind::Spo2,
        "spo2",
        measured(spo2_missing, u16::from(spo2)),
        "%",
        MDC_SPO2,
    ));
    out.push(message(
        Kind::HeartRate,
        "heart_rate",
        measured(hr_missing, hr),
        "/min",
        MDC_OXIMETER_PULSE_RATE,
    ));
}

#[cfg(test)]
#[path = "nonin_binary/common_tests.rs"]
mod tests;

#[cfg(test)]
pub(crate) mod test_support;
