//! The state of one batch on its way through the delivery loop (read, sent, answered, settling)
//! and the per-batch timings the loop reports at DEBUG (docs/throughput.md, "Where a drain
//! waits"). Owned by `delivery.rs`; these are plain records, the decisions stay in the loop.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use std::time::Instant as Stamp;

use super::DueRead;
use crate::queue::QueueError;
use crate::reading::{Reading, SinkId};
use crate::sink::Outcome;
use crate::sink::Sink;

/// A batch the sink has finished with, waiting to be settled in send order.
pub(super) struct Landed {
    pub(super) seq: u64,
    pub(super) sink: Box<dyn Sink>,
    pub(super) readings: Vec<Reading>,
    pub(super) outcomes: Vec<Outcome>,
    pub(super) retry_after: Option<Duration>,
    /// When the sink returned the batch's outcomes.
    pub(super) answered: Stamp,
}

/// When a batch passed each step from its queue read to its durable settle: what the DEBUG
/// event "batch timings" reports once the batch is settled (durations only, nothing of the
/// readings; docs/throughput.md, "Where a drain waits").
#[derive(Clone, Copy)]
pub(super) struct Stamps {
    /// The handle that sent the batch became free (its previous batch's settle was
    /// requested, or the loop started).
    pub(super) freed: Stamp,
    /// The queue read for this batch began.
    pub(super) read: Stamp,
    /// The queue read returned the batch.
    pub(super) got: Stamp,
    /// The batch was handed to the sink.
    pub(super) sent: Stamp,
    /// The sink returned its outcomes.
    pub(super) answered: Stamp,
    /// Older batches were planned and this batch's settle was requested.
    pub(super) planned: Stamp,
}

impl Stamps {
    pub(super) fn report(&self, id: &SinkId, readings: usize, durable: Stamp) {
        let us = |a: Stamp, b: Stamp| {
            u64::try_from(b.saturating_duration_since(a).as_micros()).unwrap_or(u64::MAX)
        };
        tracing::debug!(
            sink = %id,
            readings,
            idle_us = us(self.freed, self.sent),
            read_us = us(self.read, self.got),
            queued_us = us(self.got, self.sent),
            wire_us = us(self.sent, self.answered),
            order_us = us(self.answered, self.planned),
            settle_us = us(self.planned, durable),
            "batch timings"
        );
    }
}

/// A batch handed to the sink and not settled yet.
pub(super) struct Flight {
    pub(super) seq: u64,
    /// When its handle was freed, its read began and ended, and it was sent.
    pub(super) stamps: (Stamp, Stamp, Stamp, Stamp),
    /// `Health::consecutive_failures` when the batch was sent: a batch sent before the sink's
    /// latest whole-batch failure does not count as a further failure.
    pub(super) failures_at_send: u32,
}

/// The answer of a settle the queue was asked for.
pub(super) type SettleFuture<'q> =
    Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'q>>;

/// The answer of a queue read for the next batch.
pub(super) type ReadFuture<'q> = Pin<Box<dyn Future<Output = DueRead> + Send + 'q>>;

/// The queue read of the next batch, running while the loop waits for other things.
pub(super) struct Read<'q> {
    pub(super) answer: ReadFuture<'q>,
    pub(super) began: Stamp,
}

/// A batch read from the queue and not sent yet (its readings are already in flight).
pub(super) struct Ready {
    pub(super) readings: Vec<Reading>,
    pub(super) read: Stamp,
    pub(super) got: Stamp,
}

/// A planned batch whose settle was requested and is not durable yet.
pub(super) struct Settling<'q> {
    pub(super) settled: SettleFuture<'q>,
    pub(super) readings: Vec<Reading>,
    /// Positions in `readings` of the delivered ones (see `settle::Plan::delivered`).
    pub(super) delivered: Vec<usize>,
    pub(super) stamps: Stamps,
}

/// What woke the loop while batches are in flight.
pub(super) enum Wake {
    Landed(Option<Result<Landed, tokio::task::JoinError>>),
    Settled(Result<(), QueueError>),
    Read(DueRead),
    Cancelled,
    NewEntries,
    HoldOver,
}
