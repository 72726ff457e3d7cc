//! The MQTT source and sink against a real Mosquitto that each test starts on a free port
//! (`scripts/test` installs it): delivery, kill -9 of the daemon, broker restart, TLS,
//! backpressure, undecodable payloads, the mqtt sink, and an ignored benchmark.

// Counts and weights in these tests are small and positive.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::mosquitto::{free_port, Mosquitto};
use support::{outbox_lines, wait_outbox, Daemon};

// ---------------------------------------------------------------------------------------------
// Helpers: the broker, publishers, configs.

/// Mosquitto with a wide in-flight window, so vitalsd can store many messages per flush.
fn broker(dir: &Path) -> Mosquitto {
    broker_with(dir, "")
}

/// [`broker`] with `extra` config lines (more listeners, TLS files).
fn broker_with(dir: &Path, extra: &str) -> Mosquitto {
    Mosquitto::start_with(dir, &format!("max_inflight_messages 1000\n{extra}"))
}

#[track_caller]
fn wait_port(port: u16) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "broker did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Publishes every message at QoS 1 and returns once the broker acknowledged all of them.
async fn publish_all(port: u16, msgs: Vec<(String, Vec<u8>)>) {
    let mut opts = MqttOptions::new(format!("pub-{:08x}", fastrand::u32(..)), "127.0.0.1", port);
    opts.set_inflight(500);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 1000);
    let n = msgs.len();
    let poll = tokio::spawn(async move {
        let mut acked = 0;
        while acked < n {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher lost the broker: {e}"),
            }
        }
    });
    for (t, p) in msgs {
        client.publish(t, QoS::AtLeastOnce, false, p).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .expect("all PUBACKs within 60 s")
        .unwrap();
    let _ = client.disconnect().await;
}

fn publish(port: u16, msgs: Vec<(String, Vec<u8>)>) {
    rt().block_on(publish_all(port, msgs));
}

/// A `json` driver payload: a body weight whose value (hundredths of a kg) tells readings apart.
fn weight(centi_kg: i64) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!(
        r#"{{"kind":"body_weight","device_time":"{now}","values":[{{"name":"weight","value":{}.{:02},"unit":"kg"}}]}}"#,
        centi_kg / 100,
        centi_kg % 100
    )
    .into_bytes()
}

/// The weights the `bridge` device sent, from an outbox of `reading` lines, in hundredths of
/// a kg.
fn weights(outbox: &Path) -> Vec<i64> {
    outbox_lines(outbox)
        .iter()
        .filter(|r| r["kind"] == "body_weight" && r["device"]["id"] == "bridge")
        .map(|r| (r["values"][0]["value"].as_f64().unwrap() * 100.0).round() as i64)
        .collect()
}

/// A BLE Temperature Measurement (0x2A1C): Celsius, FLOAT 36.6, no time stamp.
const TEMP_2A1C: [u8; 5] = [0x00, 0x6e, 0x01, 0x00, 0xff];

const DEVICES: &str = r#"
[[device]]
id = "cuff"
driver = "ble-gatt"
room = "exam-3"
mqtt = { topic = "gw/exam3/+", payload = "binary" }

[[device]]
id = "bridge"
driver = "json"
room = "exam-4"
mqtt = { topic = "bridge/exam4", payload = "json" }

[[device]]
id = "thermo-hex"
driver = "ble-gatt"
room = "exam-5"
mqtt = { topic = "gw/exam5/+", payload = "hex" }
"#;

struct Setup {
    tmp: tempfile::TempDir,
    data: PathBuf,
    outbox: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let outbox = tmp.path().join("outbox");
        Setup { tmp, data, outbox }
    }

    /// Writes a config and returns its path. `mqtt_extra` goes into `[mqtt]`, `daemon_extra`
    /// into `[daemon]`.
    fn config(&self, name: &str, url: &str, mqtt_extra: &str, daemon_extra: &str) -> PathBuf {
        let text = format!(
            "[daemon]\ndata_dir = {:?}\nadmin_listen = \"\"\nshutdown_timeout = \"5s\"\n{daemon_extra}\n\n\
             [patient]\nmode = \"location\"\n\n\
             [mqtt]\nurl = \"{url}\"\nclient_id = \"vitalsd-{name}\"\n{mqtt_extra}\n{DEVICES}\n\
             [[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = {:?}\nformat = \"reading\"\n",
            self.data, self.outbox
        );
        let path = self.tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn daemon(&self, config: &Path, log: &str) -> Daemon {
        let d = Daemon::start(config, &self.tmp.path().join(log));
        d.wait_log("mqtt subscribed", Duration::from_secs(15));
        d
    }

    fn rejected_payloads(&self, config: &Path) -> u64 {
        let out = Command::new(env!("CARGO_BIN_EXE_vitalsd"))
            .env(crate::support::KEY_ENV, crate::support::store_key_file())
            .args(["queue", "stats", "--config"])
            .arg(config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["rejected_payloads"]
            .as_u64()
            .expect("rejected_payloads in stats")
    }
}

#[track_caller]
fn assert_each_once(got: &[i64], expected: impl Iterator<Item = i64>) {
    let mut got = got.to_vec();
    got.sort_unstable();
    let want: Vec<i64> = expected.collect();
    assert_eq!(got.len(), want.len(), "count differs: duplicates or losses");
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------------
// The daemon through the real binary.

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

/// A private CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl CLI");
        assert!(st.success(), "openssl {args:?}");
    };
    let ca = format!("{name}-ca.pem");
    let ca_key = format!("{name}-ca.key");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join(&ca),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn tls_with_a_private_ca_delivers_and_a_wrong_ca_is_refused_with_a_clear_error() {
    let s = Setup::new();
    let (ca, cert, key) = make_ca(&s.tmp.path().join("pki"), "clinic");
    let (other_ca, _, _) = make_ca(&s.tmp.path().join("pki-other"), "other");
    let tls_port = free_port();
    let broker = broker_with(
        &s.tmp.path().join("broker"),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    wait_port(tls_port);
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let cfg = s.config("tls", &url, &format!("ca_file = {ca:?}"), "");
    let d = s.daemon(&cfg, "log");
    publish(broker.port, vec![("bridge/exam4".into(), weight(8001))]);
    wait_outbox(&s.outbox, 1, Duration::from_secs(15));
    assert_eq!(weights(&s.outbox), [8001]);
    d.stop();

    let bad = Setup::new();
    let cfg = bad.config("tls-bad", &url, &format!("ca_file = {other_ca:?}"), "");
    let d = Daemon::start(&cfg, &bad.tmp.path().join("log"));
    d.wait_log("mqtt TLS handshake failed", Duration::from_secs(15));
    let log = d.log();
    assert!(
        log.contains("UnknownIssuer") || log.contains("invalid peer certificate"),
        "{log}"
    );
    assert!(!log.contains("mqtt subscribed"), "{log}");
}

#[test]
fn a_full_queue_holds_messages_unacknowledged_and_a_restart_with_room_stores_them_all() {
    let s = Setup::new();
    let broker = broker(&s.tmp.path().join("broker"));
    let tiny = s.config("full", &broker.url(), "", "queue_max_bytes = \"1KiB\"");
    // The cap counts undelivered readings only: a second sink, an HL7 engine that never
    // answers, keeps every reading pending while the outbox shows what was stored.
    let text = std::fs::read_to_string(&tiny).unwrap()
        + "\n[[sink]]\nid = \"engine\"\ntype = \"hl7-mllp\"\naddress = \"127.0.0.1:1\"\n";
    std::fs::write(&tiny, text).unwrap();
    let d = s.daemon(&tiny, "log1");
    // The first reading fits (nothing is undelivered yet) and puts the undelivered bytes over
    // the cap; the queue notices within 250 ms.
    publish(broker.port, vec![("bridge/exam4".into(), weight(6999))]);
    wait_outbox(&s.outbox, 1, Duration::from_secs(15));
    // The queue reads its size at most every 250 ms: send small rounds until it refuses.
    let mut next = 7000;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(300));
        if d.log().contains("queue refuses the message") {
            break;
        }
        publish(
            broker.port,
            (next..next + 5)
                .map(|i| ("bridge/exam4".into(), weight(i)))
                .collect(),
        );
        next += 5;
    }
    d.wait_log("queue refuses the message", Duration::from_secs(15));
    // The cap is checked against the size read at most every 250 ms: a few may get in first.
    std::thread::sleep(Duration::from_millis(500));
    let before = weights(&s.outbox).len();
    std::thread::sleep(Duration::from_millis(2500));
    let after = weights(&s.outbox).len();
    assert!(
        after < (next - 6999) as usize,
        "all stored although the queue is full"
    );
    assert_eq!(before, after, "stored although the queue is full");
    assert!(!d.log().contains("acknowledged and recorded"));
    let (st, took) = d.stop();
    assert!(st.success(), "{took:?}");

    // Nothing was acknowledged: the broker redelivers all of them to the same session.
    let roomy = s.config("full", &broker.url(), "", "");
    let d = s.daemon(&roomy, "log2");
    let until = Instant::now() + Duration::from_secs(30);
    let total = (next - 6999) as usize;
    while weights(&s.outbox).len() < total {
        assert!(
            Instant::now() < until,
            "only {} of {total}",
            weights(&s.outbox).len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&weights(&s.outbox), 6999..next);
    d.stop();
}

#[test]
fn undecodable_payloads_are_acknowledged_counted_and_recorded_without_content() {
    let s = Setup::new();
    let broker = broker(&s.tmp.path().join("broker"));
    let cfg = s.config("bad", &broker.url(), "", "");
    let d = s.daemon(&cfg, "log1");
    publish(
        broker.port,
        vec![
            ("gw/exam3/2A1C".into(), vec![0x00]), // truncated value
            ("gw/exam5/2A1C".into(), b"zz-not-hex-MRN999".to_vec()), // not hex
            ("gw/exam3/FFFF".into(), TEMP_2A1C.to_vec()), // unknown characteristic
            ("bridge/exam4".into(), b"{\"kind\":\"MRN999\"}".to_vec()), // not a reading
            ("bridge/exam4".into(), weight(9001)),
        ],
    );
    wait_outbox(&s.outbox, 1, Duration::from_secs(15));
    d.wait_log("acknowledged and recorded", Duration::from_secs(5));
    assert!(!d.log().contains("MRN999"), "payload content in the log");
    d.stop();
    assert_eq!(s.rejected_payloads(&cfg), 4);

    // They were acknowledged: a restart gets no redelivery of them.
    let d = s.daemon(&cfg, "log2");
    publish(broker.port, vec![("bridge/exam4".into(), weight(9002))]);
    wait_outbox(&s.outbox, 2, Duration::from_secs(15));
    d.stop();
    assert_eq!(s.rejected_payloads(&cfg), 4);
    assert_each_once(&weights(&s.outbox), 9001..9003);
}

// ---------------------------------------------------------------------------------------------
// The mqtt sink, in process.

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

// ---------------------------------------------------------------------------------------------
// Benchmark: cargo test --release --test mqtt -- --ignored --nocapture

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
