//! Times on the status page as people in the exam room read them: the box's local time zone
//! (`model::zone::local_zone()`) and "3 min ago".
//!
//! Receives instants (UTC) and the page's "now". Promises: every time shown is the local wall
//! clock with the zone's offset in its tooltip, plus how long ago (or how soon) it is; the
//! `<time datetime>` attribute keeps the exact instant so `/static/page.js` can keep the
//! relative text current between refreshes.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::normalize::LocalZone;

/// The page's clock: "now" and the zone to show times in.
#[derive(Clone)]
pub struct Clock {
    pub now: OffsetDateTime,
    pub zone: LocalZone,
}

impl Clock {
    /// `t` in the local zone.
    pub fn local(&self, t: OffsetDateTime) -> OffsetDateTime {
        t.to_offset(self.zone.offset_at(t))
    }

    /// `America/New_York (UTC-05:00)`, or only the offset when the zone has no name.
    pub fn zone_label(&self) -> String {
        let off = offset_label(self.zone.offset_at(self.now));
        match self.zone.name() {
            Some(n) if !n.is_empty() => format!("{n} ({off})"),
            _ => off,
        }
    }

    /// A `<time>` element: the local clock time (`14:02`, with the date when not today) and
    /// how long ago; the full local time and offset in its tooltip.
    pub fn tag(&self, t: OffsetDateTime) -> String {
        let l = self.local(t);
        let today = self.local(self.now).date() == l.date();
        let clock = if today {
            format!("{:02}:{:02}", l.hour(), l.minute())
        } else {
            format!(
                "{} {:02} {:02}:{:02}",
                short_month(l.month()),
                l.day(),
                l.hour(),
                l.minute()
            )
        };
        let full = format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02} {}",
            l.year(),
            u8::from(l.month()),
            l.day(),
            l.hour(),
            l.minute(),
            l.second(),
            offset_label(l.offset())
        );
        format!(
            "<time datetime=\"{}\" title=\"{full}\" data-rel><span class=\"clock\">{clock}</span> <span class=\"rel\">{}</span></time>",
            t.format(&Rfc3339).unwrap_or_default(),
            relative((t - self.now).whole_seconds())
        )
    }

    /// [`Clock::tag`], or `—` without a time.
    pub fn tag_opt(&self, t: Option<OffsetDateTime>) -> String {
        t.map_or_else(|| "—".to_string(), |t| self.tag(t))
    }
}

/// `UTC-05:00`, `UTC+01:00`, `UTC`.
pub fn offset_label(off: UtcOffset) -> String {
    if off.is_utc() {
        return "UTC".into();
    }
    let (h, m, _) = off.as_hms();
    let sign = if off.is_negative() { '-' } else { '+' };
    format!("UTC{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
}

fn short_month(m: time::Month) -> &'static str {
    use time::Month::*;
    match m {
        January => "Jan",
        February => "Feb",
        March => "Mar",
        April => "Apr",
        May => "May",
        June => "Jun",
        July => "Jul",
        August => "Aug",
        September => "Sep",
        October => "Oct",
        November => "Nov",
        December => "Dec",
    }
}

/// How far `delta` seconds (negative: in the past) is from now: `just now`, `40 s ago`,
/// `3 min ago`, `2 h 05 min ago`, `3 days ago`, `in 12 min`. `/static/page.js` words it the
/// same way.
pub fn relative(delta: i64) -> String {
    let secs = delta.unsigned_abs();
    let span = if secs < 10 {
        return "just now".into();
    } else if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min", secs / 60)
    } else if secs < 48 * 3600 {
        format!("{} h {:02} min", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{} days", secs / 86_400)
    };
    if delta < 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A duration as `12m 05s` / `9s` (the time left on a room's context).
pub fn remaining(secs: Option<u64>) -> String {
    match secs {
        Some(s) if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        Some(s) => format!("{s}s"),
        None => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    #[test]
    fn relative_times_read_like_a_person_says_them() {
        assert_eq!(relative(-3), "just now");
        assert_eq!(relative(-40), "40 s ago");
        assert_eq!(relative(-185), "3 min ago");
        assert_eq!(relative(-(2 * 3600 + 5 * 60)), "2 h 05 min ago");
        assert_eq!(relative(-(3 * 86_400 + 5)), "3 days ago");
        assert_eq!(relative(12 * 60), "in 12 min");
        assert_eq!(remaining(Some(725)), "12m 05s");
        assert_eq!(remaining(Some(9)), "9s");
        assert_eq!(remaining(None), "—");
    }

    #[test]
    fn a_time_shows_the_local_clock_and_offset() {
        let clock = Clock {
            now: datetime!(2026-12-06 15:10 UTC),
            zone: LocalZone::fixed(offset!(-5)),
        };
        let tag = clock.tag(datetime!(2026-12-06 15:07 UTC));
        assert!(tag.contains(r#"<span class="clock">10:07</span>"#), "{tag}");
        assert!(tag.contains("3 min ago"), "{tag}");
        assert!(tag.contains("2026-12-06 10:07:00 UTC-05:00"), "{tag}");
        assert!(tag.contains(r#"datetime="2026-12-06T15:07:00Z""#), "{tag}");
        let older = clock.tag(datetime!(2026-12-04 15:07 UTC));
        assert!(older.contains("Dec 04 10:07"), "{older}");
        assert_eq!(offset_label(offset!(+1:30)), "UTC+01:30");
        assert_eq!(offset_label(UtcOffset::UTC), "UTC");
        assert!(clock.zone_label().contains("UTC-05:00"));
    }
}
