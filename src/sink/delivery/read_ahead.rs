//! Reading ahead: the queue read of the next batch that runs while the delivery loop waits for
//! the sink or a settle (one read at a time, at most one batch read ahead of a free handle; a
//! backoff or cancel lets that batch go unsent). Part of `delivery.rs`'s `Run`.

use std::time::Instant as Stamp;

use super::batch::{Read, Ready};
use super::{DeliveryQueue, DueRead, Run};
use crate::queue::QueueError;
use crate::reading::Reading;

impl<'q, Q: DeliveryQueue + ?Sized> Run<'q, Q> {
    /// Starts reading the next batch when none is read or ready, the last look found
    /// something, no backoff is on, and the batch could be sent once a handle is free.
    pub(super) fn start_read(&mut self) {
        if self.reading.is_some()
            || self.ready.is_some()
            || self.drained
            || self.held_until().is_some()
            || self.unsettled() >= 2 * self.handles
        {
            return;
        }
        let (queue, id, max) = (self.queue, self.id, self.max);
        let now = (self.clock)();
        // The readings in flight when the read begins: a batch settled meanwhile is passed
        // over all the same (settled readings are not due again before their retry time).
        let skip = self.in_flight.clone();
        let after = self.cursor;
        self.reading = Some(Read {
            answer: Box::pin(async move { queue.pending_after(id, max, now, &skip, after).await }),
            began: Stamp::now(),
        });
    }

    /// The read under way answered. False: stop the loop (the queue is closed).
    pub(super) fn read_done(&mut self, read: DueRead) -> bool {
        let began = self.reading.take().map_or_else(Stamp::now, |r| r.began);
        let (batch, cursor) = match read {
            Ok(b) => b,
            Err(QueueError::Closed) => return false,
            Err(e) => {
                self.health.queue_errors += 1;
                tracing::warn!(sink = %self.id, error = %e, "cannot read pending entries");
                self.hold(self.policy.delay(self.health.queue_errors));
                return true;
            }
        };
        self.health.queue_errors = 0;
        if batch.is_empty() {
            self.drained = true;
            self.cursor = None;
            return true;
        }
        if self.held_until().is_some() {
            // A backoff began while the batch was read: after it, the oldest due readings
            // (those that failed, maybe) go first, as with nothing read ahead.
            return true;
        }
        let readings: Vec<Reading> = batch.into_iter().map(|p| p.reading).collect();
        self.in_flight.extend(readings.iter().filter_map(|r| r.id));
        // Every retried entry up to the cursor is in flight now.
        self.cursor = cursor;
        self.ready = Some(Ready {
            readings,
            read: began,
            got: Stamp::now(),
        });
        true
    }

    /// Lets the batch read ahead go unsent: its readings stay pending in the queue, and the
    /// next read starts from the oldest due entry again.
    pub(super) fn drop_ready(&mut self) {
        self.cursor = None;
        if let Some(ready) = self.ready.take() {
            for r in &ready.readings {
                if let Some(rid) = r.id {
                    self.in_flight.remove(&rid);
                }
            }
        }
    }
}

/// The answer of the read under way (`reading` is some).
pub(super) async fn next_read(reading: &mut Option<Read<'_>>) -> DueRead {
    match reading {
        Some(r) => r.answer.as_mut().await,
        None => std::future::pending().await,
    }
}
