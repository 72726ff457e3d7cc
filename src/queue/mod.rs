//! The durable queue: readings stored in sled before anything upstream is acknowledged, with a
//! pending entry per sink, a retry schedule and a dead-letter per sink.
//!
//! Receives canonical [`Reading`]s (with ids) from normalize; hands [`Pending`] entries to the
//! sink delivery loop and records their [`Settle`] results. Promises (docs/ARCHITECTURE.md#where-the-guarantees-are-enforced):
//! - [`Queue::enqueue`] returns only after the flush + fdatasync that holds the readings.
//! - A reading and all of its per-sink entries are written in one atomic batch.
//! - The same measurement enqueued twice (same dedupe key within the dedupe window, see
//!   `dedupe`) is stored once.
//! - Enqueue fails with [`QueueError::Full`] while undelivered readings take more than
//!   `max_bytes`; what is kept after delivery (dedupe index, audit log, rejected payloads) never
//!   counts against it and is bounded by `history_max_bytes` instead (docs/store-bounds.md).
//!
//! The store sits behind the [`Store`] trait (sled in production, a map in tests).
//! This file has the [`Queue`] handle; the writer thread is in `writer`, the byte layout in `keys`.
//!
//! # Design
//! - **Keys**: all in one store tree; the byte layout is documented in `keys`. The readings of
//!   one group commit are stored once, packed in one segment (`g`, see `segment`) with a live
//!   bitmap (`n`); each configured sink gets one bitmap of its fresh entries per segment (`p`).
//!   A reading normalize rejected (hard limit) goes to the quarantine (`u`, see `quarantine`)
//!   instead, in no sink's lists; a store of an earlier version, which dead-lettered them, has
//!   them moved there at open. An entry with a retry
//!   scheduled moves to `q` with a due-index key (`t`) ordered by (not_before, id). The dedupe
//!   index (`w`, see `dedupe`) keeps a 24-byte entry (hash of `Reading::dedupe_key`, first id)
//!   per reading in chunks per (hour of device time, device). sled's cost is per key: a group
//!   writes its segment, its bitmaps and one dedupe chunk per device-hour it touches.
//! - **Group commit**: one writer thread (`writer`) takes every write request from a channel,
//!   drains all that are waiting (up to `max_group` readings), applies one atomic batch and makes
//!   one `sync` (sled `flush` + `fdatasync` of `<dir>/db`) before replying to all of them.
//!   Settle, retry and purge go through the same writer, so they are durable when they return.
//! - **History pruning**: at most once a minute by the queue's clock (`QueueOptions::clock`),
//!   inside the next group's batch, the writer closes and prunes the audit files (see
//!   `crate::audit`) and drops dedupe chunks older than the window, audit entries older than
//!   `audit_retention` (a store without audit files), and
//!   per-reading dedupe keys (`k`) that an earlier version stored more than 7 days ago (a
//!   cursor walks them). While history is above `history_max_bytes`, each group also drops its
//!   oldest keys (audit and dedupe together, oldest first): ingest is never refused for it.
//! - **Counters** (readings, pending and dead per sink, live bytes per class: see `bytes`) are
//!   kept in memory, persisted in the same batch as the change (`c` keys, `m` "bytes"), and
//!   loaded at open, so `stats` never scans and restarting with a large backlog does not count
//!   it. A store without them is counted once at open.
//! - **Size cap**: `enqueue` and `hold` fail with [`QueueError::Full`] while the live bytes of
//!   undelivered readings (segments, bitmaps, pending, due, dead, held, quarantined) are above
//!   `max_bytes`. Settling is never refused, so a full queue drains. The size on disk (refreshed
//!   at most every 250 ms) is reported, not enforced: sled keeps freed space for reuse.
//! - **Reads** (`pending`, `next_due`, `dead`) go straight to the store; each batch is atomic so
//!   they see whole requests. Fresh entries are listed in segment order (the order they were
//!   stored in); the last segment read is kept parsed, so a sink paging through a backlog reads
//!   each segment once. They block briefly on sled: call them from `spawn_blocking` or a
//!   delivery task that tolerates it. A pending entry whose reading is missing or unreadable is
//!   moved to that sink's dead-letter (reason `unreadable: ...`) instead of blocking the sink.
//! - **Held and quarantined readings, room contexts** (`held`, `quarantine`, `audit`): own key
//!   prefixes (`h`, `u`, `x`) in the same tree, written through the same writer
//!   (`Command::Stage`). Audit entries go to the audit files, appended before their batch is
//!   applied and synced with it (`l` keys only without audit files).
//! - **Space back online** (`reclaim`): when the store's files exceed twice the live bytes plus
//!   a slack, the writer rewrites the store and swaps the copy in (docs/store-bounds.md).
//! - **Layout**: a store written before segments (one `r` key per reading) is refused at open
//!   with [`QueueError::OldLayout`]; it must be drained by the build that wrote it.
//! - **Unknown sinks**: entries of a sink that is no longer configured stay, and show in stats
//!   and dead-letter listings (`configured: false`).

pub mod audit;
mod bytes;
mod chunk_cache;
pub mod cipher;
pub mod compact;
mod dedupe;
mod health;
pub mod held;
mod keys;
mod memory;
mod ops;
pub mod quarantine;
pub mod reclaim;
mod rejected;
pub mod review;
pub mod salvage;
pub mod segment;
mod sled_store;
mod store;
mod store_key;
mod syncer;
mod txn;
mod types;
pub mod verify;
mod writer;

#[cfg(test)]
mod audit_files_tests;
#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod contract;
#[cfg(test)]
mod reclaim_tests;
#[cfg(test)]
mod reopen_tests;
#[cfg(test)]
mod segment_tests;
#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::reading::{Reading, ReadingId, SinkId};
use keys::{DeadValue, PendingValue};
use segment::Slot;
use txn::Counters;
use writer::{Command, Shared, Writer};

pub use held::HeldEntry;
pub use memory::MemoryStore;
pub use quarantine::{QuarantineEntry, QuarantineSummary, Release, ReleaseRequest};
pub use rejected::RejectedRecord;
pub use review::{Decision, ReviewEntry};
pub use sled_store::{restrict_umask, set_modes, Ownership, SledStore, DIR_MODE, FILE_MODE};
pub use store::{Batch, Entry, Op, Store, StoreError};
pub use types::{
    AuditFiles, DeadEntry, EnqueueOutcome, HistoryStats, Pending, QueueClock, QueueError,
    QueueOptions, QueueStats, Settle, SinkStats,
};

/// A handle to the queue; clones share one store and one writer thread. Dropping the last
/// handle stops the writer (after its current group) and releases the store.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    rejected: rejected::Log,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Queue {
    /// Opens (creating) the sled store in `dir`; the error names the path when it is not
    /// writable or locked by another process (sled allows one process per store). Works with
    /// or without a tokio runtime.
    pub fn open(dir: &Path, opts: QueueOptions) -> Result<Queue, QueueError> {
        let store = SledStore::open(dir, opts.cache_capacity)?;
        Self::with_store(Arc::new(store), opts)
    }

    /// A queue over any [`Store`] (tests use [`MemoryStore`]).
    pub fn with_store(store: Arc<dyn Store>, opts: QueueOptions) -> Result<Queue, QueueError> {
        let configured = sink_list(opts.sinks)?;
        let (store, reclaim): (Arc<dyn Store>, _) = match opts.reclaim {
            Some(r) => {
                let r = Arc::new(reclaim::Reclaim::new(store, r));
                (r.clone(), Some(r))
            }
            None => (store, None),
        };
        check_layout(&*store)?;
        let mut counters = match Counters::load(&*store)? {
            Some(c) => c,
            None => {
                let c = Counters::recount(&*store)?;
                let mut batch = Batch::new();
                c.write_to(&mut batch);
                batch.put(keys::META_COUNTERS, b"1".to_vec());
                batch.put(keys::META_LAYOUT, keys::LAYOUT.to_vec());
                store.apply(batch)?;
                store.sync()?;
                c
            }
        };
        let mut next_seq = txn::next_seq(&*store)?;
        for s in &configured {
            counters.sink(s);
        }
        let dedupe = dedupe::Index::open(&*store)?;
        migrate_rejected(&*store, &mut counters, &mut next_seq, &configured, &dedupe)?;
        let rejected_bytes = rejected::measure(&*store)?;
        let audit_log = opts.audit_log.map(|a| a.0);
        if let Some(log) = &audit_log {
            audit::migrate(&*store, log, &mut counters)?;
        }
        let shared = Arc::new(Shared {
            disk_bytes: AtomicU64::new(store.size_on_disk()?),
            store,
            configured: Mutex::new(configured),
            max_group: opts.max_group.max(1),
            counters: Mutex::new(counters),
            notifies: Mutex::default(),
            closed: AtomicBool::new(false),
            sync_failed: AtomicBool::new(false),
            max_bytes: opts.max_bytes,
            history_max_bytes: opts.history_max_bytes,
            dedupe,
            rejected_bytes: AtomicU64::new(rejected_bytes),
            history_pruned: AtomicU64::new(0),
            history_warned: AtomicBool::new(false),
            audit_retention_ms: u64::try_from(opts.audit_retention.as_millis()).unwrap_or(u64::MAX),
            audit_log,
            clock: opts.clock.0,
            reclaim,
            hints: ops::SlotHints::default(),
            last_segment: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(Arc::clone(&shared), rx, next_seq);
        let thread = std::thread::Builder::new()
            .name("vitalsd-queue".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Io(format!("cannot start the queue writer thread: {e}")))?;
        Ok(Queue {
            inner: Arc::new(Inner {
                shared,
                tx: Some(tx),
                thread: Some(thread),
                rejected: rejected::Log::default(),
            }),
        })
    }

    fn shared(&self) -> Result<&Shared, QueueError> {
        let s = &*self.inner.shared;
        if s.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        Ok(s)
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> Command,
    ) -> Result<T, QueueError> {
        self.shared()?;
        let (reply, rx) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(QueueError::Closed)?;
        tx.send(make(reply)).map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Durable enqueue with group commit: concurrent callers' readings share one atomic batch
    /// and one flush + fdatasync; returns only after the flush that holds them. Every reading
    /// needs `id: Some`. Per reading, in order: `Stored`, `Duplicate(first id)` when the same
    /// dedupe key (or id) is already stored, or `Rejected(reason)` when `reading.rejection()` is
    /// set (then stored with a dead entry for every sink). `Full` when over `max_bytes`, without
    /// writing anything.
    pub async fn enqueue(&self, readings: Vec<Reading>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        let shared = self.shared()?;
        if let Some(index) = readings.iter().position(|r| r.id.is_none()) {
            return Err(QueueError::MissingId { index });
        }
        shared.check_room()?;
        if readings.is_empty() {
            return Ok(Vec::new());
        }
        self.request(|reply| Command::Enqueue { readings, reply })
            .await
    }

    /// Up to `max` pending entries of `sink` due at `now` (not_before <= now), in due order:
    /// never-tried entries from their id's time (in the order they were stored), a retried
    /// entry from its retry time on.
    pub fn pending(
        &self,
        sink: &SinkId,
        max: usize,
        now: OffsetDateTime,
    ) -> Result<Vec<Pending>, QueueError> {
        self.pending_excluding(sink, max, now, &std::collections::HashSet::new())
    }

    /// [`Queue::pending`] passing over the entries whose reading is in `skip` (a delivery
    /// loop's batches in flight, still pending until settled) before any reading is decoded.
    pub fn pending_excluding(
        &self,
        sink: &SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &std::collections::HashSet<ReadingId>,
    ) -> Result<Vec<Pending>, QueueError> {
        let shared = self.shared()?;
        let store = &*shared.store;
        let now_ms = ops::to_ms(now);
        // The first `max` of the union are among the first `max + skip` of each list.
        let limit = max.saturating_add(skip.len());
        let mut due: Vec<(u64, ReadingId, PendingValue)> = Vec::new();
        let prefix = keys::sink_prefix(keys::DUE, sink);
        'scan: for (k, _) in store.scan_prefix(&prefix, None, limit)? {
            let (nb, id) = keys::parse_due(&k).ok_or_else(|| txn::corrupt(&k, "bad due key"))?;
            if nb > now_ms {
                break 'scan;
            }
            if skip.contains(&id) {
                continue;
            }
            let qkey = keys::retried(sink, id);
            if let Some(raw) = store.get(&qkey)? {
                due.push((nb, id, ops::decode(&qkey, &raw)?));
            }
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
                due.push((nb, id, p));
            }
            looked += 1;
            looked < limit
        })?;
        due.sort_by_key(|(nb, id, _)| (*nb, *id));
        due.truncate(max);
        let mut out = Vec::with_capacity(due.len());
        for (_, id, p) in due {
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
        Ok(out)
    }

    /// Calls `each(slot, id)` for `sink`'s fresh entries in segment order while it returns true.
    /// A segment that cannot be read is taken off the sink's list (see `ops::drop_fresh`).
    fn fresh_entries(
        &self,
        sink: &SinkId,
        mut each: impl FnMut(Slot, ReadingId) -> bool,
    ) -> Result<(), QueueError> {
        let store = &*self.inner.shared.store;
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
        let store = &*self.inner.shared.store;
        if store.get(&keys::retried(sink, id))?.is_some() {
            return Ok(true);
        }
        Ok(store
            .get(&keys::pending(sink, slot.seq()))?
            .is_some_and(|bits| segment::bit(&bits, slot.idx())))
    }

    /// Segment `seq`, indexed, from the one-segment cache or the store.
    fn load_segment(&self, seq: u64) -> Result<Arc<segment::Loaded>, String> {
        let shared = &*self.inner.shared;
        let mut cached = shared
            .last_segment
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((s, loaded)) = &*cached {
            if *s == seq {
                return Ok(Arc::clone(loaded));
            }
        }
        let raw = match shared.store.get(&keys::segment(seq)) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Err(format!("segment {seq} is missing from the store")),
            Err(e) => return Err(format!("segment {seq}: {e}")),
        };
        let loaded =
            Arc::new(segment::Loaded::new(raw).map_err(|e| format!("segment {seq}: {e}"))?);
        *cached = Some((seq, Arc::clone(&loaded)));
        Ok(loaded)
    }

    /// The reading `id` at `slot`, or why it cannot be delivered.
    fn load_reading(&self, slot: Slot, id: ReadingId) -> Result<Reading, String> {
        let seg = self
            .load_segment(slot.seq())
            .map_err(|e| format!("unreadable: {e}"))?;
        match seg.get(slot.idx()) {
            Some((found, json)) if found == id => ops::decode(&keys::segment(slot.seq()), json)
                .map_err(|e| format!("unreadable: {e}")),
            _ => Err("unreadable: the reading is missing from its segment".into()),
        }
    }

    fn dead_unreadable(&self, sink: &SinkId, id: ReadingId, slot: Slot, reason: String) {
        tracing::error!(%sink, %id, %reason, "pending entry without a readable reading; moving it to dead-letter");
        self.inner.shared.hints.insert(id, slot);
        if let Some(tx) = &self.inner.tx {
            let _ = tx.send(Command::DeadUnreadable {
                sink: sink.clone(),
                id,
                reason,
            });
        }
    }

    fn drop_fresh(&self, sink: &SinkId, seq: u64, reason: String) {
        tracing::error!(%sink, seq, %reason, "fresh entries whose segment cannot be read; the sink skips them (run `vitalsd queue verify`)");
        if let Some(tx) = &self.inner.tx {
            let _ = tx.send(Command::DropFresh {
                sink: sink.clone(),
                seq,
            });
        }
    }

    /// Earliest not_before among the sink's pending entries (None when nothing is pending).
    pub fn next_due(&self, sink: &SinkId) -> Result<Option<OffsetDateTime>, QueueError> {
        let shared = self.shared()?;
        let store = &*shared.store;
        let retried = store.scan_prefix(&keys::sink_prefix(keys::DUE, sink), None, 1)?;
        let retried = match retried.first() {
            Some((k, _)) => Some(
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

    /// Records delivery results durably (flushed before returning). `Delivered` removes the
    /// entry (and the reading once no sink refers to it); `Retry` bumps attempts and sets
    /// not_before and last_error; `Dead` moves the entry to the sink's dead-letter. Results for
    /// entries that are no longer pending are ignored.
    pub async fn settle(
        &self,
        sink: &SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Result<(), QueueError> {
        if results.is_empty() {
            return self.shared().map(|_| ());
        }
        let sink = sink.clone();
        self.request(|reply| Command::Settle {
            sink,
            results,
            reply,
        })
        .await
    }

    /// Resolves when entries became pending for `sink` since the last call (one stored permit,
    /// like `tokio::sync::Notify::notify_one`).
    pub async fn wait_new(&self, sink: &SinkId) {
        let notify = self.inner.shared.notify(sink);
        notify.notified().await;
    }

    /// Replaces the configured sinks (on reload): readings enqueued after this get entries for
    /// exactly these. Entries of a sink no longer configured stay until it returns or an
    /// operator purges them.
    pub async fn set_sinks(&self, sinks: Vec<SinkId>) -> Result<(), QueueError> {
        let sinks = sink_list(sinks)?;
        self.request(|reply| Command::SetSinks { sinks, reply })
            .await
    }

    /// Counters of readings, pending and dead entries per sink, the live bytes by class
    /// (undelivered against the cap, history against its own bound) and the size on disk.
    pub fn stats(&self) -> Result<QueueStats, QueueError> {
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
    pub fn dead(&self, sink: Option<&SinkId>, limit: usize) -> Result<Vec<DeadEntry>, QueueError> {
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

    /// Moves dead entries (one id, or all of the sink's) back to pending with attempts 0;
    /// returns how many moved.
    pub async fn retry_dead(
        &self,
        sink: &SinkId,
        id: Option<ReadingId>,
    ) -> Result<usize, QueueError> {
        let sink = sink.clone();
        self.request(|reply| Command::RetryDead { sink, id, reply })
            .await
    }

    /// Deletes dead entries: one id or all, of one sink or of every sink; returns how many.
    pub async fn purge_dead(
        &self,
        sink: Option<&SinkId>,
        id: Option<ReadingId>,
    ) -> Result<usize, QueueError> {
        let sink = sink.cloned();
        self.request(|reply| Command::PurgeDead { sink, id, reply })
            .await
    }

    /// Commits what is waiting, makes a final sync and stops the writer; later calls fail with
    /// [`QueueError::Closed`]. The store itself is released when the last handle is dropped.
    pub async fn close(&self) -> Result<(), QueueError> {
        self.request(|reply| Command::Close { reply }).await
    }

    /// Round trip through the writer thread without writing anything: answers only while the
    /// writer is alive and not wedged (the service watchdog pings only after it answers).
    pub async fn ping(&self) -> Result<(), QueueError> {
        self.stage(|_, _| Ok(())).await
    }

    /// How many fdatasync calls the store made (tests prove durability and group commit by it).
    pub fn sync_count(&self) -> u64 {
        self.inner.shared.store.sync_count()
    }
}

/// Refuses a store written before segments that still holds readings or entries; marks a
/// drained one (only dedupe keys, audit, contexts and counters left) as this layout.
fn check_layout(store: &dyn Store) -> Result<(), QueueError> {
    if !store.scan_prefix(&[keys::OLD_READING], None, 1)?.is_empty() {
        return Err(QueueError::OldLayout);
    }
    if store.get(keys::META_LAYOUT)?.is_some() || store.get(keys::META_COUNTERS)?.is_none() {
        return Ok(());
    }
    let entry_tags = [
        keys::PENDING,
        keys::RETRIED,
        keys::DUE,
        keys::DEAD,
        held::HELD,
    ];
    for tag in entry_tags {
        if !store.scan_prefix(&[tag], None, 1)?.is_empty() {
            return Err(QueueError::OldLayout);
        }
    }
    let mut batch = Batch::new();
    batch.put(keys::META_LAYOUT, keys::LAYOUT.to_vec());
    store.apply(batch)?;
    store.sync()?;
    Ok(())
}

/// Moves rejected readings that an earlier version left in dead-letters into the quarantine
/// (see `quarantine::migrate`), in one synced batch, before the writer starts.
fn migrate_rejected(
    store: &dyn Store,
    counters: &mut Counters,
    next_seq: &mut u64,
    configured: &[SinkId],
    dedupe: &dedupe::Index,
) -> Result<(), QueueError> {
    let hints = ops::SlotHints::default();
    let mut woken = std::collections::BTreeSet::new();
    let mut tx = txn::Txn::with_seq(store, counters.clone(), *next_seq);
    let mut ctx = ops::Ctx {
        now_ms: ops::to_ms(OffsetDateTime::now_utc()),
        configured,
        woken: &mut woken,
        hints: &hints,
        dedupe,
    };
    let moved = quarantine::migrate(&mut tx, &mut ctx)?;
    if moved == 0 {
        return Ok(());
    }
    let batch = tx.take_batch(true);
    dedupe.apply(store, batch)?;
    store.sync()?;
    *counters = tx.counters.clone();
    *next_seq = (*next_seq).max(tx.next_seq());
    tracing::warn!(
        readings = moved,
        "readings that failed a hard plausibility limit were in the dead-letter (stored by an earlier version); moved to the quarantine: `vitalsd queue quarantine`"
    );
    Ok(())
}

/// The sinks of `sinks` in order, without repeats; an empty or NUL-bearing id is refused.
fn sink_list(sinks: Vec<SinkId>) -> Result<Vec<SinkId>, QueueError> {
    let mut out: Vec<SinkId> = Vec::new();
    for s in sinks {
        if s.as_str().is_empty() || s.as_str().contains('\0') {
            return Err(QueueError::BadSinkId(s.to_string()));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}
