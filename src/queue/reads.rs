//! The readings queue's reads: due entries, the next due time, counters, the dead-letter.
//!
//! Receives read calls from [`super::Queue`]. Promises: each read sees whole groups (every
//! batch is atomic); fresh entries come in segment order; a pending entry whose reading cannot
//! be read is handed to the writer for the sink's dead-letter instead of blocking the sink.
//! These block briefly on the store: async callers go through `Queue::read`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use time::OffsetDateTime;

use super::command::Command;
use super::handle::Core;
use super::keys::{self, DeadValue, PendingValue};
use super::segment::{self, Slot};
use super::types::{
    DeadEntry, DueCursor, HistoryStats, Pending, QueueError, QueueStats, SinkStats,
};
use super::{ops, txn};
use crate::reading::{Reading, ReadingId, SinkId};

impl Core {
    /// `Queue::pending` passing over the entries whose reading is in `skip` (a delivery
    /// loop's batches in flight, still pending until settled) before any reading is decoded.
    pub(super) fn pending_excluding(
        &self,
        sink: &SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &HashSet<ReadingId>,
    ) -> Result<Vec<Pending>, QueueError> {
        Ok(self.pending_after(sink, max, now, skip, None)?.0)
    }

    /// [`Core::pending_excluding`] reading the retried entries from past `after` first: the
    /// entries up to it are in flight, and passing over each of them again would cost a key
    /// read per entry in flight on every read (up to `concurrency × 2` batches of them). When
    /// fewer than `max` are found past it, the entries up to it are read too (passing over
    /// those in `skip`), so an entry left behind it is read all the same. Returns the entries,
    /// oldest first, and the cursor for the next read: the last retried entry returned, or
    /// `after` when none was.
    pub(super) fn pending_after(
        &self,
        sink: &SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &HashSet<ReadingId>,
        after: Option<DueCursor>,
    ) -> Result<(Vec<Pending>, Option<DueCursor>), QueueError> {
        let shared = self.shared()?;
        let now_ms = ops::to_ms(now);
        // The first `max` of the union are among the first `max + skip` of each list.
        let limit = max.saturating_add(skip.len());
        let mut due: Vec<(u64, ReadingId, PendingValue, bool)> = Vec::new();
        let from = after.map(|c| keys::due(sink, c.not_before_ms, c.id));
        let scan = DueScan {
            sink,
            max,
            limit,
            now_ms,
            skip,
        };
        self.scan_due(&scan, from.clone(), None, &mut due)?;
        if from.is_some() && due.len() < max {
            self.scan_due(&scan, None, from.as_deref(), &mut due)?;
        }
        let mut looked = 0;
        self.fresh_entries(sink, |slot, id| {
            let nb = ops::id_ms(id);
            if nb <= now_ms && !skip.contains(&id) {
                let p = PendingValue {
                    slot,
                    attempts: 0,
                    not_before_ms: nb,
                    last_error: None,
                };
                due.push((nb, id, p, false));
            }
            looked += 1;
            looked < limit
        })?;
        due.sort_by_key(|(nb, id, _, _)| (*nb, *id));
        due.truncate(max);
        let cursor = due
            .iter()
            .filter(|(_, _, _, retried)| *retried)
            .map(|(nb, id, _, _)| DueCursor {
                not_before_ms: *nb,
                id: *id,
            })
            .chain(after)
            .max();
        let mut out = Vec::with_capacity(due.len());
        for (_, id, p, _) in due {
            match self.load_reading(p.slot, id) {
                Ok(reading) => {
                    shared.hints.insert(id, p.slot);
                    out.push(Pending {
                        reading,
                        attempts: p.attempts,
                        last_error: p.last_error,
                    });
                }
                // Settled meanwhile (a listing racing the delivery loop): not a damaged entry.
                Err(_) if !self.still_pending(sink, id, p.slot)? => {}
                Err(reason) => self.dead_unreadable(sink, id, p.slot, reason),
            }
        }
        Ok((out, cursor))
    }

    /// Adds to `due` the retried entries of `scan.sink` due at `scan.now_ms` and not in
    /// `scan.skip`, from past the key `from` (the start without it) up to the key `until`
    /// (inclusive; the end without it), until `due` holds `scan.max` or `scan.limit` keys were
    /// looked at. The due list is in (not_before, id) order, so it is read a page of keys at
    /// a time (its values are empty) and no entry past those is read and decoded.
    fn scan_due(
        &self,
        scan: &DueScan<'_>,
        from: Option<Vec<u8>>,
        until: Option<&[u8]>,
        due: &mut Vec<(u64, ReadingId, PendingValue, bool)>,
    ) -> Result<(), QueueError> {
        let store = &*self.shared.store;
        let prefix = keys::sink_prefix(keys::DUE, scan.sink);
        let page_len = scan.max.max(16);
        let mut after = from;
        let mut scanned = 0;
        while scanned < scan.limit && due.len() < scan.max {
            let want = page_len.min(scan.limit - scanned);
            let page = store.scan_keys(&prefix, after.as_deref(), want)?;
            let full = page.len() == want;
            for k in page {
                if until.is_some_and(|u| k.as_slice() > u) {
                    return Ok(());
                }
                scanned += 1;
                let (nb, id) =
                    keys::parse_due(&k).ok_or_else(|| txn::corrupt(&k, "bad due key"))?;
                if nb > scan.now_ms || due.len() >= scan.max {
                    return Ok(());
                }
                if !scan.skip.contains(&id) {
                    let qkey = keys::retried(scan.sink, id);
                    if let Some(raw) = store.get(&qkey)? {
                        due.push((nb, id, ops::decode(&qkey, &raw)?, true));
                    }
                }
                after = Some(k);
            }
            if !full {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Calls `each(slot, id)` for `sink`'s fresh entries in segment order while it returns true.
    /// A segment that cannot be read is taken off the sink's list (see `ops::drop_fresh`).
    fn fresh_entries(
        &self,
        sink: &SinkId,
        mut each: impl FnMut(Slot, ReadingId) -> bool,
    ) -> Result<(), QueueError> {
        let store = &*self.shared.store;
        let prefix = keys::sink_prefix(keys::PENDING, sink);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_prefix(&prefix, after.as_deref(), 16)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (k, bits) in page {
                let (_, seq) =
                    keys::parse_pending(&k).ok_or_else(|| txn::corrupt(&k, "bad pending key"))?;
                let seg = match self.load_segment(seq) {
                    Ok(seg) => seg,
                    // Settled meanwhile (another reader's listing raced a settle): nothing to do.
                    Err(_) if store.get(&k)?.is_none() => continue,
                    Err(reason) => {
                        self.drop_fresh(sink, seq, reason);
                        continue;
                    }
                };
                for idx in segment::ones(&bits) {
                    let Some((id, _)) = seg.get(idx) else {
                        continue;
                    };
                    if !each(Slot(seq, idx), id) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Whether `sink` still has a pending entry (retried, or fresh at `slot`) for `id`.
    fn still_pending(&self, sink: &SinkId, id: ReadingId, slot: Slot) -> Result<bool, QueueError> {
        let store = &*self.shared.store;
        if store.get(&keys::retried(sink, id))?.is_some() {
            return Ok(true);
        }
        Ok(store
            .get(&keys::pending(sink, slot.seq()))?
            .is_some_and(|bits| segment::bit(&bits, slot.idx())))
    }

    /// Segment `seq`, indexed, from the segment cache or the store.
    fn load_segment(&self, seq: u64) -> Result<Arc<segment::Loaded>, String> {
        let shared = &*self.shared;
        shared.segments.get_or_load(seq, || {
            let raw = match shared.store.get(&keys::segment(seq)) {
                Ok(Some(raw)) => raw,
                Ok(None) => return Err(format!("segment {seq} is missing from the store")),
                Err(e) => return Err(format!("segment {seq}: {e}")),
            };
            segment::Loaded::new(raw).map_err(|e| format!("segment {seq}: {e}"))
        })
    }

    /// How many segments the readers read from the store since the queue opened.
    pub(super) fn segment_loads(&self) -> u64 {
        self.shared.segments.loads()
    }

    /// The reading `id` at `slot`, or why it cannot be delivered.
    fn load_reading(&self, slot: Slot, id: ReadingId) -> Result<Reading, String> {
        let seg = self
            .load_segment(slot.seq())
            .map_err(|e| format!("unreadable: {e}"))?;
        match seg.get(slot.idx()) {
            Some((found, stored)) if found == id => {
                ops::reading(&keys::segment(slot.seq()), stored)
                    .map_err(|e| format!("unreadable: {e}"))
            }
            _ => Err("unreadable: the reading is missing from its segment".into()),
        }
    }

    fn dead_unreadable(&self, sink: &SinkId, id: ReadingId, slot: Slot, reason: String) {
        tracing::error!(%sink, %id, %reason, "pending entry without a readable reading; moving it to dead-letter");
        self.shared.hints.insert(id, slot);
        let _ = self.send(Command::DeadUnreadable {
            sink: sink.clone(),
            id,
            reason,
        });
    }

    fn drop_fresh(&self, sink: &SinkId, seq: u64, reason: String) {
        tracing::error!(%sink, seq, %reason, "fresh entries whose segment cannot be read; the sink skips them (run `vitalsd queue verify`)");
        let _ = self.send(Command::DropFresh {
            sink: sink.clone(),
            seq,
        });
    }

    /// Earliest not_before among the sink's pending entries (None when nothing is pending).
    pub(super) fn next_due(&self, sink: &SinkId) -> Result<Option<OffsetDateTime>, QueueError> {
        let shared = self.shared()?;
        let store = &*shared.store;
        let retried = store.scan_keys(&keys::sink_prefix(keys::DUE, sink), None, 1)?;
        let retried = match retried.first() {
            Some(k) => Some(
                keys::parse_due(k)
                    .ok_or_else(|| txn::corrupt(k, "bad due key"))?
                    .0,
            ),
            None => None,
        };
        // The first segment with fresh entries holds the oldest (segments are in store order).
        let mut fresh: Option<u64> = None;
        let first = store.scan_prefix(&keys::sink_prefix(keys::PENDING, sink), None, 1)?;
        if let Some((k, bits)) = first.first() {
            let (_, seq) =
                keys::parse_pending(k).ok_or_else(|| txn::corrupt(k, "bad pending key"))?;
            match self.load_segment(seq) {
                Ok(seg) => {
                    fresh = segment::ones(bits)
                        .filter_map(|i| seg.get(i).map(|(id, _)| ops::id_ms(id)))
                        .min();
                }
                // Due now: the next `pending` call takes the sink off this segment.
                Err(_) => fresh = Some(0),
            }
        }
        Ok(retried.into_iter().chain(fresh).min().map(ops::from_ms))
    }

    /// Counters of readings, pending and dead entries per sink, the live bytes by class
    /// (undelivered against the cap, history against its own bound) and the size on disk.
    pub(super) fn stats(&self) -> Result<QueueStats, QueueError> {
        let shared = self.shared()?;
        let c = shared.counters().clone();
        let configured = shared.configured();
        let rejected = shared.rejected_bytes.load(Ordering::Relaxed);
        let files = shared
            .audit_log
            .as_ref()
            .map(|l| l.stats())
            .unwrap_or_default();
        Ok(QueueStats {
            readings: c.readings,
            quarantined: c.quarantined,
            disk_bytes: shared.disk_bytes.load(Ordering::Relaxed),
            live_bytes: c
                .bytes
                .undelivered
                .saturating_add(shared.history_bytes(&c.bytes)),
            reclaims: shared
                .reclaim
                .as_ref()
                .map_or(0, |r| r.runs.load(Ordering::Relaxed)),
            max_bytes: shared.max_bytes,
            undelivered_bytes: c.bytes.undelivered,
            free_bytes: shared.max_bytes.saturating_sub(c.bytes.undelivered),
            history: HistoryStats {
                dedupe_bytes: c.bytes.dedupe,
                audit_bytes: c.bytes.audit,
                rejected_bytes: rejected,
                total_bytes: shared.history_bytes(&c.bytes),
                max_bytes: shared.history_max_bytes,
                pruned: shared.history_pruned.load(Ordering::Relaxed),
                audit_file_bytes: files.bytes,
                audit_files: files.files,
                audit_max_bytes: files.max_bytes,
                audit_pruned_age_files: files.pruned_age_files,
                audit_pruned_size_files: files.pruned_size_files,
            },
            sinks: c
                .sinks
                .into_iter()
                .map(|(sink, n)| SinkStats {
                    configured: configured.contains(&sink),
                    sink,
                    pending: n.pending,
                    dead: n.dead,
                })
                .collect(),
        })
    }

    /// Up to `limit` dead-letter entries of `sink` (or of every sink), oldest id first per sink.
    pub(super) fn dead(
        &self,
        sink: Option<&SinkId>,
        limit: usize,
    ) -> Result<Vec<DeadEntry>, QueueError> {
        let shared = self.shared()?;
        let prefix = match sink {
            Some(s) => keys::sink_prefix(keys::DEAD, s),
            None => vec![keys::DEAD],
        };
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        while out.len() < limit {
            let page = shared
                .store
                .scan_prefix(&prefix, after.as_deref(), limit.clamp(16, 512))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in page {
                let (sink, id) =
                    keys::parse_sink_entry(&k).ok_or_else(|| txn::corrupt(&k, "bad dead key"))?;
                let d: DeadValue = ops::decode(&k, &v)?;
                let reading = match self.load_reading(d.slot, id) {
                    Ok(r) => r,
                    Err(reason) => {
                        tracing::error!(%sink, %id, %reason, "dead-letter entry without a readable reading");
                        continue;
                    }
                };
                out.push(DeadEntry {
                    sink,
                    id,
                    reason: d.reason,
                    at: ops::from_ms(d.at),
                    attempts: d.attempts,
                    reading,
                });
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// What [`Core::scan_due`] looks for: `max` entries of `sink` due at `now_ms` and not in
/// `skip`, looking at `limit` keys at most.
struct DueScan<'a> {
    sink: &'a SinkId,
    max: usize,
    limit: usize,
    now_ms: u64,
    skip: &'a HashSet<ReadingId>,
}
