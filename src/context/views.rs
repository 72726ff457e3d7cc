//! What the status page and `/api/status` show of each room: the patient masked, and the
//! record's name and birth date only for authenticated callers.

use serde::Serialize;
use time::OffsetDateTime;

use super::audit::ContextSource;
use super::history;
use super::lookup::Verification;
use super::ContextStore;

/// What a room shows on the status page and `/api/status`: the patient MASKED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomView {
    pub room: String,
    /// `PatientRef::masked()` of the current patient, or `None`.
    pub patient: Option<String>,
    pub source: Option<ContextSource>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Whole seconds until `expires_at` (rounded down).
    pub remaining_seconds: Option<u64>,
    /// The device user (multi-user cuff or scale) the context maps.
    pub user: Option<u8>,
    /// How the current patient was confirmed: `record` (the record system's lookup found
    /// exactly one Patient), `identifier_only` (set by identifier: no lookup configured, or
    /// none possible), `none` (no patient).
    pub verified: Verification,
    /// The record's name and birth date: only in [`ContextStore::views_with_names`] (for
    /// authenticated callers), never in [`ContextStore::views`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// The room's last scan refused by the lookup, while the room has no patient since.
    pub last_refusal: Option<history::Refusal>,
}

impl ContextStore {
    /// Every known room with its current patient, masked (no name, no birth date).
    pub fn views(&self, now: OffsetDateTime) -> Vec<RoomView> {
        self.room_views(now, false)
    }

    /// Every known room with its current patient masked, plus the record's name and birth
    /// date when a lookup found them: only for authenticated callers.
    pub fn views_with_names(&self, now: OffsetDateTime) -> Vec<RoomView> {
        self.room_views(now, true)
    }

    fn room_views(&self, now: OffsetDateTime, names: bool) -> Vec<RoomView> {
        let ttl = self.inner.ttl;
        self.rooms()
            .iter()
            .map(|(room, h)| {
                let cur = h.current(now, ttl);
                let expires_at = cur.map(|e| e.end(ttl));
                RoomView {
                    room: room.clone(),
                    patient: cur.map(|e| e.patient.masked()),
                    source: cur.map(|e| e.source),
                    since: cur.map(|e| e.from),
                    expires_at,
                    remaining_seconds: expires_at
                        .map(|t| u64::try_from((t - now).whole_seconds()).unwrap_or(0)),
                    user: cur.and_then(|e| e.user),
                    verified: match cur {
                        None => Verification::None,
                        Some(e) if e.record.is_some() => Verification::Record,
                        Some(e) if e.unverified => Verification::IdentifierOnly,
                        Some(_) => Verification::Scanned,
                    },
                    name: cur
                        .filter(|_| names)
                        .and_then(|e| e.record.as_ref())
                        .and_then(|r| r.display_name()),
                    birth_date: cur
                        .filter(|_| names)
                        .and_then(|e| e.record.as_ref())
                        .and_then(|r| r.birth_date.clone()),
                    last_refusal: h.refused.filter(|_| cur.is_none()),
                }
            })
            .collect()
    }
}
