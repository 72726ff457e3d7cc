//! Drain benchmarks (ignored; run with `--release --ignored --nocapture`).

use super::server::*;
use super::*;

/// Backlog drain to a local FHIR listener with 50-reading Bundles (docs/ARCHITECTURE.md#performance-targets: ≥ 5,000/s).
/// `cargo test --release --test fhir_sink -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn drain_benchmark_prints_readings_per_second() {
    const N: u32 = 20_000;
    let srv = Srv::default();
    srv.with(|s| s.skip_bundles = true);
    let addr = serve(srv.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueOptions::new(vec![SinkId::new("ehr")])).unwrap();
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        queue
            .enqueue(chunk.iter().map(|n| hr(*n)).collect())
            .await
            .unwrap();
    }
    let s = sink(addr, FhirAuth::None);
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    let task = tokio::spawn(run_delivery(
        queue.clone(),
        Box::new(s),
        fast_policy(),
        cancel.clone(),
        None,
    ));
    wait_until("drained", Duration::from_secs(300), || {
        srv.with(|s| s.stored.len() == N as usize)
    })
    .await;
    let took = t0.elapsed();
    cancel.cancel();
    task.await.unwrap();
    println!(
        "fhir drain: {N} readings in 50-reading Bundles in {took:.2?} = {:.0} readings/s",
        f64::from(N) / took.as_secs_f64()
    );

    // Same-run baseline: the sink and listener alone, no queue (no reads, no settle fsyncs).
    let srv = Srv::default();
    srv.with(|s| s.skip_bundles = true);
    let mut s = sink(serve(srv.clone()).await, FhirAuth::None);
    let readings: Vec<Reading> = (0..N).map(hr).collect();
    let t0 = Instant::now();
    for batch in readings.chunks(50) {
        assert!(s.deliver(batch).await.iter().all(Outcome::is_delivered));
    }
    let took = t0.elapsed();
    println!(
        "fhir sink alone (no queue): {N} readings in {took:.2?} = {:.0} readings/s",
        f64::from(N) / took.as_secs_f64()
    );
}

/// `cargo test --release --test fhir_sink -- --ignored --nocapture pipelined`: the same drain
/// from the real queue with one Bundle in flight and with four, in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
async fn pipelined_drain_benchmark_one_against_four_in_flight() {
    let n: u32 = std::env::var("DRAIN_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut rates = Vec::new();
    for concurrency in [1, 4] {
        let srv = Srv::default();
        srv.with(|s| s.skip_bundles = true);
        let addr = serve(srv.clone()).await;
        let mut cfg = config(addr, FhirAuth::None, 50, Duration::from_secs(10));
        cfg.concurrency = concurrency;
        let readings: Vec<Reading> = (0..n).map(hr).collect();
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let (_queue, cancel, task) = delivering(
            dir.path(),
            FhirSink::new(&cfg).unwrap(),
            readings,
            fast_policy(),
        )
        .await;
        wait_until("drained", Duration::from_secs(600), || {
            srv.with(|s| s.stored.len() == n as usize)
        })
        .await;
        let took = t0.elapsed();
        cancel.cancel();
        task.await.unwrap();
        let dup = srv.with(|s| s.received.values().filter(|c| **c > 1).count());
        assert_eq!(dup, 0, "sent twice");
        let rate = f64::from(n) / took.as_secs_f64();
        println!("pipelined drain: {n} readings, {concurrency} in flight: {rate:.0} readings/s");
        rates.push(rate);
    }
    println!(
        "pipelined drain: four in flight / one: {:.2}",
        rates[1] / rates[0]
    );
}
