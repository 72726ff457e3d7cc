//! The delivery loop: drives one sink from the queue until cancelled.
//!
//! Receives due [`Pending`] entries of one sink (oldest first, up to the sink's batch size);
//! emits them to the [`Sink`] and records each [`Outcome`] durably with [`Queue::settle`].
//! Up to [`Sink::concurrency`] batches are in flight at once, each on its own handle of the
//! sink ([`Sink::pipeline`]); a reading is never in two of them, and the results are settled
//! strictly in the order the batches were sent, so the rules below read as with one batch at
//! a time (docs/throughput.md):
//! - `Delivered` → `Settle::Delivered` (and a [`DeliveryEvent`] for the demo's printout);
//! - `Rejected` → `Settle::Dead` (dead-letter, visible and retryable; never dropped);
//! - `Retry` for **every** reading of the batch → the receiver is down: the whole sink backs off
//!   (`policy.delay(consecutive failures)`: no new batch is sent until it has passed; batches
//!   already in flight finish and share that failure), entries get `Retry { at }` and are never
//!   dead-lettered; an unreachable EHR only grows the queue;
//! - `Retry` for **some** readings → those readings alone back off; after
//!   `max_attempts_per_reading` such failures (counted by this loop) one is dead-lettered with
//!   "gave up after N attempts: <reason>". Entries in backoff are not due, so others flow.
//!
//! A batch's settle is requested as soon as its turn comes, and its sink handle takes the next
//! batch while the queue makes the settle durable: the settles of several batches then share
//! one group commit and one sync. A batch's readings stay in flight (never read into a new
//! batch) and count as delivered only once its settle is durable; at most `concurrency` settles
//! wait for their sync beside the `concurrency` batches at the sink. The next batch is read
//! from the queue while the loop waits for the sink (one read at a time, one batch read ahead
//! at most; a backoff or cancel lets that batch go unsent).
//!
//! Every batch outcome is also recorded in the sink's [`SinkStatus`] when one is given (last
//! success, last error and since when the sink is failing: the status page and `/readyz`).
//!
//! Idle costs nothing: with nothing due the loop waits on the queue's new-entry notification,
//! the next scheduled retry, or cancellation (plus a long safety-net timer against a missed
//! notification). On cancel it sends nothing new, finishes and settles every batch in flight,
//! then returns.
//!
//! This file is the loop and its in-flight bookkeeping; `batch.rs` holds the records of a batch
//! on its way, `read_ahead.rs` the queue read of the next batch, `seam.rs` the queue operations
//! it needs ([`DeliveryQueue`]), `settle.rs` the pure decisions from a batch's outcomes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant as Stamp;

use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{RetryPolicy, Sink};
use crate::queue::{DueCursor, Queue, QueueError};
use crate::reading::{Reading, ReadingId, SinkId};
use crate::status::SinkStatus;

mod batch;
mod read_ahead;
mod seam;
mod settle;

use batch::{Flight, Landed, Read, Ready, SettleFuture, Settling, Stamps, Wake};
use read_ahead::next_read;
pub use seam::{DeliveryQueue, DueRead};
use settle::{honour_retry_after, plan, record, unsigned, Health};
// The test module names it through `use super::*`, as it did before `settle.rs` took the
// code that uses it.
#[cfg(test)]
use super::Outcome;
#[cfg(test)]
use crate::queue::Settle;

/// A reading a sink delivered (for the demo's readable line and the status page).
///
/// The reading is shared, not copied: the loop moves the batch's reading into the event once
/// its settle is durable, and every receiver of the broadcast gets the same one.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryEvent {
    pub sink: SinkId,
    pub reading: Arc<Reading>,
}

/// Where a delivery loop reports what it does; both are optional.
#[derive(Debug, Clone, Default)]
pub struct Reporting {
    /// Every delivered reading is sent here (display only: no receiver is fine).
    pub events: Option<broadcast::Sender<DeliveryEvent>>,
    /// The sink's live health, updated on every batch outcome.
    pub status: Option<Arc<SinkStatus>>,
}

/// The wall clock the loop schedules retries with (injectable so tests run on paused time).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The longest the loop sleeps while idle without looking at the queue again: a safety net
/// should a new-entry notification ever be missed. Costs one wake-up a minute.
const IDLE_SAFETY_NET: Duration = Duration::from_secs(60);

/// Runs the delivery loop of one sink until `cancel` (see the module doc), announcing
/// deliveries on `events`. [`run_delivery_reporting`] also keeps the sink's status.
pub async fn run_delivery(
    queue: Queue,
    sink: Box<dyn Sink>,
    policy: RetryPolicy,
    cancel: CancellationToken,
    events: Option<broadcast::Sender<DeliveryEvent>>,
) {
    let report = Reporting {
        events,
        status: None,
    };
    run_delivery_reporting(queue, sink, policy, cancel, report).await;
}

/// [`run_delivery`] reporting to both an event sender and a [`SinkStatus`].
pub async fn run_delivery_reporting(
    queue: Queue,
    sink: Box<dyn Sink>,
    policy: RetryPolicy,
    cancel: CancellationToken,
    report: Reporting,
) {
    let clock: Clock = Arc::new(OffsetDateTime::now_utc);
    run_delivery_with(&queue, sink, policy, cancel, report, clock).await;
}

/// [`run_delivery_reporting`] over any [`DeliveryQueue`] and clock.
pub async fn run_delivery_with<Q: DeliveryQueue + ?Sized>(
    queue: &Q,
    sink: Box<dyn Sink>,
    policy: RetryPolicy,
    cancel: CancellationToken,
    report: Reporting,
    clock: Clock,
) {
    let id = sink.id().clone();
    let max = sink.max_batch().max(1);
    let want = sink.concurrency().max(1);
    let mut free = Vec::with_capacity(want);
    let started = Stamp::now();
    for _ in 1..want {
        match sink.pipeline() {
            Some(s) => free.push((s, started)),
            None => break,
        }
    }
    free.push((sink, started));
    tracing::info!(sink = %id, in_flight = free.len(), "delivery started");
    let mut run = Run {
        queue,
        id: &id,
        max,
        policy,
        report,
        clock,
        health: Health::default(),
        handles: free.len(),
        free,
        tasks: JoinSet::new(),
        flights: VecDeque::new(),
        landed: HashMap::new(),
        settling: VecDeque::new(),
        reading: None,
        ready: None,
        in_flight: HashSet::new(),
        cursor: None,
        next_seq: 0,
        hold_until: None,
        drained: false,
    };
    run.drive(&cancel).await;
    tracing::info!(sink = %id, "delivery stopped");
}

/// One sink's delivery loop state. Up to `concurrency` batches at the sink, each with its own
/// sink handle, and up to `concurrency` more answered and waiting for their settle to be
/// durable; results settled strictly in send order. One queue read at a time, and at most one
/// batch read ahead of a free handle.
struct Run<'q, Q: ?Sized> {
    queue: &'q Q,
    id: &'q SinkId,
    max: usize,
    /// Sink handles (`concurrency`); also how many settles may wait for their sync.
    handles: usize,
    policy: RetryPolicy,
    report: Reporting,
    clock: Clock,
    health: Health,
    /// Sink handles with no batch, each with the time it became free.
    free: Vec<(Box<dyn Sink>, Stamp)>,
    tasks: JoinSet<Landed>,
    /// Sent and not yet planned, oldest first.
    flights: VecDeque<Flight>,
    /// Finished batches waiting for an older one to be planned first.
    landed: HashMap<u64, Landed>,
    /// Settles requested, oldest first (the queue answers them in that order).
    settling: VecDeque<Settling<'q>>,
    /// The queue read under way, if any.
    reading: Option<Read<'q>>,
    /// The next batch, read and waiting for a free handle.
    ready: Option<Ready>,
    /// Every reading of a batch read and not settled yet: never fetched into a second batch.
    in_flight: HashSet<ReadingId>,
    /// Where the next queue read may begin: every retried entry up to it is in `in_flight`
    /// (so the read does not pass over each of them again). Cleared whenever readings leave
    /// `in_flight` unsettled (a batch let go, a settle that failed, a backoff).
    cursor: Option<DueCursor>,
    next_seq: u64,
    /// No new batch before this (whole-sink backoff, a queue error).
    hold_until: Option<Instant>,
    /// The last look at the queue found nothing due that is not in flight.
    drained: bool,
}

impl<'q, Q: DeliveryQueue + ?Sized> Run<'q, Q> {
    async fn drive(&mut self, cancel: &CancellationToken) {
        loop {
            let cancelled = cancel.is_cancelled();
            if cancelled {
                // Nothing new is sent: a read under way or a batch read ahead is let go (its
                // readings were never sent and stay pending in the queue).
                self.reading = None;
                self.drop_ready();
            } else {
                while self.may_send() {
                    self.send_ready();
                }
                self.start_read();
            }
            if self.flights.is_empty() && self.settling.is_empty() && self.reading.is_none() {
                if cancelled {
                    return;
                }
                if let Some(until) = self.held_until() {
                    pause(cancel, until - Instant::now()).await;
                    continue;
                }
                if self.drained {
                    idle(self.queue, self.id, cancel, &self.clock).await;
                    self.drained = false;
                }
                continue;
            }
            let listen = self.drained && self.reading.is_none() && !cancelled;
            let hold = self.held_until().filter(|_| !cancelled);
            let settling = !self.settling.is_empty();
            let reading = self.reading.is_some();
            let wake = tokio::select! {
                settled = next_settled(&mut self.settling), if settling => Wake::Settled(settled),
                read = next_read(&mut self.reading), if reading => Wake::Read(read),
                landed = self.tasks.join_next(), if !self.tasks.is_empty() || !(settling || reading) => Wake::Landed(landed),
                () = cancel.cancelled(), if !cancelled => Wake::Cancelled,
                () = self.queue.wait_new(self.id), if listen => Wake::NewEntries,
                () = tokio::time::sleep_until(hold.unwrap_or_else(Instant::now)), if hold.is_some() => Wake::HoldOver,
            };
            match wake {
                Wake::Settled(settled) => {
                    if !self.settled(settled) {
                        return;
                    }
                }
                Wake::Read(read) => {
                    if !self.read_done(read) {
                        return;
                    }
                }
                Wake::Landed(Some(Ok(landed))) => {
                    self.landed.insert(landed.seq, landed);
                    self.settle_landed();
                }
                Wake::Landed(Some(Err(e))) => {
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                    return;
                }
                Wake::Landed(None) => {
                    tracing::error!(sink = %self.id, "batches lost track of; stopping delivery");
                    return;
                }
                Wake::NewEntries => self.drained = false,
                Wake::Cancelled | Wake::HoldOver => {}
            }
        }
    }

    /// The end of the backoff, while one is on.
    fn held_until(&self) -> Option<Instant> {
        self.hold_until.filter(|u| *u > Instant::now())
    }

    /// Batches sent and not settled yet: at the sink, waiting for an older one, or waiting
    /// for their settle to be durable. Never more than twice the handles.
    fn unsettled(&self) -> usize {
        self.flights.len() + self.settling.len()
    }

    /// A batch is ready, a handle is free, no backoff is on, and fewer than `concurrency`
    /// settles wait for their sync beside the batches at the sink.
    fn may_send(&self) -> bool {
        self.ready.is_some()
            && !self.free.is_empty()
            && self.held_until().is_none()
            && self.unsettled() < 2 * self.handles
    }

    /// Hands the batch read ahead to a free sink handle ([`Run::may_send`] holds).
    fn send_ready(&mut self) {
        let (Some(ready), Some((mut sink, freed))) = (self.ready.take(), self.free.pop()) else {
            return;
        };
        let Ready {
            readings,
            read,
            got,
        } = ready;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.flights.push_back(Flight {
            seq,
            stamps: (freed, read, got, Stamp::now()),
            failures_at_send: self.health.consecutive_failures,
        });
        // Not raced against cancellation: a sent batch is finished and settled.
        self.tasks.spawn(async move {
            let outcomes = sink.deliver(&readings).await;
            let retry_after = sink.retry_after();
            Landed {
                seq,
                sink,
                readings,
                outcomes,
                retry_after,
                answered: Stamp::now(),
            }
        });
    }

    /// Plans every finished batch whose older batches are planned, in send order, asks the
    /// queue to settle it and frees its sink handle (see [`Run::settled`] for what happens
    /// once the settle is durable).
    fn settle_landed(&mut self) {
        while let Some(flight) = self.flights.front() {
            let Some(landed) = self.landed.remove(&flight.seq) else {
                break;
            };
            let failures_at_send = flight.failures_at_send;
            let (freed, read, got, sent) = flight.stamps;
            self.flights.pop_front();
            let Landed {
                sink,
                readings,
                outcomes,
                retry_after,
                answered,
                ..
            } = landed;
            let now = (self.clock)();
            let mut plan = plan(
                self.id,
                &readings,
                outcomes,
                &self.policy,
                &mut self.health,
                now,
                failures_at_send,
            );
            honour_retry_after(&mut plan, now, retry_after);
            if let Some(status) = &self.report.status {
                record(status, &plan, now);
            }
            // Before the handle is free: no batch is sent in the backoff.
            if let Some(wait) = plan.sink_backoff {
                self.hold(wait);
            }
            let settled: SettleFuture<'q> = if plan.settles.is_empty() {
                Box::pin(std::future::ready(Ok(())))
            } else {
                self.queue.settle(self.id, plan.settles)
            };
            let planned = Stamp::now();
            // The sink is done with the batch: the handle takes the next one while the queue
            // makes this settle durable (its readings stay in flight until then).
            self.free.push((sink, planned));
            self.settling.push_back(Settling {
                settled,
                readings,
                delivered: plan.delivered,
                stamps: Stamps {
                    freed,
                    read,
                    got,
                    sent,
                    answered,
                    planned,
                },
            });
        }
    }

    /// The oldest requested settle was answered: its readings leave the set in flight.
    /// False: stop the loop (the queue is closed).
    fn settled(&mut self, settled: Result<(), QueueError>) -> bool {
        let Some(Settling {
            readings,
            delivered,
            stamps,
            ..
        }) = self.settling.pop_front()
        else {
            return true;
        };
        let durable = Stamp::now();
        self.drained = false;
        for r in &readings {
            if let Some(rid) = r.id {
                self.in_flight.remove(&rid);
            }
        }
        if let Err(e) = settled {
            // The entries stay pending and are sent again: at-least-once, and every sink
            // is idempotent on the reading id.
            tracing::error!(sink = %self.id, error = %e, "cannot record delivery results");
            if matches!(e, QueueError::Closed) {
                return false;
            }
            self.hold(self.policy.delay(1));
            return true;
        }
        tracing::debug!(sink = %self.id, batch = readings.len(), delivered = delivered.len(), "batch settled");
        stamps.report(self.id, readings.len(), durable);
        if let Some(tx) = &self.report.events {
            // `delivered` holds positions in `readings`, ascending: each reading is moved into
            // its event, not copied.
            let mut wanted = delivered.into_iter().peekable();
            for (at, reading) in readings.into_iter().enumerate() {
                if wanted.next_if_eq(&at).is_some() {
                    // No receiver is fine: events are for display only.
                    let _ = tx.send(DeliveryEvent {
                        sink: self.id.clone(),
                        reading: Arc::new(reading),
                    });
                }
            }
        }
        true
    }

    /// No new batch for `wait` (the later of this and any hold already set); a batch read
    /// ahead is let go, so that after the wait the oldest due readings go first.
    fn hold(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        self.hold_until = Some(self.hold_until.map_or(until, |u| u.max(until)));
        self.drop_ready();
    }
}

/// The answer of the oldest requested settle (`settling` is not empty).
async fn next_settled(settling: &mut VecDeque<Settling<'_>>) -> Result<(), QueueError> {
    match settling.front_mut() {
        Some(s) => s.settled.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Waits for a new entry, the next scheduled retry, or cancellation.
async fn idle<Q: DeliveryQueue + ?Sized>(
    queue: &Q,
    id: &SinkId,
    cancel: &CancellationToken,
    clock: &Clock,
) {
    let wait = match queue.next_due(id).await {
        Ok(Some(at)) => unsigned(at - clock()).min(IDLE_SAFETY_NET),
        Ok(None) => IDLE_SAFETY_NET,
        Err(e) => {
            tracing::warn!(sink = %id, error = %e, "cannot read the retry schedule");
            IDLE_SAFETY_NET
        }
    };
    // Never zero: a queue whose schedule and due list disagree must not make a busy loop.
    let wait = wait.max(Duration::from_millis(5));
    tokio::select! {
        () = cancel.cancelled() => {}
        () = queue.wait_new(id) => {}
        () = tokio::time::sleep(wait) => {}
    }
}

/// Sleeps `wait` unless cancelled first.
async fn pause(cancel: &CancellationToken, wait: Duration) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(wait) => {}
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
