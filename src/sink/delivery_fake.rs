//! An in-memory fake of the queue operations the delivery loop uses, for its tests: entries
//! with a due time, settle results recorded, a `Notify` for new entries.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use time::OffsetDateTime;
use tokio::sync::Notify;

use super::delivery::DeliveryQueue;
use crate::queue::{Pending, QueueError, Settle};
use crate::reading::{Reading, ReadingId, SinkId};

pub struct Entry {
    pub reading: Reading,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub due: OffsetDateTime,
}

#[derive(Default)]
pub struct State {
    pub entries: BTreeMap<ReadingId, Entry>,
    pub delivered: Vec<ReadingId>,
    pub dead: Vec<(ReadingId, String)>,
    pub pending_calls: u32,
}

#[derive(Default)]
pub struct FakeQueue {
    pub state: Mutex<State>,
    pub notify: Notify,
    /// How long a settle takes to be answered (its sync), after it was applied.
    pub settle_takes: Mutex<std::time::Duration>,
}

impl FakeQueue {
    pub fn push(&self, r: Reading, now: OffsetDateTime) {
        let id = r.id.expect("test readings have ids");
        let e = Entry {
            reading: r,
            attempts: 0,
            last_error: None,
            due: now,
        };
        self.state.lock().expect("lock").entries.insert(id, e);
        self.notify.notify_one();
    }
    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().expect("lock"))
    }
}

impl DeliveryQueue for FakeQueue {
    fn pending<'a>(
        &'a self,
        _: &'a SinkId,
        max: usize,
        now: OffsetDateTime,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Pending>, QueueError>> + Send + 'a>> {
        let mut s = self.state.lock().expect("lock");
        s.pending_calls += 1;
        let due = s
            .entries
            .values()
            .filter(|e| e.due <= now)
            .take(max)
            .map(|e| Pending {
                reading: e.reading.clone(),
                attempts: e.attempts,
                last_error: e.last_error.clone(),
            })
            .collect();
        Box::pin(std::future::ready(Ok(due)))
    }
    fn next_due<'a>(
        &'a self,
        _: &'a SinkId,
    ) -> Pin<Box<dyn Future<Output = Result<Option<OffsetDateTime>, QueueError>> + Send + 'a>> {
        let due = self.with(|s| s.entries.values().map(|e| e.due).min());
        Box::pin(std::future::ready(Ok(due)))
    }
    fn settle<'a>(
        &'a self,
        _: &'a SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>> {
        // Applied by the call, like the real queue's request: in the order of the calls.
        {
            let mut s = self.state.lock().expect("lock");
            for (id, settle) in results {
                match settle {
                    Settle::Delivered => {
                        s.entries.remove(&id);
                        s.delivered.push(id);
                    }
                    Settle::Dead { reason } => {
                        s.entries.remove(&id);
                        s.dead.push((id, reason));
                    }
                    Settle::Retry { at, reason } => {
                        let e = s.entries.get_mut(&id).expect("settled entry exists");
                        e.attempts += 1;
                        e.last_error = Some(reason);
                        e.due = at;
                    }
                }
            }
        }
        // The sync runs from the call on, whether or not the answer is awaited yet.
        let synced = tokio::time::Instant::now() + *self.settle_takes.lock().expect("lock");
        Box::pin(async move {
            tokio::time::sleep_until(synced).await;
            Ok(())
        })
    }
    fn wait_new<'a>(&'a self, _: &'a SinkId) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.notify.notified())
    }
}
