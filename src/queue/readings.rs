//! The readings queue handle: enqueue, due entries, settle, dead-letter, counters.
//!
//! Receives canonical [`Reading`]s (with ids) from ingest and [`Settle`] results from the
//! delivery loop; hands out [`Pending`] entries. Promises (docs/ARCHITECTURE.md#where-the-guarantees-are-enforced):
//! - [`Queue::enqueue`] returns only after the flush + fdatasync that holds the readings;
//! - a reading and all of its per-sink entries are written in one atomic batch;
//! - [`Queue::settle_audited`] settles and audits the final answers in one batch.
//!
//! `Queue` also carries the other handles over the same writer ([`Queue::held`],
//! [`Queue::review`], [`Queue::quarantine`], [`Queue::audit`], [`Queue::contexts`],
//! [`Queue::rejected`]): one value to pass around, and each part reachable as its own type.
//! The sync reads block on the store; async callers use [`Queue::read`].

use std::collections::HashSet;
use std::sync::Arc;

use time::OffsetDateTime;

use super::command::Command;
use super::handle::{async_reads, Core};
use super::ops;
use super::types::{DeadEntry, DueCursor, EnqueueOutcome, Pending, QueueError, QueueStats, Settle};
use super::{Audit, Contexts, Held, Quarantine, Rejected, Review};
use crate::model::audit::{AuditEvent, DeliveryOutcome};
use crate::reading::{Reading, ReadingId, SinkId};

/// A handle to the queue; clones share one store and one writer thread. Dropping the last
/// handle (of any kind) stops the writer (after its current group) and releases the store.
#[derive(Clone)]
pub struct Queue {
    pub(super) core: Arc<Core>,
    held: Held,
    review: Review,
    quarantine: Quarantine,
    audit: Audit,
    contexts: Contexts,
    rejected: Rejected,
}

async_reads!(Queue);

impl Queue {
    pub(super) fn from_core(core: Arc<Core>) -> Queue {
        Queue {
            held: Held::new(Arc::clone(&core)),
            review: Review::new(Arc::clone(&core)),
            quarantine: Quarantine::new(Arc::clone(&core)),
            audit: Audit::new(Arc::clone(&core)),
            contexts: Contexts::new(Arc::clone(&core)),
            rejected: Rejected::new(Arc::clone(&core)),
            core,
        }
    }

    /// Readings held for want of a patient context.
    pub fn held(&self) -> &Held {
        &self.held
    }

    /// Readings waiting for a person's confirmation (review mode).
    pub fn review(&self) -> &Review {
        &self.review
    }

    /// Readings that failed a hard plausibility limit.
    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    /// The audit trail.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The stored room contexts.
    pub fn contexts(&self) -> &Contexts {
        &self.contexts
    }

    /// The log of payloads acknowledged without a reading.
    pub fn rejected(&self) -> &Rejected {
        &self.rejected
    }

    /// Durable enqueue with group commit: concurrent callers' readings share one atomic batch
    /// and one flush + fdatasync; returns only after the flush that holds them. Every reading
    /// needs `id: Some`. Per reading, in order: `Stored`, `Duplicate(first id)` when the same
    /// dedupe key (or id) is already stored, or `Rejected(reason)` when `reading.rejection()` is
    /// set (then stored in the quarantine). `Full` when over `max_bytes`, without writing
    /// anything.
    pub async fn enqueue(&self, readings: Vec<Reading>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        let shared = self.core.shared()?;
        if let Some(index) = readings.iter().position(|r| r.id.is_none()) {
            return Err(QueueError::MissingId { index });
        }
        shared.check_room()?;
        if readings.is_empty() {
            return Ok(Vec::new());
        }
        self.core
            .request(|reply| Command::Enqueue { readings, reply })
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
        self.core.pending_excluding(sink, max, now, &HashSet::new())
    }

    /// [`Queue::pending`] passing over the entries whose reading is in `skip` (a delivery
    /// loop's batches in flight, still pending until settled) before any reading is decoded.
    pub fn pending_excluding(
        &self,
        sink: &SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &HashSet<ReadingId>,
    ) -> Result<Vec<Pending>, QueueError> {
        self.core.pending_excluding(sink, max, now, skip)
    }

    /// [`Queue::pending_excluding`] for a reader that keeps a [`DueCursor`]: the retried
    /// entries past `after` are read first (those up to it are the reader's in flight), and
    /// the ones up to it only when fewer than `max` were found past it. Returns the entries,
    /// oldest first, and the cursor for the next read.
    pub fn pending_after(
        &self,
        sink: &SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &HashSet<ReadingId>,
        after: Option<DueCursor>,
    ) -> Result<(Vec<Pending>, Option<DueCursor>), QueueError> {
        self.core.pending_after(sink, max, now, skip, after)
    }

    /// Earliest not_before among the sink's pending entries (None when nothing is pending).
    pub fn next_due(&self, sink: &SinkId) -> Result<Option<OffsetDateTime>, QueueError> {
        self.core.next_due(sink)
    }

    /// How many segments the readers read from the store (not from their cache) since the
    /// queue opened: what a delivery read costs, for tests and benchmarks.
    pub fn segment_loads(&self) -> u64 {
        self.core.segment_loads()
    }

    /// Counters of readings, pending and dead entries per sink, the live bytes by class
    /// (undelivered against the cap, history against its own bound) and the size on disk.
    pub fn stats(&self) -> Result<QueueStats, QueueError> {
        self.core.stats()
    }

    /// Up to `limit` dead-letter entries of `sink` (or of every sink), oldest id first per sink.
    pub fn dead(&self, sink: Option<&SinkId>, limit: usize) -> Result<Vec<DeadEntry>, QueueError> {
        self.core.dead(sink, limit)
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
            return self.core.shared().map(|_| ());
        }
        let sink = sink.clone();
        self.core
            .request(|reply| Command::Settle {
                sink,
                results,
                reply,
            })
            .await
    }

    /// [`Queue::settle`] plus one audit entry per final answer (delivered, dead), in the same
    /// batch. Retries are not audited: the pending entry keeps the last error.
    pub async fn settle_audited(
        &self,
        sink: &SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Result<(), QueueError> {
        self.settle_audited_now(sink, results).await
    }

    /// [`Queue::settle_audited`], handed to the writer by this call (not when the future is
    /// first polled): settles requested one after the other are applied in that order, and
    /// the caller can go on while the writer makes them durable (the delivery loop requests
    /// the next batch's settle before the last one is synced).
    pub fn settle_audited_now(
        &self,
        sink: &SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> impl std::future::Future<Output = Result<(), QueueError>> + Send + 'static {
        let asked = if results.is_empty() {
            self.core.shared().map(|_| None)
        } else {
            self.stage_settle(sink.clone(), results).map(Some)
        };
        async move {
            match asked? {
                Some(answer) => answer.await.map_err(|_| QueueError::Closed)?,
                None => Ok(()),
            }
        }
    }

    /// Hands the audited settle of `results` to the writer; the receiver gets its answer.
    fn stage_settle(
        &self,
        sink: SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), QueueError>>, QueueError> {
        self.core.shared()?;
        let (run, answer) = super::command::stage(move |tx, ctx| {
            let mut events = Vec::new();
            for (id, s) in &results {
                if !ops::has_pending(tx, ctx, &sink, *id)? {
                    continue;
                }
                let (outcome, reason) = match s {
                    Settle::Delivered => (DeliveryOutcome::Delivered, None),
                    Settle::Dead { reason } => (DeliveryOutcome::Dead, Some(reason.clone())),
                    Settle::Retry { .. } => continue,
                };
                events.push(AuditEvent::Delivery {
                    reading: *id,
                    sink: sink.clone(),
                    outcome,
                    reason,
                });
            }
            ops::settle(tx, ctx, &sink, &results)?;
            super::audit::append(tx, ops::from_ms(ctx.now_ms), events)
        });
        self.core.send(Command::Stage(run))?;
        Ok(answer)
    }

    /// Resolves when entries became pending for `sink` since the last call (one stored permit,
    /// like `tokio::sync::Notify::notify_one`).
    pub async fn wait_new(&self, sink: &SinkId) {
        let notify = self.core.shared.notify(sink);
        notify.notified().await;
    }

    /// Replaces the configured sinks (on reload): readings enqueued after this get entries for
    /// exactly these. Entries of a sink no longer configured stay until it returns or an
    /// operator purges them.
    pub async fn set_sinks(&self, sinks: Vec<SinkId>) -> Result<(), QueueError> {
        let sinks = super::open::sink_list(sinks)?;
        self.core
            .request(|reply| Command::SetSinks { sinks, reply })
            .await
    }

    /// Moves dead entries (one id, or all of the sink's) back to pending with attempts 0;
    /// returns how many moved.
    pub async fn retry_dead(
        &self,
        sink: &SinkId,
        id: Option<ReadingId>,
    ) -> Result<usize, QueueError> {
        let sink = sink.clone();
        self.core
            .request(|reply| Command::RetryDead { sink, id, reply })
            .await
    }

    /// Deletes dead entries: one id or all, of one sink or of every sink; returns how many.
    pub async fn purge_dead(
        &self,
        sink: Option<&SinkId>,
        id: Option<ReadingId>,
    ) -> Result<usize, QueueError> {
        let sink = sink.cloned();
        self.core
            .request(|reply| Command::PurgeDead { sink, id, reply })
            .await
    }

    /// Commits what is waiting, makes a final sync and stops the writer; later calls fail with
    /// [`QueueError::Closed`]. The store itself is released when the last handle is dropped.
    pub async fn close(&self) -> Result<(), QueueError> {
        self.core.request(|reply| Command::Close { reply }).await
    }

    /// Round trip through the writer thread without writing anything: answers only while the
    /// writer is alive and not wedged (the service watchdog pings only after it answers).
    pub async fn ping(&self) -> Result<(), QueueError> {
        self.core.stage(|_, _| Ok(())).await
    }

    /// How many fdatasync calls the store made (tests prove durability and group commit by it).
    pub fn sync_count(&self) -> u64 {
        self.core.shared.store.sync_count()
    }
}
