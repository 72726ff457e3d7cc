//! The mqtt sink, in process.

use super::*;

fn reading(n: u32) -> vitalsd::reading::Reading {
    serde_json::from_value(serde_json::json!({
        "id": format!("01938f4e-7b2a-7c4d-9a51-3f0c2b1d{n:04x}"),
        "device": {"id": "cuff", "driver": "ble-gatt"},
        "room": "exam-3", "patient": null, "kind": "blood_pressure",
        "observed_at": "2026-11-27T12:00:00Z", "received_at": "2026-11-27T12:00:01Z",
        "values": [
            {"code": "8480-6", "mdc": 150021, "name": "systolic", "value": 120, "unit": "mm[Hg]"},
            {"code": "8462-4", "mdc": 150022, "name": "diastolic", "value": 80, "unit": "mm[Hg]"}
        ]
    }))
    .unwrap()
}

#[test]
fn the_mqtt_sink_publishes_observations_and_counts_delivered_only_on_puback() {
    use vitalsd::sink::{Outcome, Sink};
    let tmp = tempfile::tempdir().unwrap();
    let mut broker = broker(&tmp.path().join("broker"));
    let rt = rt();
    rt.block_on(async {
        let mut opts = MqttOptions::new("watcher", "127.0.0.1", broker.port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (watcher, mut el) = AsyncClient::new(opts, 10);
        watcher.subscribe("out/#", QoS::AtLeastOnce).await.unwrap();
        let (tx, mut got) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                match ev {
                    Event::Incoming(Packet::Publish(p)) => {
                        let _ = tx.send((p.topic, p.payload.to_vec()));
                    }
                    Event::Incoming(Packet::SubAck(_)) => {
                        let _ = tx.send((String::new(), Vec::new()));
                    }
                    _ => {}
                }
            }
        });
        assert_eq!(got.recv().await.unwrap().0, "", "SUBACK first");

        let cfg = vitalsd::config::MqttSinkConfig {
            id: vitalsd::reading::SinkId::new("upstream"),
            topic: "out/{room}/{kind}/{device}".into(),
            format: vitalsd::config::PublishFormat::Fhir,
            url: Some(broker.url()),
        };
        let mut sink = vitalsd::sink::mqtt::MqttSink::start(&cfg, None)
            .unwrap()
            .with_timeout(Duration::from_secs(2));
        let batch: Vec<_> = (0..3).map(reading).collect();
        // The first call may race the connection: the delivery loop retries, so do we.
        let mut outcomes = sink.deliver(&batch).await;
        for _ in 0..20 {
            if outcomes.iter().all(Outcome::is_delivered) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            outcomes = sink.deliver(&batch).await;
        }
        assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
        let (topic, body) = tokio::time::timeout(Duration::from_secs(5), got.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(topic, "out/exam-3/blood_pressure/cuff");
        let obs: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(obs["resourceType"], "Observation");

        // Without a broker there is no PUBACK: every reading is to be retried, none delivered.
        broker.stop();
        let outcomes = sink.deliver(&batch).await;
        assert!(outcomes.iter().all(Outcome::is_retry), "{outcomes:?}");
    });
}
