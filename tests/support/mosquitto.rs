//! A real Mosquitto for the MQTT tests: its own config, persistence directory and free port,
//! killed when dropped. `scripts/test` installs Mosquitto when it is missing.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Mosquitto process; killed when dropped.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: String,
}

pub use super::free_port;

fn bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Mosquitto {
        Self::start_with(dir, "")
    }

    /// `extra` is appended to the config (more listeners, TLS files, `max_inflight_messages`).
    pub fn start_with(dir: &Path, extra: &str) -> Mosquitto {
        let mut m = Mosquitto {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            extra: extra.to_string(),
        };
        m.launch();
        m
    }

    fn launch(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("broker dir");
        let conf = self.dir.join("mosquitto.conf");
        let text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\n\
             persistence_location {}/\nmax_queued_messages 1000000\nlog_dest file {}\n{}\n",
            self.port,
            self.dir.display(),
            self.dir.join("broker.log").display(),
            self.extra
        );
        std::fs::write(&conf, text).expect("broker config");
        let child = Command::new(bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is not installed: run scripts/test, which installs it");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGTERM (Mosquitto saves its persistence file), wait, start again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Publishes every `(topic, payload)` at QoS 1 as a new client and returns once the broker
/// acknowledged all of them (60 s at most).
pub async fn publish_all(port: u16, msgs: Vec<(String, Vec<u8>)>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
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
        client
            .publish(t, QoS::AtLeastOnce, false, p)
            .await
            .expect("publish");
    }
    tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .expect("all PUBACKs within 60 s")
        .expect("publisher");
    let _ = client.disconnect().await;
}

/// [`publish_all`] from a test's thread, on a runtime of its own.
pub fn publish(port: u16, msgs: Vec<(String, Vec<u8>)>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(publish_all(port, msgs));
}

/// A `json` driver body weight sent now; `centi` (hundredths of a kg) tells messages apart.
pub fn weight(centi: i64) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("ns")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    weight_at(centi, &now)
}

/// [`weight`] with the device time `device_time` (RFC 3339).
pub fn weight_at(centi: i64, device_time: &str) -> Vec<u8> {
    format!(
        r#"{{"kind":"body_weight","device_time":"{device_time}","values":[{{"name":"weight","value":{}.{:02},"unit":"kg"}}]}}"#,
        centi / 100,
        centi % 100
    )
    .into_bytes()
}
