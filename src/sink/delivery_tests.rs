//! Delivery-loop tests on paused tokio time, against an in-memory fake queue and a scripted
//! sink: delivered/rejected/retry mapping, a down receiver never dead-letters, one bad reading
//! does not block the rest, idle does not spin, cancel settles the batch in flight.

use std::collections::BTreeMap;
use std::sync::Mutex;

use time::macros::datetime;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::reading::{DeviceId, DeviceInfo, Kind};
use crate::sink::DeliverFuture;

struct Entry {
    reading: Reading,
    attempts: u32,
    last_error: Option<String>,
    due: OffsetDateTime,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<ReadingId, Entry>,
    delivered: Vec<ReadingId>,
    dead: Vec<(ReadingId, String)>,
    pending_calls: u32,
}

#[derive(Default)]
struct FakeQueue {
    state: Mutex<State>,
    notify: Notify,
}

impl FakeQueue {
    fn push(&self, r: Reading, now: OffsetDateTime) {
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
    fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().expect("lock"))
    }
}

impl DeliveryQueue for FakeQueue {
    fn pending(
        &self,
        _: &SinkId,
        max: usize,
        now: OffsetDateTime,
    ) -> Result<Vec<Pending>, QueueError> {
        let mut s = self.state.lock().expect("lock");
        s.pending_calls += 1;
        Ok(s.entries
            .values()
            .filter(|e| e.due <= now)
            .take(max)
            .map(|e| Pending {
                reading: e.reading.clone(),
                attempts: e.attempts,
                last_error: e.last_error.clone(),
            })
            .collect())
    }
    fn next_due(&self, _: &SinkId) -> Result<Option<OffsetDateTime>, QueueError> {
        Ok(self.with(|s| s.entries.values().map(|e| e.due).min()))
    }
    fn settle<'a>(
        &'a self,
        _: &'a SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>> {
        Box::pin(async move {
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
            Ok(())
        })
    }
    fn wait_new<'a>(&'a self, _: &'a SinkId) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.notify.notified())
    }
}

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
        kind: Kind::HeartRate,
        observed_at: t,
        received_at: t,
        device_time: None,
        values: Vec::new(),
        flags: Vec::new(),
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts_per_reading: 3,
    }
}

/// Wall clock that follows tokio's (paused) clock.
fn test_clock() -> Clock {
    let start = Instant::now();
    let base = datetime!(2026-11-27 12:00 UTC);
    Arc::new(move || base + start.elapsed())
}

struct Rig {
    queue: Arc<FakeQueue>,
    clock: Clock,
    cancel: CancellationToken,
    calls: Arc<Mutex<Vec<Instant>>>,
    events: broadcast::Receiver<DeliveryEvent>,
    task: tokio::task::JoinHandle<()>,
}

fn start(script: Script, takes: Duration) -> Rig {
    let queue = Arc::new(FakeQueue::default());
    let clock = test_clock();
    let cancel = CancellationToken::new();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (tx, events) = broadcast::channel(64);
    let sink = ScriptedSink {
        id: SinkId::new("ehr"),
        script,
        calls: calls.clone(),
        takes,
    };
    let task = tokio::spawn({
        let (queue, clock, cancel) = (queue.clone(), clock.clone(), cancel.clone());
        async move {
            run_delivery_with(&*queue, Box::new(sink), policy(), cancel, Some(tx), clock).await;
        }
    });
    Rig {
        queue,
        clock,
        cancel,
        calls,
        events,
        task,
    }
}

impl Rig {
    fn push(&self, r: Reading) {
        self.queue.push(r, (self.clock)());
    }
    async fn stop(self) -> Arc<FakeQueue> {
        self.cancel.cancel();
        self.task.await.expect("delivery task");
        self.queue
    }
}

#[tokio::test(start_paused = true)]
async fn delivered_readings_are_settled_and_announced() {
    let mut rig = start(Arc::new(|_| Outcome::Delivered), Duration::ZERO);
    let (a, b) = (reading("d1"), reading("d2"));
    rig.push(a.clone());
    rig.push(b.clone());
    let first = rig.events.recv().await.expect("event");
    let second = rig.events.recv().await.expect("event");
    assert_eq!((first.reading.id, second.reading.id), (a.id, b.id));
    assert_eq!(first.sink, SinkId::new("ehr"));
    let q = rig.stop().await;
    q.with(|s| {
        assert_eq!(
            s.delivered,
            vec![a.id.unwrap_or_default(), b.id.unwrap_or_default()]
        );
        assert!(s.entries.is_empty());
    });
}

#[tokio::test(start_paused = true)]
async fn a_rejected_reading_goes_to_dead_letter_with_its_reason() {
    let rig = start(
        Arc::new(|_| Outcome::Rejected("HTTP 422: bad code".into())),
        Duration::ZERO,
    );
    let r = reading("d1");
    rig.push(r.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let q = rig.stop().await;
    q.with(|s| {
        assert_eq!(
            s.dead,
            vec![(r.id.unwrap_or_default(), "HTTP 422: bad code".into())]
        )
    });
}

#[tokio::test(start_paused = true)]
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
    let rig = start(script, Duration::ZERO);
    rig.push(reading("d1"));
    rig.push(reading("d2"));
    tokio::time::sleep(Duration::from_secs(600)).await;
    rig.queue.with(|s| {
        assert!(s.dead.is_empty(), "an outage must never dead-letter");
        assert_eq!(s.entries.len(), 2);
        assert!(s
            .entries
            .values()
            .all(|e| e.attempts > policy().max_attempts_per_reading));
    });
    let calls = rig.calls.lock().expect("lock").clone();
    // 1 s, 2 s, 4 s ... capped at 60 s: about 14 attempts in 10 minutes, not thousands.
    assert!((8..=20).contains(&calls.len()), "{} attempts", calls.len());
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "backoff grows: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(61)),
        "{gaps:?}"
    );

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let q = rig.stop().await;
    q.with(|s| {
        assert_eq!(s.delivered.len(), 2);
        assert!(s.entries.is_empty());
    });
}

#[tokio::test(start_paused = true)]
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
    let rig = start(script, Duration::ZERO);
    rig.push(bad);
    rig.push(reading("good1"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = reading("good2");
    rig.push(late.clone());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let q = rig.stop().await;
    q.with(|s| {
        assert_eq!(s.delivered.len(), 2, "both good readings delivered");
        assert!(
            s.delivered.contains(&late.id.unwrap_or_default()),
            "not blocked"
        );
        let e = &s.entries[&bad_id.unwrap_or_default()];
        assert_eq!(e.attempts, 1);
        assert!(
            e.due > datetime!(2026-11-27 12:00:00.5 UTC),
            "in its own backoff"
        );
        assert!(s.dead.is_empty());
    });
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

#[tokio::test(start_paused = true)]
async fn an_idle_loop_sleeps_instead_of_polling() {
    let rig = start(Arc::new(|_| Outcome::Delivered), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let idle_calls = rig.queue.with(|s| s.pending_calls);
    assert!(idle_calls <= 62, "{idle_calls} queue reads in an idle hour");
    // ...and still wakes at once for a new reading.
    let before = Instant::now();
    rig.push(reading("d1"));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(rig.queue.with(|s| s.delivered.len()), 1);
    assert!(Instant::now() - before < Duration::from_millis(5));
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_finishes_and_settles_the_batch_in_flight() {
    let rig = start(Arc::new(|_| Outcome::Delivered), Duration::from_secs(2));
    let r = reading("d1");
    rig.push(r.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.calls.lock().expect("lock").len(), 1, "batch in flight");
    let q = rig.stop().await;
    q.with(|s| assert_eq!(s.delivered, vec![r.id.unwrap_or_default()]));
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
