//! Benchmark: cargo test --release --test mqtt -- --ignored --nocapture

use super::*;

/// Mosquitto's own QoS 1 pub→sub rate for `msgs`, in messages/s.
async fn broker_baseline(port: u16, msgs: Vec<(String, Vec<u8>)>) -> f64 {
    let n = msgs.len();
    let mut opts = MqttOptions::new("bench-sub", "127.0.0.1", port);
    opts.set_clean_session(true);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (sub, mut el) = AsyncClient::new(opts, 10_000);
    sub.subscribe("bench/#", QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = el.poll().await.unwrap() {
            break;
        }
    }
    let recv = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            if let Event::Incoming(Packet::Publish(_)) = el.poll().await.unwrap() {
                got += 1;
            }
        }
        Instant::now()
    });
    let t0 = Instant::now();
    publish_all(port, msgs).await;
    let t1 = recv.await.unwrap();
    n as f64 / (t1 - t0).as_secs_f64()
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn benchmark_mqtt_ingest_against_the_brokers_own_qos1_rate() {
    use vitalsd::source::mqtt::{MqttDevice, MqttSource};
    let n: i64 = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let broker = broker(&tmp.path().join("broker"));
    let rt = rt();
    let baseline_msgs: Vec<_> = (0..n)
        .map(|i| ("bench/x".to_string(), weight(5000 + i)))
        .collect();
    let baseline = rt.block_on(broker_baseline(broker.port, baseline_msgs));

    let key = tmp.path().join("store.key");
    vitalsd::queue::cipher::ensure_key_file(&key).unwrap();
    let text = format!(
        "[daemon]\ndata_dir = {:?}\nadmin_listen = \"\"\nstore_key_file = {key:?}\n\
         [patient]\nmode = \"location\"\n\
         [mqtt]\nurl = \"{}\"\nclient_id = \"bench\"\n\
         [[device]]\nid = \"bridge\"\ndriver = \"json\"\nroom = \"r\"\n\
         mqtt = {{ topic = \"bridge/r\", payload = \"json\" }}\n\
         [[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = {:?}\nformat = \"reading\"\n",
        tmp.path().join("data"),
        broker.url(),
        tmp.path().join("outbox")
    );
    let cfg = vitalsd::config::parse(&text, "bench").unwrap();
    let queue = vitalsd::app::open_queue(&cfg).unwrap();
    let rate = rt.block_on(async {
        let d = &cfg.devices[0];
        let vitalsd::config::DeviceTransport::Mqtt(settings) = &d.transport else {
            unreachable!()
        };
        let status = vitalsd::status::DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
        let ingest = vitalsd::ingest::Ingest::new(queue.clone(), None);
        let dev = MqttDevice::build(d, settings, &cfg, &ingest, status).unwrap();
        let source = MqttSource::new(cfg.mqtt.as_ref().unwrap(), vec![dev], None, ingest).unwrap();
        let handle = source.handle();
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(source.run(cancel.clone()));
        while !handle.connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // SUBACK
        let msgs: Vec<_> = (0..n)
            .map(|i| ("bridge/r".to_string(), weight(5000 + i)))
            .collect();
        let t0 = Instant::now();
        publish_all(broker.port, msgs).await;
        while handle
            .state()
            .acked
            .load(std::sync::atomic::Ordering::Relaxed)
            < n as u64
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        let stored = handle
            .state()
            .stored
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stored, n as u64);
        cancel.cancel();
        let _ = task.await;
        rate
    });
    println!(
        "mqtt ingest end to end (publisher → mosquitto → vitalsd → flushed): {rate:.0} readings/s; \
         mosquitto QoS 1 pub→sub for the same {n} messages: {baseline:.0} msgs/s; ratio {:.2}",
        rate / baseline
    );
}
