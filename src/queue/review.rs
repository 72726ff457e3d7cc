//! Readings waiting for an MA's review before they are filed (`[patient] review = true`):
//! kept durably and pending for NO sink until a person confirms or rejects each one.
//!
//! Receives readings from the pipeline ([`Review::add`]) and decisions from the admin API
//! or the status page ([`Review::confirm`], [`Review::reject`] and their per-room
//! forms). Promises:
//! - a reading to review is stored once (same dedupe as [`Queue::enqueue`]) with a review entry
//!   and an audit entry, in one flushed batch; a reading that failed a hard limit goes to the
//!   quarantine instead, as with `enqueue`;
//! - confirming removes the review entry and adds a pending entry for every configured sink,
//!   with the audit entry (who), in ONE atomic batch: the reading is either waiting or on its
//!   way, never both, never neither. A second confirm finds nothing (`None`): filed once;
//! - rejecting removes the reading with an audit entry (who, and why when given): never filed;
//! - nothing leaves the review list by itself, however long it waits.
//!
//! This is not the held list's "review" state (a held reading without a patient that waited
//! longer than `hold_for`): a reading here already has its patient (or, in location mode, its
//! room) and waits only for a person to say it is right.
//!
//! # Layout
//! ```text
//! 'v' id                      → {"room": ..., "at": waiting since ms, "reading": Reading}
//! ```
//! The value has the shape of a held value (the store's checks read it as one); the reading
//! lives there, counted in `readings`, until confirming appends it to the group's segment.

use std::sync::Arc;

use super::handle::{async_reads, Core};
use serde::Serialize;
use time::OffsetDateTime;

use super::audit::append;
use super::held;
use super::keys::PendingValue;
use super::ops::{self, Ctx};
use super::txn::Txn;
use super::types::{EnqueueOutcome, QueueError};
use crate::model::audit::AuditEvent;
use crate::reading::{Reading, ReadingId};

/// The key tag of the review list.
pub const REVIEW: u8 = b'v';

fn review_key(id: ReadingId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(REVIEW);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// A reading waiting for a person to confirm or reject it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewEntry {
    pub id: ReadingId,
    pub room: Option<String>,
    /// When it joined the review list.
    #[serde(with = "time::serde::rfc3339")]
    pub waiting_since: OffsetDateTime,
    pub reading: Reading,
}

/// What a decision on one reading found.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Confirmed (now pending for every sink) or rejected (gone); the reading as it was.
    Done(Box<Reading>),
    /// No reading with this id waits for review (never did, or already decided).
    NotWaiting,
}

fn stage_review(
    tx: &mut Txn,
    ctx: &mut Ctx,
    readings: &[Reading],
) -> Result<Vec<EnqueueOutcome>, QueueError> {
    held::set_aside(tx, ctx, readings, review_key, |reading, room| {
        AuditEvent::ReviewWaiting { reading, room }
    })
}

fn take(tx: &mut Txn, id: ReadingId) -> Result<Option<Reading>, QueueError> {
    held::take_aside(tx, review_key(id))
}

fn confirm(
    tx: &mut Txn,
    ctx: &mut Ctx,
    id: ReadingId,
    by: &str,
) -> Result<Option<Reading>, QueueError> {
    let Some(reading) = take(tx, id)? else {
        return Ok(None);
    };
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
    let event = AuditEvent::ReviewConfirmed {
        reading: id,
        by: by.to_string(),
    };
    append(tx, ops::from_ms(ctx.now_ms), vec![event])?;
    Ok(Some(reading))
}

fn reject(
    tx: &mut Txn,
    ctx: &Ctx,
    id: ReadingId,
    by: &str,
    reason: Option<&str>,
) -> Result<Option<Reading>, QueueError> {
    let Some(reading) = take(tx, id)? else {
        return Ok(None);
    };
    tx.counters.readings = tx.counters.readings.saturating_sub(1);
    let event = AuditEvent::ReviewRejected {
        reading: id,
        by: by.to_string(),
        reason: reason.map(str::to_string),
    };
    append(tx, ops::from_ms(ctx.now_ms), vec![event])?;
    Ok(Some(reading))
}

fn decided(r: Option<Reading>) -> Decision {
    r.map_or(Decision::NotWaiting, |r| Decision::Done(Box::new(r)))
}

/// Readings waiting for a person's confirmation (review mode). A cloneable handle over the store's one writer (`queue.review()`).
#[derive(Clone)]
pub struct Review {
    core: Arc<Core>,
}

async_reads!(Review);

impl Review {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Durable store on the review list with group commit (see the module doc). Per reading:
    /// `Stored` (waiting), `Duplicate(first id)`, or `Rejected(reason)` (into the quarantine,
    /// as with `enqueue`). `Full` when over `max_bytes`, without writing anything.
    pub async fn add(&self, readings: Vec<Reading>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        let shared = self.core.shared()?;
        if let Some(index) = readings.iter().position(|r| r.id.is_none()) {
            return Err(QueueError::MissingId { index });
        }
        shared.check_room()?;
        if readings.is_empty() {
            return Ok(Vec::new());
        }
        self.core
            .stage(move |tx, ctx| stage_review(tx, ctx, &readings))
            .await
    }

    /// Up to `limit` readings waiting for review, oldest id first.
    pub fn list(&self, limit: usize) -> Result<Vec<ReviewEntry>, QueueError> {
        let store = &*self.core.shared()?.store;
        ops::list_by_id(
            store,
            REVIEW,
            "bad review key",
            limit,
            |id, v: held::HeldValue| ReviewEntry {
                id,
                room: v.room,
                waiting_since: ops::from_ms(v.at),
                reading: v.reading,
            },
        )
    }

    /// How many readings wait for review.
    pub fn count(&self) -> Result<u64, QueueError> {
        let store = &*self.core.shared()?.store;
        let mut n = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_prefix(&[REVIEW], after.as_deref(), 4096)?;
            let Some((last, _)) = page.last() else {
                return Ok(n);
            };
            after = Some(last.clone());
            n += page.len() as u64;
        }
    }

    /// Files a reading waiting for review: pending for every configured sink, with an audit
    /// entry naming `by`, atomically. `NotWaiting` when it is not on the list (a second
    /// confirm, a rejected reading): a reading is filed once.
    pub async fn confirm(&self, id: ReadingId, by: String) -> Result<Decision, QueueError> {
        self.core
            .stage(move |tx, ctx| confirm(tx, ctx, id, &by).map(decided))
            .await
    }

    /// Removes a reading waiting for review, never filed, with an audit entry (`by`, and
    /// `reason` when given). `NotWaiting` when it is not on the list.
    pub async fn reject(
        &self,
        id: ReadingId,
        by: String,
        reason: Option<String>,
    ) -> Result<Decision, QueueError> {
        self.core
            .stage(move |tx, ctx| reject(tx, ctx, id, &by, reason.as_deref()).map(decided))
            .await
    }

    /// Confirms (`confirm`) or rejects every reading of `room` waiting for review, in ONE
    /// atomic batch with one audit entry each; returns the ids decided (readings another
    /// decision took first are left out).
    pub async fn decide_room(
        &self,
        room: &str,
        confirm_all: bool,
        by: String,
    ) -> Result<Vec<ReadingId>, QueueError> {
        let ids: Vec<ReadingId> = self
            .list(usize::MAX)?
            .into_iter()
            .filter(|e| e.room.as_deref() == Some(room))
            .map(|e| e.id)
            .collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        self.core
            .stage(move |tx, ctx| {
                let mut done = Vec::with_capacity(ids.len());
                for id in ids {
                    let r = if confirm_all {
                        confirm(tx, ctx, id, &by)?
                    } else {
                        reject(tx, ctx, id, &by, Some("rejected with the room's batch"))?
                    };
                    if r.is_some() {
                        done.push(id);
                    }
                }
                Ok(done)
            })
            .await
    }
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
