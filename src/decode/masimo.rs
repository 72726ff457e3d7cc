//! `masimo-ascii`: the "ASCII 1" real-time output of Masimo Rad-series oximeters (Radical-5/-7,
//! Rad-8, Rad-87), docs/devices/masimo.md.
//!
//! Receives serial bytes (9600 8N1, one line per second, CR LF) framed by a [`LineFramer`]. A
//! data line is a line with a `SPO2=` field:
//! ```text
//! MM/DD/YY HH:MM:SS SN=<serial> SPO2=<nnn>% BPM=<nnn> PI=<nn.nn>% ... ALARM=<hex> EXC=<hex>
//! ```
//! Fields are separated by one or more blanks and may come in any order after the date and
//! time; unknown fields (PI, SPCO, SPMET, DESAT, PIDELTA, PVI, future ones) are skipped because
//! they map to no reading kind. Date, time, `SPO2`, `BPM`, `ALARM` and `EXC` are required: a
//! data line without one of them, with a repeated field, or with a value that is neither
//! digits nor a `-` filler is [`DecodeError::Malformed`] and rejected whole.
//!
//! Emits, per data line:
//! - two [`DeviceMessage`]s: kind `spo2` (value `spo2`, `%`, MDC 150456) and kind `heart_rate`
//!   (value `heart_rate`, `/min`, MDC 149530, the oximeter pulse rate), with the device clock as
//!   [`DeviceTime::Local`] (two-digit year = 20YY) and `SN` as the serial. A field filled with
//!   `-` (its second character is `-`, docs/devices/masimo.md) is `Measured::Absent(Unknown)`.
//! - [`DecodeEvent::Idle`] `{ episode_end: true }` instead when `EXC` says there is no usable
//!   sensor signal ([`EXC_NO_SIGNAL`]: no sensor, defective / unrecognised / incompatible sensor,
//!   sensor off patient, cable missing or unusable, sensor or cable life expired), or when both
//!   values are missing. These lines are never forwarded.
//!
//! Flags, on both messages: every set `ALARM` bit becomes `device:<name>` ([`ALARM_BITS`]),
//! every set `EXC` bit except "Masimo SET mode" (0x000800, normal) becomes `device:<name>`
//! ([`EXC_BITS`]); bits the table does not name become `device:alarm_bit_0xNNNN` /
//! `device:exc_bit_0xNNNNNN`. The daemon rule of docs/devices/masimo.md#the-forwarding-rule (forward only when
//! `EXC & 0x0000FF == 0` and `EXC & 0x000400 == 0`, else store as questionable) is applied as:
//! lines with a no-signal bit are dropped (above); lines with the remaining bits of that mask
//! (low perfusion, pulse search, interference, ambient light, low signal IQ) are forwarded with
//! the extra flag `device:questionable`.
//!
//! Lines without `SPO2=` (ASCII 2 trend output, banners) are [`DecodeEvent::Idle`]
//! `{ episode_end: false }` when printable; a line with other bytes is line noise and
//! [`DecodeError::Malformed`]. Lines over [`MAX_LINE`] bytes are [`DecodeError::Oversized`].

use time::{Date, Month, PrimitiveDateTime, Time};

use super::framing::{LineDecoder, LineFormat};
use super::registry::{DriverInfo, Transport, SERIAL_9600_8N1};
use super::{DecodeError, DecodeEvent, DeviceMessage, DeviceTime, DeviceValue, Measured};
use crate::reading::{AbsentReason, Decimal, Flag, Kind};

/// Longest line accepted. A full Radical-7 line is about 140 bytes.
pub const MAX_LINE: usize = 256;

/// MDC_PULS_OXIM_SAT_O2.
pub const MDC_SPO2: u32 = 150_456;
/// MDC_PULS_OXIM_PULS_RATE: pulse rate measured by an oximeter.
pub const MDC_OXIMETER_PULSE_RATE: u32 = 149_530;

/// `ALARM` bits and their flag names (docs/devices/masimo.md).
pub const ALARM_BITS: [(u32, &str); 13] = [
    (0x0001, "spo2_high_limit"),
    (0x0002, "spo2_low_limit"),
    (0x0004, "pulse_rate_high_limit"),
    (0x0008, "pulse_rate_low_limit"),
    (0x0010, "alarm_active"),
    (0x0020, "alarm_silenced"),
    (0x0040, "low_battery"),
    (0x0100, "spco_high_limit"),
    (0x0200, "spco_low_limit"),
    (0x0400, "spmet_high_limit"),
    (0x0800, "spmet_low_limit"),
    (0x1000, "desat_index"),
    (0x2000, "pi_rate_of_change"),
];

/// "Masimo SET" mode: normal operation, not a flag.
pub const EXC_SET_MODE: u32 = 0x00_0800;

/// `EXC` bits and their flag names (docs/devices/masimo.md). [`EXC_SET_MODE`] is not listed.
pub const EXC_BITS: [(u32, &str); 21] = [
    (0x00_0001, "no_sensor"),
    (0x00_0002, "defective_sensor"),
    (0x00_0004, "low_perfusion"),
    (0x00_0008, "pulse_search"),
    (0x00_0010, "interference"),
    (0x00_0020, "sensor_off_patient"),
    (0x00_0040, "ambient_light"),
    (0x00_0080, "unrecognised_sensor"),
    (0x00_0100, "incompatible_sensor"),
    (0x00_0400, "low_signal_iq"),
    (0x00_1000, "no_cable"),
    (0x00_2000, "cable_life_expired"),
    (0x00_4000, "incompatible_cable"),
    (0x00_8000, "unrecognised_cable"),
    (0x01_0000, "defective_cable"),
    (0x02_0000, "sensor_calibrating"),
    (0x04_0000, "sensor_life_expired"),
    (0x08_0000, "emitter_temperature_out_of_range"),
    (0x10_0000, "sensor_current_limit"),
    (0x20_0000, "spco_low_confidence"),
    (0x40_0000, "spmet_low_confidence"),
];

/// `EXC` bits meaning there is no usable signal from a patient: the line is not forwarded.
pub const EXC_NO_SIGNAL: u32 = 0x00_0001 // no sensor
    | 0x00_0002 // defective sensor
    | 0x00_0020 // sensor off patient
    | 0x00_0080 // unrecognised sensor
    | 0x00_0100 // incompatible sensor
    | 0x00_1000 // no cable
    | 0x00_2000 // cable life expired
    | 0x00_4000 // incompatible cable
    | 0x00_8000 // unrecognised cable
    | 0x01_0000 // defective cable
    | 0x04_0000; // sensor life expired

/// docs/devices/masimo.md's "forward only when clear" mask; what is left of it after
/// [`EXC_NO_SIGNAL`] marks a forwarded value `device:questionable`.
pub const EXC_QUESTIONABLE: u32 = 0x00_00FF | 0x00_0400;

/// The registry entry of `masimo-ascii`.
pub static INFO: DriverInfo = DriverInfo {
    name: "masimo-ascii",
    devices: "Masimo Rad-series oximeters in ASCII 1 mode (Radical-5, Radical-7, Rad-8, Rad-87)",
    transports: &[Transport::Serial],
    kinds: &[Kind::Spo2, Kind::HeartRate],
    framing: "ASCII lines, CR LF, 1/s",
    experimental: false,
    continuous: true,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &[],
    build: |_, _| Ok(Box::new(MasimoAscii::new())),
};

/// The `masimo-ascii` line format, for [`LineDecoder`].
#[derive(Debug, Clone, Copy)]
pub struct MasimoAsciiLines;

impl LineFormat for MasimoAsciiLines {
    const MAX_LINE: usize = MAX_LINE;
    fn decode_line(line: &[u8], out: &mut Vec<DecodeEvent>) {
        decode_line(line, out);
    }
}

/// The `masimo-ascii` decoder: a bounded line framer plus [`decode_line`].
pub type MasimoAscii = LineDecoder<MasimoAsciiLines>;

fn malformed(why: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed(format!("masimo-ascii: {why}"))
}

/// The fields of one data line that vitalsd uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub time: PrimitiveDateTime,
    pub serial: Option<String>,
    pub spo2: Option<u16>,
    pub bpm: Option<u16>,
    pub alarm: u32,
    pub exc: u32,
}

/// Decodes one line (without CR/LF) and appends its events to `out`. See the module docs.
pub fn decode_line(line: &[u8], out: &mut Vec<DecodeEvent>) {
    match parse_line(line) {
        Err(e) => out.push(DecodeEvent::Error(e)),
        Ok(None) => out.push(DecodeEvent::Idle { episode_end: false }),
        Ok(Some(l)) => events(&l, out),
    }
}

/// Turns a parsed data line into `Idle` or the two messages.
fn events(l: &Line, out: &mut Vec<DecodeEvent>) {
    if l.exc & EXC_NO_SIGNAL != 0 || (l.spo2.is_none() && l.bpm.is_none()) {
        out.push(DecodeEvent::Idle { episode_end: true });
        return;
    }
    let flags = flags(l.alarm, l.exc);
    let message = |kind: Kind, name: &str, v: Option<u16>, unit: &str, mdc: u32| {
        let value = v.map_or(Measured::Absent(AbsentReason::Unknown), |n| {
            Measured::Value(Decimal::from_int(i64::from(n)))
        });
        let mut dv = DeviceValue::new(name, value, unit);
        dv.mdc = Some(mdc);
        let mut m = DeviceMessage::new(kind, vec![dv]);
        m.device_time = Some(DeviceTime::Local(l.time));
        m.flags = flags.clone();
        m.serial = l.serial.clone();
        DecodeEvent::Message(m)
    };
    out.push(message(Kind::Spo2, "spo2", l.spo2, "%", MDC_SPO2));
    out.push(message(
        Kind::HeartRate,
        "heart_rate",
        l.bpm,
        "/min",
        MDC_OXIMETER_PULSE_RATE,
    ));
}

/// The device flags of an `ALARM`/`EXC` pair; see the module docs.
pub fn flags(alarm: u32, exc: u32) -> Vec<Flag> {
    let mut flags = Vec::new();
    let mut known = 0u32;
    for (bit, name) in ALARM_BITS {
        known |= bit;
        if alarm & bit != 0 {
            flags.push(Flag::device(name));
        }
    }
    flags.extend(unknown_bits(alarm & !known, |b| {
        format!("alarm_bit_0x{b:04X}")
    }));
    let mut known = EXC_SET_MODE;
    for (bit, name) in EXC_BITS {
        known |= bit;
        if exc & bit != 0 {
            flags.push(Flag::device(name));
        }
    }
    flags.extend(unknown_bits(exc & !known, |b| format!("exc_bit_0x{b:06X}")));
    if exc & EXC_QUESTIONABLE & !EXC_NO_SIGNAL != 0 {
        flags.push(Flag::device("questionable"));
    }
    flags
}

fn unknown_bits(rest: u32, name: impl Fn(u32) -> String) -> impl Iterator<Item = Flag> {
    (0..32)
        .map(|i| 1u32 << i)
        .filter(move |b| rest & b != 0)
        .map(move |b| Flag::device(&name(b)))
}

/// Parses one line: `Ok(None)` for a printable line that is not a data line.
pub fn parse_line(line: &[u8]) -> Result<Option<Line>, DecodeError> {
    if !line
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(malformed(format_args!(
            "line of {} bytes holds non-text bytes",
            line.len()
        )));
    }
    let text = std::str::from_utf8(line).map_err(|_| malformed("line is not text"))?;
    let mut tokens = text.split([' ', '\t']).filter(|t| !t.is_empty());
    if !text.split([' ', '\t']).any(|t| t.starts_with("SPO2=")) {
        return Ok(None);
    }
    let (Some(date), Some(clock)) = (tokens.next(), tokens.next()) else {
        return Err(malformed("data line without date and time"));
    };
    let time = date_time(date, clock)?;
    let mut fields = Fields::default();
    for token in tokens {
        let Some((key, value)) = token.split_once('=') else {
            return Err(malformed(format_args!(
                "field without `=` ({} bytes)",
                token.len()
            )));
        };
        fields.set(key, value)?;
    }
    fn need<'a>(v: Option<&'a str>, key: &str) -> Result<&'a str, DecodeError> {
        v.ok_or_else(|| malformed(format_args!("data line without {key}")))
    }
    Ok(Some(Line {
        time,
        serial: fields.sn.map(str::to_string),
        spo2: number(need(fields.spo2, "SPO2")?, "SPO2", true)?,
        bpm: number(need(fields.bpm, "BPM")?, "BPM", false)?,
        alarm: hex(need(fields.alarm, "ALARM")?, "ALARM")?,
        exc: hex(need(fields.exc, "EXC")?, "EXC")?,
    }))
}

#[derive(Default)]
struct Fields<'a> {
    sn: Option<&'a str>,
    spo2: Option<&'a str>,
    bpm: Option<&'a str>,
    alarm: Option<&'a str>,
    exc: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn set(&mut self, key: &str, value: &'a str) -> Result<(), DecodeError> {
        let slot = match key {
            "SN" => &mut self.sn,
            "SPO2" => &mut self.spo2,
            "BPM" => &mut self.bpm,
            "ALARM" => &mut self.alarm,
            "EXC" => &mut self.exc,
            _ => return Ok(()),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(format_args!("{key} appears twice")));
        }
        Ok(())
    }
}

/// `MM/DD/YY` + `HH:MM:SS` (device clock, local time, year 20YY).
fn date_time(date: &str, clock: &str) -> Result<PrimitiveDateTime, DecodeError> {
    let bad = || malformed("date/time is not MM/DD/YY HH:MM:SS or out of range");
    let [mo, d, y] = two_digit_parts(date, '/').ok_or_else(bad)?;
    let [h, mi, s] = two_digit_parts(clock, ':').ok_or_else(bad)?;
    let month = Month::try_from(mo).map_err(|_| bad())?;
    let date = Date::from_calendar_date(2000 + i32::from(y), month, d).map_err(|_| bad())?;
    let time = Time::from_hms(h, mi, s).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time))
}

fn two_digit_parts(s: &str, sep: char) -> Option<[u8; 3]> {
    let mut parts = s.split(sep);
    let mut out = [0u8; 3];
    for slot in &mut out {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A decimal count (`098`, with a `%` suffix when `percent`); `None` for a `-` filler.
fn number(v: &str, key: &str, percent: bool) -> Result<Option<u16>, DecodeError> {
    let body = if percent {
        v.strip_suffix('%').unwrap_or(v)
    } else {
        v
    };
    if body.as_bytes().get(1) == Some(&b'-')
        || (!body.is_empty() && body.bytes().all(|b| b == b'-'))
    {
        return Ok(None);
    }
    if body.is_empty() || body.len() > 3 || !body.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format_args!(
            "{key} is not a number of 1-3 digits"
        )));
    }
    body.parse()
        .map(Some)
        .map_err(|_| malformed(format_args!("{key} is not a number")))
}

/// A hexadecimal bitfield of 1-8 digits.
fn hex(v: &str, key: &str) -> Result<u32, DecodeError> {
    if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(format_args!("{key} is not 1-8 hex digits")));
    }
    u32::from_str_radix(v, 16).map_err(|_| malformed(format_args!("{key} is not hex")))
}

#[cfg(test)]
#[path = "masimo_tests.rs"]
mod tests;
