//! Changing a room's context: set (after the patient lookup, when there is one), refuse,
//! confirm, clear and the `[mqtt] patient_topic` message. Each change is applied in memory
//! first, then stored with its audit events in one flushed batch.

use serde::Deserialize;
use time::OffsetDateTime;

use super::audit::{AuditEvent, ContextSource};
use super::history::RoomHistory;
use super::lookup::{Answer, RefusalReason, Verification};
use super::{check_patient, check_room, check_user, Checking, ContextError, ContextStore};
use crate::config::LookupUnavailable;
use crate::queue::QueueError;
use crate::reading::PatientRef;

/// The `[mqtt] patient_topic` message body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttContext {
    id: String,
    system: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    user: Option<u8>,
}

impl ContextStore {
    /// Applies `change` to `room` in memory (at once, so readings measured after it see it),
    /// then stores the room's record with `events`, durably.
    pub(super) async fn change(
        &self,
        room: &str,
        change: impl FnOnce(&mut RoomHistory) -> Vec<AuditEvent>,
    ) -> Result<usize, ContextError> {
        let _order = self.inner.writes.lock().await;
        let (record, events) = {
            let mut rooms = self.rooms();
            let h = rooms.entry(room.to_string()).or_default();
            let events = change(h);
            if events.is_empty() {
                return Ok(0);
            }
            let record = serde_json::to_vec(&*h).map_err(|e| {
                ContextError::Store(QueueError::Corrupt {
                    key: room.to_string(),
                    reason: e.to_string(),
                })
            })?;
            (record, events)
        };
        let n = events.len();
        self.inner.contexts.save(room, Some(record), events).await?;
        Ok(n)
    }

    /// Sets `room`'s patient from `at` on (replacing any current one), mapping the device
    /// `user` if given, audited with `source` and `by`.
    pub async fn set(
        &self,
        room: &str,
        patient: PatientRef,
        user: Option<u8>,
        source: ContextSource,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<(), ContextError> {
        check_room(room)?;
        check_patient(&patient)?;
        check_user(user)?;
        // While the record system is asked, readings of the room's other devices that may be
        // from after the scan are held as ambiguous, never given the previous patient.
        // The mark ends with the lookup's refusal, or as soon as the new context is in memory.
        let (record, verified, checking) = match self.lookup() {
            None => (None, None, None),
            Some(lookup) => {
                let checking = Checking::start(&self.inner, room, at);
                match lookup.check(&patient).await {
                    Answer::Found(record) => {
                        (Some(record), Some(Verification::Record), Some(checking))
                    }
                    Answer::NotFound => {
                        return self
                            .refuse(patient, RefusalReason::NotFound, source, by, checking)
                            .await
                    }
                    Answer::Ambiguous => {
                        return self
                            .refuse(patient, RefusalReason::Ambiguous, source, by, checking)
                            .await
                    }
                    Answer::Unavailable(reason) => {
                        tracing::warn!(%room, %reason, "patient lookup: the record system did not answer");
                        if lookup.on_unavailable() == LookupUnavailable::Hold {
                            return self
                                .refuse(patient, RefusalReason::Unavailable, source, by, checking)
                                .await;
                        }
                        (None, Some(Verification::IdentifierOnly), Some(checking))
                    }
                }
            }
        };
        tracing::info!(%room, patient = %patient.masked(), ?user, %source, ?verified, "patient context set");
        self.change(room, |h| {
            h.set(patient.clone(), user, source, by, at);
            let record_id = record.as_ref().map(|r| r.id.clone());
            h.mark_last(record, verified == Some(Verification::IdentifierOnly));
            drop(checking);
            let mut events = vec![AuditEvent::ContextSet {
                room: room.to_string(),
                patient,
                source,
                by: by.to_string(),
            }];
            if let Some(verified) = verified {
                events.push(AuditEvent::ContextLookedUp {
                    room: room.to_string(),
                    verified,
                    record: record_id,
                });
            }
            if let Some(user) = user {
                events.push(AuditEvent::ContextUserMapped {
                    room: room.to_string(),
                    user,
                    source,
                    by: by.to_string(),
                });
            }
            events
        })
        .await
        .map(|_| ())
    }

    /// The lookup refused a set: the room's open context ends at `at`, the refusal is stored
    /// and audited; always `Err(Refused)`.
    async fn refuse(
        &self,
        patient: PatientRef,
        reason: RefusalReason,
        source: ContextSource,
        by: &str,
        checking: Checking<'_>,
    ) -> Result<(), ContextError> {
        let (room, at) = (checking.room.clone(), checking.at);
        let room = room.as_str();
        tracing::warn!(%room, %source, reason = %reason.as_str(), "patient not set: {reason}; the room has no patient and its readings are held");
        let ttl = self.inner.ttl;
        self.change(room, |h| {
            h.refuse(at, ttl, reason);
            drop(checking);
            vec![AuditEvent::ContextRefused {
                room: room.to_string(),
                patient,
                reason,
                source,
                by: by.to_string(),
            }]
        })
        .await?;
        Err(ContextError::Refused(reason))
    }

    /// `by` confirms at `at` that `room`'s current patient is still there: the context stays
    /// valid `context_ttl` from `at`. Returns `false` (nothing changed) when the room has no
    /// valid context.
    pub async fn confirm(
        &self,
        room: &str,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<bool, ContextError> {
        check_room(room)?;
        let ttl = self.inner.ttl;
        let n = self
            .change(room, |h| match h.confirm(at, ttl) {
                Some(patient) => vec![AuditEvent::ContextConfirmed {
                    room: room.to_string(),
                    patient,
                    by: by.to_string(),
                }],
                None => Vec::new(),
            })
            .await?;
        if n > 0 {
            tracing::info!(%room, "patient context confirmed");
        }
        Ok(n > 0)
    }

    /// Clears `room`'s patient at `at`; returns whether a valid context was cleared.
    pub async fn clear(
        &self,
        room: &str,
        source: ContextSource,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<bool, ContextError> {
        check_room(room)?;
        let ttl = self.inner.ttl;
        let n = self
            .change(room, |h| {
                // A shown refusal is cleared (and stored) too.
                let refused = h.refused.is_some();
                if !h.clear(at, ttl) && !refused {
                    return Vec::new();
                }
                vec![AuditEvent::ContextCleared {
                    room: room.to_string(),
                    source,
                    by: by.to_string(),
                }]
            })
            .await?;
        if n > 0 {
            tracing::info!(%room, %source, "patient context cleared");
        }
        Ok(n > 0)
    }

    /// A retained `[mqtt] patient_topic` message for `room` (the topic's `+` level): JSON
    /// `{"id": "...", "system": "...", "by": optional, "user": optional device user}`; an
    /// empty payload clears the room.
    /// The MQTT source calls this, and acknowledges the message after it returns `Ok`.
    /// A room no configured device is in is ignored (`Ok`, so the message is acknowledged).
    pub async fn set_from_mqtt(&self, room: &str, payload: &[u8]) -> Result<(), ContextError> {
        if !self.is_known_room(room) {
            tracing::warn!(%room, "MQTT patient context for a room no configured device is in; ignored");
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        if payload.iter().all(u8::is_ascii_whitespace) {
            self.clear(room, ContextSource::Mqtt, "mqtt", now).await?;
            return Ok(());
        }
        let m: MqttContext = serde_json::from_slice(payload).map_err(|e| {
            // serde_json's own message may quote the value: report only the kind and place.
            ContextError::BadPatient(format!(
                "expected JSON {{\"id\", \"system\"}} ({:?} error at column {})",
                e.classify(),
                e.column()
            ))
        })?;
        let by = m.by.unwrap_or_else(|| "mqtt".to_string());
        let patient = PatientRef {
            id: m.id,
            system: m.system,
        };
        match self
            .set(room, patient, m.user, ContextSource::Mqtt, &by, now)
            .await
        {
            // Stored and audited: the message is handled.
            Err(ContextError::Refused(_)) => Ok(()),
            other => other,
        }
    }
}
