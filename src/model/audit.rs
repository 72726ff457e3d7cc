//! The audit trail's value types: who set or cleared which room's patient, which held reading
//! an MA assigned or discarded, which quarantined reading someone released or discarded, and
//! what each receiver answered to each reading.
//!
//! Entries are stored append-only in the audit files (`crate::audit`, through the store's
//! `Audit` handle); this module only names them, so the patient context, the store and the
//! audit files share one definition without importing each other. They hold patient identifiers, sealed with the store key in
//! the files: the audit trail and the record system are the only places where identifiers
//! appear. Never log an [`AuditEvent`] at INFO.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::reading::{PatientRef, ReadingId, SinkId};

/// Where a room's patient context came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextSource {
    /// A wristband or chart barcode scanned by a `barcode` device in the room.
    Scan,
    /// A retained message on `[mqtt] patient_topic`.
    Mqtt,
    /// `PUT /api/rooms/{room}/patient` (or `DELETE`).
    Api,
    /// The context ran out: `context_ttl` after the scan or the last confirmation.
    Expiry,
}

impl fmt::Display for ContextSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextSource::Scan => "scan",
            ContextSource::Mqtt => "mqtt",
            ContextSource::Api => "api",
            ContextSource::Expiry => "expiry",
        })
    }
}

/// One audited decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A room's patient context was set (or replaced).
    ContextSet {
        room: String,
        patient: PatientRef,
        source: ContextSource,
        by: String,
    },
    /// A room's patient context was cleared by a person or a message.
    ContextCleared {
        room: String,
        source: ContextSource,
        by: String,
    },
    /// A room's patient context expired.
    ContextExpired { room: String, patient: PatientRef },
    /// A reading without a valid patient context was held for review.
    Held {
        reading: ReadingId,
        room: Option<String>,
    },
    /// A held reading was given a patient and released to every sink.
    Assigned {
        reading: ReadingId,
        patient: PatientRef,
        by: String,
    },
    /// A held reading was discarded.
    Discarded {
        reading: ReadingId,
        reason: String,
        by: String,
    },
    /// A receiver's final answer for one reading.
    Delivery {
        reading: ReadingId,
        sink: SinkId,
        outcome: DeliveryOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A config reload (SIGHUP): what it changed, or why it was refused. Ids only, no values.
    Reload {
        applied: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default)]
        changes: ReloadChanges,
    },
    /// A reading that failed a hard plausibility limit was put in quarantine (`migrated`: moved
    /// there from the dead-letter of a store written by an earlier version).
    Quarantined {
        reading: ReadingId,
        reason: String,
        #[serde(default)]
        migrated: bool,
    },
    /// A named person released a quarantined reading to every sink (still flagged `rejected:`),
    /// with the patient they gave it, if any.
    QuarantineReleased {
        reading: ReadingId,
        by: String,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patient: Option<PatientRef>,
    },
    /// A named person discarded a quarantined reading.
    QuarantineDiscarded {
        reading: ReadingId,
        by: String,
        reason: String,
    },
    /// Someone confirmed that a room's current patient is still there: the context stays
    /// valid `context_ttl` from now.
    ContextConfirmed {
        room: String,
        patient: PatientRef,
        by: String,
    },
    /// The patient lookup refused to set a room's patient (docs/patient-lookup.md): the room
    /// has no patient since (its open context ended), and its readings are held.
    ContextRefused {
        room: String,
        patient: PatientRef,
        reason: RefusalReason,
        source: ContextSource,
        by: String,
    },
    /// How the patient lookup confirmed the context just set (the `ContextSet` before it, same
    /// batch): `record` with the record system's Patient id, or `identifier_only` when the
    /// record system could not be asked (`lookup_unavailable = "identifier"`).
    ContextLookedUp {
        room: String,
        verified: Verification,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<String>,
    },
    /// One reading that took the `lookup_unavailable` fallback: `hold` (held, the room's scan
    /// could not be confirmed) or `identifier` (attached by identifier, `patient_unverified`).
    LookupFallback {
        reading: ReadingId,
        room: String,
        choice: LookupChoice,
    },
    /// The context just set (the `ContextSet` before it, same batch) maps this device user:
    /// readings of a multi-user cuff or scale that name this user go to its patient.
    ContextUserMapped {
        room: String,
        user: u8,
        source: ContextSource,
        by: String,
    },
    /// A reading joined the review list (`[patient] review = true`): filed only once a person
    /// confirms it.
    ReviewWaiting {
        reading: ReadingId,
        room: Option<String>,
    },
    /// A person confirmed a reading on the review list: it went to every sink.
    ReviewConfirmed { reading: ReadingId, by: String },
    /// A person rejected a reading on the review list: it is never filed.
    ReviewRejected {
        reading: ReadingId,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// What a reload changed, by id (the `Reload` audit entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReloadChanges {
    pub devices_added: Vec<String>,
    pub devices_removed: Vec<String>,
    pub devices_changed: Vec<String>,
    pub sinks_added: Vec<String>,
    pub sinks_removed: Vec<String>,
    pub sinks_changed: Vec<String>,
    /// The shared `[mqtt]` connection was restarted.
    pub mqtt_restarted: bool,
    /// Keys whose change waits for a restart (`daemon.data_dir`, ...).
    pub needs_restart: Vec<String>,
}

/// What a receiver did with a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered,
    /// Rejected (or given up on): the reading sits in the sink's dead-letter.
    Dead,
}

/// An [`AuditEvent`] with the time it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// Why a scan gave the room no patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The record system has no Patient with the identifier.
    NotFound,
    /// The record system has more than one Patient with the identifier.
    Ambiguous,
    /// The record system could not be asked (and `lookup_unavailable = "hold"`).
    Unavailable,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Ambiguous => "ambiguous",
            Self::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotFound => "the record system has no patient with this identifier",
            Self::Ambiguous => "the record system has more than one patient with this identifier",
            Self::Unavailable => "the record system could not be asked",
        })
    }
}

/// How a room's current patient was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// The record system's lookup found exactly one Patient.
    Record,
    /// Set by the scanned identifier alone while a configured lookup could not be asked
    /// (`lookup_unavailable = "identifier"`): readings are flagged `patient_unverified`.
    IdentifierOnly,
    /// Set by the scanned identifier with no lookup configured: nothing to confirm against.
    Scanned,
    /// The room has no patient.
    None,
}

/// The `lookup_unavailable` fallback one reading took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupChoice {
    Hold,
    Identifier,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_flat_json_with_its_event_name() {
        let e = AuditEntry {
            at: time::macros::datetime!(2026-11-27 12:00 UTC),
            event: AuditEvent::ContextSet {
                room: "exam-3".into(),
                patient: PatientRef {
                    id: "MRN1".into(),
                    system: "urn:oid:1.2".into(),
                },
                source: ContextSource::Scan,
                by: "exam3-scanner".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "context_set");
        assert_eq!(v["source"], "scan");
        assert_eq!(v["patient"]["id"], "MRN1");
        assert_eq!(v["at"], "2026-11-27T12:00:00Z");
        let back: AuditEntry = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn a_delivery_without_reason_omits_it() {
        let ev = AuditEvent::Delivery {
            reading: ReadingId::from_bytes([1; 16]),
            sink: SinkId::new("ehr"),
            outcome: DeliveryOutcome::Delivered,
            reason: None,
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["outcome"], "delivered");
        assert!(v.get("reason").is_none());
    }
}
