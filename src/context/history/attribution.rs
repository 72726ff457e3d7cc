//! The answers of a room's history: [`Attribution`] (whose reading is this), the patient it
//! gives ([`Attributed`]), a refused scan ([`Refusal`]) and the [`Window`] a reading could have
//! been measured in.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::super::lookup::RefusalReason;
use crate::reading::{PatientRecord, PatientRef};

/// Whose reading is this, from the room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    Patient(Attributed),
    /// No context overlaps the time the reading could have been measured in.
    Unknown,
    /// The time the reading could have been measured in spans a change of context: a device
    /// clock that may be off, or a memory dump received after the next patient's scan. Never
    /// guessed: treated as having no patient, and flagged.
    Ambiguous,
    /// One context covers the reading, but the reading names a device user that the context
    /// does not map (a multi-user cuff or scale). Treated as having no patient, and flagged.
    UserUnmapped,
    /// No context covers the reading because the room's last scan was refused by the patient
    /// lookup (no such patient, more than one, or no answer with `lookup_unavailable = "hold"`).
    Refused(RefusalReason),
}

/// The patient a reading is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed {
    pub patient: PatientRef,
    /// The record system's Patient, when a lookup confirmed the identifier.
    pub record: Option<PatientRecord>,
    /// Attached by identifier only because the lookup could not be asked
    /// (`lookup_unavailable = "identifier"`).
    pub unverified: bool,
}

impl Attributed {
    /// A patient without lookup.
    pub fn plain(patient: PatientRef) -> Self {
        Self {
            patient,
            record: None,
            unverified: false,
        }
    }
}

/// A scan the patient lookup refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: RefusalReason,
}

/// The span of time in which a reading could have been measured (both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

impl Window {
    /// The window of a reading received at `received` and observed at `observed`.
    ///
    /// A reading that carries a device time (trusted or not) may have been measured up to
    /// `tolerance` before its `observed` time (the device clock may be slow by that much, or
    /// the value came from the device's memory), and not after its receipt:
    /// `[observed − tolerance, received]`. A reading without a device time was sent at once:
    /// `[received, received]`.
    pub fn of_reading(
        observed: OffsetDateTime,
        received: OffsetDateTime,
        has_device_time: bool,
        tolerance: Duration,
    ) -> Self {
        if !has_device_time {
            return Self::at(received);
        }
        let from = observed - tolerance;
        Self {
            from: from.min(received),
            to: received,
        }
    }

    /// A window of one instant.
    pub fn at(t: OffsetDateTime) -> Self {
        Self { from: t, to: t }
    }
}
