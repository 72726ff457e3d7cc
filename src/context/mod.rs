//! Room patient contexts: which patient is in which exam room, and since when.
//!
//! Receives context changes from a `barcode` device's scans (the pipeline), the `[mqtt]
//! patient_topic` ([`ContextStore::set_from_mqtt`]) and the admin API (set, clear, confirm);
//! answers the pipeline's question "whose reading is this?" ([`ContextStore::attribute`]) over
//! the time the reading could have been MEASURED in. Promises (see docs/patient-attribution.md):
//! - a reading gets a patient only when one context covers its whole window and maps the
//!   device user it names, if any; never guessed (the logic is in `history`);
//! - a context is valid `context_ttl` after its scan or its last explicit confirmation, never
//!   extended by readings;
//! - every set (with its device user), confirmation, clear and expiry is written to the audit
//!   log together with the room's context record, in one flushed batch; contexts survive a
//!   restart;
//! - patient identifiers never reach the ordinary log (only [`PatientRef::masked`]);
//! - with a patient lookup ([`ContextStore::set_lookup`], docs/patient-lookup.md) every set
//!   first asks the record system: exactly one Patient sets the context with its record; none,
//!   more than one, or no answer under `lookup_unavailable = "hold"` refuses the set (the
//!   room's open context ends, the refusal is audited and shown, readings after it are
//!   flagged `patient_unknown`); no answer under `"identifier"` sets the identifier alone and
//!   its readings are flagged `patient_unverified`; each reading that took such a fallback is
//!   audited ([`ContextStore::flush_audit`]); without a lookup nothing changes;
//! - once the configured rooms are known ([`ContextStore::set_known_rooms`]), the admin API
//!   and MQTT can name only those: an MQTT message for another room is dropped with a WARN
//!   naming the room (and acknowledged), the API answers 404.
//!
//! This file holds the store, its checks, attribution and expiry; `change.rs` the context
//! changes (set, refuse, confirm, clear, MQTT), `views.rs` what the status page shows.

pub mod audit;
mod change;
pub mod history;
pub mod lookup;
pub mod quality;
mod views;

pub use views::RoomView;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::queue::{Audit, Contexts, QueueError};
use crate::reading::{Flag, PatientRef, Reading};
use audit::AuditEvent;
use history::{Attribution, RoomHistory, Window};
use lookup::{Lookup, LookupChoice, RefusalReason};
// The test module names it through `use super::*`, as it did before `change.rs` took the
// code that uses it.
#[cfg(test)]
use audit::ContextSource;

/// Why a context change was refused or not stored.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot store the patient context: {0}")]
    Store(#[from] QueueError),
    /// The reason never contains the identifier itself.
    #[error("invalid patient: {0}")]
    BadPatient(String),
    #[error("invalid room name: {0}")]
    BadRoom(String),
    #[error("invalid device user: {0}")]
    BadUser(String),
    /// The patient lookup refused the set; the room has no patient now. Names no identifier.
    #[error("patient not set: {0}")]
    Refused(RefusalReason),
}

/// The rooms' contexts; clones share one state.
#[derive(Clone)]
pub struct ContextStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the rooms' records are kept, each with its audit entries.
    contexts: Contexts,
    /// Where the per-reading lookup fallbacks are audited.
    audit: Audit,
    ttl: Duration,
    rooms: Mutex<BTreeMap<String, RoomHistory>>,
    /// Serialises changes so records reach the store in the order they were made.
    writes: tokio::sync::Mutex<()>,
    /// The rooms of the configured devices; `None` until the app sets them (any room then).
    known: RwLock<Option<BTreeSet<String>>>,
    /// `[patient] lookup`, if configured.
    lookup: RwLock<Option<Arc<Lookup>>>,
    /// Per-reading lookup fallbacks not yet written to the audit log.
    pending: Mutex<Vec<AuditEvent>>,
    /// Rooms whose scan is being looked up, with the earliest such scan's time: the room's
    /// patient from then on is not known until the record system answers.
    checking: Mutex<BTreeMap<String, (OffsetDateTime, usize)>>,
}

/// Marks a room as being looked up for as long as it lives (every path out of `set`).
struct Checking<'a> {
    inner: &'a Inner,
    room: String,
    /// The scan's time.
    at: OffsetDateTime,
}

impl<'a> Checking<'a> {
    fn start(inner: &'a Inner, room: &str, at: OffsetDateTime) -> Self {
        let mut map = inner.checking.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(room.to_string()).or_insert((at, 0));
        entry.0 = entry.0.min(at);
        entry.1 += 1;
        Checking {
            inner,
            room: room.to_string(),
            at,
        }
    }
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        let mut map = self
            .inner
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&self.room) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.room);
            }
        }
    }
}

/// Checks an identifier and its system before it becomes a context.
pub fn check_patient(p: &PatientRef) -> Result<(), ContextError> {
    let id_ok = !p.id.is_empty() && p.id.len() <= 128 && p.id.bytes().all(|b| b.is_ascii_graphic());
    if !id_ok {
        return Err(ContextError::BadPatient(
            "the id must be 1 to 128 printable ASCII characters without spaces".into(),
        ));
    }
    crate::model::identifier::check_system(&p.system).map_err(ContextError::BadPatient)
}

/// Checks a device user index: 0 to 254 (255 is the devices' "unknown user").
pub fn check_user(user: Option<u8>) -> Result<(), ContextError> {
    match user {
        Some(u8::MAX) => Err(ContextError::BadUser(
            "0 to 254 (255 means an unknown user)".into(),
        )),
        _ => Ok(()),
    }
}

fn check_room(room: &str) -> Result<(), ContextError> {
    if room.is_empty() || room.len() > 128 || room.chars().any(char::is_control) {
        return Err(ContextError::BadRoom(
            "1 to 128 characters, no control characters".into(),
        ));
    }
    Ok(())
}

impl ContextStore {
    /// Loads the stored contexts of every room from `contexts` (the store's handle,
    /// `queue.contexts()`); changes are saved there, and lookup fallbacks appended to `audit`
    /// (`queue.audit()`). The store keeps clones of both handles.
    pub fn open(contexts: &Contexts, audit: &Audit, ttl: Duration) -> Result<Self, ContextError> {
        let mut rooms = BTreeMap::new();
        for (room, raw) in contexts.load()? {
            match serde_json::from_slice::<RoomHistory>(&raw) {
                Ok(h) => {
                    rooms.insert(room, h);
                }
                Err(e) => {
                    tracing::error!(%room, error = %e, "unreadable patient context record; the room starts without a patient");
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                contexts: contexts.clone(),
                audit: audit.clone(),
                ttl,
                rooms: Mutex::new(rooms),
                writes: tokio::sync::Mutex::new(()),
                known: RwLock::new(None),
                lookup: RwLock::new(None),
                pending: Mutex::new(Vec::new()),
                checking: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    fn rooms(&self) -> MutexGuard<'_, BTreeMap<String, RoomHistory>> {
        // Every change is a whole-value update under the lock; a poisoned map is still valid.
        self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The rooms of the configured devices: from now on only these can be named by the admin
    /// API and the MQTT patient topic. The app calls it at start and on every reload.
    pub fn set_known_rooms(&self, rooms: impl IntoIterator<Item = String>) {
        let set = rooms.into_iter().collect();
        if let Ok(mut k) = self.inner.known.write() {
            *k = Some(set);
        }
    }

    /// Every later set first asks `lookup` (`None`: sets take the identifier as given).
    pub fn set_lookup(&self, lookup: Option<Lookup>) {
        if let Ok(mut l) = self.inner.lookup.write() {
            *l = lookup.map(Arc::new);
        }
    }

    fn lookup(&self) -> Option<Arc<Lookup>> {
        self.inner.lookup.read().ok().and_then(|l| l.clone())
    }

    /// Whether `room` is a configured device's room (every room before
    /// [`Self::set_known_rooms`]).
    pub fn is_known_room(&self, room: &str) -> bool {
        match self.inner.known.read() {
            Ok(k) => k.as_ref().is_none_or(|set| set.contains(room)),
            Err(_) => false,
        }
    }

    /// Whose reading is this: the reading could have been measured in `window` and names
    /// the device `user` (if any). See [`RoomHistory::attribute`].
    pub fn attribute(&self, room: &str, window: Window, user: Option<u8>) -> Attribution {
        let ttl = self.inner.ttl;
        let checking_since = self
            .inner
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(room)
            .map(|&(since, _)| since);
        if checking_since.is_some_and(|since| window.to >= since) {
            return Attribution::Ambiguous;
        }
        match self.rooms().get(room) {
            Some(h) => h.attribute(window, user, ttl),
            None => Attribution::Unknown,
        }
    }

    /// Attaches `r`'s patient from its room's context over `window` (for the device `user` it
    /// names, if any), or flags why it has none: `patient_ambiguous`, `patient_user_unmapped`,
    /// `patient_unknown` (the room's scan was refused by the lookup). A patient set by
    /// identifier only while the lookup could not be asked adds `patient_unverified`. Readings
    /// that took a lookup fallback are queued for the audit log ([`Self::flush_audit`]).
    pub fn attach(&self, room: &str, r: &mut Reading, window: Window, user: Option<u8>) {
        let fallback = match self.attribute(room, window, user) {
            Attribution::Patient(a) => {
                r.patient = Some(a.patient);
                r.patient_record = a.record;
                if a.unverified {
                    r.flags.push(Flag::new("patient_unverified"));
                    Some(LookupChoice::Identifier)
                } else {
                    None
                }
            }
            Attribution::Unknown => None,
            Attribution::Ambiguous => {
                r.flags.push(Flag::new("patient_ambiguous"));
                None
            }
            Attribution::UserUnmapped => {
                r.flags.push(Flag::new("patient_user_unmapped"));
                None
            }
            Attribution::Refused(reason) => {
                r.flags.push(Flag::new("patient_unknown"));
                (reason == RefusalReason::Unavailable).then_some(LookupChoice::Hold)
            }
        };
        if let (Some(choice), Some(reading)) = (fallback, r.id) {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push(AuditEvent::LookupFallback {
                reading,
                room: room.to_string(),
                choice,
            });
        }
    }

    /// Writes the per-reading lookup fallbacks noted by [`Self::attach`] to the audit log.
    /// The pipeline calls it before storing the readings; the expiry task once a second.
    pub async fn flush_audit(&self) -> Result<(), ContextError> {
        let events =
            std::mem::take(&mut *self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if events.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.inner.audit.append(events.clone()).await {
            // Kept for the next try.
            let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            let mut back = events;
            back.append(&mut pending);
            *pending = back;
            return Err(e.into());
        }
        Ok(())
    }

    /// Closes and audits every context that ran out before `now`; returns how many.
    pub async fn expire_due(&self, now: OffsetDateTime) -> Result<usize, ContextError> {
        let ttl = self.inner.ttl;
        let due: Vec<String> = self
            .rooms()
            .iter()
            .filter(|(_, h)| {
                h.epochs
                    .last()
                    .is_some_and(|e| e.until.is_none() && now >= e.end(ttl))
            })
            .map(|(r, _)| r.clone())
            .collect();
        let mut n = 0;
        for room in due {
            n += self
                .change(&room, |h| match h.expire(now, ttl) {
                    Some(patient) => {
                        tracing::info!(%room, patient = %patient.masked(), "patient context expired");
                        vec![AuditEvent::ContextExpired {
                            room: room.clone(),
                            patient,
                        }]
                    }
                    None => Vec::new(),
                })
                .await?;
        }
        Ok(n)
    }

    /// Expires contexts once a second until `cancel`.
    pub async fn run_expiry(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Err(e) = self.expire_due(OffsetDateTime::now_utc()).await {
                tracing::warn!(error = %e, "cannot record context expiry; will try again");
            }
            if let Err(e) = self.flush_audit().await {
                tracing::warn!(error = %e, "cannot record patient lookup fallbacks; will try again");
            }
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
