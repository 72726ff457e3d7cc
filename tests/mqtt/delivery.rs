//! The daemon through the real binary: GATT and JSON devices on one broker, replays stored
//! once, the patient topic, kill -9 mid-stream and a broker restart losing nothing.

use super::*;

#[test]
fn gatt_and_json_devices_on_one_broker_reach_the_outbox_and_replays_are_stored_once() {
    let s = Setup::new();
    let broker = broker(&s.tmp.path().join("broker"));
    let cfg = s.config("delivery", &broker.url(), "", "");
    let d = s.daemon(&cfg, "log");

    let bridge = weight(7012);
    publish(
        broker.port,
        vec![
            ("gw/exam3/AA:BB/2A1C".into(), TEMP_2A1C.to_vec()),
            ("gw/exam3/2A1C".into(), TEMP_2A1C.to_vec()),
            ("gw/exam5/2A1C".into(), b"00 6e 01 00 ff".to_vec()),
            ("bridge/exam4".into(), bridge.clone()),
            // A gateway replay of the same reading: stored once.
            ("bridge/exam4".into(), bridge),
        ],
    );
    let lines = wait_outbox(&s.outbox, 3, Duration::from_secs(15));
    // `gw/exam3/+` does not match the 4-level topic: only three messages are readings, and
    // the two ble-gatt values from cuff are one reading (same dedupe key).
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .map(|r| {
            (
                r["device"]["id"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(kinds.contains(&("cuff", "body_temperature")), "{kinds:?}");
    assert!(
        kinds.contains(&("thermo-hex", "body_temperature")),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("bridge", "body_weight")), "{kinds:?}");
    let cuff = lines.iter().find(|r| r["device"]["id"] == "cuff").unwrap();
    assert_eq!(cuff["room"], "exam-3");
    assert_eq!(cuff["values"][0]["unit"], "Cel");

    // The simulator publishes real GATT payloads with the characteristic as the last segment.
    let st = Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(crate::support::KEY_ENV, crate::support::store_key_file())
        .args([
            "simulate",
            "ble-gatt",
            "--mqtt",
            &broker.url(),
            "--topic",
            "gw/exam3/+",
        ])
        .args(["--count", "4", "--every", "10ms"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let kinds: Vec<String> = outbox_lines(&s.outbox)
            .iter()
            .filter(|r| r["device"]["id"] == "cuff")
            .map(|r| r["kind"].as_str().unwrap().to_string())
            .collect();
        let all = ["blood_pressure", "spo2", "body_weight", "body_temperature"];
        if all.iter().all(|k| kinds.iter().any(|x| x == k)) {
            break;
        }
        assert!(Instant::now() < until, "simulated kinds missing: {kinds:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(weights(&s.outbox), [7012], "the replay was stored twice");
    let (st, _) = d.stop();
    assert!(st.success());
}

#[test]
fn the_patient_topic_sets_the_rooms_patient_and_an_empty_payload_clears_it() {
    let s = Setup::new();
    let broker = broker(&s.tmp.path().join("broker"));
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let cfg = s.config(
        "patient",
        &url,
        "patient_topic = \"clinic/rooms/+/patient\"",
        // The bridge's clock is the host's: a small tolerance keeps a reading measured 2 s
        // after the context was set clear of it.
        "clock_skew_tolerance = \"1s\"",
    );
    let d = s.daemon(&cfg, "patient.log");
    let ctx = br#"{"id":"MRN0000042","system":"urn:oid:1.2.3","by":"front-desk"}"#.to_vec();
    publish(
        broker.port,
        vec![("clinic/rooms/exam-4/patient".into(), ctx)],
    );
    d.wait_log("patient context set", Duration::from_secs(10));
    // The bridge reports whole seconds: wait so that the weight, less the clock-skew
    // tolerance, is still measured after the context was set (a reading that may have been
    // measured before it must not get the patient).
    std::thread::sleep(Duration::from_millis(2100));
    publish(broker.port, vec![("bridge/exam4".into(), weight(7012))]);
    let lines = wait_outbox(&s.outbox, 1, Duration::from_secs(10));
    assert_eq!(lines[0]["patient"]["id"], "MRN0000042", "{}", lines[0]);

    publish(
        broker.port,
        vec![("clinic/rooms/exam-4/patient".into(), Vec::new())],
    );
    d.wait_log("patient context cleared", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1100));
    publish(broker.port, vec![("bridge/exam4".into(), weight(7013))]);
    let lines = wait_outbox(&s.outbox, 2, Duration::from_secs(10));
    assert!(lines[1]["patient"].is_null(), "{}", lines[1]);
    assert!(
        !d.log().contains("MRN0000042"),
        "patient id in the ordinary log"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn kill_9_mid_stream_then_restart_delivers_every_message_exactly_once() {
    let s = Setup::new();
    let broker = broker(&s.tmp.path().join("broker"));
    let cfg = s.config("crash", &broker.url(), "", "");
    let mut d = s.daemon(&cfg, "log1");
    let n = 600;
    let port = broker.port;
    let publisher = std::thread::spawn(move || {
        let msgs = (0..n)
            .map(|i| ("bridge/exam4".to_string(), weight(5000 + i)))
            .collect();
        publish(port, msgs);
    });
    wait_outbox(&s.outbox, 50, Duration::from_secs(30));
    d.child.kill().unwrap(); // SIGKILL in the middle of the stream
    let _ = d.child.wait();
    publisher.join().unwrap();

    let d = s.daemon(&cfg, "log2");
    let until = Instant::now() + Duration::from_secs(60);
    while weights(&s.outbox).len() < n as usize {
        assert!(
            Instant::now() < until,
            "only {} of {n} delivered",
            weights(&s.outbox).len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_each_once(&weights(&s.outbox), 5000..5000 + n);
    d.stop();
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    let s = Setup::new();
    let mut broker = broker(&s.tmp.path().join("broker"));
    let cfg = s.config("restart", &broker.url(), "", "");
    let d = s.daemon(&cfg, "log");
    publish(
        broker.port,
        (0..300)
            .map(|i| ("bridge/exam4".into(), weight(6000 + i)))
            .collect(),
    );
    broker.restart();
    // Published while vitalsd is still reconnecting: kept in its persistent session.
    publish(
        broker.port,
        (300..600)
            .map(|i| ("bridge/exam4".into(), weight(6000 + i)))
            .collect(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    while d.log().matches("mqtt connected").count() < 2 {
        assert!(Instant::now() < until, "no reconnect:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let until = Instant::now() + Duration::from_secs(60);
    while weights(&s.outbox).len() < 600 {
        assert!(
            Instant::now() < until,
            "only {} of 600 delivered",
            weights(&s.outbox).len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_each_once(&weights(&s.outbox), 6000..6600);
    d.stop();
}
