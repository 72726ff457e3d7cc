//! The seam between the delivery loop and the store: [`DeliveryQueue`], the queue operations
//! the loop needs (due entries, the next due time, settle, the new-entry wait). [`Queue`]
//! implements it over the real store; the loop's tests use an in-memory fake.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;

use crate::queue::{DueCursor, Pending, Queue, QueueError, Settle};
use crate::reading::{ReadingId, SinkId};

/// What a read of due entries answers: the entries, oldest first, and where the next read may
/// begin.
pub type DueRead = Result<(Vec<Pending>, Option<DueCursor>), QueueError>;

/// The queue operations the loop needs; [`Queue`] implements it, tests use a fake.
pub trait DeliveryQueue: Send + Sync {
    /// Due entries; reads the store, so [`Queue`] runs it on the blocking pool.
    fn pending<'a>(
        &'a self,
        sink: &'a SinkId,
        max: usize,
        now: OffsetDateTime,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Pending>, QueueError>> + Send + 'a>>;
    /// Up to `max` due entries whose reading is not in `skip` (the batches in flight), oldest
    /// first. The default asks [`DeliveryQueue::pending`] for `max + skip.len()` and drops the
    /// skipped ones: the entries in flight are still pending and among the oldest due.
    fn pending_excluding<'a>(
        &'a self,
        sink: &'a SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &'a HashSet<ReadingId>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Pending>, QueueError>> + Send + 'a>> {
        Box::pin(async move {
            if skip.is_empty() {
                return self.pending(sink, max, now).await;
            }
            let mut due = self.pending(sink, max + skip.len(), now).await?;
            due.retain(|p| p.reading.id.is_none_or(|id| !skip.contains(&id)));
            due.truncate(max);
            Ok(due)
        })
    }
    /// [`DeliveryQueue::pending_excluding`] for a loop that keeps a [`DueCursor`] (see
    /// [`Queue::pending_after`]); returns the cursor for its next read. The default passes
    /// over the entries in flight and returns no cursor.
    fn pending_after<'a>(
        &'a self,
        sink: &'a SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &'a HashSet<ReadingId>,
        _after: Option<DueCursor>,
    ) -> Pin<Box<dyn Future<Output = DueRead> + Send + 'a>> {
        Box::pin(async move {
            self.pending_excluding(sink, max, now, skip)
                .await
                .map(|due| (due, None))
        })
    }
    /// The earliest time an entry of `sink` is due; reads the store, so [`Queue`] runs it on
    /// the blocking pool (the loop calls it each time it goes idle).
    fn next_due<'a>(
        &'a self,
        sink: &'a SinkId,
    ) -> Pin<Box<dyn Future<Output = Result<Option<OffsetDateTime>, QueueError>> + Send + 'a>>;
    /// Records a batch's results. The request is made by the call itself, so settles take
    /// effect in the order they were called; the future only waits until it is durable.
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
    fn pending_excluding<'a>(
        &'a self,
        sink: &'a SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &'a HashSet<ReadingId>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Pending>, QueueError>> + Send + 'a>> {
        if skip.is_empty() {
            return DeliveryQueue::pending(self, sink, max, now);
        }
        Box::pin(async move {
            DeliveryQueue::pending_after(self, sink, max, now, skip, None)
                .await
                .map(|(due, _)| due)
        })
    }
    fn pending_after<'a>(
        &'a self,
        sink: &'a SinkId,
        max: usize,
        now: OffsetDateTime,
        skip: &'a HashSet<ReadingId>,
        after: Option<DueCursor>,
    ) -> Pin<Box<dyn Future<Output = DueRead> + Send + 'a>> {
        // The blocking pool needs owned values: the ids in flight are copied (at most
        // `concurrency × batch_size` of them).
        let (queue, sink, skip) = (self.clone(), sink.clone(), skip.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || queue.pending_after(&sink, max, now, &skip, after))
                .await
                .unwrap_or_else(|e| {
                    Err(QueueError::Store(crate::queue::StoreError::Io(format!(
                        "reading pending entries failed: {e}"
                    ))))
                })
        })
    }
    fn next_due<'a>(
        &'a self,
        sink: &'a SinkId,
    ) -> Pin<Box<dyn Future<Output = Result<Option<OffsetDateTime>, QueueError>> + Send + 'a>> {
        let sink = sink.clone();
        Box::pin(self.read(move |q| q.next_due(&sink)))
    }
    fn settle<'a>(
        &'a self,
        sink: &'a SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>> {
        // Each final answer is also written to the audit log, in the same batch.
        Box::pin(Queue::settle_audited_now(self, sink, results))
    }
    fn wait_new<'a>(&'a self, sink: &'a SinkId) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(Queue::wait_new(self, sink))
    }
}
