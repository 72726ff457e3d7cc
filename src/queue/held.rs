//! Held readings: readings that had no valid patient context when they were measured
//! (`[patient] mode = "hold"`), kept durably and pending for NO sink until an MA decides.
//!
//! Receives readings from the pipeline ([`Held::hold`]) and decisions from the admin API or
//! the CLI ([`Held::assign`], [`Held::discard`]). Promises:
//! - a held reading is stored once (same dedupe as [`Queue::enqueue`]) with a held entry and an
//!   audit entry, in one flushed batch;
//! - assigning sets the patient, removes the held entry and adds a pending entry for every
//!   configured sink, with the audit entry, in ONE atomic batch: either the reading is held or
//!   it is on its way with the patient, never both, never neither;
//! - discarding removes the reading with an audit entry saying who and why;
//! - nothing leaves the held list by itself: after `hold_for` an entry is shown for review.
//!
//! # Layout
//! ```text
//! 'h' id                      → HeldValue JSON {"room": ..., "at": held since ms, "reading": Reading}
//! ```
//! A held reading lives in its `h` value (counted in `readings`), not in a segment: assigning
//! appends it, with its patient, to the group's segment like a new reading.

use std::sync::Arc;

use super::handle::{async_reads, Core};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audit::append;
use super::keys::PendingValue;
use super::ops::{self, Ctx};
use super::txn::Txn;
use super::types::{EnqueueOutcome, QueueError};
use crate::model::audit::AuditEvent;
use crate::reading::{PatientRef, Reading, ReadingId};

pub const HELD: u8 = b'h';

fn held_key(id: ReadingId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(HELD);
    k.extend_from_slice(&id.to_bytes());
    k
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct HeldValue {
    pub(super) room: Option<String>,
    pub(super) at: u64,
    pub(super) reading: Reading,
}

/// A reading waiting for an MA's decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldEntry {
    pub id: ReadingId,
    pub room: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub held_at: OffsetDateTime,
    pub reading: Reading,
}

impl HeldEntry {
    /// True once the reading has waited longer than `hold_for`: it belongs on the review list.
    pub fn in_review(&self, hold_for: std::time::Duration, now: OffsetDateTime) -> bool {
        now - self.held_at > hold_for
    }
}

/// Stages held readings; rejected readings (hard limits: to the quarantine) and stores without
/// sinks take the ordinary enqueue path.
fn hold(
    tx: &mut Txn,
    ctx: &mut Ctx,
    readings: &[Reading],
) -> Result<Vec<EnqueueOutcome>, QueueError> {
    set_aside(tx, ctx, readings, held_key, |reading, room| {
        AuditEvent::Held { reading, room }
    })
}

/// Stages readings set aside for a person's decision (held, review) under `key_of(id)` with
/// the time they were set aside, audited with `event`. Duplicates are answered as such; a
/// reading failing a hard limit (to the quarantine) and a store without sinks take the
/// ordinary enqueue path.
pub(super) fn set_aside(
    tx: &mut Txn,
    ctx: &mut Ctx,
    readings: &[Reading],
    key_of: fn(ReadingId) -> Vec<u8>,
    event: fn(ReadingId, Option<String>) -> AuditEvent,
) -> Result<Vec<EnqueueOutcome>, QueueError> {
    let mut out = Vec::with_capacity(readings.len());
    for (index, r) in readings.iter().enumerate() {
        if r.rejection().is_some() || ctx.configured.is_empty() {
            out.extend(ops::enqueue(tx, ctx, std::slice::from_ref(r))?);
            continue;
        }
        let id = match ops::claim(tx, ctx, index, r)? {
            ops::Claim::Duplicate(existing) => {
                out.push(EnqueueOutcome::Duplicate(existing));
                continue;
            }
            ops::Claim::New(id) => id,
        };
        tx.counters.readings += 1;
        let key = key_of(id);
        let value = HeldValue {
            room: r.room.clone(),
            at: ctx.now_ms,
            reading: r.clone(),
        };
        let v = ops::json(&key, &value)?;
        tx.put(key, v);
        append(
            tx,
            ops::from_ms(ctx.now_ms),
            vec![event(id, r.room.clone())],
        )?;
        out.push(EnqueueOutcome::Stored);
    }
    Ok(out)
}

/// Takes a set-aside reading (under `key`) off its list, or `None`.
pub(super) fn take_aside(tx: &mut Txn, key: Vec<u8>) -> Result<Option<Reading>, QueueError> {
    let Some(raw) = tx.get(&key)? else {
        return Ok(None);
    };
    let value: HeldValue = ops::decode(&key, &raw)?;
    tx.remove(key);
    Ok(Some(value.reading))
}

/// Takes a held reading out of the held list, or `None`.
fn take_held(tx: &mut Txn, id: ReadingId) -> Result<Option<Reading>, QueueError> {
    take_aside(tx, held_key(id))
}

fn assign(
    tx: &mut Txn,
    ctx: &mut Ctx,
    id: ReadingId,
    patient: PatientRef,
    by: String,
) -> Result<Option<Reading>, QueueError> {
    let Some(mut reading) = take_held(tx, id)? else {
        return Ok(None);
    };
    reading.patient = Some(patient.clone());
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
    let event = AuditEvent::Assigned {
        reading: id,
        patient,
        by,
    };
    append(tx, ops::from_ms(ctx.now_ms), vec![event])?;
    Ok(Some(reading))
}

fn discard(
    tx: &mut Txn,
    ctx: &Ctx,
    id: ReadingId,
    reason: String,
    by: String,
) -> Result<Option<Reading>, QueueError> {
    let Some(reading) = take_held(tx, id)? else {
        return Ok(None);
    };
    tx.counters.readings = tx.counters.readings.saturating_sub(1);
    let event = AuditEvent::Discarded {
        reading: id,
        reason,
        by,
    };
    append(tx, ops::from_ms(ctx.now_ms), vec![event])?;
    Ok(Some(reading))
}

/// Readings held for want of a patient context. A cloneable handle over the store's one writer (`queue.held()`).
#[derive(Clone)]
pub struct Held {
    core: Arc<Core>,
}

async_reads!(Held);

impl Held {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Durable hold with group commit (see the module doc). Per reading: `Stored` (held),
    /// `Duplicate(first id)`, or `Rejected(reason)` (into the quarantine, as with `enqueue`).
    /// `Full` when over `max_bytes`, without writing anything.
    pub async fn hold(&self, readings: Vec<Reading>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        let shared = self.core.shared()?;
        if let Some(index) = readings.iter().position(|r| r.id.is_none()) {
            return Err(QueueError::MissingId { index });
        }
        shared.check_room()?;
        if readings.is_empty() {
            return Ok(Vec::new());
        }
        self.core
            .stage(move |tx, ctx| hold(tx, ctx, &readings))
            .await
    }

    /// Up to `limit` held readings, oldest id first.
    pub fn list(&self, limit: usize) -> Result<Vec<HeldEntry>, QueueError> {
        let store = &*self.core.shared()?.store;
        ops::list_by_id(store, HELD, "bad held key", limit, |id, h: HeldValue| {
            HeldEntry {
                id,
                room: h.room,
                held_at: ops::from_ms(h.at),
                reading: h.reading,
            }
        })
    }

    /// How many readings are held.
    pub fn count(&self) -> Result<u64, QueueError> {
        let store = &*self.core.shared()?.store;
        let mut n = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_prefix(&[HELD], after.as_deref(), 4096)?;
            let Some((last, _)) = page.last() else {
                return Ok(n);
            };
            after = Some(last.clone());
            n += page.len() as u64;
        }
    }

    /// Gives a held reading its patient and makes it pending for every configured sink, with
    /// an audit entry naming `by`, atomically. `None` when `id` is not held (never held,
    /// already assigned or discarded): a delivered reading is never re-attributed.
    pub async fn assign(
        &self,
        id: ReadingId,
        patient: PatientRef,
        by: String,
    ) -> Result<Option<Reading>, QueueError> {
        self.core
            .stage(move |tx, ctx| assign(tx, ctx, id, patient, by))
            .await
    }

    /// Removes a held reading with an audit entry (`reason`, `by`). `None` when not held.
    pub async fn discard(
        &self,
        id: ReadingId,
        reason: String,
        by: String,
    ) -> Result<Option<Reading>, QueueError> {
        self.core
            .stage(move |tx, ctx| discard(tx, ctx, id, reason, by))
            .await
    }
}

#[cfg(test)]
#[path = "held_tests.rs"]
mod tests;
