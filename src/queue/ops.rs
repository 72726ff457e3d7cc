//! What each queue request writes: pure staging over a [`Txn`], no I/O beyond the store reads.
//!
//! The writer thread calls these inside one group commit; they keep the counters exact and
//! collect the sinks that gained pending entries (to wake their delivery loops after the flush).
//!
//! A reading is appended to the group's segment; a fresh entry is a bit in the sink's bitmap for
//! that segment, found again at settle through [`SlotHints`] (filled by `Queue::pending`) or, when
//! the hint is gone (a restart), by looking through the sink's bitmaps. A reading stays stored
//! (its live bit set) while any sink has a fresh bit, a retried entry or a dead entry for it.
//!
//! Each sink holds at most ONE entry per reading: a fresh bit, or a retried entry (`q`, with its
//! due key `t`), or a dead entry (`d`). Every function here keeps that (an entry is added only
//! where the sink has none: a new reading, or one just taken), and settling leans on it to spare
//! store reads: a fresh bit found through the hint answers "pending" without looking for a
//! retried entry, and once a sink's entry is taken that sink refers to the reading no more, so
//! only the other sinks are looked at when deciding whether the reading can go (and of those,
//! only the ones whose counters say they have pending or dead entries at all).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::keys::{self, DeadValue, PendingValue};
use super::segment::{self, Segment, Slot};
use super::txn::{corrupt, Txn};
use super::types::{EnqueueOutcome, QueueError, Settle};
use crate::reading::{Reading, ReadingId, SinkId};

/// What the staging functions need besides the transaction.
pub struct Ctx<'a> {
    pub now_ms: u64,
    pub configured: &'a [SinkId],
    /// Sinks that gained pending entries in this group.
    pub woken: &'a mut BTreeSet<SinkId>,
    pub hints: &'a SlotHints,
    /// The dedupe index's hashing key and whether per-reading keys of an earlier version remain.
    pub dedupe: &'a super::dedupe::Index,
}

/// Where the readings handed out by `Queue::pending` are stored, so that settling them does not
/// search. A hint is only a shortcut: the bitmaps decide, and a missing hint means a search.
#[derive(Debug, Default)]
pub struct SlotHints(Mutex<HashMap<ReadingId, Slot>>);

/// Hints kept at most; beyond this they are dropped (delivery loops settle what they take, so
/// this is only reached when entries are listed without being settled).
const MAX_HINTS: usize = 100_000;

impl SlotHints {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ReadingId, Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn insert(&self, id: ReadingId, slot: Slot) {
        let mut m = self.map();
        if m.len() >= MAX_HINTS {
            m.clear();
        }
        m.insert(id, slot);
    }
    pub fn get(&self, id: ReadingId) -> Option<Slot> {
        self.map().get(&id).copied()
    }
    pub fn remove(&self, id: ReadingId) {
        self.map().remove(&id);
    }
}

pub(super) use super::values::json;
pub use super::values::{decode, fresh_not_before, from_ms, id_ms, list_by_id, reading, to_ms};

/// Adds a pending entry: a fresh bit when it is fresh (never tried, no error, due from its id's
/// time) and its reading is in the group's own segment, else a `q` entry with its state plus a
/// `t` due key.
pub(super) fn add_pending(
    tx: &mut Txn,
    ctx: &mut Ctx,
    sink: &SinkId,
    id: ReadingId,
    v: &PendingValue,
) -> Result<(), QueueError> {
    if !(is_fresh(id, v) && tx.set_fresh(sink, v.slot)) {
        let key = keys::retried(sink, id);
        let value = json(&key, v)?;
        tx.put(key, value);
        tx.put(keys::due(sink, v.not_before_ms, id), Vec::new());
    }
    tx.counters.sink(sink).pending += 1;
    ctx.woken.insert(sink.clone());
    Ok(())
}

fn is_fresh(id: ReadingId, v: &PendingValue) -> bool {
    v.attempts == 0 && v.last_error.is_none() && v.not_before_ms <= id_ms(id)
}

/// Where `sink`'s fresh entry for `id` is: the hint when its bit is set, else a search of the
/// sink's bitmaps (after a restart, or an entry settled without being listed).
fn find_fresh(
    tx: &Txn,
    ctx: &Ctx,
    sink: &SinkId,
    id: ReadingId,
) -> Result<Option<Slot>, QueueError> {
    if let Some(slot) = ctx.hints.get(id) {
        if tx.is_fresh(sink, slot)? {
            return Ok(Some(slot));
        }
    }
    let prefix = keys::sink_prefix(keys::PENDING, sink);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = tx.store().scan_prefix(&prefix, after.as_deref(), 64)?;
        let Some((last, _)) = page.last() else {
            return Ok(None);
        };
        after = Some(last.clone());
        for (k, _) in page {
            let (_, seq) = keys::parse_pending(&k).ok_or_else(|| corrupt(&k, "bad pending key"))?;
            let Some(raw) = tx.get(&keys::segment(seq))? else {
                continue;
            };
            let Ok(seg) = Segment::parse(&raw) else {
                continue;
            };
            if let Some(idx) = seg.find(id) {
                let slot = Slot(seq, idx);
                return Ok(tx.is_fresh(sink, slot)?.then_some(slot));
            }
        }
    }
}

/// The hinted slot of `id` when `sink`'s fresh bit is set there (no store read for the
/// retried entry: a sink has one entry per reading, see the module doc).
fn hinted_fresh(
    tx: &Txn,
    ctx: &Ctx,
    sink: &SinkId,
    id: ReadingId,
) -> Result<Option<Slot>, QueueError> {
    match ctx.hints.get(id) {
        Some(slot) if tx.is_fresh(sink, slot)? => Ok(Some(slot)),
        _ => Ok(None),
    }
}

/// Whether `sink` has a pending entry (fresh or retried) for `id`.
pub(super) fn has_pending(
    tx: &Txn,
    ctx: &Ctx,
    sink: &SinkId,
    id: ReadingId,
) -> Result<bool, QueueError> {
    Ok(hinted_fresh(tx, ctx, sink, id)?.is_some()
        || tx.exists(&keys::retried(sink, id))?
        || find_fresh(tx, ctx, sink, id)?.is_some())
}

/// Whether `sink` has a pending entry (fresh or retried) for the reading at `slot`.
fn is_pending(tx: &Txn, sink: &SinkId, id: ReadingId, slot: Slot) -> Result<bool, QueueError> {
    Ok(tx.is_fresh(sink, slot)? || tx.exists(&keys::retried(sink, id))?)
}

/// Removes a pending entry; returns its state when there was one.
pub(super) fn take_pending(
    tx: &mut Txn,
    ctx: &Ctx,
    sink: &SinkId,
    id: ReadingId,
) -> Result<Option<PendingValue>, QueueError> {
    let key = keys::retried(sink, id);
    let fresh = |tx: &mut Txn, slot: Slot| -> Result<PendingValue, QueueError> {
        tx.clear_fresh(sink, slot)?;
        Ok(PendingValue {
            slot,
            attempts: 0,
            not_before_ms: id_ms(id),
            last_error: None,
        })
    };
    let v = if let Some(slot) = hinted_fresh(tx, ctx, sink, id)? {
        fresh(tx, slot)?
    } else if let Some(raw) = tx.get(&key)? {
        let v: PendingValue = decode(&key, &raw)?;
        let due = keys::due(sink, v.not_before_ms, id);
        // Written and removed with its retried entry: the byte counters need not read it.
        tx.note_stored(&due, Some(&[]));
        tx.remove(key);
        tx.remove(due);
        v
    } else {
        let Some(slot) = find_fresh(tx, ctx, sink, id)? else {
            return Ok(None);
        };
        fresh(tx, slot)?
    };
    let c = tx.counters.sink(sink);
    c.pending = c.pending.saturating_sub(1);
    Ok(Some(v))
}

pub(super) fn add_dead(
    tx: &mut Txn,
    sink: &SinkId,
    id: ReadingId,
    v: &DeadValue,
) -> Result<(), QueueError> {
    let key = keys::dead(sink, id);
    let value = json(&key, v)?;
    tx.put(key, value);
    tx.counters.sink(sink).dead += 1;
    Ok(())
}

pub(super) fn take_dead(
    tx: &mut Txn,
    sink: &SinkId,
    id: ReadingId,
) -> Result<Option<DeadValue>, QueueError> {
    let key = keys::dead(sink, id);
    let Some(raw) = tx.get(&key)? else {
        return Ok(None);
    };
    let v: DeadValue = decode(&key, &raw)?;
    tx.remove(key);
    let c = tx.counters.sink(sink);
    c.dead = c.dead.saturating_sub(1);
    Ok(Some(v))
}

/// Removes the reading when no sink's pending or dead entry refers to it any more. `taken`:
/// the sink whose only entry for it was just taken (settled or purged), which refers to it no
/// more; a sink whose counters show no pending (or no dead) entries is not looked at for them.
pub(super) fn release_if_unreferenced(
    tx: &mut Txn,
    ctx: &Ctx,
    id: ReadingId,
    slot: Slot,
    taken: Option<&SinkId>,
) -> Result<(), QueueError> {
    let others: Vec<(SinkId, super::txn::SinkCount)> = tx
        .counters
        .sinks
        .iter()
        .filter(|(s, c)| Some(*s) != taken && (c.pending > 0 || c.dead > 0))
        .map(|(s, c)| (s.clone(), *c))
        .collect();
    for (s, c) in &others {
        if (c.pending > 0 && is_pending(tx, s, id, slot)?)
            || (c.dead > 0 && tx.exists(&keys::dead(s, id))?)
        {
            return Ok(());
        }
    }
    if tx.clear_live(slot)? {
        tx.counters.readings = tx.counters.readings.saturating_sub(1);
    }
    ctx.hints.remove(id);
    Ok(())
}

/// Stages readings: dedupe, append to the group's segment with one pending entry per sink; a
/// reading that failed a hard limit goes to the quarantine instead (see `quarantine`).
pub fn enqueue(
    tx: &mut Txn,
    ctx: &mut Ctx,
    readings: &[Reading],
) -> Result<Vec<EnqueueOutcome>, QueueError> {
    let mut out = Vec::with_capacity(readings.len());
    for (index, r) in readings.iter().enumerate() {
        let id = match claim(tx, ctx, index, r)? {
            Claim::Duplicate(existing) => {
                out.push(EnqueueOutcome::Duplicate(existing));
                continue;
            }
            Claim::New(id) => id,
        };
        if ctx.configured.is_empty() {
            // Nothing would ever deliver or release it: remember the key only.
            out.push(EnqueueOutcome::Stored);
            continue;
        }
        if let Some(reason) = r.rejection() {
            // A hard-limit failure is kept apart for a person's review, in no sink's lists.
            super::quarantine::put(tx, ctx, id, r, reason, false)?;
            out.push(EnqueueOutcome::Rejected(reason.to_string()));
        } else {
            let value = super::segment_entry::encode(r);
            let slot = tx.append(id, &value);
            tx.counters.readings += 1;
            let p = PendingValue {
                slot,
                attempts: 0,
                not_before_ms: fresh_not_before(id, ctx.now_ms),
                last_error: None,
            };
            for sink in ctx.configured {
                add_pending(tx, ctx, sink, id, &p)?;
            }
            out.push(EnqueueOutcome::Stored);
        }
    }
    Ok(out)
}

/// Whether a reading is new to the store.
pub(super) enum Claim {
    /// Stored before, under this id (the same id, or the same dedupe key).
    Duplicate(ReadingId),
    /// New: its dedupe key is now recorded; the caller stores the reading.
    New(ReadingId),
}

/// Checks a reading against the dedupe index (see `dedupe`), and records a new one. The same
/// id enqueued again has the same dedupe key (a reading without a device time is keyed by its
/// id). Shared by every path that stores readings (pending, held). A store of an earlier
/// version may still hold one `k` key per reading: those are looked up too until pruned.
pub(super) fn claim(
    tx: &mut Txn,
    ctx: &Ctx,
    index: usize,
    r: &Reading,
) -> Result<Claim, QueueError> {
    let id = r.id.ok_or(QueueError::MissingId { index })?;
    if ctx.dedupe.has_old_keys() {
        let kkey = keys::dedupe(&r.dedupe_key());
        if let Some(v) = tx.get(&kkey)? {
            let (existing, _) =
                keys::parse_dedupe_value(&v).ok_or_else(|| corrupt(&kkey, "short dedupe value"))?;
            return Ok(Claim::Duplicate(existing));
        }
    }
    Ok(
        match super::dedupe::claim(tx, ctx.dedupe, r, id, ctx.now_ms)? {
            Some(first) => Claim::Duplicate(first),
            None => Claim::New(id),
        },
    )
}

/// Stages delivery results. Results for entries that are not pending (already settled or
/// purged) are ignored.
pub fn settle(
    tx: &mut Txn,
    ctx: &mut Ctx,
    sink: &SinkId,
    results: &[(ReadingId, Settle)],
) -> Result<(), QueueError> {
    for (id, result) in results {
        let Some(p) = take_pending(tx, ctx, sink, *id)? else {
            tracing::debug!(%sink, %id, "settle for an entry that is not pending; ignored");
            continue;
        };
        match result {
            Settle::Delivered => release_if_unreferenced(tx, ctx, *id, p.slot, Some(sink))?,
            Settle::Retry { at, reason } => {
                let next = PendingValue {
                    slot: p.slot,
                    attempts: p.attempts.saturating_add(1),
                    not_before_ms: to_ms(*at),
                    last_error: Some(reason.clone()),
                };
                add_pending(tx, ctx, sink, *id, &next)?;
            }
            Settle::Dead { reason } => {
                let dead = DeadValue {
                    slot: p.slot,
                    reason: reason.clone(),
                    at: ctx.now_ms,
                    attempts: p.attempts,
                };
                add_dead(tx, sink, *id, &dead)?;
            }
        }
    }
    Ok(())
}

/// Moves dead entries back to pending with attempts 0. `ids` are the entries to move.
pub fn retry_dead(
    tx: &mut Txn,
    ctx: &mut Ctx,
    sink: &SinkId,
    ids: &[ReadingId],
) -> Result<usize, QueueError> {
    let mut n = 0;
    for id in ids {
        let Some(d) = take_dead(tx, sink, *id)? else {
            continue;
        };
        let p = PendingValue {
            slot: d.slot,
            attempts: 0,
            not_before_ms: fresh_not_before(*id, ctx.now_ms),
            last_error: Some(d.reason),
        };
        add_pending(tx, ctx, sink, *id, &p)?;
        n += 1;
    }
    Ok(n)
}

/// Removes dead entries (and readings no entry refers to any more).
pub fn purge_dead(
    tx: &mut Txn,
    ctx: &Ctx,
    sink: &SinkId,
    ids: &[ReadingId],
) -> Result<usize, QueueError> {
    let mut n = 0;
    for id in ids {
        if let Some(d) = take_dead(tx, sink, *id)? {
            release_if_unreferenced(tx, ctx, *id, d.slot, Some(sink))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Moves an undeliverable pending entry (its reading is missing or unreadable) to dead-letter.
pub fn dead_unreadable(
    tx: &mut Txn,
    ctx: &mut Ctx,
    sink: &SinkId,
    id: ReadingId,
    reason: &str,
) -> Result<(), QueueError> {
    settle(
        tx,
        ctx,
        sink,
        &[(
            id,
            Settle::Dead {
                reason: reason.to_string(),
            },
        )],
    )
}

/// Stops `sink` waiting for the fresh entries of a segment that cannot be read (missing or
/// damaged): their ids are unknown, so they cannot go to dead-letter; the live bits stay for
/// `queue verify` and `queue salvage` to report.
pub fn drop_fresh(tx: &mut Txn, sink: &SinkId, seq: u64) -> Result<u64, QueueError> {
    let key = keys::pending(sink, seq);
    let Some(bits) = tx.get(&key)? else {
        return Ok(0);
    };
    let n = segment::count(&bits);
    tx.remove(key);
    let c = tx.counters.sink(sink);
    c.pending = c.pending.saturating_sub(n);
    Ok(n)
}
