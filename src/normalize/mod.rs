//! Normalize: a device message → a canonical [`Reading`]. Pure functions over tables.
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

pub mod codes;
pub mod plausibility;
pub mod spot;
pub mod units;
pub mod zone;

use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use crate::decode::{DeviceMessage, DeviceTime, Measured};
use crate::reading::{DeviceId, DeviceInfo, Flag, Kind, Reading, Ucum, Value};
pub use zone::{LocalZone, WallOffsets};

/// How far a device time may lie after its receipt and still be trusted: devices report whole
/// seconds, so a value measured and sent within the same second may read up to a second
/// "late"; one more second covers the host clock's own step. Anything later proves a fast
/// device clock (a reading cannot be measured after it arrived).
pub const FUTURE_GRACE: Duration = Duration::from_secs(2);

/// Everything about the device that normalize needs besides the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeContext {
    pub device: DeviceId,
    pub driver: String,
    pub room: Option<String>,
    /// Device time further from the receipt time than this is not trusted.
    pub clock_skew_tolerance: Duration,
    /// The zone device wall-clock times are read in (the host's, see [`zone`]).
    pub zone: LocalZone,
}

/// The flag of a reading whose local device time showed twice (clocks put back) with both
/// instants within the clock-skew tolerance: `observed_at` is the later one.
pub const TIME_AMBIGUOUS: &str = "time_ambiguous";

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

/// A device time placed on the time line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedTime {
    pub at: OffsetDateTime,
    /// The wall-clock time showed twice (clocks put back) and both instants are within the
    /// clock-skew tolerance of receipt: `at` is the later one, and the reading is flagged
    /// `time_ambiguous`.
    pub ambiguous: bool,
}

/// The absolute time of a device time, or `None` for [`DeviceTime::ClockNotSet`]. See
/// [`place_device_time`].
pub fn resolve_device_time(
    t: DeviceTime,
    received_at: OffsetDateTime,
    ctx: &NormalizeContext,
) -> Result<Option<OffsetDateTime>, NormalizeError> {
    Ok(place_device_time(t, received_at, ctx)?.map(|p| p.at))
}

/// Places a device time on the time line, or `None` for [`DeviceTime::ClockNotSet`].
///
/// - `Absolute` times are kept.
/// - `Local` wall-clock times are read in `ctx.zone` with the offset its rules give at that
///   wall-clock time ([`local_instant`]): daylight saving applies per reading.
/// - `TimeOfDay` is placed on the local date of `received_at`, the day before or the day
///   after, whichever puts it closest to `received_at` (within ±12 h: a line from just
///   before midnight received just after belongs to the previous day, a device clock slightly
///   ahead across midnight to the next), each read in the zone like a `Local` time.
pub fn place_device_time(
    t: DeviceTime,
    received_at: OffsetDateTime,
    ctx: &NormalizeContext,
) -> Result<Option<PlacedTime>, NormalizeError> {
    let (zone, tolerance) = (&ctx.zone, ctx.clock_skew_tolerance);
    Ok(Some(match t {
        DeviceTime::Absolute(at) => PlacedTime {
            at,
            ambiguous: false,
        },
        DeviceTime::Local(wall) => local_instant(wall, received_at, zone, tolerance)?,
        DeviceTime::ClockNotSet => return Ok(None),
        DeviceTime::TimeOfDay(tod) => {
            let today = received_at.to_offset(zone.offset_at(received_at)).date();
            let days = [today.previous_day(), Some(today), today.next_day()];
            let mut best: Option<PlacedTime> = None;
            for day in days.into_iter().flatten() {
                let p = local_instant(day.with_time(tod), received_at, zone, tolerance)?;
                let closer = best.is_none_or(|b| {
                    (p.at - received_at).unsigned_abs() < (b.at - received_at).unsigned_abs()
                });
                if closer {
                    best = Some(p);
                }
            }
            best.ok_or(NormalizeError::TimeOutOfRange)?
        }
    }))
}

/// The instant of the wall-clock time `wall` in `zone`, received at `received_at`.
///
/// - A time that showed once has its one offset.
/// - A time the clocks skipped (put forward) is read with the offset before the change: a
///   device showing it has not been put forward yet, so that is the instant it meant. The
///   clock-skew check then decides whether to trust it, as for any reading.
/// - A time that showed twice (clocks put back): candidates more than `tolerance` after
///   receipt are impossible (a reading is not from the future); of the rest the later one is
///   taken, being the closer to receipt. When both candidates are within `tolerance` of
///   receipt the device time cannot tell them apart: the later one is taken and marked
///   ambiguous.
pub fn local_instant(
    wall: PrimitiveDateTime,
    received_at: OffsetDateTime,
    zone: &LocalZone,
    tolerance: Duration,
) -> Result<PlacedTime, NormalizeError> {
    let at = |offset| wall.assume_offset(offset);
    let one = |at| PlacedTime {
        at,
        ambiguous: false,
    };
    match zone
        .offsets_of(wall)
        .ok_or(NormalizeError::TimeOutOfRange)?
    {
        WallOffsets::One(offset) => Ok(one(at(offset))),
        WallOffsets::Skipped { before, .. } => Ok(one(at(before))),
        WallOffsets::Repeated { before, after } => {
            let (first, second) = (at(before), at(after));
            let near = |t: OffsetDateTime| (t - received_at).unsigned_abs() <= tolerance;
            if near(first) && near(second) {
                return Ok(PlacedTime {
                    at: second,
                    ambiguous: true,
                });
            }
            let not_future = second <= received_at || near(second);
            Ok(one(if not_future { second } else { first }))
        }
    }
}

#[cfg(test)]
mod tests;
