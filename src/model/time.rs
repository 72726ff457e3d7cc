//! Device time on the time line, and the device context every reading is built in.
//!
//! Receives a [`DeviceTime`] as a decoder reported it, its receipt time and the device's
//! [`NormalizeContext`]; promises the instant it stands for in the context's zone
//! ([`place_device_time`], docs/device-time.md), or [`TimeOutOfRange`] when it cannot be put
//! on a calendar date. Whether that instant is trusted (the clock-skew tolerance,
//! [`FUTURE_GRACE`]) is decided by whoever builds the reading (normalize, the ECG strip
//! readings) with these same constants. Pure functions.

use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use super::message::DeviceTime;
use super::zone::{LocalZone, WallOffsets};
use crate::reading::DeviceId;

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
    /// The zone device wall-clock times are read in (the host's, see [`super::zone`]).
    pub zone: LocalZone,
}

/// The flag of a reading whose local device time showed twice (clocks put back) with both
/// instants within the clock-skew tolerance: `observed_at` is the later one.
pub const TIME_AMBIGUOUS: &str = "time_ambiguous";

/// A device time that cannot be placed on a calendar date (beyond the supported years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("device time cannot be placed on a calendar date")]
pub struct TimeOutOfRange;

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
) -> Result<Option<OffsetDateTime>, TimeOutOfRange> {
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
) -> Result<Option<PlacedTime>, TimeOutOfRange> {
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
            best.ok_or(TimeOutOfRange)?
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
) -> Result<PlacedTime, TimeOutOfRange> {
    let at = |offset| wall.assume_offset(offset);
    let one = |at| PlacedTime {
        at,
        ambiguous: false,
    };
    match zone.offsets_of(wall).ok_or(TimeOutOfRange)? {
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
