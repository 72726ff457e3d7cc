//! The delivery loop: drives one sink from the queue until cancelled.
//!
//! Receives due [`Pending`] entries of one sink (oldest first, up to the sink's batch size);
//! emits them to the [`Sink`] and records each [`Outcome`] durably with [`Queue::settle`]:
//! - `Delivered` → `Settle::Delivered` (and a [`DeliveryEvent`] for the demo's printout);
//! - `Rejected` → `Settle::Dead` (dead-letter, visible and retryable; never dropped);
//! - `Retry` for **every** reading of the batch → the receiver is down: the whole sink backs off
//!   (`policy.delay(consecutive failures)`), entries get `Retry { at }` and are never
//!   dead-lettered; an unreachable EHR only grows the queue;
//! - `Retry` for **some** readings → those readings alone back off; after
//!   `max_attempts_per_reading` such failures (counted by this loop) one is dead-lettered with
//!   "gave up after N attempts: <reason>". Entries in backoff are not due, so others flow.
//!
//! Every batch outcome is also recorded in the sink's [`SinkStatus`] when one is given (last
//! success, last error and since when the sink is failing: the status page and `/readyz`).
//!
//! Idle costs nothing: with nothing due the loop waits on the queue's new-entry notification,
//! the next scheduled retry, or cancellation (plus a long safety-net timer against a missed
//! notification). On cancel it finishes and settles the batch in flight, then returns.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Outcome, RetryPolicy, Sink};
use crate::queue::{Pending, Queue, QueueError, Settle};
use crate::reading::{Reading, ReadingId, SinkId};
use crate::status::SinkStatus;

/// A reading a sink delivered (for the demo's readable line and the status page).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryEvent {
    pub sink: SinkId,
    pub reading: Reading,
}

/// Where a delivery loop reports what it does; both are optional.
#[derive(Debug, Clone, Default)]
pub struct Reporting {
    /// Every delivered reading is sent here (display only: no receiver is fine).
    pub events: Option<broadcast::Sender<DeliveryEvent>>,
    /// The sink's live health, updated on every batch outcome.
    pub status: Option<Arc<SinkStatus>>,
}

/// The queue operations the loop needs; [`Queue`] implements it, tests use a fake.
pub trait DeliveryQueue: Send + Sync {
    /// Due entries; reads the store, so [`Queue`] runs it on the blocking pool.
    fn pending<'a>(
        &'a self,
        sink: &'a SinkId,
        max: usize,
        now: OffsetDateTime,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Pending>, QueueError>> + Send + 'a>>;
    fn next_due(&self, sink: &SinkId) -> Result<Option<OffsetDateTime>, QueueError>;
    fn settle<'a>(
        &'a self,
        sink: &'a SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>>;
    fn wait_new<'a>(&'a self, sink: &'a SinkId) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

impl DeliveryQueue for Queue {
    fn pending<'a>(
        &'a self,
        sink: &'a SinkId,
        max: usize,
        now: OffsetDateTime,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Pending>, QueueError>> + Send + 'a>> {
        let (queue, sink) = (self.clone(), sink.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || queue.pending(&sink, max, now))
                .await
                .unwrap_or_else(|e| {
                    Err(QueueError::Store(crate::queue::StoreError::Io(format!(
                        "reading pending entries failed: {e}"
                    ))))
                })
        })
    }
    fn next_due(&self, sink: &SinkId) -> Result<Option<OffsetDateTime>, QueueError> {
        Queue::next_due(self, sink)
    }
    fn settle<'a>(
        &'a self,
        sink: &'a SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>> {
        // Each final answer is also written to the audit log, in the same batch.
        Box::pin(Queue::settle_audited(self, sink, results))
    }
    fn wait_new<'a>(&'a self, sink: &'a SinkId) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(Queue::wait_new(self, sink))
    }
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
    mut sink: Box<dyn Sink>,
    policy: RetryPolicy,
    cancel: CancellationToken,
    report: Reporting,
    clock: Clock,
) {
    let id = sink.id().clone();
    let mut health = Health::default();
    tracing::info!(sink = %id, "delivery started");
    while !cancel.is_cancelled() {
        let batch = match queue.pending(&id, sink.max_batch().max(1), clock()).await {
            Ok(b) => b,
            Err(QueueError::Closed) => break,
            Err(e) => {
                health.queue_errors += 1;
                tracing::warn!(sink = %id, error = %e, "cannot read pending entries");
                pause(&cancel, policy.delay(health.queue_errors)).await;
                continue;
            }
        };
        health.queue_errors = 0;
        if batch.is_empty() {
            idle(queue, &id, &cancel, &clock).await;
            continue;
        }
        // Not raced against `cancel`: a started batch is finished and settled.
        let readings: Vec<Reading> = batch.iter().map(|p| p.reading.clone()).collect();
        let outcomes = sink.deliver(&readings).await;
        let now = clock();
        let mut plan = plan(&id, &batch, outcomes, &policy, &mut health, now);
        honour_retry_after(&mut plan, now, sink.retry_after());
        let delivered = plan.delivered.len();
        if let Some(status) = &report.status {
            record(status, &plan, now);
        }
        if !plan.settles.is_empty() {
            if let Err(e) = queue.settle(&id, plan.settles).await {
                // The entries stay pending and are sent again: at-least-once, and every sink
                // is idempotent on the reading id.
                tracing::error!(sink = %id, error = %e, "cannot record delivery results");
                if matches!(e, QueueError::Closed) {
                    break;
                }
                pause(&cancel, policy.delay(1)).await;
                continue;
            }
        }
        if let Some(tx) = &report.events {
            for reading in plan.delivered {
                // No receiver is fine: events are for display only.
                let _ = tx.send(DeliveryEvent {
                    sink: id.clone(),
                    reading,
                });
            }
        }
        tracing::debug!(sink = %id, batch = batch.len(), delivered, "batch settled");
        if let Some(wait) = plan.sink_backoff {
            pause(&cancel, wait).await;
        }
    }
    tracing::info!(sink = %id, "delivery stopped");
}

/// What the loop remembers between batches.
#[derive(Default)]
struct Health {
    /// Batches in a row where every reading got `Retry` (0 = the sink works).
    consecutive_failures: u32,
    down_since: Option<OffsetDateTime>,
    /// Per-reading failures while the sink itself worked. Entries leave on settle.
    reading_failures: HashMap<ReadingId, u32>,
    queue_errors: u32,
}

/// The queue decisions for one delivered batch.
struct Plan {
    settles: Vec<(ReadingId, Settle)>,
    delivered: Vec<Reading>,
    /// Set when the whole sink must wait before the next batch.
    sink_backoff: Option<Duration>,
}

fn plan(
    id: &SinkId,
    batch: &[Pending],
    mut outcomes: Vec<Outcome>,
    policy: &RetryPolicy,
    health: &mut Health,
    now: OffsetDateTime,
) -> Plan {
    if outcomes.len() != batch.len() {
        tracing::error!(sink = %id, readings = batch.len(), outcomes = outcomes.len(),
            "sink broke its contract: one outcome per reading; retrying the rest");
        let reason = format!(
            "sink returned {} outcomes for {} readings",
            outcomes.len(),
            batch.len()
        );
        outcomes.resize(batch.len(), Outcome::Retry(reason));
    }
    let all_retry = outcomes.iter().all(Outcome::is_retry);
    let mut plan = Plan {
        settles: Vec::with_capacity(batch.len()),
        delivered: Vec::new(),
        sink_backoff: None,
    };
    if all_retry {
        health.consecutive_failures = health.consecutive_failures.saturating_add(1);
        let wait = policy.delay(health.consecutive_failures);
        let first_reason = match &outcomes[0] {
            Outcome::Retry(r) => r.as_str(),
            _ => "",
        };
        if health.down_since.is_none() {
            health.down_since = Some(now);
            tracing::warn!(sink = %id, reason = first_reason, readings = batch.len(),
                "sink is failing; holding readings in the queue and backing off");
        } else {
            tracing::debug!(sink = %id, failures = health.consecutive_failures,
                retry_in = ?wait, reason = first_reason, "sink still failing");
        }
        let at = now + wait;
        for (p, o) in batch.iter().zip(outcomes) {
            if let (Some(rid), Outcome::Retry(reason)) = (p.reading.id, o) {
                plan.settles.push((rid, Settle::Retry { at, reason }));
            }
        }
        plan.sink_backoff = Some(wait);
        return plan;
    }

    if let Some(since) = health.down_since.take() {
        tracing::info!(sink = %id, failed_batches = health.consecutive_failures,
            down_for = %humantime::format_duration(unsigned(now - since)), "sink recovered");
    }
    health.consecutive_failures = 0;
    for (p, o) in batch.iter().zip(outcomes) {
        let Some(rid) = p.reading.id else {
            tracing::error!(sink = %id, "pending reading without id cannot be settled");
            continue;
        };
        let settle = match o {
            Outcome::Delivered => {
                health.reading_failures.remove(&rid);
                plan.delivered.push(p.reading.clone());
                Settle::Delivered
            }
            Outcome::Rejected(reason) => {
                health.reading_failures.remove(&rid);
                tracing::warn!(sink = %id, reading = %rid, reason = %reason, "reading rejected; moved to dead-letter");
                Settle::Dead { reason }
            }
            Outcome::Retry(reason) => {
                let n = health.reading_failures.entry(rid).or_insert(0);
                *n = n.saturating_add(1);
                let attempts = *n;
                if attempts >= policy.max_attempts_per_reading {
                    health.reading_failures.remove(&rid);
                    tracing::warn!(sink = %id, reading = %rid, attempts, reason = %reason,
                        "giving up on reading; moved to dead-letter");
                    Settle::Dead {
                        reason: format!("gave up after {attempts} attempts: {reason}"),
                    }
                } else {
                    let at = now + policy.delay(attempts);
                    tracing::debug!(sink = %id, reading = %rid, attempts, "reading will be retried");
                    Settle::Retry { at, reason }
                }
            }
        };
        plan.settles.push((rid, settle));
    }
    plan
}

/// Records one batch's outcome in the sink's status: a whole-batch retry is a failure (with
/// its first reason); otherwise the receiver answered, and each dead-lettered reading is an
/// error too.
fn record(status: &SinkStatus, plan: &Plan, now: OffsetDateTime) {
    if plan.sink_backoff.is_some() {
        let reason = plan.settles.iter().find_map(|(_, s)| match s {
            Settle::Retry { reason, .. } => Some(reason.as_str()),
            _ => None,
        });
        status.failed(now, reason.unwrap_or("every reading to retry"));
        return;
    }
    status.answered(now, !plan.delivered.is_empty());
    for (_, settle) in &plan.settles {
        if let Settle::Dead { reason } = settle {
            status.dead_lettered(now, reason);
        }
    }
}

/// Moves every retry of `plan` to `now + hint` at the earliest (the receiver's `Retry-After`).
fn honour_retry_after(plan: &mut Plan, now: OffsetDateTime, hint: Option<Duration>) {
    let Some(hint) = hint else { return };
    let floor = now + hint;
    for (_, settle) in &mut plan.settles {
        if let Settle::Retry { at, .. } = settle {
            *at = (*at).max(floor);
        }
    }
    if let Some(wait) = &mut plan.sink_backoff {
        *wait = (*wait).max(hint);
    }
}

fn unsigned(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Waits for a new entry, the next scheduled retry, or cancellation.
async fn idle<Q: DeliveryQueue + ?Sized>(
    queue: &Q,
    id: &SinkId,
    cancel: &CancellationToken,
    clock: &Clock,
) {
    let wait = match queue.next_due(id) {
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
