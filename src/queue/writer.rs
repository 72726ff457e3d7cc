//! The group-commit writer: one thread owns every write to the store.
//!
//! Receives [`Command`]s over a channel. It blocks for the first, drains whatever else is
//! already waiting (up to `max_group` readings), stages them all in one [`Txn`] and applies ONE
//! atomic batch. A second thread, the syncer, then makes it durable (flush + fdatasync) and only
//! then replies to every caller and wakes the sinks that gained entries; while it syncs, the
//! writer stages and applies the next group, and one sync covers every group applied before it.
//! A request that fails while staging is rolled back and answered alone; the rest of its group
//! still commits. Commands that scan the store (retry or purge a whole dead-letter) first apply
//! what is staged so the scan sees it.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::command::{complete, Command, Complete, Reply, Staged};
use super::keys;
use super::ops::{self, Ctx};
use super::shared::Shared;
use super::store::Store;
use super::syncer::{again, answer, syncer, SyncJob};
use super::txn::Txn;
use super::types::QueueError;
use crate::reading::{ReadingId, SinkId};

/// How often history is pruned, by the queue's clock (a test clock makes days pass quickly).
const PRUNE_EVERY_MS: u64 = 60_000;
/// Dedupe keys looked at per prune: a full pass over a week of keys at 10,000 a minute covers
/// 14 million keys a day.
const PRUNE_LIMIT: usize = 10_000;
const SIZE_EVERY: Duration = Duration::from_millis(250);

pub(super) struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Command>,
    /// When history was last pruned, by the queue's clock (unix ms).
    last_prune_ms: Option<u64>,
    prune_cursor: Option<Vec<u8>>,
    last_size: Instant,
    /// The number the next segment gets: only grows while the queue is open.
    next_seq: u64,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, rx: mpsc::Receiver<Command>, next_seq: u64) -> Self {
        Self {
            shared,
            rx,
            last_prune_ms: None,
            prune_cursor: None,
            last_size: Instant::now(),
            next_seq,
        }
    }

    /// Runs until every sender is gone or a Close command was committed.
    pub(super) fn run(mut self) {
        let (sync_tx, sync_rx) = mpsc::channel();
        let shared = Arc::clone(&self.shared);
        std::thread::scope(|scope| {
            let syncer = std::thread::Builder::new()
                .name("vitalsd-sync".into())
                .spawn_scoped(scope, move || syncer(&shared, &sync_rx));
            match syncer {
                Ok(_) => self.groups(&sync_tx),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the queue's sync thread");
                }
            }
            drop(sync_tx);
        });
        // A rewrite still copying stops (it holds the store open).
        if let Some(r) = &self.shared.reclaim {
            r.stop();
        }
    }

    fn groups(&mut self, sync: &mpsc::Sender<SyncJob>) {
        while let Ok(first) = self.rx.recv() {
            let mut n = first.weight();
            let mut cmds = vec![first];
            while n < self.shared.max_group {
                match self.rx.try_recv() {
                    Ok(c) => {
                        n += c.weight();
                        cmds.push(c);
                    }
                    Err(_) => break,
                }
            }
            let (commands, began) = (cmds.len(), Instant::now());
            if self.group(cmds, sync) {
                return;
            }
            // Where a drain's time goes (docs/throughput.md): the writer's share per group.
            tracing::debug!(
                commands,
                apply_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
                "group applied"
            );
        }
    }

    /// Commits one group; true when it held a Close.
    fn group(&mut self, cmds: Vec<Command>, sync: &mpsc::Sender<SyncJob>) -> bool {
        let store = Arc::clone(&self.shared.store);
        let counters = self.shared.counters().clone();
        let mut tx = Txn::with_seq(&*store, counters, self.next_seq);
        if self.shared.audit_log.is_some() {
            tx.audit = Some(Vec::new());
        }
        let mut done = Vec::new();
        let mut woken = BTreeSet::new();
        let now_ms = ops::to_ms((self.shared.clock)());
        let prune_due = self
            .last_prune_ms
            .is_none_or(|t| now_ms < t || now_ms - t >= PRUNE_EVERY_MS);
        if prune_due {
            self.last_prune_ms = Some(now_ms);
            tx.savepoint();
            let after = self.prune_cursor.take();
            match super::prune::prune_dedupe(&mut tx, now_ms, after.as_deref(), PRUNE_LIMIT) {
                Ok((_, next)) => {
                    if after.is_none() && self.shared.dedupe.has_old_keys() {
                        let left = store.scan_prefix(&[keys::DEDUPE], None, 1);
                        if left.is_ok_and(|l| l.is_empty()) {
                            self.shared.dedupe.old_keys_gone();
                        }
                    }
                    self.prune_cursor = next;
                }
                Err(e) => {
                    tx.rollback();
                    self.prune_cursor = after;
                    tracing::warn!(error = %e, "pruning old dedupe keys failed; will try again");
                }
            }
            tx.savepoint();
            let cutoff = now_ms.saturating_sub(self.shared.audit_retention_ms);
            if let Err(e) = super::audit::prune(&mut tx, cutoff, PRUNE_LIMIT) {
                tx.rollback();
                tracing::warn!(error = %e, "pruning old audit entries failed; will try again");
            }
            if let Some(log) = &self.shared.audit_log {
                if let Err(e) = log.maintain() {
                    tracing::warn!(error = %e, "closing or pruning audit files failed; will try again");
                }
            }
            tx.savepoint();
            let before = super::dedupe::hour_of(now_ms.saturating_sub(super::dedupe::WINDOW_MS));
            if let Err(e) = super::dedupe::prune(&mut tx, before, PRUNE_LIMIT) {
                tx.rollback();
                tracing::warn!(error = %e, "pruning old dedupe buckets failed; will try again");
            }
        }
        self.prune_history(&mut tx);
        let mut closing = None;
        let mut configured = self.shared.configured();
        for cmd in cmds {
            let mut ctx = Ctx {
                now_ms,
                configured: &configured,
                woken: &mut woken,
                hints: &self.shared.hints,
                dedupe: &self.shared.dedupe,
            };
            tx.savepoint();
            match cmd {
                Command::Enqueue { readings, reply } => {
                    match ops::enqueue(&mut tx, &mut ctx, &readings) {
                        Ok(o) => done.push(complete(reply, o)),
                        Err(e) => fail(&mut tx, reply, e),
                    }
                }
                Command::Settle {
                    sink,
                    results,
                    reply,
                } => match ops::settle(&mut tx, &mut ctx, &sink, &results) {
                    Ok(()) => done.push(complete(reply, ())),
                    Err(e) => fail(&mut tx, reply, e),
                },
                Command::DeadUnreadable { sink, id, reason } => {
                    if let Err(e) = ops::dead_unreadable(&mut tx, &mut ctx, &sink, id, &reason) {
                        tx.rollback();
                        tracing::error!(%sink, %id, error = %e, "cannot move an unreadable entry to dead-letter");
                    }
                }
                Command::DropFresh { sink, seq } => {
                    if let Err(e) = ops::drop_fresh(&mut tx, &sink, seq) {
                        tx.rollback();
                        tracing::error!(%sink, seq, error = %e, "cannot drop the entries of an unreadable segment");
                    }
                }
                Command::RetryDead { sink, id, reply } => {
                    let ids = match id {
                        Some(id) => Ok(vec![id]),
                        None => self
                            .commit(&mut tx, &mut done, &mut woken, sync)
                            .and_then(|()| dead_ids(&*store, &sink)),
                    };
                    let mut ctx = Ctx {
                        now_ms,
                        configured: &configured,
                        woken: &mut woken,
                        hints: &self.shared.hints,
                        dedupe: &self.shared.dedupe,
                    };
                    tx.savepoint();
                    match ids.and_then(|ids| ops::retry_dead(&mut tx, &mut ctx, &sink, &ids)) {
                        Ok(n) => done.push(complete(reply, n)),
                        Err(e) => fail(&mut tx, reply, e),
                    }
                }
                Command::PurgeDead { sink, id, reply } => {
                    if id.is_none() {
                        if let Err(e) = self.commit(&mut tx, &mut done, &mut woken, sync) {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    }
                    tx.savepoint();
                    match purge(&mut tx, &self.shared, sink, id) {
                        Ok(n) => done.push(complete(reply, n)),
                        Err(e) => fail(&mut tx, reply, e),
                    }
                }
                Command::Close { reply } => closing = Some(reply),
                Command::SetSinks { sinks, reply } => {
                    for s in &sinks {
                        tx.counters.sink(s);
                    }
                    *self
                        .shared
                        .configured
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = sinks.clone();
                    configured = sinks;
                    done.push(complete(reply, ()));
                }
                Command::Stage(stage) => match stage(&mut tx, &mut ctx) {
                    Staged::Ready(then) => done.push(then),
                    Staged::Failed => tx.rollback(),
                },
            }
        }
        let committed = self.commit(&mut tx, &mut done, &mut woken, sync);
        self.next_seq = self.next_seq.max(tx.next_seq());
        let Some(reply) = closing else { return false };
        // Wait until the syncer answered every group before this one, then sync once more.
        let (barrier, answered) = mpsc::channel();
        let _ = sync.send(SyncJob {
            applied: Ok(()),
            wrote: false,
            audited: false,
            done: Vec::new(),
            woken: BTreeSet::new(),
            barrier: Some(barrier),
        });
        let _ = answered.recv();
        let result = committed
            .and_then(|()| store.sync().map_err(QueueError::from))
            .and_then(|()| match &self.shared.audit_log {
                Some(log) => log.sync().map_err(QueueError::from),
                None => Ok(()),
            });
        self.shared.closed.store(true, Ordering::SeqCst);
        let _ = reply.send(result);
        true
    }

    /// While retained history is above its bound, stages the removal of its oldest keys (up to
    /// [`PRUNE_LIMIT`] per group; the next group sees the bytes this one freed). Never blocks
    /// the group's own requests: a failure is logged and tried again with the next group.
    fn prune_history(&self, tx: &mut Txn) {
        let history = self.shared.history_bytes(&tx.counters.bytes);
        let max = self.shared.history_max_bytes;
        if history <= max {
            return;
        }
        tx.savepoint();
        // A little below the bound, so pruning runs in steps rather than with every group.
        let excess = history - max + max / 64;
        match super::prune::prune_history(tx, excess, PRUNE_LIMIT) {
            Ok(p) if p.keys > 0 => {
                self.shared
                    .history_pruned
                    .fetch_add(p.keys, Ordering::Relaxed);
                if !self.shared.history_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        history_bytes = history,
                        history_max_bytes = max,
                        "retained history (dedupe index, audit log) is over daemon.history_max_bytes; pruning the oldest early (counted in vitalsd_history_pruned_total; logged once)"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                tx.rollback();
                tracing::warn!(error = %e, "pruning history over its bound failed; will try again");
            }
        }
    }

    /// Applies what is staged and hands the group's answers to the syncer, which answers
    /// `done` and wakes `woken` sinks once the batch is durable. Returns the apply's result.
    fn commit(
        &mut self,
        tx: &mut Txn,
        done: &mut Vec<Complete>,
        woken: &mut BTreeSet<SinkId>,
        sync: &mpsc::Sender<SyncJob>,
    ) -> Result<(), QueueError> {
        let wrote = !tx.is_empty();
        // Audit entries go to their file before the batch they describe is applied: an
        // action is never stored without its entry (the syncer makes both durable).
        let audit = tx.take_audit();
        let audited = !audit.is_empty();
        let logged = match (&self.shared.audit_log, audited) {
            (Some(log), true) => log.append(&audit).map_err(|e| {
                tracing::error!(error = %e, "writing the audit file failed; the batch it describes is not applied");
                super::store::StoreError::Io(e.to_string())
            }),
            _ => Ok(()),
        };
        let applied = if let Err(e) = logged {
            drop(tx.take_batch(true));
            tx.counters = self.shared.counters().clone();
            Err(e)
        } else if !wrote {
            Ok(())
        } else {
            let batch = tx.take_batch(true);
            // Through the dedupe index: its cached chunks follow what the store accepted.
            match self.shared.dedupe.apply(&*self.shared.store, batch) {
                Ok(()) => {
                    // Applied: readers see it and the counters must match, durable or not.
                    *self.shared.counters() = tx.counters.clone();
                    Ok(())
                }
                Err(e) => {
                    tx.counters = self.shared.counters().clone();
                    self.shared.segments.forget();
                    tracing::error!(error = %e, "queue write failed; the callers are told and must not acknowledge");
                    Err(e)
                }
            }
        };
        let result = match &applied {
            Ok(()) => Ok(()),
            Err(e) => Err(again(e)),
        };
        let job = SyncJob {
            applied,
            wrote,
            audited,
            done: std::mem::take(done),
            woken: std::mem::take(woken),
            barrier: None,
        };
        if let Err(mpsc::SendError(job)) = sync.send(job) {
            // The syncer is gone (it could not start): answer here, after a sync of our own.
            let synced = job
                .applied
                .and_then(|()| self.shared.store.sync())
                .and_then(|()| sync_audit(&self.shared));
            answer(&self.shared, job.done, job.woken, &synced);
        }
        if self.last_size.elapsed() >= SIZE_EVERY {
            self.last_size = Instant::now();
            match self.shared.store.size_on_disk() {
                Ok(n) => self.shared.disk_bytes.store(n, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "cannot read the queue's size on disk"),
            }
            self.reclaim_space();
        }
        result
    }
}

impl Writer {
    /// Rewrites the store when its files are much larger than its live data (see `reclaim`).
    fn reclaim_space(&self) {
        let Some(r) = &self.shared.reclaim else {
            return;
        };
        let disk = self.shared.disk_bytes.load(Ordering::Relaxed);
        let live = {
            let c = self.shared.counters();
            c.bytes
                .undelivered
                .saturating_add(self.shared.history_bytes(&c.bytes))
        };
        if !r.due(disk, live) {
            return;
        }
        // On its own thread: the writer goes on committing while it copies.
        let shared = Arc::clone(&self.shared);
        r.start(move |run| match run {
            Ok(done) => {
                // The dedupe chunks and segments cached from the old store stay: the new
                // store held the same keys and values when it was swapped in.
                shared.disk_bytes.store(done.after, Ordering::Relaxed);
                tracing::info!(
                    disk_bytes_before = done.before,
                    disk_bytes_after = done.after,
                    live_bytes = live,
                    keys = done.keys,
                    keys_written_meanwhile = done.caught_up,
                    pauses = done.pauses,
                    longest_pause_ms = ms(done.longest_pause),
                    swap_pause_ms = ms(done.swap_pause),
                    took_ms = ms(done.took),
                    "the queue store was rewritten to give back the space of delivered readings"
                );
            }
            Err(e) => {
                // The old store stays (opened again if a pause had closed it).
                shared.dedupe.forget();
                shared.segments.forget();
                if shared.reclaim.as_ref().is_some_and(|r| r.stopping()) {
                    tracing::info!("the queue store's rewrite stopped because the queue is closing; the store stays as it was");
                } else {
                    tracing::warn!(error = %e, "rewriting the queue store to give back space failed; will try again later");
                }
            }
        });
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Makes the audit file durable (nothing to do without audit files).
pub(super) fn sync_audit(shared: &Shared) -> Result<(), super::store::StoreError> {
    match &shared.audit_log {
        Some(log) => log
            .sync()
            .map_err(|e| super::store::StoreError::Io(e.to_string())),
        None => Ok(()),
    }
}

fn fail<T>(tx: &mut Txn, reply: Reply<T>, e: QueueError) {
    tx.rollback();
    let _ = reply.send(Err(e));
}

/// Every id in `sink`'s dead-letter, read from the store.
fn dead_ids(store: &dyn Store, sink: &SinkId) -> Result<Vec<ReadingId>, QueueError> {
    let prefix = keys::sink_prefix(keys::DEAD, sink);
    let mut ids = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_prefix(&prefix, after.as_deref(), 4096)?;
        let Some((last, _)) = page.last() else {
            return Ok(ids);
        };
        after = Some(last.clone());
        ids.extend(page.iter().filter_map(|(k, _)| keys::id_suffix(k)));
    }
}

fn purge(
    tx: &mut Txn,
    shared: &Shared,
    sink: Option<SinkId>,
    id: Option<ReadingId>,
) -> Result<usize, QueueError> {
    let mut woken = BTreeSet::new();
    let ctx = Ctx {
        now_ms: 0,
        configured: &[],
        woken: &mut woken,
        hints: &shared.hints,
        dedupe: &shared.dedupe,
    };
    let sinks: Vec<SinkId> = match sink {
        Some(s) => vec![s],
        None => tx.counters.sinks.keys().cloned().collect(),
    };
    let mut n = 0;
    for s in &sinks {
        let ids = match id {
            Some(id) => vec![id],
            None => dead_ids(tx.store(), s)?,
        };
        n += ops::purge_dead(tx, &ctx, s, &ids)?;
    }
    Ok(n)
}
