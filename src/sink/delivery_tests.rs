//! Delivery-loop tests (real clock, short delays), against an in-memory fake queue and a scripted
//! sink: delivered/rejected/retry mapping, a down receiver never dead-letters, one bad reading
//! does not block the rest, idle does not spin, cancel settles the batch in flight, and the
//! sink's status follows failures, rejections and recovery.

use std::sync::Mutex;

use std::time::Instant;

use time::macros::datetime;

use super::*;
use crate::reading::{DeviceId, DeviceInfo, Kind};
use crate::sink::delivery_fake::{FakeQueue, State};
use crate::sink::DeliverFuture;

type Script = Arc<dyn Fn(&Reading) -> Outcome + Send + Sync>;

/// A sink whose outcome per reading comes from a script; it records when it was called.
struct ScriptedSink {
    id: SinkId,
    script: Script,
    calls: Arc<Mutex<Vec<Instant>>>,
    takes: Duration,
}

impl Sink for ScriptedSink {
    fn id(&self) -> &SinkId {
        &self.id
    }
    fn max_batch(&self) -> usize {
        10
    }
    fn deliver<'a>(&'a mut self, batch: &'a [Reading]) -> DeliverFuture<'a> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(Instant::now());
            tokio::time::sleep(self.takes).await;
            batch.iter().map(|r| (self.script)(r)).collect()
        })
    }
}

fn reading(device: &str) -> Reading {
    let t = datetime!(2026-11-27 12:00 UTC);
    Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: DeviceId::new(device),
            driver: "json".into(),
            model: None,
            serial: None,
        },
        room: Some("exam-3".into()),
        patient: None,
        patient_record: None,
        kind: Kind::HeartRate,
        observed_at: t,
        received_at: t,
        device_time: None,
        values: Vec::new(),
        flags: Vec::new(),
        waveform: None,
    }
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
    calls: Arc<Mutex<Vec<Instant>>>,
    events: broadcast::Receiver<DeliveryEvent>,
    status: Arc<SinkStatus>,
    task: tokio::task::JoinHandle<()>,
}

fn start(script: Script, takes: Duration, policy: RetryPolicy) -> Rig {
    let queue = Arc::new(FakeQueue::default());
    let cancel = CancellationToken::new();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (tx, events) = broadcast::channel(64);
    let sink = ScriptedSink {
        id: SinkId::new("ehr"),
        script,
        calls: calls.clone(),
        takes,
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
        calls,
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
    async fn stop(self) -> Arc<FakeQueue> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("delivery stops on cancel")
            .expect("delivery task");
        self.queue
    }
}

#[tokio::test]
async fn delivered_readings_are_settled_and_announced() {
    let mut rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::ZERO,
        fast_policy(),
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

#[tokio::test]
async fn a_rejected_reading_goes_to_dead_letter_with_its_reason() {
    let script: Script = Arc::new(|_| Outcome::Rejected("HTTP 422: bad code".into()));
    let rig = start(script, Duration::ZERO, fast_policy());
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

#[tokio::test]
async fn a_receiver_that_is_down_never_dead_letters_and_backs_off() {
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
    let rig = start(script, Duration::ZERO, fast_policy());
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
    let calls = rig.calls.lock().expect("lock").clone();
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

#[tokio::test]
async fn a_reading_in_backoff_does_not_block_the_others() {
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
    let rig = start(script, Duration::ZERO, policy());
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

#[tokio::test]
async fn an_idle_loop_sleeps_instead_of_polling() {
    let rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::ZERO,
        fast_policy(),
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

#[tokio::test]
async fn cancel_finishes_and_settles_the_batch_in_flight() {
    let rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::from_millis(300),
        fast_policy(),
    );
    let r = reading("d1");
    rig.push(r.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.calls.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "sink never called");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let q = rig.stop().await;
    q.with(|s| assert_eq!(s.delivered, vec![r.id.unwrap_or_default()]));
}

fn pending(r: &Reading) -> Pending {
    Pending {
        reading: r.clone(),
        attempts: 0,
        last_error: None,
    }
}

#[test]
fn a_reading_failing_alone_is_given_up_after_max_attempts() {
    let (bad, good) = (reading("bad"), reading("good"));
    let batch = [pending(&bad), pending(&good)];
    let mut health = Health::default();
    let now = datetime!(2026-11-27 12:00 UTC);
    let sink = SinkId::new("s");
    let outcomes = || vec![Outcome::Retry("HTTP 503: busy".into()), Outcome::Delivered];
    for attempt in 1..3 {
        let p = plan(&sink, &batch, outcomes(), &policy(), &mut health, now);
        assert!(
            matches!(&p.settles[0].1, Settle::Retry { at, .. } if *at > now),
            "attempt {attempt}: {:?}",
            p.settles[0]
        );
        assert!(p.sink_backoff.is_none());
    }
    let p = plan(&sink, &batch, outcomes(), &policy(), &mut health, now);
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
    let batch = [pending(&r)];
    let mut health = Health::default();
    let now = datetime!(2026-11-27 12:00 UTC);
    let mut waits = Vec::new();
    for _ in 0..100 {
        let out = vec![Outcome::Retry("transport: refused".into())];
        let p = plan(&SinkId::new("s"), &batch, out, &policy(), &mut health, now);
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
    let batch: Vec<Pending> = (0..2)
        .map(|_| Pending {
            reading: reading("d"),
            attempts: 0,
            last_error: None,
        })
        .collect();
    let mut health = Health::default();
    let now = datetime!(2026-11-27 12:00 UTC);
    let p = plan(
        &SinkId::new("s"),
        &batch,
        vec![Outcome::Delivered],
        &policy(),
        &mut health,
        now,
    );
    assert_eq!(p.settles.len(), 2);
    assert_eq!(p.settles[0].1, Settle::Delivered);
    assert!(matches!(&p.settles[1].1, Settle::Retry { at, .. } if *at > now));
    assert!(p.sink_backoff.is_none());
}
