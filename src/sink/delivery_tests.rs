//! Delivery-loop tests (real clock, short delays), against an in-memory fake queue and a scripted
//! sink: delivered/rejected/retry mapping, a down receiver never dead-letters, one bad reading
//! does not block the rest, idle does not spin, cancel settles the batch in flight, and the
//! sink's status follows failures, rejections and recovery. Every loop case runs with one batch
//! in flight and with four (the `one` and `four` modules at the end); the pipelining cases
//! check what only several batches in flight can break.

use std::collections::HashSet as Set;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Mutex;

use std::time::Instant;

use time::macros::datetime;

use super::*;
use crate::model::fixtures;
use crate::reading::Kind;
use crate::sink::delivery_fake::{FakeQueue, State};
use crate::sink::DeliverFuture;

type Script = Arc<dyn Fn(&Reading) -> Outcome + Send + Sync>;

/// What every handle of a scripted sink shares: its calls, and the readings being delivered
/// right now (a reading already there when a batch starts is a double send).
#[derive(Default)]
struct Seen {
    calls: Mutex<Vec<Instant>>,
    /// The readings of each call, in call order.
    batches: Mutex<Vec<Vec<ReadingId>>>,
    active: Mutex<Set<ReadingId>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    doubled: Mutex<Vec<ReadingId>>,
}

/// A sink whose outcome per reading comes from a script; it records when it was called.
#[derive(Clone)]
struct ScriptedSink {
    id: SinkId,
    script: Script,
    seen: Arc<Seen>,
    takes: Duration,
    batch: usize,
    concurrency: usize,
}

impl Sink for ScriptedSink {
    fn id(&self) -> &SinkId {
        &self.id
    }
    fn max_batch(&self) -> usize {
        self.batch
    }
    fn concurrency(&self) -> usize {
        self.concurrency
    }
    fn pipeline(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
    fn deliver<'a>(&'a mut self, batch: &'a [Reading]) -> DeliverFuture<'a> {
        Box::pin(async move {
            let seen = &self.seen;
            seen.calls.lock().expect("lock").push(Instant::now());
            seen.batches
                .lock()
                .expect("lock")
                .push(batch.iter().filter_map(|r| r.id).collect());
            {
                let mut active = seen.active.lock().expect("lock");
                for id in batch.iter().filter_map(|r| r.id) {
                    if !active.insert(id) {
                        seen.doubled.lock().expect("lock").push(id);
                    }
                }
            }
            let now = seen.in_flight.fetch_add(1, AtomicOrdering::SeqCst) + 1;
            seen.most_in_flight.fetch_max(now, AtomicOrdering::SeqCst);
            tokio::time::sleep(self.takes).await;
            seen.in_flight.fetch_sub(1, AtomicOrdering::SeqCst);
            let mut active = seen.active.lock().expect("lock");
            for id in batch.iter().filter_map(|r| r.id) {
                active.remove(&id);
            }
            batch.iter().map(|r| (self.script)(r)).collect()
        })
    }
}

fn reading(device: &str) -> Reading {
    fixtures::reading(Kind::HeartRate)
        .device(device, "json")
        .build()
}

/// The policy of the pure `plan` tests (no real waiting happens there).
fn policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts_per_reading: 3,
    }
}

/// A fast policy for loop tests on the real clock (tokio's paused time needs the `test-util`
/// feature, which the crate does not enable).
fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..policy()
    }
}

struct Rig {
    queue: Arc<FakeQueue>,
    cancel: CancellationToken,
    seen: Arc<Seen>,
    events: broadcast::Receiver<DeliveryEvent>,
    status: Arc<SinkStatus>,
    task: tokio::task::JoinHandle<()>,
}

/// How the scripted sink is shaped: readings per batch and batches in flight.
#[derive(Clone, Copy)]
struct Shape {
    batch: usize,
    concurrency: usize,
}

fn start(script: Script, takes: Duration, policy: RetryPolicy, shape: Shape) -> Rig {
    let queue = Arc::new(FakeQueue::default());
    let cancel = CancellationToken::new();
    let seen = Arc::new(Seen::default());
    let (tx, events) = broadcast::channel(64);
    let sink = ScriptedSink {
        id: SinkId::new("ehr"),
        script,
        seen: seen.clone(),
        takes,
        batch: shape.batch,
        concurrency: shape.concurrency,
    };
    let status = SinkStatus::new(SinkId::new("ehr"), OffsetDateTime::now_utc());
    let report = Reporting {
        events: Some(tx),
        status: Some(status.clone()),
    };
    let task = tokio::spawn({
        let (queue, cancel) = (queue.clone(), cancel.clone());
        let clock: Clock = Arc::new(OffsetDateTime::now_utc);
        async move {
            run_delivery_with(&*queue, Box::new(sink), policy, cancel, report, clock).await;
        }
    });
    Rig {
        queue,
        cancel,
        seen,
        events,
        status,
        task,
    }
}

impl Rig {
    fn push(&self, r: Reading) {
        self.queue.push(r, OffsetDateTime::now_utc());
    }
    /// Waits (up to 5 s) until `cond` holds on the fake queue's state.
    async fn until(&self, what: &str, cond: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.queue.with(&cond) {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    fn calls(&self) -> Vec<Instant> {
        self.seen.calls.lock().expect("lock").clone()
    }
    fn batches(&self) -> Vec<Vec<ReadingId>> {
        self.seen.batches.lock().expect("lock").clone()
    }
    /// Waits (up to 5 s) until the sink was called `n` times.
    async fn until_calls(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.calls().len() < n {
            assert!(
                Instant::now() < deadline,
                "the sink was never called {n} times"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    async fn stop(self) -> Arc<FakeQueue> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("delivery stops on cancel")
            .expect("delivery task");
        self.queue
    }
}

#[path = "delivery_tests/loop_cases_tests.rs"]
mod loop_cases;
#[path = "delivery_tests/pipelined_tests.rs"]
mod pipelined;
#[path = "delivery_tests/plan_tests.rs"]
mod plan;
