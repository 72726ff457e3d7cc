//! The quarantine: readings that failed a hard plausibility limit (a `rejected:` flag set by
//! normalize), kept apart from every sink until a named person releases or discards them.
//!
//! Receives rejected readings from [`super::Queue::enqueue`] (and from `hold`, which passes
//! them on) and decisions from the admin API or the CLI ([`Quarantine::release`],
//! [`Quarantine::discard`]). Promises:
//! - a rejected reading is stored once (same dedupe as any reading), in the quarantine only,
//!   with a `Quarantined` audit entry, in one flushed batch: no sink's pending list or
//!   dead-letter refers to it, so no dead-letter retry (one, all, CLI or API) can send it;
//! - releasing removes the quarantine entry and adds ONE pending entry per configured sink,
//!   with a `QuarantineReleased` audit entry naming who and why, in ONE atomic batch; a second
//!   release finds nothing. The reading keeps its `rejected:` flag (encoders send it as
//!   preliminary with a note);
//! - a reading without a patient is released without one only when the caller allows it (in
//!   `[patient] mode = "hold"` the callers require a patient in the release);
//! - discarding removes the reading with a `QuarantineDiscarded` audit entry;
//! - at open, a store written by an earlier version (which put rejected readings in every
//!   sink's dead-letter) has those entries moved here, audited ([`migrate`]).
//!
//! See `docs/quarantine.md` for the operator's side.
//!
//! # Layout
//! ```text
//! 'u' id                      → QuarantineValue JSON {"at": ms, "why": reason, "migrated": bool, "reading": Reading}
//! ```
//! Like a held reading, a quarantined one lives in its own value (counted in `readings`), not
//! in a segment: releasing appends it to the group's segment like a new reading.

use std::sync::Arc;

use super::handle::{async_reads, Core};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audit::append;
use super::keys::{self, DeadValue, PendingValue};
use super::ops::{self, Ctx};
use super::segment::{Segment, Slot};
use super::txn::{corrupt, Txn};
use super::types::QueueError;
use crate::model::audit::AuditEvent;
use crate::reading::{PatientRef, Reading, ReadingId, SinkId};

pub const QUARANTINE: u8 = b'u';

fn key(id: ReadingId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(QUARANTINE);
    k.extend_from_slice(&id.to_bytes());
    k
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct QuarantineValue {
    pub at: u64,
    #[serde(rename = "why")]
    pub reason: String,
    #[serde(default)]
    pub migrated: bool,
    pub reading: Reading,
}

/// A quarantined reading, with patient data (for authenticated callers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineEntry {
    pub id: ReadingId,
    /// The hard limit it failed (the text after `rejected:`).
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub quarantined_at: OffsetDateTime,
    /// Moved here from the dead-letter of a store written by an earlier version.
    pub migrated: bool,
    pub reading: Reading,
}

/// One line of `vitalsd queue quarantine`: no values, the patient masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineSummary {
    pub id: ReadingId,
    pub device: String,
    pub room: Option<String>,
    pub kind: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub quarantined_at: OffsetDateTime,
    /// `PatientRef::masked`, or `None` for a reading without a patient.
    pub patient: Option<String>,
}

impl QuarantineEntry {
    pub fn summary(&self) -> QuarantineSummary {
        QuarantineSummary {
            id: self.id,
            device: self.reading.device.id.to_string(),
            room: self.reading.room.clone(),
            kind: self.reading.kind.as_str().to_string(),
            reason: self.reason.clone(),
            quarantined_at: self.quarantined_at,
            patient: self.reading.patient.as_ref().map(PatientRef::masked),
        }
    }
}

/// What a release did.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Removed from the quarantine and pending for every configured sink.
    Released(Box<Reading>),
    /// Nothing in the quarantine has this id (never quarantined, released or discarded).
    NotFound,
    /// The reading has no patient and the caller requires one: nothing changed.
    NeedsPatient,
    /// The release named a patient but the reading already has a different one: nothing
    /// changed (a reading is never re-attributed).
    HasPatient,
    /// No sink is configured: nothing could deliver it, so it stays.
    NoSinks,
}

/// Stages a rejected reading into the quarantine with its audit entry (counted in `readings`).
pub(super) fn put(
    tx: &mut Txn,
    ctx: &Ctx,
    id: ReadingId,
    reading: &Reading,
    reason: &str,
    migrated: bool,
) -> Result<(), QueueError> {
    put_at(tx, ctx.now_ms, ctx.now_ms, id, reading, reason, migrated)
}

fn put_at(
    tx: &mut Txn,
    now_ms: u64,
    at: u64,
    id: ReadingId,
    reading: &Reading,
    reason: &str,
    migrated: bool,
) -> Result<(), QueueError> {
    let k = key(id);
    let v = QuarantineValue {
        at,
        reason: reason.to_string(),
        migrated,
        reading: reading.clone(),
    };
    let value = ops::json(&k, &v)?;
    if !tx.exists(&k)? {
        tx.counters.readings += 1;
        tx.counters.quarantined += 1;
    }
    tx.put(k, value);
    let event = AuditEvent::Quarantined {
        reading: id,
        reason: reason.to_string(),
        migrated,
    };
    append(tx, ops::from_ms(now_ms), vec![event])
}

fn take(tx: &mut Txn, id: ReadingId) -> Result<Option<QuarantineValue>, QueueError> {
    let k = key(id);
    let Some(raw) = tx.get(&k)? else {
        return Ok(None);
    };
    let v: QuarantineValue = ops::decode(&k, &raw)?;
    tx.remove(k);
    Ok(Some(v))
}

/// The decision a release asks for.
pub struct ReleaseRequest {
    pub by: String,
    pub reason: String,
    /// The patient to give a reading that has none.
    pub patient: Option<PatientRef>,
    /// Refuse ([`Release::NeedsPatient`]) a reading without a patient when none is given.
    pub require_patient: bool,
}

fn release(
    tx: &mut Txn,
    ctx: &mut Ctx,
    id: ReadingId,
    req: ReleaseRequest,
) -> Result<Release, QueueError> {
    let k = key(id);
    let Some(raw) = tx.get(&k)? else {
        return Ok(Release::NotFound);
    };
    if ctx.configured.is_empty() {
        return Ok(Release::NoSinks);
    }
    let v: QuarantineValue = ops::decode(&k, &raw)?;
    let mut reading = v.reading;
    let given = match (&reading.patient, req.patient) {
        (None, None) if req.require_patient => return Ok(Release::NeedsPatient),
        (None, None) => None,
        (None, Some(p)) => {
            reading.patient = Some(p.clone());
            Some(p)
        }
        (Some(have), Some(p)) if *have != p => return Ok(Release::HasPatient),
        (Some(_), _) => None,
    };
    tx.remove(k);
    tx.counters.quarantined = tx.counters.quarantined.saturating_sub(1);
    let value = super::segment_entry::encode(&reading);
    let slot = tx.append(id, &value);
    let p = PendingValue {
        slot,
        attempts: 0,
        not_before_ms: ops::fresh_not_before(id, ctx.now_ms),
        last_error: None,
    };
    let sinks = ctx.configured.to_vec();
    for sink in &sinks {
        ops::add_pending(tx, ctx, sink, id, &p)?;
    }
    let event = AuditEvent::QuarantineReleased {
        reading: id,
        by: req.by,
        reason: req.reason,
        patient: given,
    };
    append(tx, ops::from_ms(ctx.now_ms), vec![event])?;
    Ok(Release::Released(Box::new(reading)))
}

fn discard(
    tx: &mut Txn,
    ctx: &Ctx,
    id: ReadingId,
    by: String,
    reason: String,
) -> Result<bool, QueueError> {
    if take(tx, id)?.is_none() {
        return Ok(false);
    }
    tx.counters.readings = tx.counters.readings.saturating_sub(1);
    tx.counters.quarantined = tx.counters.quarantined.saturating_sub(1);
    let event = AuditEvent::QuarantineDiscarded {
        reading: id,
        by,
        reason,
    };
    append(tx, ops::from_ms(ctx.now_ms), vec![event])?;
    Ok(true)
}

/// A dead or retried entry that may hold a rejected reading stored by an earlier version.
struct Candidate {
    sink: SinkId,
    slot: Slot,
    /// The dead reason, or the retried entry's last error.
    reason: String,
    at: u64,
}

/// Every `d` entry, and every `q` entry with a last error, grouped by reading id.
fn candidates(tx: &Txn) -> Result<BTreeMap<ReadingId, Vec<Candidate>>, QueueError> {
    let store = tx.store();
    let mut out: BTreeMap<ReadingId, Vec<Candidate>> = BTreeMap::new();
    for tag in [keys::DEAD, keys::RETRIED] {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_prefix(&[tag], after.as_deref(), 1024)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in page {
                let (sink, id) =
                    keys::parse_sink_entry(&k).ok_or_else(|| corrupt(&k, "bad entry key"))?;
                let c = if tag == keys::DEAD {
                    let d: DeadValue = ops::decode(&k, &v)?;
                    Candidate {
                        sink,
                        slot: d.slot,
                        reason: d.reason,
                        at: d.at,
                    }
                } else {
                    let p: PendingValue = ops::decode(&k, &v)?;
                    // A dead-letter retry starts again at 0 attempts with the dead reason as
                    // its last error; a receiver's retry counts attempts.
                    let (0, Some(reason)) = (p.attempts, p.last_error) else {
                        continue;
                    };
                    Candidate {
                        sink,
                        slot: p.slot,
                        reason,
                        at: p.not_before_ms,
                    }
                };
                out.entry(id).or_default().push(c);
            }
        }
    }
    Ok(out)
}

/// Moves rejected readings that a store written by an earlier version keeps as ordinary
/// entries into the quarantine, audited (`Quarantined`, `migrated: true`). A candidate is a
/// dead entry whose reason is its reading's hard-limit rejection (the earlier version's
/// enqueue), or a retried entry whose last error is (a dead-letter retry of one); every entry of
/// such a reading goes, for every sink. A reading refused by a receiver has another reason and
/// stays where it is. Entries whose reading cannot be read are left to `queue verify`.
/// Returns how many readings moved.
pub(super) fn migrate(tx: &mut Txn, ctx: &mut Ctx) -> Result<usize, QueueError> {
    let found = candidates(tx)?;
    if found.is_empty() {
        return Ok(0);
    }
    // Ids sort by time, so candidates mostly come segment after segment: keep the last one.
    let mut cached: Option<(u64, Option<Vec<u8>>)> = None;
    let mut moved = 0;
    for (id, entries) in found {
        let Some(first) = entries.first() else {
            continue;
        };
        let slot = first.slot;
        if cached.as_ref().is_none_or(|(seq, _)| *seq != slot.seq()) {
            cached = Some((slot.seq(), tx.get(&keys::segment(slot.seq()))?));
        }
        let Some((_, Some(raw))) = cached.as_ref() else {
            continue;
        };
        let Ok(seg) = Segment::parse(raw) else {
            continue;
        };
        let Some((found_id, json)) = seg.get(slot.idx()) else {
            continue;
        };
        if found_id != id {
            continue;
        }
        let Ok(reading) = super::segment_entry::decode(json) else {
            continue;
        };
        let Some(rejection) = reading.rejection() else {
            continue;
        };
        let Some(c) = entries.iter().find(|c| c.reason == rejection) else {
            continue;
        };
        let at = c.at;
        let sinks: Vec<SinkId> = tx.counters.sinks.keys().cloned().collect();
        for s in entries.iter().map(|c| &c.sink).chain(&sinks) {
            ops::take_dead(tx, s, id)?;
            ops::take_pending(tx, ctx, s, id)?;
        }
        put_at(tx, ctx.now_ms, at, id, &reading, rejection, true)?;
        ops::release_if_unreferenced(tx, ctx, id, slot, None)?;
        moved += 1;
    }
    Ok(moved)
}

/// Readings that failed a hard plausibility limit. A cloneable handle over the store's one writer (`queue.quarantine()`).
#[derive(Clone)]
pub struct Quarantine {
    core: Arc<Core>,
}

async_reads!(Quarantine);

impl Quarantine {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Up to `limit` quarantined readings, oldest id first.
    pub fn list(&self, limit: usize) -> Result<Vec<QuarantineEntry>, QueueError> {
        let store = &*self.core.shared()?.store;
        ops::list_by_id(
            store,
            QUARANTINE,
            "bad quarantine key",
            limit,
            |id, q: QuarantineValue| QuarantineEntry {
                id,
                reason: q.reason,
                quarantined_at: ops::from_ms(q.at),
                migrated: q.migrated,
                reading: q.reading,
            },
        )
    }

    /// How many readings are in the quarantine (a kept counter: no scan).
    pub fn count(&self) -> Result<u64, QueueError> {
        Ok(self.core.shared()?.counters().quarantined)
    }

    /// Releases a quarantined reading to every configured sink, audited with `by` and
    /// `reason` (see [`Release`] for what else can happen; nothing changes then).
    pub async fn release(&self, id: ReadingId, req: ReleaseRequest) -> Result<Release, QueueError> {
        self.core
            .stage(move |tx, ctx| release(tx, ctx, id, req))
            .await
    }

    /// Removes a quarantined reading, audited with `by` and `reason`. False when not there.
    pub async fn discard(
        &self,
        id: ReadingId,
        by: String,
        reason: String,
    ) -> Result<bool, QueueError> {
        self.core
            .stage(move |tx, ctx| discard(tx, ctx, id, by, reason))
            .await
    }
}

#[cfg(test)]
#[path = "quarantine_tests.rs"]
mod tests;
