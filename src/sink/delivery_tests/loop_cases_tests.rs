//! The delivery loop's cases, each run with one batch in flight and with four: settling and
//! announcing, dead letters, a receiver that is down, backoff of one reading, idling, cancel.

use super::*;

/// The default shape of the loop cases: ten readings per batch, `conc` batches in flight.
fn shape(conc: usize) -> Shape {
    Shape {
        batch: 10,
        concurrency: conc,
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

/// Only the delivered readings of a batch are announced, in batch order, and every receiver
/// of the broadcast gets the same reading (moved into the event once, never copied).
async fn only_delivered_readings_are_announced_each_shared_by_every_receiver(conc: usize) {
    let script: Script = Arc::new(|r: &Reading| {
        if r.device.id.as_str() == "bad" {
            Outcome::Rejected("HTTP 422: bad code".into())
        } else {
            Outcome::Delivered
        }
    });
    let mut rig = start(script, Duration::ZERO, fast_policy(), shape(conc));
    let mut second = rig.events.resubscribe();
    let batch = [reading("a"), reading("bad"), reading("b"), reading("c")];
    for r in &batch {
        rig.push(r.clone());
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(5), rig.events.recv())
            .await
            .expect("event in time")
            .expect("event");
        let same = second.recv().await.expect("event on the second receiver");
        assert!(Arc::ptr_eq(&e.reading, &same.reading), "one shared reading");
        assert_eq!(*e.reading, batch[[0, 2, 3][got.len()]], "the whole reading");
        got.push(e.reading.id);
    }
    assert_eq!(got, vec![batch[0].id, batch[2].id, batch[3].id]);
    rig.until("dead-letter", |s| s.dead.len() == 1).await;
    assert!(
        rig.events.try_recv().is_err(),
        "a rejection is not announced"
    );
    rig.stop().await;
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
    only_delivered_readings_are_announced_each_shared_by_every_receiver,
);
