//! `lines`: any ASCII device, described in config instead of code.
//!
//! Receives text lines (serial: split on LF with a trailing CR dropped, at most [`MAX_LINE`]
//! bytes; mqtt: one line per message, trailing CR/LF dropped) and matches each against the
//! configured regex. Options (all strings, as in every `options` table):
//!
//! | key | meaning |
//! |---|---|
//! | `pattern` | REQUIRED. A regex with named groups, searched in each line (anchor it with `^…$` to match whole lines). Compiled with a size limit. |
//! | `kind` | REQUIRED. The reading kind (`blood_pressure`, `body_temperature`, ...). |
//! | `value.<group>` | `<component>[:<ucum unit>]`: group `<group>` holds component `<component>` of the kind, in that unit (default: the canonical unit). At least one. |
//! | `time` | a group holding the device's time of the measurement |
//! | `time_format` | `rfc3339` (default) or a `time` crate format description such as `[day].[month].[year] [hour]:[minute]`; with an offset → absolute time, with a date → local time, a time only → time of day |
//! | `absent` | the text a device writes instead of a number (`---`) |
//! | `site` | temperature site (`oral`, `axillary`, ...) for `body_temperature` |
//!
//! Example: `pattern = '^SYS=(?P<sys>\d+) DIA=(?P<dia>\d+)$'`, `kind = "blood_pressure"`,
//! `"value.sys" = "systolic:mm[Hg]"`, `"value.dia" = "diastolic:mm[Hg]"`.
//!
//! Emits one [`DeviceMessage`] per matching line with the mapped values in the code table's order,
//! numbers parsed exactly (`37.60` stays `37.60`). A group that did not take part in the
//! match, or that holds the `absent` text, is `Measured::Absent(Unknown)`; a line whose values
//! are all absent is [`DecodeEvent::Idle`] with `episode_end: true`. Printable lines that do
//! not match are `Idle { episode_end: false }` (headers, prompts); lines holding other bytes
//! are [`DecodeError::Malformed`], like a value group that is not a number or a time that does
//! not parse. Error reasons name groups, never the line's text.

mod options;

pub use options::{validate, LinesConfig};

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::framing::LineFramer;
use super::registry::{Transport, SERIAL_9600_8N1};
use super::{
    DecodeError, DecodeEvent, Decoder, DeviceMessage, DeviceTime, DeviceValue, DriverInfo, Measured,
};
use crate::reading::{AbsentReason, Decimal, Kind};
use options::{TimeFormat, OPTIONS};

/// Longest line accepted.
pub const MAX_LINE: usize = 1024;
/// Largest compiled size of the `pattern` regex, in bytes.
pub const PATTERN_SIZE_LIMIT: usize = 1024 * 1024;
/// Longest text of any option value.
const MAX_OPTION_LEN: usize = 2048;
/// The prefix of the value-mapping keys.
pub const VALUE_PREFIX: &str = "value.";

/// The `lines` driver entry for the registry.
pub static INFO: DriverInfo = DriverInfo {
    name: "lines",
    devices: "any ASCII device, described in config: a regex with named groups mapped to components and units",
    transports: &[Transport::Serial, Transport::Mqtt],
    kinds: &NUMERIC_KINDS,
    framing: "one text line per reading (serial: LF or CR LF; mqtt: one line per message)",
    experimental: false,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &OPTIONS,
    build: |t, opts| {
        let config = LinesConfig::from_options(opts)?;
        Ok(Box::new(Lines::new(config, t)))
    },
};

/// The kinds a line can carry: every kind but the ECG waveform.
pub const NUMERIC_KINDS: [Kind; 8] = [
    Kind::BloodPressure,
    Kind::HeartRate,
    Kind::BodyTemperature,
    Kind::Spo2,
    Kind::RespiratoryRate,
    Kind::BodyWeight,
    Kind::BodyHeight,
    Kind::Bmi,
];

/// How lines arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Lines,
    PerMessage,
}

/// The `lines` decoder.
#[derive(Debug, Clone)]
pub struct Lines {
    config: LinesConfig,
    framing: Framing,
    framer: LineFramer,
}

impl Lines {
    /// A decoder for `transport`: mqtt is one line per message, the others are LF-framed.
    pub fn new(config: LinesConfig, transport: Transport) -> Self {
        let framing = match transport {
            Transport::Mqtt => Framing::PerMessage,
            Transport::Serial | Transport::Mllp => Framing::Lines,
        };
        Self {
            config,
            framing,
            framer: LineFramer::new(MAX_LINE),
        }
    }
}

impl Decoder for Lines {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        match self.framing {
            Framing::PerMessage => {
                let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() > MAX_LINE {
                    out.push(DecodeEvent::Error(DecodeError::Oversized(MAX_LINE)));
                } else if line.is_empty() {
                    out.push(DecodeEvent::Idle { episode_end: false });
                } else {
                    out.push(self.config.decode_line(line));
                }
            }
            Framing::Lines => {
                let mut lines = Vec::new();
                self.framer.feed(bytes, &mut lines);
                for line in lines {
                    out.push(match line {
                        Ok(l) => self.config.decode_line(&l),
                        Err(e) => DecodeEvent::Error(e),
                    });
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        if let Some(e) = self.framer.finish() {
            out.push(DecodeEvent::Error(e));
        }
    }
}

fn malformed(reason: String) -> DecodeEvent {
    DecodeEvent::Error(DecodeError::Malformed(format!("lines: {reason}")))
}

impl LinesConfig {
    /// Decodes one line (without CR/LF). See the module docs.
    pub fn decode_line(&self, line: &[u8]) -> DecodeEvent {
        if !line
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return malformed(format!("line of {} bytes holds non-text bytes", line.len()));
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return malformed("line is not text".into());
        };
        let Some(caps) = self.pattern.captures(text) else {
            return DecodeEvent::Idle { episode_end: false };
        };
        let mut values = Vec::with_capacity(self.values.len());
        for m in &self.values {
            let raw = caps.name(&m.group).map(|c| c.as_str().trim()).unwrap_or("");
            let measured = if raw.is_empty() || self.absent.as_deref() == Some(raw) {
                Measured::Absent(AbsentReason::Unknown)
            } else {
                match raw.parse::<Decimal>() {
                    Ok(d) => Measured::Value(d),
                    Err(_) => return malformed(format!("group `{}` is not a number", m.group)),
                }
            };
            let mut v = DeviceValue::new(m.component, measured, &m.unit);
            v.site.clone_from(&self.site);
            values.push(v);
        }
        let mut msg = DeviceMessage::new(self.kind, values);
        if msg.is_empty_reading() {
            return DecodeEvent::Idle { episode_end: true };
        }
        if let Some((group, format)) = &self.time {
            let raw = caps.name(group).map(|c| c.as_str().trim()).unwrap_or("");
            if !raw.is_empty() {
                match parse_time(raw, format) {
                    Some(t) => msg.device_time = Some(t),
                    None => {
                        return malformed(format!("group `{group}` does not match time_format"))
                    }
                }
            }
        }
        DecodeEvent::Message(msg)
    }
}

/// Reads a device time: with an offset it is absolute, with a date local, else a time of day.
fn parse_time(raw: &str, format: &TimeFormat) -> Option<DeviceTime> {
    match format {
        TimeFormat::Rfc3339 => OffsetDateTime::parse(raw, &Rfc3339)
            .ok()
            .map(DeviceTime::Absolute),
        TimeFormat::Custom(f) => OffsetDateTime::parse(raw, f)
            .map(DeviceTime::Absolute)
            .or_else(|_| PrimitiveDateTime::parse(raw, f).map(DeviceTime::Local))
            .or_else(|_| time::Time::parse(raw, f).map(DeviceTime::TimeOfDay))
            .ok(),
    }
}

#[cfg(test)]
#[path = "lines_tests.rs"]
mod tests;
