//! Delivery against the test server: valid transaction Bundles, the metadata check, 503
//! bursts, hung servers, one bad entry in a batch, Retry-After, oversized responses.

use super::server::*;
use super::*;

/// Four Bundles in flight from the real queue: every reading reaches the server once (counted
/// by identifier over every transaction it processed), also when the first transaction fails
/// with a 503 while the others are in flight.
#[tokio::test]
async fn pipelined_delivery_from_the_queue_sends_every_reading_once() {
    let srv = Srv::default();
    srv.with(|s| {
        s.delay = Duration::from_millis(20);
        s.skip_bundles = true;
        s.script.push_back(Scripted::Status(503, None));
    });
    let addr = serve(srv.clone()).await;
    let mut cfg = config(addr, FhirAuth::None, 10, Duration::from_secs(5));
    cfg.concurrency = 4;
    let sink = FhirSink::new(&cfg).expect("sink");
    let readings: Vec<Reading> = (0..400).map(hr).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, cancel, task) = delivering(dir.path(), sink, readings.clone(), fast_policy()).await;
    wait_until("every reading stored", Duration::from_secs(30), || {
        srv.with(|s| s.stored.len() == readings.len())
    })
    .await;
    cancel.cancel();
    task.await.expect("delivery task");
    srv.with(|s| {
        assert!(s.most_active >= 2, "Bundles were in flight side by side");
        assert!(s.most_active <= 4, "never more than `concurrency`");
        for r in &readings {
            assert_eq!(s.received.get(&id_value(r)), Some(&1), "sent once");
        }
    });
    let stats = queue.stats().expect("stats");
    assert!(stats.sinks.iter().all(|s| s.pending == 0 && s.dead == 0));
}

#[tokio::test]
async fn a_batch_arrives_as_a_valid_transaction_bundle_and_a_resend_creates_nothing() {
    let srv = Srv::default();
    let addr = serve(srv.clone()).await;
    let mut s = sink(addr, FhirAuth::None);
    assert_eq!(s.max_batch(), 50);
    let batch = vec![
        reading(1, Kind::BloodPressure),
        hr(2),
        reading(3, Kind::BodyTemperature),
    ];
    assert_eq!(s.deliver(&batch).await, vec![Outcome::Delivered; 3]);
    let bundle = srv.with(|s| s.bundles[0].clone());
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    entries.iter().for_each(check_entry);

    // The same readings again: 200 OK from conditional create, still delivered, no new data.
    assert_eq!(s.deliver(&batch).await, vec![Outcome::Delivered; 3]);
    srv.with(|s| {
        assert_eq!(s.stored.len(), 3);
        assert!(s.stored.values().all(|n| *n == 1), "{:?}", s.stored);
    });
}

#[tokio::test]
async fn the_metadata_check_reports_the_server_fhir_version() {
    let addr = serve(Srv::default()).await;
    assert_eq!(
        sink(addr, FhirAuth::None).metadata().await.as_deref(),
        Ok("4.0.1")
    );
    let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = nobody.local_addr().unwrap();
    drop(nobody);
    assert!(sink(gone, FhirAuth::None).metadata().await.is_err());
}

#[tokio::test]
async fn bursts_of_503_then_success_lose_nothing_and_duplicate_nothing() {
    let srv = Srv::default();
    srv.with(|s| {
        s.script = (0..4).map(|_| Scripted::Status(503, None)).collect();
    });
    let addr = serve(srv.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let readings: Vec<Reading> = (0..23).map(hr).collect();
    let want: Vec<String> = readings.iter().map(id_value).collect();
    let s = FhirSink::new(&config(addr, FhirAuth::None, 5, Duration::from_secs(5))).unwrap();
    let (queue, cancel, task) = delivering(dir.path(), s, readings, fast_policy()).await;
    wait_until("all 23 stored", Duration::from_secs(20), || {
        srv.with(|s| s.stored.len() == 23)
    })
    .await;
    cancel.cancel();
    task.await.unwrap();
    srv.with(|s| {
        assert!(s.script.is_empty(), "the 503 burst was not consumed");
        for id in &want {
            assert_eq!(s.stored.get(id), Some(&1), "{id}");
        }
    });
    assert!(queue.dead(None, 10).unwrap().is_empty());
}

#[tokio::test]
async fn a_hung_server_times_out_and_the_batch_is_retried() {
    let srv = Srv::default();
    srv.with(|s| s.script.push_back(Scripted::Hang(Duration::from_secs(10))));
    let addr = serve(srv.clone()).await;
    let mut s = FhirSink::new(&config(
        addr,
        FhirAuth::None,
        50,
        Duration::from_millis(400),
    ))
    .unwrap();
    let batch = vec![hr(1), hr(2)];
    let t0 = Instant::now();
    let first = s.deliver(&batch).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    for o in &first {
        let Outcome::Retry(r) = o else {
            panic!("{first:?}")
        };
        assert!(r.contains("timed out"), "{r}");
    }
    assert_eq!(s.deliver(&batch).await, vec![Outcome::Delivered; 2]);
}

#[tokio::test]
async fn one_bad_entry_in_a_batch_of_five_is_dead_lettered_and_the_other_four_are_delivered() {
    let srv = Srv::default();
    srv.with(|s| s.bad_device = Some("exam3-thermo".into()));
    let addr = serve(srv.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut readings: Vec<Reading> = (0..5).map(hr).collect();
    readings[3] = reading(3, Kind::BodyTemperature);
    let bad = readings[3].id.unwrap();
    let s = FhirSink::new(&config(addr, FhirAuth::None, 5, Duration::from_secs(5))).unwrap();
    let (queue, cancel, task) = delivering(dir.path(), s, readings.clone(), fast_policy()).await;
    wait_until("4 stored and 1 dead", Duration::from_secs(10), || {
        srv.with(|s| s.stored.len() == 4) && queue.dead(None, 10).unwrap().len() == 1
    })
    .await;
    cancel.cancel();
    task.await.unwrap();
    let dead = queue.dead(None, 10).unwrap();
    assert_eq!(dead[0].id, bad);
    assert!(
        dead[0]
            .reason
            .starts_with("HTTP 400: Observation.device: unknown Device"),
        "{}",
        dead[0].reason
    );
    assert!(
        !dead[0].reason.contains("MRN-0003"),
        "patient id in reason: {}",
        dead[0].reason
    );
    srv.with(|s| {
        for (i, r) in readings.iter().enumerate() {
            assert_eq!(s.stored.get(&id_value(r)).copied(), (i != 3).then_some(1));
        }
    });
}

#[tokio::test]
async fn retry_after_is_honoured_by_the_delivery_loop() {
    let srv = Srv::default();
    srv.with(|s| s.script.push_back(Scripted::Status(429, Some("2"))));
    let addr = serve(srv.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_q, cancel, task) = delivering(
        dir.path(),
        sink(addr, FhirAuth::None),
        vec![hr(1)],
        fast_policy(),
    )
    .await;
    wait_until("stored", Duration::from_secs(10), || {
        srv.with(|s| s.stored.len() == 1)
    })
    .await;
    cancel.cancel();
    task.await.unwrap();
    let times = srv.with(|s| s.post_times.clone());
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?} despite Retry-After: 2"
    );

    // The sink alone: an HTTP-date is read too, and the hint is handed over once.
    let srv = Srv::default();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    let date: &'static str = Box::leak(date.into_boxed_str());
    srv.with(|s| s.script.push_back(Scripted::Status(503, Some(date))));
    let mut s = sink(serve(srv).await, FhirAuth::None);
    assert!(s.deliver(&[hr(1)]).await[0].is_retry());
    let hint = s.retry_after().expect("hint");
    assert!(
        hint > Duration::from_secs(25) && hint <= Duration::from_secs(30),
        "{hint:?}"
    );
    assert_eq!(s.retry_after(), None);
}

#[tokio::test]
async fn a_response_bigger_than_the_limit_keeps_the_reading_queued() {
    let srv = Srv::default();
    srv.with(|s| s.script.push_back(Scripted::Huge));
    let mut s = sink(serve(srv).await, FhirAuth::None);
    let out = s.deliver(&[hr(1)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(r)] if r.contains("larger than")),
        "{out:?}"
    );
    assert_eq!(s.deliver(&[hr(1)]).await, vec![Outcome::Delivered]);
}
