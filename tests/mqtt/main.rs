//! The MQTT source and sink against a real Mosquitto that each test starts on a free port
//! (`scripts/test` installs it): delivery, kill -9 of the daemon, broker restart, TLS,
//! backpressure, undecodable payloads, the mqtt sink, and an ignored benchmark.

// Counts and weights in these tests are small and positive.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod delivery;
mod limits;
mod sink;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::mosquitto::{free_port, publish, publish_all, weight, Mosquitto};
use support::{outbox_lines, wait_outbox, Daemon, DaemonBuilder, Device, Sink};

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
        DaemonBuilder::new(self.tmp.path())
            .data_dir(&self.data)
            .daemon(daemon_extra)
            .patient_mode("location")
            .mqtt(url, &format!("vitalsd-{name}"))
            .mqtt_line(mqtt_extra)
            .device(Device::mqtt(
                "cuff",
                "ble-gatt",
                "exam-3",
                "gw/exam3/+",
                "binary",
            ))
            .device(Device::mqtt(
                "bridge",
                "json",
                "exam-4",
                "bridge/exam4",
                "json",
            ))
            .device(Device::mqtt(
                "thermo-hex",
                "ble-gatt",
                "exam-5",
                "gw/exam5/+",
                "hex",
            ))
            .sink(Sink::file("outbox", &self.outbox, "reading"))
            .write_as(&format!("{name}.toml"))
    }

    fn daemon(&self, config: &Path, log: &str) -> Daemon {
        let d = Daemon::start(config, &self.tmp.path().join(log));
        d.wait_log("mqtt subscribed", Duration::from_secs(15));
        d
    }

    fn rejected_payloads(&self, config: &Path) -> u64 {
        let out = support::vitalsd_with_config(config, &["queue", "stats"]);
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
