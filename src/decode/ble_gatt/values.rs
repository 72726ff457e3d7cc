//! The characteristic layouts of `ble-gatt` (docs/devices/ble-gatt.md): one characteristic value
//! (flags byte first) → [`DecodeEvent`]s, by the rules in the parent module's docs.
//!
//! Every field is read through a bounds-checked [`Cursor`] in wire order, so a value whose
//! flags promise a field it lacks is rejected before anything is emitted, with a reason naming
//! the field. Numbers go through [`ieee11073`] or exact integer arithmetic, never a float.

use time::OffsetDateTime;

use super::super::ieee11073::{self, DateTimeError};
use super::super::{DecodeError, DecodeEvent, DeviceMessage, DeviceTime, DeviceValue, Measured};
use crate::model::codes::{self, MDC_PULSE_RATE_CUFF, MDC_PULSE_RATE_OXIMETER};
use crate::reading::{AbsentReason, Decimal, Flag, Kind};

/// Largest characteristic value accepted (the ATT maximum attribute length).
pub const MAX_VALUE: usize = 512;

/// Blood Pressure Measurement.
pub const BLOOD_PRESSURE: u16 = 0x2A35;
/// Intermediate Cuff Pressure (same layout; progress only).
pub const INTERMEDIATE_CUFF_PRESSURE: u16 = 0x2A36;
/// Temperature Measurement.
pub const TEMPERATURE: u16 = 0x2A1C;
/// Intermediate Temperature (same layout; progress only).
pub const INTERMEDIATE_TEMPERATURE: u16 = 0x2A1E;
/// Heart Rate Measurement.
pub const HEART_RATE: u16 = 0x2A37;
/// PLX Spot-Check Measurement.
pub const PLX_SPOT_CHECK: u16 = 0x2A5E;
/// PLX Continuous Measurement.
pub const PLX_CONTINUOUS: u16 = 0x2A5F;
/// Weight Measurement.
pub const WEIGHT: u16 = 0x2A9D;

/// The characteristics this driver decodes, with their names for messages.
pub const SUPPORTED: [(u16, &str); 8] = [
    (BLOOD_PRESSURE, "blood pressure"),
    (INTERMEDIATE_CUFF_PRESSURE, "intermediate cuff pressure"),
    (TEMPERATURE, "temperature"),
    (INTERMEDIATE_TEMPERATURE, "intermediate temperature"),
    (HEART_RATE, "heart rate"),
    (PLX_SPOT_CHECK, "PLX spot-check"),
    (PLX_CONTINUOUS, "PLX continuous"),
    (WEIGHT, "weight"),
];

/// PLX Measurement Status bits that become flags (bit, flag name).
pub const PLX_MEASUREMENT_FLAGS: [(u8, &str); 5] = [
    (5, "measurement_ongoing"),
    (6, "early_estimate"),
    (9, "from_storage"),
    (12, "calibration_ongoing"),
    (14, "questionable_measurement"),
];

/// PLX Device and Sensor Status bits that become flags (bits 1–15).
pub const PLX_SENSOR_FLAGS: [&str; 15] = [
    "equipment_malfunction",
    "signal_processing_irregularity",
    "inadequate_signal",
    "poor_signal",
    "low_perfusion",
    "erratic_signal",
    "non_pulsatile_signal",
    "questionable_pulse",
    "signal_analysis_ongoing",
    "sensor_interference",
    "sensor_unconnected",
    "unknown_sensor",
    "sensor_displaced",
    "sensor_malfunction",
    "sensor_disconnected",
];

pub(super) fn chr_name(chr: u16) -> Option<&'static str> {
    SUPPORTED.iter().find(|(c, _)| *c == chr).map(|(_, n)| *n)
}

pub(super) fn malformed(reason: String) -> DecodeEvent {
    DecodeEvent::Error(DecodeError::Malformed(reason))
}

/// What one characteristic value amounts to, before the shared rules are applied.
enum Outcome {
    Messages(Vec<DeviceMessage>),
    Idle { episode_end: bool },
    Dropped(String),
}

/// Decodes one characteristic value and appends its events to `out`. `rx_time` (the gateway's
/// receipt time) becomes the device time of payloads that carry no time stamp.
pub fn decode_value(
    chr: u16,
    value: &[u8],
    rx_time: Option<OffsetDateTime>,
    out: &mut Vec<DecodeEvent>,
) {
    let Some(name) = chr_name(chr) else {
        out.push(DecodeEvent::Error(DecodeError::Unsupported(format!(
            "ble-gatt: characteristic {chr:04X} is not supported"
        ))));
        return;
    };
    if value.len() > MAX_VALUE {
        out.push(DecodeEvent::Error(DecodeError::Oversized(MAX_VALUE)));
        return;
    }
    let what = format!("{name} {chr:04X}");
    let Some((&flags, body)) = value.split_first() else {
        out.push(malformed(format!("{what}: empty value: no flags byte")));
        return;
    };
    let mut c = Cursor {
        what: &what,
        flags,
        len: value.len(),
        body,
    };
    let outcome = match chr {
        BLOOD_PRESSURE | INTERMEDIATE_CUFF_PRESSURE => blood_pressure(&mut c),
        TEMPERATURE | INTERMEDIATE_TEMPERATURE => temperature(&mut c),
        HEART_RATE => heart_rate(&mut c),
        PLX_SPOT_CHECK => plx(&mut c, false),
        PLX_CONTINUOUS => plx(&mut c, true),
        _ => weight(&mut c),
    };
    match outcome {
        Err(e) => out.push(DecodeEvent::Error(e)),
        Ok(Outcome::Idle { episode_end }) => out.push(DecodeEvent::Idle { episode_end }),
        Ok(Outcome::Dropped(reason)) => out.push(DecodeEvent::Error(DecodeError::Unsupported(
            format!("{what}: {reason}; reading dropped (docs/devices/ble-gatt.md#0x2a5e-and-0x2a5f-pulse-oximetry)"),
        ))),
        Ok(Outcome::Messages(_))
            if chr == INTERMEDIATE_CUFF_PRESSURE || chr == INTERMEDIATE_TEMPERATURE =>
        {
            out.push(DecodeEvent::Idle { episode_end: false });
        }
        Ok(Outcome::Messages(msgs)) if msgs.iter().all(DeviceMessage::is_empty_reading) => {
            out.push(DecodeEvent::Idle { episode_end: true });
        }
        Ok(Outcome::Messages(msgs)) => {
            for mut m in msgs {
                if m.device_time.is_none() {
                    m.device_time = rx_time.map(DeviceTime::Absolute);
                }
                out.push(DecodeEvent::Message(m));
            }
        }
    }
}

/// A bounds-checked reader over the fields after the flags byte.
struct Cursor<'a> {
    what: &'a str,
    flags: u8,
    /// Length of the whole value, flags included (for messages).
    len: usize,
    body: &'a [u8],
}

impl Cursor<'_> {
    fn flag(&self, bit: u8) -> bool {
        self.flags & (1 << bit) != 0
    }

    fn missing(&self, field: &str, need: usize) -> DecodeError {
        DecodeError::Malformed(format!(
            "{}: flags 0x{:02X} promise {field} ({need} bytes) but the value ends after {} bytes",
            self.what, self.flags, self.len
        ))
    }

    fn take<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self
            .body
            .split_first_chunk::<N>()
            .ok_or_else(|| self.missing(field, N))?;
        self.body = tail;
        Ok(*head)
    }

    fn take_if<const N: usize>(
        &mut self,
        bit: u8,
        field: &str,
    ) -> Result<Option<[u8; N]>, DecodeError> {
        if self.flag(bit) {
            self.take::<N>(field).map(Some)
        } else {
            Ok(None)
        }
    }

    fn sfloat(&mut self, field: &str) -> Result<Measured, DecodeError> {
        self.take::<2>(field).map(ieee11073::sfloat_le)
    }

    fn time_if(&mut self, bit: u8) -> Result<Option<DeviceTime>, DecodeError> {
        let what = self.what;
        self.take_if::<7>(bit, "time stamp")?
            .map(|b| {
                ieee11073::date_time(b)
                    .map_err(|e: DateTimeError| DecodeError::Malformed(format!("{what}: {e}")))
            })
            .transpose()
    }
}

fn value(name: &str, m: Measured, unit: &str, mdc: Option<u32>) -> DeviceValue {
    let mut v = DeviceValue::new(name, m, unit);
    v.mdc = mdc;
    v
}

fn message(
    kind: Kind,
    values: Vec<DeviceValue>,
    t: Option<DeviceTime>,
    f: &[Flag],
) -> DeviceMessage {
    let mut m = DeviceMessage::new(kind, values);
    m.device_time = t;
    m.flags = f.to_vec();
    m
}

fn user_flag(user: Option<[u8; 1]>, flags: &mut Vec<Flag>) {
    if let Some([u]) = user.filter(|[u]| *u != 0xFF) {
        flags.push(Flag::device(&format!("user:{u}")));
    }
}

/// 0x2A35 / 0x2A36 (docs/devices/ble-gatt.md#0x2a35-blood-pressure).
fn blood_pressure(c: &mut Cursor) -> Result<Outcome, DecodeError> {
    let unit = if c.flag(0) { "kPa" } else { "mm[Hg]" };
    let sys = c.sfloat("systolic")?;
    let dia = c.sfloat("diastolic")?;
    let map = c.sfloat("mean arterial pressure")?;
    let time = c.time_if(1)?;
    let pulse = c.take_if::<2>(2, "pulse rate")?.map(ieee11073::sfloat_le);
    let user = c.take_if::<1>(3, "user ID")?;
    let status = c
        .take_if::<2>(4, "measurement status")?
        .map(u16::from_le_bytes);
    let mut flags = Vec::new();
    if let Some(s) = status {
        let bits = [
            (0, "body_movement"),
            (1, "cuff_loose"),
            (2, "irregular_pulse"),
        ];
        for (bit, name) in bits.into_iter().chain([(5, "improper_position")]) {
            if s & (1 << bit) != 0 {
                flags.push(Flag::device(name));
            }
        }
        match (s >> 3) & 0b11 {
            1 => flags.push(Flag::device("pulse_rate_above_range")),
            2 => flags.push(Flag::device("pulse_rate_below_range")),
            _ => {}
        }
    }
    user_flag(user, &mut flags);
    let bp = vec![
        value("systolic", sys, unit, None),
        value("diastolic", dia, unit, None),
        value("mean", map, unit, None),
    ];
    let mut msgs = vec![message(Kind::BloodPressure, bp, time, &flags)];
    if let Some(p) = pulse {
        let hr = vec![value("heart_rate", p, "/min", Some(MDC_PULSE_RATE_CUFF))];
        msgs.push(message(Kind::HeartRate, hr, time, &flags));
    }
    Ok(Outcome::Messages(msgs))
}

/// 0x2A1C / 0x2A1E (docs/devices/ble-gatt.md#0x2a1c-temperature).
fn temperature(c: &mut Cursor) -> Result<Outcome, DecodeError> {
    let unit = if c.flag(0) { "[degF]" } else { "Cel" };
    let raw = c.take::<4>("temperature")?;
    let temp = ieee11073::float_le(raw)
        .map_err(|e| DecodeError::Malformed(format!("{}: temperature: {e}", c.what)))?;
    let time = c.time_if(1)?;
    let site = c
        .take_if::<1>(2, "temperature type")?
        .and_then(|[t]| codes::site_for_ble_type(t))
        .map(|s| s.name.to_string());
    let mut v = value("temperature", temp, unit, None);
    v.site = site;
    Ok(Outcome::Messages(vec![message(
        Kind::BodyTemperature,
        vec![v],
        time,
        &[],
    )]))
}

/// 0x2A37 (docs/devices/ble-gatt.md#0x2a37-heart-rate).
fn heart_rate(c: &mut Cursor) -> Result<Outcome, DecodeError> {
    let hr = if c.flag(0) {
        u16::from_le_bytes(c.take::<2>("heart rate (uint16)")?)
    } else {
        u16::from(c.take::<1>("heart rate (uint8)")?[0])
    };
    c.take_if::<2>(3, "energy expended")?;
    if c.flag(4) {
        c.take::<2>("RR-interval")?;
        if !c.body.len().is_multiple_of(2) {
            return Err(DecodeError::Malformed(format!(
                "{}: RR-intervals end in half an interval ({} bytes after the flags)",
                c.what,
                c.len.saturating_sub(1)
            )));
        }
    }
    let mut flags = Vec::new();
    if c.flag(2) && !c.flag(1) {
        flags.push(Flag::device("no_sensor_contact"));
    }
    let v = value(
        "heart_rate",
        Measured::Value(Decimal::from_int(i64::from(hr))),
        "/min",
        None,
    );
    Ok(Outcome::Messages(vec![message(
        Kind::HeartRate,
        vec![v],
        None,
        &flags,
    )]))
}

/// 0x2A5E (`continuous == false`) and 0x2A5F (docs/devices/ble-gatt.md#0x2a5e-and-0x2a5f-pulse-oximetry).
fn plx(c: &mut Cursor, continuous: bool) -> Result<Outcome, DecodeError> {
    let spo2 = c.sfloat("SpO2")?;
    let pr = c.sfloat("pulse rate")?;
    let (time, status_bit) = if continuous {
        c.take_if::<4>(0, "SpO2PR-Fast")?;
        c.take_if::<4>(1, "SpO2PR-Slow")?;
        (None, 2)
    } else {
        (c.time_if(0)?, 1)
    };
    let meas = c
        .take_if::<2>(status_bit, "measurement status")?
        .map(u16::from_le_bytes);
    let sensor = c
        .take_if::<3>(status_bit + 1, "device and sensor status")?
        .map(|[a, b, d]| u32::from_le_bytes([a, b, d, 0]));
    c.take_if::<2>(status_bit + 2, "pulse amplitude index")?;
    let time = if !continuous && c.flag(4) {
        Some(DeviceTime::ClockNotSet)
    } else {
        time
    };
    let mut flags = Vec::new();
    if let Some(s) = meas {
        let bit = |n: u8| s & (1 << n) != 0;
        for (n, why) in [
            (10, "demonstration data"),
            (11, "test data"),
            (15, "invalid measurement"),
        ] {
            if bit(n) {
                return Ok(Outcome::Dropped(format!(
                    "measurement status says {why} (bit {n})"
                )));
            }
        }
        if bit(13) {
            return Ok(Outcome::Idle { episode_end: true });
        }
        flags.extend(
            PLX_MEASUREMENT_FLAGS
                .iter()
                .filter(|(n, _)| bit(*n))
                .map(|(_, f)| Flag::device(f)),
        );
    }
    if let Some(s) = sensor {
        let set = PLX_SENSOR_FLAGS
            .iter()
            .zip(1u8..)
            .filter(|(_, n)| s & (1 << n) != 0);
        flags.extend(set.map(|(f, _)| Flag::device(f)));
    }
    let spo2 = value(
        "spo2",
        spo2,
        "%",
        Some(codes::kind_codes(Kind::Spo2).mdc.code),
    );
    let pr = value("heart_rate", pr, "/min", Some(MDC_PULSE_RATE_OXIMETER));
    Ok(Outcome::Messages(vec![
        message(Kind::Spo2, vec![spo2], time, &flags),
        message(Kind::HeartRate, vec![pr], time, &flags),
    ]))
}

/// A fixed-resolution uint16 field: `raw × step` with `scale` digits; 0xFFFF is invalid.
fn fixed(raw: [u8; 2], step: i64, scale: u8) -> Measured {
    match u16::from_le_bytes(raw) {
        0xFFFF => Measured::Absent(AbsentReason::Error),
        v => Measured::Value(Decimal::new(i64::from(v) * step, scale)),
    }
}

/// 0x2A9D (docs/devices/ble-gatt.md#0x2a9d-weight).
///
/// The height field is the user's profile height stored in the scale, not a measurement: it is
/// never forwarded as a measured body height. It is used only to check the BMI the scale
/// computed: a BMI more than [`BMI_TOLERANCE`] from weight / height² is flagged
/// `bmi_inconsistent` (the BMI field's resolution is 0.1 kg/m²).
fn weight(c: &mut Cursor) -> Result<Outcome, DecodeError> {
    let imperial = c.flag(0);
    let raw = c.take::<2>("weight")?;
    let time = c.time_if(1)?;
    let user = c.take_if::<1>(2, "user ID")?;
    let bmi = c.take_if::<2>(3, "BMI")?;
    let profile_height = c.take_if::<2>(3, "height")?;
    let mut flags = Vec::new();
    user_flag(user, &mut flags);
    let w = if imperial {
        value("weight", fixed(raw, 1, 2), "[lb_av]", None)
    } else {
        value("weight", fixed(raw, 5, 3), "kg", None)
    };
    let mut msgs = vec![message(Kind::BodyWeight, vec![w], time, &flags)];
    if let Some(b) = bmi {
        let mut bmi_flags = flags.clone();
        if bmi_disagrees(raw, b, profile_height, imperial) {
            bmi_flags.push(Flag::new("bmi_inconsistent"));
        }
        let b = value("bmi", fixed(b, 1, 1), "kg/m2", None);
        msgs.push(message(Kind::Bmi, vec![b], time, &bmi_flags));
    }
    Ok(Outcome::Messages(msgs))
}

/// Largest difference (kg/m²) between the scale's BMI and weight / height² that still agrees.
pub const BMI_TOLERANCE: f64 = 0.5;

/// Whether the scale's BMI disagrees with the weight and stored height of the same frame.
/// Fields the scale marks unsuccessful (0xFFFF) or a zero height are not compared.
fn bmi_disagrees(weight: [u8; 2], bmi: [u8; 2], height: Option<[u8; 2]>, imperial: bool) -> bool {
    let field = |raw: [u8; 2]| match u16::from_le_bytes(raw) {
        0xFFFF => None,
        v => Some(f64::from(v)),
    };
    let (Some(w), Some(b), Some(h)) = (field(weight), field(bmi), height.and_then(field)) else {
        return false;
    };
    if h == 0.0 {
        return false;
    }
    // SI: 0.005 kg and 0.001 m per step; imperial: 0.01 lb and 0.1 in, converted to kg and m.
    let (kg, m) = if imperial {
        (w * 0.01 * 0.453_592_37, h * 0.1 * 0.0254)
    } else {
        (w * 0.005, h * 0.001)
    };
    (kg / (m * m) - b * 0.1).abs() > BMI_TOLERANCE
}
