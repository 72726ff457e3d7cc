//! What the delivery loop decides from one batch's outcomes, as pure functions: the queue
//! settle of each reading (delivered, dead-lettered, retried with its backoff), whether the
//! whole sink backs off, the per-reading failure counts, and the sink's status record.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::super::{Outcome, RetryPolicy};
use crate::queue::Settle;
use crate::reading::{Reading, ReadingId, SinkId};
use crate::status::SinkStatus;

/// What the loop remembers between batches.
#[derive(Default)]
pub(super) struct Health {
    /// Batches in a row where every reading got `Retry` (0 = the sink works).
    pub(super) consecutive_failures: u32,
    pub(super) down_since: Option<OffsetDateTime>,
    /// Per-reading failures while the sink itself worked. Entries leave on settle.
    pub(super) reading_failures: HashMap<ReadingId, u32>,
    pub(super) queue_errors: u32,
}

/// The queue decisions for one delivered batch.
pub(super) struct Plan {
    pub(super) settles: Vec<(ReadingId, Settle)>,
    /// Positions in the batch of the delivered readings, ascending (the loop moves those
    /// readings into its delivery events once the settle is durable).
    pub(super) delivered: Vec<usize>,
    /// Set when the whole sink must wait before the next batch.
    pub(super) sink_backoff: Option<Duration>,
}

/// `failures_at_send` is `health.consecutive_failures` when the batch was sent: an all-retry
/// batch sent before the latest whole-batch failure was recorded shares that failure's backoff
/// instead of lengthening it (with one batch in flight the two are always equal).
pub(super) fn plan(
    id: &SinkId,
    batch: &[Reading],
    mut outcomes: Vec<Outcome>,
    policy: &RetryPolicy,
    health: &mut Health,
    now: OffsetDateTime,
    failures_at_send: u32,
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
        if health.consecutive_failures == failures_at_send {
            health.consecutive_failures = health.consecutive_failures.saturating_add(1);
        }
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
            if let (Some(rid), Outcome::Retry(reason)) = (p.id, o) {
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
    for (at, (p, o)) in batch.iter().zip(outcomes).enumerate() {
        let Some(rid) = p.id else {
            tracing::error!(sink = %id, "pending reading without id cannot be settled");
            continue;
        };
        let settle = match o {
            Outcome::Delivered => {
                health.reading_failures.remove(&rid);
                plan.delivered.push(at);
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
pub(super) fn record(status: &SinkStatus, plan: &Plan, now: OffsetDateTime) {
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
pub(super) fn honour_retry_after(plan: &mut Plan, now: OffsetDateTime, hint: Option<Duration>) {
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

pub(super) fn unsigned(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}
