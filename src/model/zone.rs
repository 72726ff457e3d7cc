//! The time zone in which devices that send wall-clock time are read.
//!
//! Receives a wall-clock time (a date and time without offset) or an instant; promises the
//! UTC offset(s) the zone's rules give at exactly that point, from the time-zone database
//! (daylight saving included), so a change of season needs no restart. See
//! `docs/device-time.md`.
//!
//! [`LocalZone::system`] is the host's zone: the `TZ` environment variable when set, else
//! `/etc/localtime`. The zone database is read from `/usr/share/zoneinfo`, with a copy built
//! into the binary for hosts without one.

use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A time zone: its name (when it has one) and its offset rules. Cheap to clone (shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalZone(jiff::tz::TimeZone);

/// The offsets a zone gives one wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WallOffsets {
    /// The usual case: the time showed once, at this offset.
    One(UtcOffset),
    /// The clocks were put forward over this time (spring): a correct clock never showed it.
    /// `before` is the offset in force until the change, `after` the one from it.
    Skipped { before: UtcOffset, after: UtcOffset },
    /// The clocks were put back over this time (autumn): it showed twice, first at `before`
    /// and an hour (the change) later at `after`.
    Repeated { before: UtcOffset, after: UtcOffset },
}

/// A zone name the time-zone database does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone `{0}`")]
pub struct UnknownZone(pub String);

/// The host's zone could not be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot determine the host's time zone (TZ and /etc/localtime): {0}")]
pub struct NoSystemZone(String);

impl LocalZone {
    /// UTC (no daylight saving).
    #[must_use]
    pub fn utc() -> Self {
        Self(jiff::tz::TimeZone::UTC)
    }

    /// A zone that always has `offset`.
    #[must_use]
    pub fn fixed(offset: UtcOffset) -> Self {
        // Both crates allow offsets up to ±25:59:59, so this conversion always succeeds.
        let o =
            jiff::tz::Offset::from_seconds(offset.whole_seconds()).unwrap_or(jiff::tz::Offset::UTC);
        Self(jiff::tz::TimeZone::fixed(o))
    }

    /// A zone of the time-zone database by name (`America/New_York`).
    pub fn named(name: &str) -> Result<Self, UnknownZone> {
        jiff::tz::TimeZone::get(name)
            .map(Self)
            .map_err(|_| UnknownZone(name.to_string()))
    }

    /// The host's zone: `TZ` when set (a zone name, a zone file path or a POSIX rule), else
    /// `/etc/localtime`.
    pub fn system() -> Result<Self, NoSystemZone> {
        jiff::tz::TimeZone::try_system()
            .map(Self)
            .map_err(|e| NoSystemZone(e.to_string()))
    }

    /// The zone's database name (`Europe/Berlin`), if it has one.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.0.iana_name()
    }

    /// The zone's offset at the instant `t`.
    #[must_use]
    pub fn offset_at(&self, t: OffsetDateTime) -> UtcOffset {
        let secs = t.unix_timestamp().clamp(
            jiff::Timestamp::MIN.as_second(),
            jiff::Timestamp::MAX.as_second(),
        );
        let ts = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        to_utc_offset(self.0.to_offset(ts))
    }

    /// The offsets the zone gives the wall-clock time `wall`; `None` for a year outside
    /// ±9999.
    #[must_use]
    pub fn offsets_of(&self, wall: PrimitiveDateTime) -> Option<WallOffsets> {
        let dt = jiff::civil::DateTime::new(
            i16::try_from(wall.year()).ok()?,
            i8::try_from(u8::from(wall.month())).ok()?,
            i8::try_from(wall.day()).ok()?,
            i8::try_from(wall.hour()).ok()?,
            i8::try_from(wall.minute()).ok()?,
            i8::try_from(wall.second()).ok()?,
            i32::try_from(wall.nanosecond()).ok()?,
        )
        .ok()?;
        Some(match self.0.to_ambiguous_timestamp(dt).offset() {
            jiff::tz::AmbiguousOffset::Unambiguous { offset } => {
                WallOffsets::One(to_utc_offset(offset))
            }
            jiff::tz::AmbiguousOffset::Gap { before, after } => WallOffsets::Skipped {
                before: to_utc_offset(before),
                after: to_utc_offset(after),
            },
            jiff::tz::AmbiguousOffset::Fold { before, after } => WallOffsets::Repeated {
                before: to_utc_offset(before),
                after: to_utc_offset(after),
            },
        })
    }
}

impl std::fmt::Display for LocalZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => f.write_str("(unnamed zone)"),
        }
    }
}

fn to_utc_offset(o: jiff::tz::Offset) -> UtcOffset {
    // Both crates allow offsets up to ±25:59:59, so this conversion always succeeds.
    UtcOffset::from_whole_seconds(o.seconds()).unwrap_or(UtcOffset::UTC)
}

static LOCAL_ZONE: std::sync::OnceLock<LocalZone> = std::sync::OnceLock::new();

/// Looks up the host's time zone once (`TZ`, else `/etc/localtime`); UTC, with a warning on
/// stderr, when neither names a zone. Its rules cover every daylight-saving change, so the
/// zone need not be read again when the clocks change; a new host zone takes a restart.
pub fn init_local_zone() {
    LOCAL_ZONE.get_or_init(|| {
        LocalZone::system().unwrap_or_else(|e| {
            eprintln!("vitalsd: {e}; device wall-clock times are read as UTC");
            LocalZone::utc()
        })
    });
}

/// The host's time zone, for device clocks that report local wall time (UTC when it could not
/// be determined, or before [`init_local_zone`]).
pub fn local_zone() -> LocalZone {
    LOCAL_ZONE.get().cloned().unwrap_or_else(LocalZone::utc)
}
