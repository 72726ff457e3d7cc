//! Figure: backlog drain rate to a local receiver (ignored measurement).

use super::receiver::*;
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test --release --test mllp_sink -- --ignored --nocapture"]
async fn drain_rate_to_a_local_mllp_receiver() {
    const N: i64 = 5000;
    let tmp = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(|_, _| Reply::Ack("AA"));
    let q = Queue::open(tmp.path(), QueueOptions::new(vec![SinkId::new("engine")])).expect("queue");
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        q.enqueue(chunk.iter().map(|&i| reading(i)).collect())
            .await
            .expect("enqueue");
    }
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    let task = tokio::spawn(run_delivery(
        q.clone(),
        Box::new(sink(rx.addr, Duration::from_secs(5), 5)),
        fast_policy(),
        cancel.clone(),
        None,
    ));
    wait_until("drained", Duration::from_secs(300), || pending(&q) == 0).await;
    let secs = t0.elapsed().as_secs_f64();
    cancel.cancel();
    task.await.expect("delivery loop");
    assert_eq!(rx.accepted().len(), usize::try_from(N).expect("n"));
    // The same readings straight through the sink, without the queue's per-settle flush.
    let mut direct = sink(rx.addr, Duration::from_secs(5), 5);
    let batch: Vec<Reading> = (0..N).map(reading).collect();
    let t1 = Instant::now();
    for r in &batch {
        assert_eq!(
            direct.deliver(std::slice::from_ref(r)).await,
            vec![Outcome::Delivered]
        );
    }
    let direct_secs = t1.elapsed().as_secs_f64();
    println!(
        "MLLP sink alone: {N} messages in {direct_secs:.2} s = {:.0} messages/s",
        N as f64 / direct_secs
    );
    println!(
        "MLLP drain: {N} readings in {secs:.2} s = {:.0} readings/s (one message per ACK, local receiver)",
        N as f64 / secs
    );
}
