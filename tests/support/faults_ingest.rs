//! The device side of the fault matrix (tests/faults.rs): the shared Mosquitto and PTY (whose
//! unread input the feeder throws away: the bytes a real device sends while nobody listens are
//! lost), a QoS 1 publisher with a persistent session, and a serial feeder that writes a frame
//! only after the previous one was seen stored through the admin API.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::rig::{stored_by, try_get};

pub use crate::support::mosquitto::{weight, Mosquitto as Broker};
pub use crate::support::Pty as Port;

// ------------------------------------------------------------------ the serial frames

/// The `nonin-ascii` line of serial frame `(spo2, heart rate)`.
pub fn nonin_line((spo2, hr): (u32, u32)) -> Vec<u8> {
    format!("SPO2={spo2:03} HR={hr:03}\r\n").into_bytes()
}

/// The `i`-th frame: distinct from the 12,749 before it, and both values differ from those of
/// the 50 frames before it, so the listener's store tells frames apart by their values.
pub fn frame(i: u32) -> (u32, u32) {
    (50 + i % 51, 30 + i % 250)
}

// ------------------------------------------------------------------ the publisher

/// What the publisher sent and which of it the broker acknowledged (PUBACK).
#[derive(Debug, Default)]
pub struct PubLog {
    pub sent: BTreeSet<i64>,
    pub acked: BTreeSet<i64>,
}

/// A QoS 1 publisher with its own persistent session, one message in flight at a time: a
/// message is acked or, across a broker restart, resent by rumqttc after reconnecting.
pub struct Publisher {
    pub log: Arc<Mutex<PubLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    /// Publishes `weight(v)` for each `v` to `topic`, `pace` apart, until done or stopped.
    pub fn start(port: u16, topic: &str, values: Vec<i64>, pace: Duration) -> Publisher {
        let log: Arc<Mutex<PubLog>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s, topic) = (log.clone(), stop.clone(), topic.to_string());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(publish(port, topic, values, pace, l, s));
        });
        Publisher {
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops after the message in flight; returns the log.
    pub fn finish(mut self) -> PubLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("publisher thread");
        }
        std::mem::take(&mut *self.log.lock().expect("log"))
    }

    /// Waits until every message is published and acked; returns the log.
    pub fn join(mut self) -> PubLog {
        if let Some(t) = self.thread.take() {
            t.join().expect("publisher thread");
        }
        std::mem::take(&mut *self.log.lock().expect("log"))
    }

    pub fn acked(&self) -> usize {
        self.log.lock().expect("log").acked.len()
    }
}

async fn publish(
    port: u16,
    topic: String,
    values: Vec<i64>,
    pace: Duration,
    log: Arc<Mutex<PubLog>>,
    stop: Arc<AtomicBool>,
) {
    let mut opts = MqttOptions::new(format!("faults-pub-{port}"), "127.0.0.1", port);
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(opts, 10);
    for v in values {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        log.lock().expect("log").sent.insert(v);
        client
            .publish(&topic, QoS::AtLeastOnce, false, weight(v))
            .await
            .expect("queue publish");
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < until, "no PUBACK for {v} within 30 s");
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(_) => {}
                // The broker restarts: poll again to reconnect; the publish is resent.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        log.lock().expect("log").acked.insert(v);
        tokio::time::sleep(pace).await;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), el.poll()).await;
}

// ------------------------------------------------------------------ the serial feeder

/// Which daemon is alive, shared by the feeder and the test that kills it.
#[derive(Default)]
pub struct Life {
    state: Mutex<LifeState>,
}

#[derive(Default)]
struct LifeState {
    generation: u64,
    admin: Option<String>,
    /// Frames written to this generation.
    written: u64,
}

impl Life {
    /// A new daemon answers at `admin`.
    pub fn up(&self, admin: String) {
        let mut s = self.state.lock().expect("life");
        s.generation += 1;
        s.admin = Some(admin);
        s.written = 0;
    }

    /// Runs `kill` with no frame being written, then marks the daemon dead.
    pub fn down(&self, kill: impl FnOnce()) {
        let mut s = self.state.lock().expect("life");
        kill();
        s.admin = None;
    }

    fn generation(&self) -> (u64, bool) {
        let s = self.state.lock().expect("life");
        (s.generation, s.admin.is_some())
    }
}

/// The frames written, and those seen stored before the next was written.
#[derive(Debug, Default)]
pub struct FeedLog {
    pub written: BTreeSet<(u32, u32)>,
    pub confirmed: BTreeSet<(u32, u32)>,
}

/// Feeds `nonin-ascii` frames to device `ox` on `port`: each frame is written only while a
/// daemon is alive, and the next only after this one's two readings show in that daemon's
/// `/api/status` (confirmed) or that daemon was killed (in doubt).
pub struct Feeder {
    pub log: Arc<Mutex<FeedLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    pub fn start(port: Arc<Port>, life: Arc<Life>, pace: Duration) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<FeedLog>> = Arc::default();
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || feed(&port, &life, pace, &s, &l));
        Feeder {
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn confirmed(&self) -> usize {
        self.log.lock().expect("feed log").confirmed.len()
    }

    /// Stops after the frame in flight; returns the log.
    pub fn finish(mut self) -> FeedLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("feeder thread");
        }
        std::mem::take(&mut *self.log.lock().expect("feed log"))
    }
}

fn feed(port: &Port, life: &Life, pace: Duration, stop: &AtomicBool, log: &Mutex<FeedLog>) {
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let f = frame(i);
        let written = {
            let mut s = life.state.lock().expect("life");
            match s.admin.clone() {
                Some(admin) => {
                    port.send(&nonin_line(f));
                    s.written += 1;
                    Some((s.generation, admin, s.written * 2))
                }
                None => None,
            }
        };
        let Some((generation, admin, expect)) = written else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        log.lock().expect("feed log").written.insert(f);
        i += 1;
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if life.generation() != (generation, true) {
                break; // killed: this frame is in doubt
            }
            let stored = try_get(&admin, "/api/status").and_then(|s| stored_by(&s, "ox"));
            if stored.is_some_and(|n| n >= expect) {
                log.lock().expect("feed log").confirmed.insert(f);
                break;
            }
            assert!(Instant::now() < until, "frame {f:?} not stored within 20 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        // At most 40 frames a second: see [`frame`].
        std::thread::sleep(pace.max(Duration::from_millis(25)));
    }
}
