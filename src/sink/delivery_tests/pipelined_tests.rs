//! Several batches in flight: no reading in two, a failing batch retried alone, cancel,
//! the whole-sink backoff, and the real queue passing over readings in flight.

use super::*;

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

/// A settle being made durable does not hold up the loop: the handles go on reading and
/// sending while it syncs.
#[tokio::test]
async fn the_next_batches_go_out_while_a_settle_is_made_durable() {
    let rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::from_millis(5),
        fast_policy(),
        PIPELINED,
    );
    *rig.queue.settle_takes.lock().expect("lock") = Duration::from_millis(100);
    let t0 = Instant::now();
    let ids = push_many(&rig, 24);
    rig.until("all delivered", |s| s.delivered.len() == 24)
        .await;
    let took = t0.elapsed();
    // One settle at a time: 12 batches × 100 ms at least; four overlapping: about 3 × 105 ms.
    assert!(took < Duration::from_millis(800), "took {took:?}");
    assert!(rig.seen.most_in_flight.load(AtomicOrdering::SeqCst) <= 4);
    assert!(rig.seen.doubled.lock().expect("lock").is_empty());
    assert_eq!(rig.calls().len(), 12, "every reading sent once");
    let q = rig.stop().await;
    q.with(|s| assert_eq!(s.delivered, ids, "settled in send order"));
}

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

/// One batch at a time at the sink: the next batch is read from the queue while the sink
/// still has the last one, and goes out as soon as the sink answered.
#[tokio::test]
async fn the_next_batch_is_read_while_the_sink_has_one() {
    let one = Shape {
        batch: 2,
        concurrency: 1,
    };
    let rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::from_millis(300),
        fast_policy(),
        one,
    );
    let ids = push_many(&rig, 4);
    rig.until_calls(1).await;
    // Well inside the sink's 300 ms with the first batch.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        rig.queue.with(|s| s.pending_calls) >= 2,
        "the next batch is read while the sink has the first"
    );
    assert_eq!(rig.calls().len(), 1, "still one batch at the sink");
    rig.until("all delivered", |s| s.delivered.len() == 4).await;
    assert_eq!(rig.batches(), vec![ids[..2].to_vec(), ids[2..].to_vec()]);
    assert_eq!(rig.seen.most_in_flight.load(AtomicOrdering::SeqCst), 1);
    let q = rig.stop().await;
    q.with(|s| assert_eq!(s.delivered, ids));
}

/// A handle takes its next batch once its settle is requested, not once it is durable; the
/// readings count as delivered (announced) only once it is durable; and no more than
/// `concurrency` settles wait for their sync.
#[tokio::test]
async fn a_handle_sends_again_while_its_settle_syncs() {
    let one = Shape {
        batch: 2,
        concurrency: 1,
    };
    let mut rig = start(
        Arc::new(|_| Outcome::Delivered),
        Duration::from_millis(10),
        fast_policy(),
        one,
    );
    *rig.queue.settle_takes.lock().expect("lock") = Duration::from_millis(400);
    let ids = push_many(&rig, 6);
    rig.until_calls(2).await;
    let calls = rig.calls();
    assert!(
        calls[1] - calls[0] < Duration::from_millis(200),
        "the second batch waited for the first settle's sync: {:?}",
        calls[1] - calls[0]
    );
    assert!(
        matches!(
            rig.events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ),
        "nothing counts as delivered before its settle is durable"
    );
    // Two batches sent and not settled (one syncing, one answered): the third waits.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(rig.calls().len(), 2, "more settles waiting than handles");
    rig.until("all delivered", |s| s.delivered.len() == 6).await;
    assert!(rig.seen.doubled.lock().expect("lock").is_empty());
    assert_eq!(
        rig.batches().concat(),
        ids,
        "every reading sent once, in order"
    );
    let mut announced = Vec::new();
    while announced.len() < 6 {
        let e = tokio::time::timeout(Duration::from_secs(5), rig.events.recv())
            .await
            .expect("event in time")
            .expect("event");
        announced.push(e.reading.id.unwrap_or_default());
    }
    assert_eq!(announced, ids);
    let q = rig.stop().await;
    q.with(|s| assert_eq!(s.delivered, ids, "settled in send order"));
}

/// A batch read ahead is not sent after a whole-sink failure: once the backoff has passed,
/// the oldest due readings (the failed batch) go first, as with nothing read ahead.
#[tokio::test]
async fn a_backoff_lets_the_batch_read_ahead_go() {
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let script: Script = {
        let failed = failed.clone();
        Arc::new(move |_| {
            if failed.swap(true, AtomicOrdering::SeqCst) {
                Outcome::Delivered
            } else {
                Outcome::Retry("HTTP 503: busy".into())
            }
        })
    };
    let one = Shape {
        batch: 1,
        concurrency: 1,
    };
    let rig = start(script, Duration::from_millis(50), fast_policy(), one);
    let ids = push_many(&rig, 3);
    rig.until("all delivered", |s| s.delivered.len() == 3).await;
    assert_eq!(
        rig.batches(),
        vec![vec![ids[0]], vec![ids[0]], vec![ids[1]], vec![ids[2]]]
    );
    let q = rig.stop().await;
    q.with(|s| assert_eq!(s.delivered, ids));
}
