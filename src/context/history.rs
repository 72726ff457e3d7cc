//! One room's patient context over time: pure logic, no I/O.
//!
//! A room keeps a short history of [`Epoch`]s (oldest first; only the last may be open). An
//! epoch starts with a scan, an MQTT message or an API call, and ends when the next one
//! replaces it, when it is cleared, or when it expires `ttl` after the scan or after the last
//! explicit confirmation ([`RoomHistory::confirm`]). Readings never extend an epoch: a device
//! that keeps reporting must not keep the last scanned patient in the room.
//!
//! A reading is attributed over the [`Window`] in which it could have been measured. Exactly
//! one patient's context covering the whole window gives that patient; a window that meets no
//! context gives nobody; a window across any change of context (one patient to another, none
//! to a patient, a patient to none) is [`Attribution::Ambiguous`]. A reading that names a
//! device user (a multi-user cuff or scale) takes the patient only when the context maps that
//! user. Epochs are half-open: `[from, end)`. The history is bounded ([`KEEP`] epochs).
//!
//! With a patient lookup (docs/patient-lookup.md) an epoch also holds the record system's
//! Patient (or is marked unverified), and a refused scan ends the open epoch and leaves a
//! [`Refusal`]: a reading measured after it, within `ttl`, is [`Attribution::Refused`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audit::ContextSource;
use super::lookup::RefusalReason;
use crate::reading::{PatientRecord, PatientRef};

mod attribution;

pub use attribution::{Attributed, Attribution, Refusal, Window};

/// Epochs kept per room (closed ones are kept so late readings find the right patient).
pub const KEEP: usize = 32;

/// One stretch of time during which a room had one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub patient: PatientRef,
    pub source: ContextSource,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// The last explicit confirmation that this patient is still in the room; `None` until
    /// one. Records of older versions carry `last_activity` (which readings moved) instead:
    /// it is ignored, so such a context counts from its scan.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub confirmed: Option<OffsetDateTime>,
    /// The device user (a multi-user cuff's or scale's user index) this context maps, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u8>,
    /// Set when replaced, cleared or expired.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// The record system's Patient the lookup found for `patient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<PatientRecord>,
    /// Set by identifier only: the lookup could not be asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

impl Epoch {
    /// The start of the current validity: the last confirmation, else the scan.
    pub fn renewed(&self) -> OffsetDateTime {
        self.confirmed.unwrap_or(self.from)
    }

    /// The end of validity (excluded): `until`, or for an open epoch `ttl` after the scan or
    /// the last confirmation.
    pub fn end(&self, ttl: Duration) -> OffsetDateTime {
        self.until.unwrap_or(self.renewed() + ttl)
    }

    fn overlaps(&self, w: Window, ttl: Duration) -> bool {
        self.from <= w.to && self.end(ttl) > w.from
    }
}

/// A room's history, persisted as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomHistory {
    pub epochs: Vec<Epoch>,
    /// The last scan the patient lookup refused, until the next set or clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

impl RoomHistory {
    fn open_mut(&mut self) -> Option<&mut Epoch> {
        self.epochs.last_mut().filter(|e| e.until.is_none())
    }

    /// The open epoch, if still valid at `now`.
    pub fn current(&self, now: OffsetDateTime, ttl: Duration) -> Option<&Epoch> {
        self.epochs
            .last()
            .filter(|e| e.until.is_none() && now < e.end(ttl))
    }

    /// Starts a new epoch at `at` mapping the device `user` (if any), closing the open one (a
    /// new scan replaces the context).
    pub fn set(
        &mut self,
        patient: PatientRef,
        user: Option<u8>,
        source: ContextSource,
        by: &str,
        at: OffsetDateTime,
    ) {
        if let Some(open) = self.open_mut() {
            open.until = Some(at.max(open.from));
        }
        self.epochs.push(Epoch {
            patient,
            source,
            by: by.to_string(),
            from: at,
            confirmed: None,
            user,
            until: None,
            record: None,
            unverified: false,
        });
        self.refused = None;
        if self.epochs.len() > KEEP {
            let drop = self.epochs.len() - KEEP;
            self.epochs.drain(..drop);
        }
    }

    /// Marks the epoch just started by [`Self::set`] with the lookup's result.
    pub fn mark_last(&mut self, record: Option<PatientRecord>, unverified: bool) {
        if let Some(e) = self.open_mut() {
            e.record = record;
            e.unverified = unverified;
        }
    }

    /// The lookup refused a scan at `at`: the open epoch ends there (someone else was scanned)
    /// and the room has no patient; readings measured after it are [`Attribution::Refused`].
    pub fn refuse(&mut self, at: OffsetDateTime, ttl: Duration, reason: RefusalReason) {
        if let Some(open) = self.open_mut() {
            open.until = Some(at.min(open.end(ttl)).max(open.from));
        }
        self.refused = Some(Refusal { at, reason });
    }

    /// The refusal that explains why a reading measured in `w` has no patient, if any.
    fn refusal_covering(&self, w: Window, ttl: Duration) -> Option<RefusalReason> {
        self.refused
            .filter(|r| r.at <= w.from && w.to < r.at + ttl)
            .map(|r| r.reason)
    }

    /// Someone confirmed at `at` that the current patient is still in the room: the open
    /// epoch, if still valid, stays valid `ttl` after `at`. Returns its patient then.
    pub fn confirm(&mut self, at: OffsetDateTime, ttl: Duration) -> Option<PatientRef> {
        let open = self.open_mut()?;
        if at >= open.end(ttl) {
            return None;
        }
        if at > open.renewed() {
            open.confirmed = Some(at);
        }
        Some(open.patient.clone())
    }

    /// Ends the open epoch at `at`; returns whether there was one that was still valid.
    pub fn clear(&mut self, at: OffsetDateTime, ttl: Duration) -> bool {
        self.refused = None;
        let Some(open) = self.open_mut() else {
            return false;
        };
        let valid = at < open.end(ttl);
        open.until = Some(at.min(open.end(ttl)).max(open.from));
        valid
    }

    /// Closes the open epoch when it ran out at or before `now`; returns its patient then.
    pub fn expire(&mut self, now: OffsetDateTime, ttl: Duration) -> Option<PatientRef> {
        let open = self.open_mut()?;
        let end = open.end(ttl);
        if now < end {
            return None;
        }
        open.until = Some(end);
        Some(open.patient.clone())
    }

    /// Whose reading is this: see the module docs. `user` is the device user the reading
    /// names, if any.
    pub fn attribute(&self, w: Window, user: Option<u8>, ttl: Duration) -> Attribution {
        let over: Vec<&Epoch> = self.epochs.iter().filter(|e| e.overlaps(w, ttl)).collect();
        let (Some(first), Some(last)) = (over.first(), over.last()) else {
            return match self.refusal_covering(w, ttl) {
                Some(reason) => Attribution::Refused(reason),
                None => Attribution::Unknown,
            };
        };
        // Consecutive epochs of the same patient without a gap (a re-scan) are one context.
        let one_patient = over
            .windows(2)
            .all(|p| p[0].end(ttl) == p[1].from && p[0].patient == p[1].patient);
        let covered = first.from <= w.from && w.to < last.end(ttl);
        if !(one_patient && covered) {
            return Attribution::Ambiguous;
        }
        if let Some(u) = user {
            if over.iter().any(|e| e.user != Some(u)) {
                return Attribution::UserUnmapped;
            }
        }
        // A re-scan of the same patient whose lookup came out differently is not confirmed.
        let same = over.iter().all(|e| e.record == last.record);
        Attribution::Patient(Attributed {
            patient: first.patient.clone(),
            record: if same { last.record.clone() } else { None },
            unverified: !same || over.iter().any(|e| e.unverified),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const TTL: Duration = Duration::from_secs(20 * 60);
    const TOL: Duration = Duration::from_secs(60);

    fn p(id: &str) -> PatientRef {
        PatientRef {
            id: id.into(),
            system: "urn:oid:1.2".into(),
        }
    }

    fn at(h: u8, m: u8) -> OffsetDateTime {
        datetime!(2026-11-27 00:00 UTC)
            + time::Duration::hours(h.into())
            + time::Duration::minutes(m.into())
    }

    fn secs(t: OffsetDateTime, s: i64) -> OffsetDateTime {
        t + time::Duration::seconds(s)
    }

    fn w(from: OffsetDateTime, to: OffsetDateTime) -> Window {
        Window { from, to }
    }

    fn scanned(list: &[(&str, OffsetDateTime)]) -> RoomHistory {
        let mut h = RoomHistory::default();
        for (id, t) in list {
            h.set(p(id), None, ContextSource::Scan, "s", *t);
        }
        h
    }

    fn who(h: &RoomHistory, win: Window) -> Attribution {
        h.attribute(win, None, TTL)
    }

    fn is(id: &str) -> Attribution {
        Attribution::Patient(Attributed::plain(p(id)))
    }

    #[test]
    fn a_reading_before_any_scan_gets_no_patient() {
        let h = scanned(&[("A", at(12, 0))]);
        assert_eq!(who(&h, Window::at(at(11, 59))), Attribution::Unknown);
        assert_eq!(who(&h, Window::at(at(12, 5))), is("A"));
        assert_eq!(
            who(&RoomHistory::default(), Window::at(at(12, 5))),
            Attribution::Unknown
        );
    }

    #[test]
    fn a_clockless_reading_at_the_instant_of_a_scan_belongs_to_the_new_patient() {
        let h = scanned(&[("A", at(12, 0)), ("B", at(12, 10))]);
        assert_eq!(who(&h, Window::at(at(12, 10))), is("B"));
        assert_eq!(who(&h, Window::at(secs(at(12, 10), -1))), is("A"));
        assert_eq!(who(&h, Window::at(at(12, 0))), is("A"));
    }

    #[test]
    fn a_window_across_a_change_of_patient_is_ambiguous() {
        let h = scanned(&[("A", at(12, 0)), ("B", at(12, 10))]);
        assert_eq!(who(&h, w(at(12, 9), at(12, 11))), Attribution::Ambiguous);
        // Ending exactly at the scan: it reaches B's context.
        assert_eq!(who(&h, w(at(12, 9), at(12, 10))), Attribution::Ambiguous);
        // Inside one context on either side.
        assert_eq!(who(&h, w(at(12, 1), secs(at(12, 10), -1))), is("A"));
        assert_eq!(who(&h, w(at(12, 10), at(12, 15))), is("B"));
    }

    #[test]
    fn a_window_that_starts_before_the_first_scan_is_ambiguous() {
        // Otherwise the unscanned patient's reading from just before the scan would go to A.
        let h = scanned(&[("A", at(12, 0))]);
        assert_eq!(who(&h, w(at(11, 59), at(12, 1))), Attribution::Ambiguous);
        assert_eq!(
            who(&h, w(at(11, 50), secs(at(12, 0), -1))),
            Attribution::Unknown
        );
    }

    #[test]
    fn a_window_across_a_clear_or_an_expiry_is_ambiguous() {
        let mut h = scanned(&[("A", at(12, 0))]);
        assert!(h.clear(at(12, 5), TTL));
        assert_eq!(who(&h, w(at(12, 4), at(12, 6))), Attribution::Ambiguous);
        assert_eq!(who(&h, Window::at(at(12, 6))), Attribution::Unknown);
        assert_eq!(who(&h, Window::at(secs(at(12, 5), -1))), is("A"));

        // Expiry, recorded or not yet recorded, is a change too.
        let mut h = scanned(&[("A", at(12, 0))]);
        assert_eq!(who(&h, w(at(12, 19), at(12, 21))), Attribution::Ambiguous);
        assert_eq!(h.expire(at(12, 21), TTL), Some(p("A")));
        assert_eq!(who(&h, w(at(12, 19), at(12, 21))), Attribution::Ambiguous);
        assert_eq!(who(&h, w(at(12, 21), at(12, 22))), Attribution::Unknown);
        // A late reading whose whole window lay in the context still gets it.
        assert_eq!(who(&h, w(at(12, 5), at(12, 6))), is("A"));
    }

    #[test]
    fn a_context_expires_ttl_after_the_scan_however_many_readings_arrive() {
        let mut h = scanned(&[("A", at(12, 0))]);
        for m in 0..20 {
            assert_eq!(who(&h, Window::at(at(12, m))), is("A"));
        }
        assert_eq!(who(&h, Window::at(at(12, 20))), Attribution::Unknown);
        assert!(h.current(secs(at(12, 20), -1), TTL).is_some());
        assert!(h.current(at(12, 20), TTL).is_none());
        assert_eq!(h.expire(secs(at(12, 20), -1), TTL), None);
        assert_eq!(h.expire(at(12, 20), TTL), Some(p("A")));
        assert_eq!(h.expire(at(12, 21), TTL), None, "expires once");
    }

    #[test]
    fn a_confirmation_renews_the_context_but_cannot_revive_an_expired_one() {
        let mut h = scanned(&[("A", at(12, 0))]);
        assert_eq!(h.confirm(at(12, 15), TTL), Some(p("A")));
        assert_eq!(who(&h, Window::at(at(12, 34))), is("A"));
        assert_eq!(who(&h, Window::at(at(12, 35))), Attribution::Unknown);
        // An older confirmation does not shorten it.
        assert_eq!(h.confirm(at(12, 10), TTL), Some(p("A")));
        assert_eq!(h.current(at(12, 34), TTL).unwrap().end(TTL), at(12, 35));
        assert_eq!(h.confirm(at(12, 35), TTL), None);
        assert!(h.current(at(12, 35), TTL).is_none());
        assert_eq!(h.expire(at(12, 36), TTL), Some(p("A")));
        assert_eq!(h.confirm(at(12, 36), TTL), None);
        assert_eq!(RoomHistory::default().confirm(at(12, 0), TTL), None);
    }

    #[test]
    fn a_rescan_of_the_same_patient_is_one_context() {
        let h = scanned(&[("A", at(12, 0)), ("A", at(12, 10))]);
        assert_eq!(who(&h, w(at(12, 9), at(12, 11))), is("A"));
        // A gap between them is a change.
        let mut h = scanned(&[("A", at(12, 0))]);
        h.clear(at(12, 5), TTL);
        h.set(p("A"), None, ContextSource::Scan, "s", at(12, 10));
        assert_eq!(who(&h, w(at(12, 4), at(12, 11))), Attribution::Ambiguous);
    }

    #[test]
    fn a_reading_of_a_device_user_needs_a_context_that_maps_that_user() {
        let mut h = scanned(&[("A", at(12, 0))]);
        let now = Window::at(at(12, 1));
        assert_eq!(h.attribute(now, Some(2), TTL), Attribution::UserUnmapped);
        h.set(p("A"), Some(2), ContextSource::Api, "ma", at(12, 2));
        let later = Window::at(at(12, 3));
        assert_eq!(h.attribute(later, Some(2), TTL), is("A"));
        assert_eq!(h.attribute(later, Some(3), TTL), Attribution::UserUnmapped);
        assert_eq!(
            h.attribute(later, None, TTL),
            is("A"),
            "a single-user device"
        );
        // The mapping must hold over the whole window.
        let across = w(at(12, 1), at(12, 3));
        assert_eq!(h.attribute(across, Some(2), TTL), Attribution::UserUnmapped);
        assert_eq!(h.attribute(across, None, TTL), is("A"));
        // A change of patient stays ambiguous whatever the user.
        h.set(p("B"), Some(2), ContextSource::Api, "ma", at(12, 4));
        assert_eq!(
            h.attribute(w(at(12, 3), at(12, 5)), Some(2), TTL),
            Attribution::Ambiguous
        );
        // Nobody in the room: unknown, not unmapped.
        assert_eq!(
            h.attribute(Window::at(at(11, 0)), Some(2), TTL),
            Attribution::Unknown
        );
    }

    #[test]
    fn the_window_of_a_reading_depends_on_whether_it_carries_a_device_time() {
        let (obs, rec) = (at(12, 0), secs(at(12, 0), 30));
        assert_eq!(Window::of_reading(obs, rec, false, TOL), Window::at(rec));
        assert_eq!(
            Window::of_reading(obs, rec, true, TOL),
            w(secs(obs, -60), rec)
        );
        // A device time a second after receipt (whole-second rounding) with no tolerance.
        let late = secs(rec, 1);
        assert_eq!(
            Window::of_reading(late, rec, true, Duration::ZERO),
            Window::at(rec)
        );
    }

    #[test]
    fn a_record_of_an_older_version_loads_and_counts_from_its_scan() {
        let old = r#"{"epochs":[{"patient":{"id":"A","system":"urn:oid:1.2"},"source":"scan",
            "by":"s","from":"2026-11-27T12:00:00Z","last_activity":"2026-11-27T12:15:00Z",
            "until":null}]}"#;
        let h: RoomHistory = serde_json::from_str(old).unwrap();
        assert_eq!(h.epochs[0].end(TTL), at(12, 20));
        assert_eq!(h.epochs[0].user, None);
        assert_eq!(who(&h, Window::at(at(12, 25))), Attribution::Unknown);
        let mut h2 = h.clone();
        h2.confirm(at(12, 10), TTL);
        h2.epochs[0].user = Some(2);
        let back: RoomHistory = serde_json::from_str(&serde_json::to_string(&h2).unwrap()).unwrap();
        assert_eq!(back, h2);
    }

    #[test]
    fn the_history_is_bounded() {
        let mut h = RoomHistory::default();
        for i in 0..(u8::try_from(KEEP).unwrap() + 5) {
            h.set(p("A"), None, ContextSource::Scan, "s", at(1, i));
        }
        assert_eq!(h.epochs.len(), KEEP);
        assert_eq!(h.epochs[0].from, at(1, 5));
    }
}
