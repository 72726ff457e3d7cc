//! The pure `plan` of what a batch's outcomes mean: give-up after max attempts, whole-sink
//! backoff, too few outcomes, a shared backoff.

use super::*;

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
