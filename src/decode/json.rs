//! `json`: readings already in the docs/ARCHITECTURE.md#the-reading-json shape, sent by other software.
//!
//! Receives one JSON object per frame: per line on serial ([`JsonFraming::Lines`], bounded by
//! [`MAX_FRAME`] through a [`LineFramer`]), or per MQTT message ([`JsonFraming::PerMessage`],
//! where a payload may be pretty-printed over several lines). Emits one [`DeviceMessage`] per
//! object, or a [`DecodeError::Malformed`] whose reason names the offending field
//! (`values[1].unit: ...`). A blank frame is [`DecodeEvent::Idle`].
//!
//! Accepted object: the keys of a §6 reading and no others. `id`, `room`, `patient` and
//! `received_at` may be present or null and are ignored (vitalsd assigns its own id, room and
//! patient; patient data is never read, so it never reaches an error message). `device` is
//! optional; its `model`/`serial` are kept. `kind` must be a known kind; each `values[].name` a
//! component of that kind in the code table; `code`, when given, must be the table's code for
//! that name; `value` a JSON number (parsed as a [`Decimal`], so `37.60` keeps its digits) or
//! null, and null requires `absent`; `unit` a unit that converts to the canonical one;
//! `device_time` RFC 3339 → [`DeviceTime::Absolute`]. Without `device_time`, a given
//! `observed_at` is used as the device time: it is the measurement time the sender trusted,
//! and normalize still applies the clock-skew check to it. `flags` are carried as they are.

use serde::de::IgnoredAny;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::framing::LineFramer;
use super::{DecodeError, DecodeEvent, Decoder, DeviceMessage, DeviceTime, DeviceValue, Measured};
use crate::model::{codes, units};
use crate::reading::{AbsentReason, Decimal, Flag, Kind, Ucum};

/// Largest frame accepted (a reading is a few hundred bytes).
pub const MAX_FRAME: usize = 64 * 1024;
/// Most flags accepted on one reading, and the longest flag.
const MAX_FLAGS: usize = 64;
const MAX_FLAG_LEN: usize = 200;

/// How frames are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFraming {
    /// Newline-delimited objects (serial, files, `vitalsd decode`).
    Lines,
    /// Every `feed` call is one complete object (one MQTT payload).
    PerMessage,
}

/// The `json` decoder.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    framing: JsonFraming,
    framer: LineFramer,
}

impl JsonDecoder {
    pub fn new(framing: JsonFraming) -> Self {
        Self {
            framing,
            framer: LineFramer::new(MAX_FRAME),
        }
    }
}

impl Decoder for JsonDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        match self.framing {
            JsonFraming::PerMessage if bytes.len() > MAX_FRAME => {
                out.push(DecodeEvent::Error(DecodeError::Oversized(MAX_FRAME)));
            }
            JsonFraming::PerMessage => out.push(decode_event(bytes)),
            JsonFraming::Lines => {
                let mut lines = Vec::new();
                self.framer.feed(bytes, &mut lines);
                for line in lines {
                    out.push(match line {
                        Ok(l) => decode_event(&l),
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

fn decode_event(frame: &[u8]) -> DecodeEvent {
    if frame.iter().all(u8::is_ascii_whitespace) {
        return DecodeEvent::Idle { episode_end: false };
    }
    match decode_frame(frame) {
        Ok(m) => DecodeEvent::Message(m),
        Err(e) => DecodeEvent::Error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReading {
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<IgnoredAny>,
    #[serde(default)]
    device: Option<WireDevice>,
    #[serde(default)]
    #[allow(dead_code)]
    room: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    patient: Option<IgnoredAny>,
    kind: String,
    #[serde(default)]
    observed_at: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    received_at: Option<IgnoredAny>,
    #[serde(default)]
    device_time: Option<String>,
    values: Vec<WireValue>,
    #[serde(default)]
    flags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDevice {
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    driver: Option<IgnoredAny>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    serial: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireValue {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    mdc: Option<u32>,
    name: String,
    #[serde(default)]
    value: Option<Decimal>,
    unit: String,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    absent: Option<AbsentReason>,
}

fn malformed(field: &str, reason: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed(format!("json: {field}: {reason}"))
}

/// Why `frame` is not a [`WireReading`], naming the field (`values[1].unit: ...`).
fn wire_error(frame: &[u8]) -> DecodeError {
    let de = &mut serde_json::Deserializer::from_slice(frame);
    match serde_path_to_error::deserialize::<_, WireReading>(de) {
        Ok(_) => malformed("(object)", "not a reading"),
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." {
                "(object)".to_string()
            } else {
                path
            };
            malformed(&field, e.inner())
        }
    }
}

/// Decodes one JSON object into a device message. See the module docs for the rules.
pub fn decode_frame(frame: &[u8]) -> Result<DeviceMessage, DecodeError> {
    // The plain parse first: tracking the path of every field costs a good part of the parse,
    // and only a refused frame needs it (parsed again to name the field).
    // (Like the path-tracking parse, it reads one object and does not look past it.)
    let wire = match WireReading::deserialize(&mut serde_json::Deserializer::from_slice(frame)) {
        Ok(w) => w,
        Err(_) => return Err(wire_error(frame)),
    };
    let kind: Kind = wire.kind.parse().map_err(|e| malformed("kind", e))?;
    if wire.values.is_empty() {
        return Err(malformed("values", "a reading needs at least one value"));
    }
    let mut values: Vec<DeviceValue> = Vec::with_capacity(wire.values.len());
    for (i, v) in wire.values.into_iter().enumerate() {
        values.push(value(kind, i, v, &values)?);
    }
    let device_time = match (&wire.device_time, &wire.observed_at) {
        (Some(t), _) => Some(rfc3339("device_time", t)?),
        (None, Some(t)) => Some(rfc3339("observed_at", t)?),
        (None, None) => None,
    };
    let flags = wire.flags.unwrap_or_default();
    if flags.len() > MAX_FLAGS {
        return Err(malformed("flags", format!("more than {MAX_FLAGS} flags")));
    }
    let mut msg = DeviceMessage::new(kind, values);
    msg.device_time = device_time.map(DeviceTime::Absolute);
    for (i, f) in flags.into_iter().enumerate() {
        if f.is_empty() || f.len() > MAX_FLAG_LEN {
            return Err(malformed(
                &format!("flags[{i}]"),
                format!("a flag has 1 to {MAX_FLAG_LEN} characters"),
            ));
        }
        msg.flags.push(Flag::new(f));
    }
    if let Some(d) = wire.device {
        msg.model = d.model;
        msg.serial = d.serial;
    }
    Ok(msg)
}

fn value(
    kind: Kind,
    i: usize,
    v: WireValue,
    earlier: &[DeviceValue],
) -> Result<DeviceValue, DecodeError> {
    let field = |f: &str| format!("values[{i}].{f}");
    let Some(comp) = codes::component(kind, &v.name) else {
        let names: Vec<&str> = codes::kind_codes(kind)
            .components
            .iter()
            .map(|c| c.name)
            .collect();
        return Err(malformed(
            &field("name"),
            format!(
                "`{}` is not a component of {kind}; expected one of: {}",
                v.name,
                names.join(", ")
            ),
        ));
    };
    if earlier.iter().any(|e| e.name == v.name) {
        return Err(malformed(
            &field("name"),
            format!("`{}` appears twice", v.name),
        ));
    }
    if let Some(code) = v.code.as_deref().filter(|c| *c != comp.code()) {
        return Err(malformed(
            &field("code"),
            format!("`{code}` is not the code of `{}` ({})", v.name, comp.code()),
        ));
    }
    if !units::can_convert(&v.unit, comp.ucum) {
        return Err(malformed(
            &field("unit"),
            format!("`{}` cannot be converted to `{}`", v.unit, comp.ucum),
        ));
    }
    let measured = match (v.value, v.absent) {
        (Some(d), None) => Measured::Value(d),
        (None, Some(r)) => Measured::Absent(r),
        (None, None) => return Err(malformed(&field("value"), "null requires `absent`")),
        (Some(_), Some(_)) => {
            return Err(malformed(&field("absent"), "given together with a value"))
        }
    };
    Ok(DeviceValue {
        name: v.name,
        value: measured,
        unit: Ucum::new(v.unit),
        site: v.site,
        mdc: v.mdc,
    })
}

fn rfc3339(field: &str, s: &str) -> Result<OffsetDateTime, DecodeError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| malformed(field, "not an RFC 3339 date-time"))
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
