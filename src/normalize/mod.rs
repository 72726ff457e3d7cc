//! Normalize: a device message → a canonical [`Reading`]. Pure functions over the tables of
//! [`crate::model`] (re-exported here under their old paths: `normalize::codes`, `units`,
//! `plausibility`, `zone`, the time functions).
//!
//! Receives one [`DeviceMessage`] (device units, device time as reported), its receipt time and
//! the device's context; emits a [`Reading`] with `id: None` and `patient: None` (the queue
//! assigns ids, the patient-context stage assigns patients) and `room` from the context:
//! - codes from [`codes`] (a device's own MDC code overrides the table default);
//! - values converted to the canonical UCUM unit by [`units`], precision kept;
//! - device time resolved ([`resolve_device_time`]; local wall-clock times in the host's zone
//!   with its daylight-saving rules at that time, see [`zone`]) and trusted only when it is not
//!   later than the receipt (beyond [`FUTURE_GRACE`]) nor earlier by more than the clock-skew
//!   tolerance, else `observed_at = received_at` and the flag `clock_untrusted`; a trusted local
//!   time that showed twice as the clocks went back is flagged `time_ambiguous`;
//! - device flags carried, then [`plausibility`] flags appended (duplicates dropped).
//!
//! Unknown component names, unconvertible units, empty or duplicate values are
//! [`NormalizeError`]s naming what was wrong.
//!
//! [`spot`] turns a continuous oximeter stream into one spot-check message per measurement
//! before normalization.

pub mod spot;

use time::OffsetDateTime;

pub use crate::model::time::{
    local_instant, place_device_time, resolve_device_time, NormalizeContext, PlacedTime,
    TimeOutOfRange, FUTURE_GRACE, TIME_AMBIGUOUS,
};
pub use crate::model::{codes, plausibility, units, zone};
use crate::model::{DeviceMessage, DeviceTime, Measured};
use crate::reading::{DeviceInfo, Flag, Kind, Reading, Ucum, Value};
pub use zone::{LocalZone, WallOffsets};

/// Why a device message could not become a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("unknown component `{name}` for kind {kind}")]
    UnknownComponent { kind: Kind, name: String },
    #[error("component `{name}`: {source}")]
    Unit {
        name: String,
        #[source]
        source: units::UnitError,
    },
    #[error("component `{name}` appears more than once")]
    DuplicateComponent { name: String },
    #[error("a {kind} message without values")]
    NoValues { kind: Kind },
    #[error("device time cannot be placed on a calendar date")]
    TimeOutOfRange,
}

/// Turns a device message into a canonical reading. See the module docs.
pub fn normalize(
    msg: DeviceMessage,
    received_at: OffsetDateTime,
    ctx: &NormalizeContext,
) -> Result<Reading, NormalizeError> {
    let kind = msg.kind;
    if msg.values.is_empty() {
        return Err(NormalizeError::NoValues { kind });
    }
    let mut values: Vec<Value> = Vec::with_capacity(msg.values.len());
    for dv in msg.values {
        if values.iter().any(|v| v.name == dv.name) {
            return Err(NormalizeError::DuplicateComponent { name: dv.name });
        }
        let comp =
            codes::component(kind, &dv.name).ok_or_else(|| NormalizeError::UnknownComponent {
                kind,
                name: dv.name.clone(),
            })?;
        let unit_err = |source| NormalizeError::Unit {
            name: dv.name.clone(),
            source,
        };
        let (value, absent) = match dv.value {
            Measured::Value(d) => (
                Some(units::convert(d, dv.unit.as_str(), comp.ucum).map_err(unit_err)?),
                None,
            ),
            Measured::Absent(reason) => {
                if !units::can_convert(dv.unit.as_str(), comp.ucum) {
                    return Err(unit_err(units::UnitError::NotConvertible {
                        from: dv.unit.as_str().to_string(),
                        to: comp.ucum.to_string(),
                    }));
                }
                (None, Some(reason))
            }
        };
        values.push(Value {
            code: comp.code(),
            mdc: Some(dv.mdc.unwrap_or(comp.mdc.code)),
            name: dv.name,
            value,
            unit: Ucum::new(comp.ucum),
            site: dv.site,
            absent,
        });
    }

    let mut flags = msg.flags;
    let ambiguous = match msg.device_time {
        Some(t) => place_device_time(t, received_at, ctx)?.is_some_and(|p| p.ambiguous),
        None => false,
    };
    let (observed_at, device_time) = observed_time(msg.device_time, received_at, ctx, &mut flags)?;
    let ambiguous_flag = Flag::new(TIME_AMBIGUOUS);
    if ambiguous && device_time == Some(observed_at) && !flags.contains(&ambiguous_flag) {
        flags.push(ambiguous_flag);
    }
    for f in plausibility::check(kind, &values) {
        if !flags.contains(&f) {
            flags.push(f);
        }
    }
    Ok(Reading {
        id: None,
        device: DeviceInfo {
            id: ctx.device.clone(),
            driver: ctx.driver.clone(),
            model: msg.model,
            serial: msg.serial,
        },
        room: ctx.room.clone(),
        patient: None,
        patient_record: None,
        kind,
        observed_at,
        received_at,
        device_time,
        values,
        flags,
        waveform: None,
    })
}

/// Decides `observed_at` and `device_time`, pushing `clock_untrusted` when the device clock is
/// not set, ahead of the receipt time (beyond [`FUTURE_GRACE`]), or further behind it than the
/// clock-skew tolerance.
fn observed_time(
    reported: Option<DeviceTime>,
    received_at: OffsetDateTime,
    ctx: &NormalizeContext,
    flags: &mut Vec<Flag>,
) -> Result<(OffsetDateTime, Option<OffsetDateTime>), NormalizeError> {
    let mut untrusted = || {
        let f = Flag::clock_untrusted();
        if !flags.contains(&f) {
            flags.push(f);
        }
    };
    let Some(reported) = reported else {
        return Ok((received_at, None));
    };
    let Some(t) = resolve_device_time(reported, received_at, ctx)? else {
        untrusted();
        return Ok((received_at, None));
    };
    let ahead = t > received_at + FUTURE_GRACE;
    if !ahead && (received_at - t).unsigned_abs() <= ctx.clock_skew_tolerance {
        Ok((t, Some(t)))
    } else {
        untrusted();
        Ok((received_at, Some(t)))
    }
}

#[cfg(test)]
mod tests;

impl From<TimeOutOfRange> for NormalizeError {
    fn from(_: TimeOutOfRange) -> Self {
        NormalizeError::TimeOutOfRange
    }
}
