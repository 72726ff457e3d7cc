//! MQTT devices added and removed by a reload.

use super::*;

/// Publishes at QoS 1 and returns once the broker acknowledged every message.
fn publish(port: u16, msgs: &[(&str, Vec<u8>)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = MqttOptions::new(format!("pub-{:08x}", fastrand::u32(..)), "127.0.0.1", port);
        let (client, mut el) = AsyncClient::new(opts, 100);
        for (t, p) in msgs {
            client
                .publish(*t, QoS::AtLeastOnce, false, p.clone())
                .await
                .unwrap();
        }
        let mut acked = 0;
        let wait = async {
            while acked < msgs.len() {
                if let Event::Incoming(Packet::PubAck(_)) = el.poll().await.expect("broker") {
                    acked += 1;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("PUBACKs");
        let _ = client.disconnect().await;
    });
}

/// A `json` driver body weight; `centi` tells readings apart.
fn weight(centi: i64) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!(
        r#"{{"kind":"body_weight","device_time":"{now}","values":[{{"name":"weight","value":{}.{:02},"unit":"kg"}}]}}"#,
        centi / 100,
        centi % 100
    )
    .into_bytes()
}

fn mqtt_device(id: &str, topic: &str) -> Device {
    Device::mqtt(id, "json", "exam-4", topic, "json")
}

/// `(device id, weight in hundredths of a kg)` of every body weight in the outbox.
fn weights(dir: &Path) -> Vec<(String, i64)> {
    outbox_lines(dir)
        .iter()
        .filter(|l| l["kind"] == "body_weight")
        .map(|l| {
            (
                l["device"]["id"].as_str().unwrap_or("").to_string(),
                whole(l["values"][0]["value"].as_f64().unwrap() * 100.0),
            )
        })
        .collect()
}

#[test]
fn mqtt_devices_added_and_removed_by_reload_subscribe_and_unsubscribe_while_serial_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&tmp.path().join("broker"));
    let out: PathBuf = tmp.path().join("out");
    let pty = Pty::new();
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let write = |scale: Device| {
        site(
            tmp.path(),
            false,
            &[serial_device("ox", "exam-1", &pty.path), scale],
            &[file_sink("outA", &out)],
        )
        .mqtt(&url, "vitalsd-reload")
        .write()
    };
    let cfg = write(mqtt_device("scale1", "bridge/one"));
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    wait_lines(&d, &["mqtt subscribed"], 1, Duration::from_secs(15));
    wait_lines(
        &d,
        &["serial port open", "device=ox"],
        1,
        Duration::from_secs(10),
    );
    publish(broker.port, &[("bridge/one", weight(7001))]);
    wait_out(&d, &out, 1, Duration::from_secs(10));

    // scale1 goes, scale2 comes on another topic.
    write(mqtt_device("scale2", "bridge/two"));
    signal(&d, Signal::SIGHUP);
    wait_lines(
        &d,
        &[
            "config reloaded",
            "devices_added=scale2",
            "devices_removed=scale1",
            "mqtt_restarted=true",
        ],
        1,
        Duration::from_secs(15),
    );
    wait_lines(
        &d,
        &["mqtt unsubscribing", "bridge/one"],
        1,
        Duration::from_secs(10),
    );
    wait_lines(&d, &["mqtt subscribed"], 2, Duration::from_secs(15));
    publish(
        broker.port,
        &[("bridge/one", weight(7002)), ("bridge/two", weight(7003))],
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !weights(&out).contains(&("scale2".into(), 7003)) {
        assert!(
            Instant::now() < until,
            "scale2 not delivered: {:?}",
            weights(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        weights(&out),
        vec![("scale1".to_string(), 7001), ("scale2".to_string(), 7003)]
    );
    // The serial device on the same daemon kept running untouched.
    pty.send(&nonin(64));
    let until = Instant::now() + Duration::from_secs(10);
    while !heart_rates(&out).contains(&64) {
        assert!(Instant::now() < until, "the serial device stopped reading");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines_with(&d, &["serial port open", "device=ox"]), 1);
    let (st, _) = d.stop();
    assert!(st.success());
    // The removed topic was unsubscribed: its message never reached vitalsd at all.
    let stats: serde_json::Value =
        serde_json::from_str(&vitalsd(&["queue", "stats"], &cfg)).unwrap();
    assert_eq!(stats["rejected_payloads"], 0, "{stats}");
}
