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
    async fn stop(self) -> Arc<FakeQueue> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("delivery stops on cancel")
            .expect("delivery task");
        self.queue
    }
}

async fn delivered_readings_are_settled_and_announced(conc: usize) {
    let mut rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::ZERO,
        fast_policy(),
        shape(conc),
    );
    let (a, b) = (reading("d1"), reading("d2"));
    rig.push(a.clone());
    rig.push(b.clone());
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), rig.events.recv())
            .await
            .expect("event in time")
            .expect("event");
        assert_eq!(e.sink, SinkId::new("ehr"));
        got.push(e.reading.id);
    }
    assert_eq!(got, vec![a.id, b.id]);
    let q = rig.stop().await;
    q.with(|s| {
        assert_eq!(s.delivered.len(), 2);
        assert!(s.entries.is_empty());
    });
}

async fn a_rejected_reading_goes_to_dead_letter_with_its_reason(conc: usize) {
    let script: Script = Arc::new(|_| Outcome::Rejected("HTTP 422: bad code".into()));
    let rig = start(script, Duration::ZERO, fast_policy(), shape(conc));
    let r = reading("d1");
    rig.push(r.clone());
    rig.until("dead-letter", |s| !s.dead.is_empty()).await;
    let snap = rig.status.snapshot();
    assert_eq!(snap.last_error.as_deref(), Some("HTTP 422: bad code"));
    assert!(snap.last_error_at.is_some());
    assert_eq!(snap.last_success, None, "a rejection is no delivery");
    assert_eq!(snap.failing_since, None, "the receiver answered");
    let q = rig.stop().await;
    q.with(|s| {
        assert_eq!(
            s.dead,
            vec![(r.id.unwrap_or_default(), "HTTP 422: bad code".into())]
        )
    });
}

async fn a_receiver_that_is_down_never_dead_letters_and_backs_off(conc: usize) {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let script: Script = {
        let up = up.clone();
        Arc::new(move |_| {
            if up.load(std::sync::atomic::Ordering::SeqCst) {
                Outcome::Delivered
            } else {
                Outcome::Retry("transport: connection refused".into())
            }
        })
    };
    let rig = start(script, Duration::ZERO, fast_policy(), shape(conc));
    rig.push(reading("d1"));
    rig.push(reading("d2"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rig.queue.with(|s| {
        assert!(s.dead.is_empty(), "an outage must never dead-letter");
        assert_eq!(s.entries.len(), 2);
        assert!(
            s.entries.values().all(|e| e.attempts > 3),
            "retried past the per-reading cap"
        );
    });
    let down = rig.status.snapshot();
    assert_eq!(
        down.last_error.as_deref(),
        Some("transport: connection refused")
    );
    assert!(down.failing_since.is_some() && down.consecutive_failures >= 3);
    assert_eq!(down.last_success, None);
    let calls = rig.calls();
    // 20, 40, 80, 160 ms, then 200 ms each: about 10 attempts in 1.5 s, not thousands.
    assert!((6..=16).contains(&calls.len()), "{} attempts", calls.len());
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, want) in [20u64, 40, 80, 160, 200].into_iter().enumerate() {
        assert!(
            gaps[i] >= Duration::from_millis(want),
            "backoff {i}: {gaps:?}"
        );
    }

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    rig.until("delivered after recovery", |s| s.delivered.len() == 2)
        .await;
    let up_again = rig.status.snapshot();
    assert!(up_again.last_success >= down.last_error_at && up_again.last_success.is_some());
    assert_eq!(up_again.failing_since, None);
    assert_eq!(up_again.consecutive_failures, 0);
    assert_eq!(
        up_again.last_error, down.last_error,
        "the last error stays visible"
    );
    let q = rig.stop().await;
    q.with(|s| assert!(s.entries.is_empty() && s.dead.is_empty()));
}

async fn a_reading_in_backoff_does_not_block_the_others(conc: usize) {
    let bad = reading("bad");
    let bad_id = bad.id;
    let script: Script = Arc::new(move |r| {
        if r.id == bad_id {
            Outcome::Retry("HTTP 503: busy".into())
        } else {
            Outcome::Delivered
        }
    });
    // The failing reading waits 1 s before its next attempt.
    let rig = start(script, Duration::ZERO, policy(), shape(conc));
    rig.push(bad);
    rig.push(reading("good1"));
    rig.until("first batch", |s| s.delivered.len() == 1).await;
    let late = reading("good2");
    rig.push(late.clone());
    let before = Instant::now();
    rig.until("late reading delivered", |s| s.delivered.len() == 2)
        .await;
    assert!(
        before.elapsed() < Duration::from_millis(500),
        "not blocked by the backoff"
    );
    let q = rig.stop().await;
    q.with(|s| {
        assert_eq!(s.delivered[1], late.id.unwrap_or_default());
        let e = &s.entries[&bad_id.unwrap_or_default()];
        assert_eq!(e.attempts, 1);
        assert_eq!(e.last_error.as_deref(), Some("HTTP 503: busy"));
        assert!(s.dead.is_empty());
    });
}

async fn an_idle_loop_sleeps_instead_of_polling(conc: usize) {
    let rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::ZERO,
        fast_policy(),
        shape(conc),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_calls = rig.queue.with(|s| s.pending_calls);
    assert!(
        idle_calls <= 2,
        "{idle_calls} queue reads in an idle second"
    );
    // ...and still wakes at once for a new reading.
    let before = Instant::now();
    rig.push(reading("d1"));
    rig.until("delivered", |s| s.delivered.len() == 1).await;
    assert!(before.elapsed() < Duration::from_millis(500));
    rig.stop().await;
}

async fn cancel_finishes_and_settles_the_batch_in_flight(conc: usize) {
    let rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::from_millis(300),
        fast_policy(),
        shape(conc),
    );
    let r = reading("d1");
    rig.push(r.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.calls().is_empty() {
        assert!(Instant::now() < deadline, "sink never called");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let q = rig.stop().await;
    q.with(|s| assert_eq!(s.delivered, vec![r.id.unwrap_or_default()]));
}

#[test]
fn a_reading_failing_alone_is_given_up_after_max_attempts() {
    let (bad, good) = (reading("bad"), reading("good"));
    let batch = [bad, good];
    let mut health = Health::default();
    let now = datetime!(2026-11-27 12:00 UTC);
    let sink = SinkId::new("s");
    let outcomes = || vec![Outcome::Retry("HTTP 503: busy".into()), Outcome::Delivered];
    for attempt in 1..3 {
        let sent = health.consecutive_failures;
        let p = plan(&sink, &batch, outcomes(), &policy(), &mut health, now, sent);
        assert!(
            matches!(&p.settles[0].1, Settle::Retry { at, .. } if *at > now),
            "attempt {attempt}: {:?}",
            p.settles[0]
        );
        assert!(p.sink_backoff.is_none());
    }
    let p = plan(&sink, &batch, outcomes(), &policy(), &mut health, now, 0);
    assert_eq!(
        p.settles[0].1,
        Settle::Dead {
            reason: "gave up after 3 attempts: HTTP 503: busy".into()
        }
    );
    assert_eq!(p.settles[1].1, Settle::Delivered);
    assert!(health.reading_failures.is_empty(), "forgotten once settled");
}

#[test]
fn an_all_retry_batch_backs_off_the_sink_and_never_dead_letters() {
    let r = reading("d");
    let batch = [r];
    let mut health = Health::default();
    let now = datetime!(2026-11-27 12:00 UTC);
    let mut waits = Vec::new();
    for _ in 0..100 {
        let out = vec![Outcome::Retry("transport: refused".into())];
        let sent = health.consecutive_failures;
        let p = plan(
            &SinkId::new("s"),
            &batch,
            out,
            &policy(),
            &mut health,
            now,
            sent,
        );
        assert!(
            matches!(p.settles[0].1, Settle::Retry { .. }),
            "{:?}",
            p.settles[0]
        );
        waits.push(p.sink_backoff.expect("sink backs off"));
    }
    assert_eq!(waits[0], Duration::from_secs(1));
    assert_eq!(waits[1], Duration::from_secs(2));
    assert_eq!(waits[99], Duration::from_secs(60));
}

#[test]
fn a_sink_returning_too_few_outcomes_retries_the_rest() {
    let batch: Vec<Reading> = (0..2).map(|_| reading("d")).collect();
    let mut health = Health::default();
    let now = datetime!(2026-11-27 12:00 UTC);
    let p = plan(
        &SinkId::new("s"),
        &batch,
        vec![Outcome::Delivered],
        &policy(),
        &mut health,
        now,
        0,
    );
    assert_eq!(p.settles.len(), 2);
    assert_eq!(p.settles[0].1, Settle::Delivered);
    assert!(matches!(&p.settles[1].1, Settle::Retry { at, .. } if *at > now));
    assert!(p.sink_backoff.is_none());
}

#[test]
fn an_all_retry_batch_sent_before_the_last_failure_shares_its_backoff() {
    let r = [reading("d")];
    let mut health = Health::default();
    let now = datetime!(2026-11-27 12:00 UTC);
    let sink = SinkId::new("s");
    let retry = || vec![Outcome::Retry("HTTP 503".into())];
    // Two batches were sent while the sink looked healthy; both come back failed.
    let first = plan(&sink, &r, retry(), &policy(), &mut health, now, 0);
    let second = plan(&sink, &r, retry(), &policy(), &mut health, now, 0);
    assert_eq!(health.consecutive_failures, 1, "one outage, one failure");
    assert_eq!(first.sink_backoff, Some(Duration::from_secs(1)));
    assert_eq!(second.sink_backoff, Some(Duration::from_secs(1)));
    // A batch sent after that failure lengthens the backoff as before.
    let third = plan(&sink, &r, retry(), &policy(), &mut health, now, 1);
    assert_eq!(health.consecutive_failures, 2);
    assert_eq!(third.sink_backoff, Some(Duration::from_secs(2)));
}

/// The default shape of the loop cases: ten readings per batch, `conc` batches in flight.
fn shape(conc: usize) -> Shape {
    Shape {
        batch: 10,
        concurrency: conc,
    }
}

/// Small batches, four in flight: the pipelining cases.
const PIPELINED: Shape = Shape {
    batch: 2,
    concurrency: 4,
};

fn push_many(rig: &Rig, n: usize) -> Vec<ReadingId> {
    (0..n)
        .map(|i| {
            let r = reading(&format!("d{i}"));
            rig.push(r.clone());
            r.id.unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn several_batches_are_in_flight_and_no_reading_is_in_two() {
    let rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::from_millis(50),
        fast_policy(),
        PIPELINED,
    );
    let ids = push_many(&rig, 40);
    rig.until("all delivered", |s| s.delivered.len() == 40)
        .await;
    assert_eq!(rig.seen.most_in_flight.load(AtomicOrdering::SeqCst), 4);
    assert!(rig.seen.doubled.lock().expect("lock").is_empty());
    let calls = rig.calls().len();
    assert_eq!(calls, 20, "every batch full and every reading sent once");
    let q = rig.stop().await;
    q.with(|s| {
        // Settled in the order the batches were sent: oldest first, as with one in flight.
        assert_eq!(s.delivered, ids);
        assert!(s.entries.is_empty() && s.dead.is_empty());
    });
}

#[tokio::test]
async fn a_failing_batch_among_succeeding_ones_is_retried_alone() {
    // The readings of one device fail their first attempt; the server is fine otherwise.
    let failed_once = Arc::new(Mutex::new(Set::new()));
    let script: Script = {
        let failed_once = failed_once.clone();
        Arc::new(move |r| {
            let bad = matches!(r.device.id.as_str(), "d2" | "d3");
            if bad && failed_once.lock().expect("lock").insert(r.id) {
                Outcome::Retry("HTTP 503: busy".into())
            } else if r.device.id.as_str() == "d5" {
                Outcome::Rejected("HTTP 422: bad code".into())
            } else {
                Outcome::Delivered
            }
        })
    };
    let rig = start(script, Duration::from_millis(30), fast_policy(), PIPELINED);
    let ids = push_many(&rig, 12);
    rig.until("all settled", |s| s.delivered.len() + s.dead.len() == 12)
        .await;
    assert_eq!(rig.seen.most_in_flight.load(AtomicOrdering::SeqCst), 4);
    assert!(rig.seen.doubled.lock().expect("lock").is_empty());
    let q = rig.stop().await;
    q.with(|s| {
        let mut delivered = s.delivered.clone();
        delivered.sort();
        delivered.dedup();
        assert_eq!(
            delivered.len(),
            11,
            "each delivered once: {:?}",
            s.delivered
        );
        assert_eq!(s.dead, vec![(ids[5], "HTTP 422: bad code".into())]);
        assert!(s.entries.is_empty());
        // The three batches in flight beside the failed one were settled, in send order.
        assert_eq!(&s.delivered[..5], &[ids[0], ids[1], ids[4], ids[6], ids[7]]);
        assert!(s.delivered[5..].contains(&ids[2]) && s.delivered[5..].contains(&ids[3]));
    });
}

#[tokio::test]
async fn cancel_settles_every_batch_in_flight() {
    let rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::from_millis(300),
        fast_policy(),
        PIPELINED,
    );
    let ids = push_many(&rig, 20);
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.calls().len() < 4 {
        assert!(Instant::now() < deadline, "four batches never in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let q = rig.stop().await;
    q.with(|s| {
        assert_eq!(s.delivered, ids[..8].to_vec(), "the four batches in flight");
        assert_eq!(s.entries.len(), 12, "nothing new sent after cancel");
    });
}

#[tokio::test]
async fn the_whole_sink_backoff_stops_new_batches() {
    let policy = RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(5),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts_per_reading: 3,
    };
    let rig = start(
        Arc::new(|_| Outcome::Retry("transport: connection refused".into())),
        Duration::from_millis(10),
        policy,
        PIPELINED,
    );
    push_many(&rig, 40);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let calls = rig.calls();
    let t0 = calls[0];
    // Batches sent together form a wave; a new wave starts only after the backoff.
    let mut waves: Vec<Vec<Duration>> = Vec::new();
    for c in &calls {
        let at = *c - t0;
        match waves.last_mut() {
            Some(w) if at - w[0] < Duration::from_millis(50) => w.push(at),
            _ => waves.push(vec![at]),
        }
    }
    assert!(waves.len() >= 3, "{waves:?}");
    assert!(waves.iter().all(|w| w.len() <= 4), "{waves:?}");
    let gap = |i: usize| waves[i + 1][0] - waves[i][0];
    // One failure per wave: 100 ms, then 200 ms (four failures counted would be 800 ms).
    assert!(
        gap(0) >= Duration::from_millis(100) && gap(0) < Duration::from_millis(400),
        "{waves:?}"
    );
    assert!(
        gap(1) >= Duration::from_millis(200) && gap(1) < Duration::from_millis(700),
        "{waves:?}"
    );
    let q = rig.stop().await;
    q.with(|s| assert!(s.dead.is_empty() && s.delivered.is_empty()));
}

/// Runs every loop case with one batch in flight and with four.
macro_rules! each_concurrency {
    ($($case:ident),* $(,)?) => {
        mod one {
            $(#[tokio::test]
            async fn $case() {
                super::$case(1).await;
            })*
        }
        mod four {
            $(#[tokio::test]
            async fn $case() {
                super::$case(4).await;
            })*
        }
    };
}

each_concurrency!(
    delivered_readings_are_settled_and_announced,
    a_rejected_reading_goes_to_dead_letter_with_its_reason,
    a_receiver_that_is_down_never_dead_letters_and_backs_off,
    a_reading_in_backoff_does_not_block_the_others,
    an_idle_loop_sleeps_instead_of_polling,
    cancel_finishes_and_settles_the_batch_in_flight,
);

/// The real queue hands out the oldest due readings that are not in flight, and reads none of
/// the skipped ones.
#[tokio::test]
async fn the_queue_passes_over_the_readings_in_flight() {
    use crate::queue::QueueOptions;
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = SinkId::new("ehr");
    let queue = Queue::open(dir.path(), QueueOptions::new(vec![sink.clone()])).expect("queue");
    let readings: Vec<Reading> = (0..12).map(|i| reading(&format!("d{i}"))).collect();
    let ids: Vec<ReadingId> = readings.iter().filter_map(|r| r.id).collect();
    queue.enqueue(readings).await.expect("enqueue");
    let now = OffsetDateTime::now_utc();
    let skip: Set<ReadingId> = ids[..4].iter().chain(&ids[6..7]).copied().collect();
    let got = DeliveryQueue::pending_excluding(&queue, &sink, 4, now, &skip)
        .await
        .expect("pending");
    let got: Vec<ReadingId> = got.iter().filter_map(|p| p.reading.id).collect();
    let all = DeliveryQueue::pending(&queue, &sink, 12, now)
        .await
        .expect("pending");
    let want: Vec<ReadingId> = all
        .iter()
        .filter_map(|p| p.reading.id)
        .filter(|id| !skip.contains(id))
        .take(4)
        .collect();
    assert_eq!(all.len(), 12);
    assert_eq!(got, want);
    let none =
        DeliveryQueue::pending_excluding(&queue, &sink, 4, now, &ids.iter().copied().collect())
            .await
            .expect("pending");
    assert!(none.is_empty());
    queue.close().await.expect("close");
}
