//! One room's patient context over time: pure logic, no I/O.
//!
//! A room keeps a short history of [`Epoch`]s (oldest first; only the last may be open). An
//! epoch starts with a scan, an MQTT message or an API call, and ends when the next one
//! replaces it, when it is cleared, or when it expires `ttl` after the last scan or reading
//! attributed to it. A reading takes the epoch that was valid at its `observed_at`: a reading
//! measured before a scan replaced the context gets the OLD patient, one measured before any
//! scan gets none. The history is bounded ([`KEEP`] epochs).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audit::ContextSource;
use crate::reading::PatientRef;

/// Epochs kept per room (closed ones are kept so late readings find the right patient).
pub const KEEP: usize = 32;

/// Whose reading is this, from the room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    Patient(PatientRef),
    /// No context was valid when the reading was measured.
    Unknown,
    /// The context valid when it was measured and the one valid when it arrived name
    /// DIFFERENT patients: a device clock that is a little off, or a memory dump after the
    /// next patient's scan. Never guessed: treated as having no patient, and flagged.
    Ambiguous,
}

/// One stretch of time during which a room had one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub patient: PatientRef,
    pub source: ContextSource,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// The last scan or reading attributed to this epoch.
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity: OffsetDateTime,
    /// Set when replaced, cleared or expired.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

impl Epoch {
    /// The end of validity: `until`, or for an open epoch `ttl` after the last activity.
    pub fn end(&self, ttl: Duration) -> OffsetDateTime {
        self.until.unwrap_or(self.last_activity + ttl)
    }

    fn covers(&self, t: OffsetDateTime, ttl: Duration) -> bool {
        self.from <= t && t <= self.end(ttl)
    }
}

/// A room's history, persisted as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomHistory {
    pub epochs: Vec<Epoch>,
}

impl RoomHistory {
    fn open_mut(&mut self) -> Option<&mut Epoch> {
        self.epochs.last_mut().filter(|e| e.until.is_none())
    }

    /// The open epoch, if still valid at `now`.
    pub fn current(&self, now: OffsetDateTime, ttl: Duration) -> Option<&Epoch> {
        self.epochs
            .last()
            .filter(|e| e.until.is_none() && now <= e.end(ttl))
    }

    /// Starts a new epoch at `at`, closing the open one (a new scan replaces the context).
    pub fn set(
        &mut self,
        patient: PatientRef,
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
            last_activity: at,
            until: None,
        });
        if self.epochs.len() > KEEP {
            let drop = self.epochs.len() - KEEP;
            self.epochs.drain(..drop);
        }
    }

    /// Ends the open epoch at `at`; returns whether there was one that was still valid.
    pub fn clear(&mut self, at: OffsetDateTime, ttl: Duration) -> bool {
        let Some(open) = self.open_mut() else {
            return false;
        };
        let valid = at <= open.end(ttl);
        open.until = Some(at.min(open.end(ttl)).max(open.from));
        valid
    }

    /// Closes the open epoch when it ran out before `now`; returns its patient then.
    pub fn expire(&mut self, now: OffsetDateTime, ttl: Duration) -> Option<PatientRef> {
        let open = self.open_mut()?;
        let end = open.end(ttl);
        if now <= end {
            return None;
        }
        open.until = Some(end);
        Some(open.patient.clone())
    }

    /// The patient of the epoch valid at `t`, if any.
    pub fn patient_at(&self, t: OffsetDateTime, ttl: Duration) -> Option<&PatientRef> {
        self.epochs
            .iter()
            .rev()
            .find(|e| e.covers(t, ttl))
            .map(|e| &e.patient)
    }

    /// The patient of a reading measured at `observed` that arrived at `received`: the
    /// context valid at `observed`, unless a different patient's context was valid at
    /// `received` (see [`Attribution::Ambiguous`]).
    pub fn attribute(
        &self,
        observed: OffsetDateTime,
        received: OffsetDateTime,
        ttl: Duration,
    ) -> Attribution {
        match (
            self.patient_at(observed, ttl),
            self.patient_at(received, ttl),
        ) {
            (Some(a), Some(b)) if a != b => Attribution::Ambiguous,
            (Some(a), _) => Attribution::Patient(a.clone()),
            (None, _) => Attribution::Unknown,
        }
    }

    /// A reading measured at `t` was attributed: an open epoch that covers `t` stays valid
    /// `ttl` after it.
    pub fn touch(&mut self, t: OffsetDateTime, ttl: Duration) {
        if let Some(open) = self.open_mut() {
            if open.covers(t, ttl) && t > open.last_activity {
                open.last_activity = t;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const TTL: Duration = Duration::from_secs(20 * 60);

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

    #[test]
    fn a_reading_before_any_scan_gets_no_patient() {
        let mut h = RoomHistory::default();
        h.set(p("A"), ContextSource::Scan, "s", at(12, 0));
        assert_eq!(h.patient_at(at(11, 59), TTL), None);
        assert_eq!(h.patient_at(at(12, 5), TTL), Some(&p("A")));
    }

    #[test]
    fn a_reading_measured_before_a_new_scan_keeps_the_old_patient() {
        let mut h = RoomHistory::default();
        h.set(p("A"), ContextSource::Scan, "s", at(12, 0));
        h.set(p("B"), ContextSource::Scan, "s", at(12, 10));
        assert_eq!(h.patient_at(at(12, 9), TTL), Some(&p("A")));
        assert_eq!(h.patient_at(at(12, 11), TTL), Some(&p("B")));
        assert_eq!(h.current(at(12, 11), TTL).unwrap().patient, p("B"));
    }

    #[test]
    fn a_context_expires_ttl_after_the_last_reading_and_readings_extend_it() {
        let mut h = RoomHistory::default();
        h.set(p("A"), ContextSource::Scan, "s", at(12, 0));
        h.touch(at(12, 15), TTL);
        assert_eq!(h.patient_at(at(12, 34), TTL), Some(&p("A")));
        assert_eq!(h.expire(at(12, 34), TTL), None);
        assert_eq!(h.patient_at(at(12, 36), TTL), None);
        assert_eq!(h.expire(at(12, 36), TTL), Some(p("A")));
        assert_eq!(h.expire(at(12, 37), TTL), None, "expires once");
        // A late reading measured while it was valid still gets it.
        assert_eq!(h.patient_at(at(12, 20), TTL), Some(&p("A")));
        // A reading after expiry does not revive it.
        h.touch(at(12, 40), TTL);
        assert!(h.current(at(12, 40), TTL).is_none());
    }

    #[test]
    fn clearing_ends_the_context_at_that_time() {
        let mut h = RoomHistory::default();
        assert!(!h.clear(at(12, 0), TTL));
        h.set(p("A"), ContextSource::Api, "ma", at(12, 0));
        assert!(h.clear(at(12, 5), TTL));
        assert_eq!(h.patient_at(at(12, 4), TTL), Some(&p("A")));
        assert_eq!(h.patient_at(at(12, 6), TTL), None);
        assert!(h.current(at(12, 6), TTL).is_none());
    }

    #[test]
    fn a_reading_measured_before_a_new_scan_but_arriving_after_it_is_ambiguous() {
        let mut h = RoomHistory::default();
        h.set(p("A"), ContextSource::Scan, "s", at(12, 0));
        h.set(p("B"), ContextSource::Scan, "s", at(12, 10));
        // A cuff whose clock is a minute slow, measured just after B's scan.
        assert_eq!(
            h.attribute(at(12, 9), at(12, 11), TTL),
            Attribution::Ambiguous
        );
        // Measured and received before B's scan (processed later): A.
        assert_eq!(
            h.attribute(at(12, 9), at(12, 9), TTL),
            Attribution::Patient(p("A"))
        );
        // Measured before any scan: nobody, whenever it arrives.
        assert_eq!(
            h.attribute(at(11, 0), at(12, 11), TTL),
            Attribution::Unknown
        );
        // Measured under A, arriving after A expired with no new patient: A.
        let mut h2 = RoomHistory::default();
        h2.set(p("A"), ContextSource::Scan, "s", at(12, 0));
        assert_eq!(
            h2.attribute(at(12, 5), at(13, 0), TTL),
            Attribution::Patient(p("A"))
        );
    }

    #[test]
    fn the_history_is_bounded() {
        let mut h = RoomHistory::default();
        for i in 0..(u8::try_from(KEEP).unwrap() + 5) {
            h.set(p("A"), ContextSource::Scan, "s", at(1, i));
        }
        assert_eq!(h.epochs.len(), KEEP);
        assert_eq!(h.epochs[0].from, at(1, 5));
    }
}
