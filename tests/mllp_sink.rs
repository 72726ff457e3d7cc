//! The HL7 v2 sink over MLLP against real MLLP receivers written here (port 0): ACK handling,
//! resend of the same bytes, order across an outage, dead-letters through the real queue and
//! delivery loop, and the daemon itself (serial PTY json device → hl7-mllp sink), restarted
//! after a partial delivery. Every message is validated with the independent `hl7-parser`.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::macros::datetime;
use tokio_util::sync::CancellationToken;
use vitalsd::config::MllpSinkConfig;
use vitalsd::queue::{Queue, QueueOptions};
use vitalsd::reading::{
    Decimal, DeviceId, DeviceInfo, Kind, PatientRef, Reading, ReadingId, SinkId, Ucum, Value,
};
use vitalsd::sink::mllp::MllpSink;
use vitalsd::sink::{run_delivery, Outcome, RetryPolicy, Sink};

// ---------------------------------------------------------------------------------------------
// A test MLLP receiver: std threads, its own framing, de-duplication on MSH-10.

/// What the receiver answers to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Ack(&'static str),
    /// An AA whose MSA-2 names another message.
    WrongId,
    /// Close the connection without answering.
    Close,
    /// Keep the connection, never answer.
    Silent,
    /// Answer AA, then close the connection (an engine that drops idle clients).
    AckThenClose,
}

type Policy = Arc<dyn Fn(usize, &str) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    /// Every message received (framing removed), in arrival order.
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    /// MSH-10 of every message answered AA, first time only (an engine de-duplicating).
    accepted: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start(policy: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), Arc::new(policy))
    }

    fn start_on(addr: SocketAddr, policy: Policy) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind receiver");
        let r = Receiver {
            addr: listener.local_addr().expect("addr"),
            got: Arc::default(),
            accepted: Arc::default(),
            connections: Arc::default(),
        };
        let rx = r.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                *rx.connections.lock().expect("lock") += 1;
                let (rx, policy) = (rx.clone(), policy.clone());
                std::thread::spawn(move || rx.serve(stream, &*policy));
            }
        });
        r
    }

    fn serve(&self, mut s: TcpStream, policy: &(dyn Fn(usize, &str) -> Reply + Send + Sync)) {
        let _ = s.set_nodelay(true);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(2).position(|w| w == [0x1C, 0x0D]) {
                let frame: Vec<u8> = buf.drain(..end + 2).collect();
                let start = frame.iter().position(|&b| b == 0x0B).expect("start block");
                let msg = frame[start + 1..frame.len() - 2].to_vec();
                let id = msh10(&msg);
                let index = {
                    let mut got = self.got.lock().expect("lock");
                    got.push(msg);
                    got.len() - 1
                };
                let reply = policy(index, &id);
                let answer = match reply {
                    Reply::Ack(code) => {
                        if code == "AA" {
                            let mut acc = self.accepted.lock().expect("lock");
                            if !acc.contains(&id) {
                                acc.push(id.clone());
                            }
                        }
                        ack(code, &id)
                    }
                    Reply::WrongId => ack("AA", "some-other-message"),
                    Reply::Close => return,
                    Reply::AckThenClose => {
                        let _ = s.write_all(&ack("AA", &id));
                        self.accepted.lock().expect("lock").push(id);
                        return;
                    }
                    Reply::Silent => continue,
                };
                if s.write_all(&answer).is_err() {
                    return;
                }
            }
        }
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        self.got.lock().expect("lock").clone()
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().expect("lock").clone()
    }
}

fn ack(code: &str, id: &str) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|EHR|CLINIC_A|VITALSD||20261127120000+0000||ACK^R01^ACK|EHR-{id}|P|2.6\rMSA|{code}|{id}\r"
    );
    if code != "AA" {
        m.push_str(
            "ERR||PID^1^3|101^Required field missing^HL70357|E||||Patient identifier missing\r",
        );
    }
    let mut v = vec![0x0B];
    v.extend_from_slice(m.as_bytes());
    v.extend_from_slice(&[0x1C, 0x0D]);
    v
}

fn msh10(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    text.split('\r')
        .next()
        .and_then(|msh| msh.split('|').nth(9))
        .unwrap_or("")
        .to_string()
}

/// Parses with the independent `hl7-parser` and checks the docs/hl7-inbound.md#a-complete-example layout.
#[track_caller]
fn check_layout(msg: &[u8]) -> (String, Vec<String>) {
    let text = std::str::from_utf8(msg).expect("UTF-8");
    assert!(!text.contains('\n'), "segments end with CR only");
    let m = hl7_parser::Message::parse(text).expect("hl7-parser accepts the message");
    let names: Vec<&str> = m.segments().map(|s| s.name).collect();
    assert_eq!(&names[..4], ["MSH", "PID", "PV1", "OBR"], "{names:?}");
    assert!(
        names[4..].iter().all(|n| *n == "OBX" || *n == "NTE"),
        "{names:?}"
    );
    let f = |seg: &str, n: usize| -> String {
        m.segment(seg)
            .and_then(|s| s.field(n))
            .map(|f| f.raw_value().to_string())
            .unwrap_or_default()
    };
    assert_eq!(f("MSH", 9), "ORU^R01^ORU_R01");
    assert_eq!(f("MSH", 11), "P");
    assert_eq!(f("MSH", 12), "2.6");
    assert_eq!((f("MSH", 15), f("MSH", 16)), ("AL".into(), "NE".into()));
    assert_eq!(f("MSH", 21), vitalsd::sink::hl7::PROFILE);
    assert_eq!(f("OBR", 4), vitalsd::sink::hl7::SERVICE);
    let id = f("MSH", 10);
    assert!(
        id.parse::<ReadingId>().is_ok(),
        "MSH-10 is the reading id: {id}"
    );
    let obx: Vec<String> = (1..=m.segment_count("OBX"))
        .map(|i| {
            let s = m.segment_n("OBX", i).expect("OBX");
            let g = |n: usize| s.field(n).map(|f| f.raw_value()).unwrap_or("").to_string();
            assert_eq!(g(1), i.to_string(), "OBX-1 set id");
            assert_eq!(g(2), "NM");
            assert_eq!(g(11), "F");
            assert_eq!(g(14).len(), "20261127120000+0000".len(), "OBX-14 time");
            assert!(g(3).contains("^MDC^"), "OBX-3 MDC first: {}", g(3));
            assert!(g(6).ends_with("^UCUM"), "OBX-6 UCUM alternate: {}", g(6));
            format!("{}={}|{}", g(3), g(5), g(18))
        })
        .collect();
    (id, obx)
}

// ---------------------------------------------------------------------------------------------
// Readings, sinks, queues.

fn reading(i: i64) -> Reading {
    let t = datetime!(2026-11-27 12:00:00 UTC) + time::Duration::seconds(i);
    let v = |name: &str, code: &str, mdc: u32, x: i64| Value {
        code: code.into(),
        mdc: Some(mdc),
        name: name.into(),
        value: Some(Decimal::from_int(x)),
        unit: Ucum::new("mm[Hg]"),
        site: None,
        absent: None,
    };
    Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: DeviceId::new("exam3-cuff"),
            driver: "json".into(),
            model: None,
            serial: None,
        },
        room: Some("exam-3".into()),
        patient: Some(PatientRef {
            id: "MRN0012345".into(),
            system: "urn:oid:2.16.840.1.113883.3.999".into(),
        }),
        patient_record: None,
        kind: Kind::BloodPressure,
        observed_at: t,
        received_at: t,
        device_time: Some(t),
        values: vec![
            v("systolic", "8480-6", 150_021, 100 + i),
            v("diastolic", "8462-4", 150_022, 70),
        ],
        flags: Vec::new(),
        waveform: None,
    }
}

fn sink_config(addr: SocketAddr, ack_timeout: Duration, max_ar: u32) -> MllpSinkConfig {
    MllpSinkConfig {
        id: SinkId::new("engine"),
        address: addr.to_string(),
        ack_timeout,
        tls: false,
        ca_file: None,
        max_ar_retries: max_ar,
        sending_application: "VITALSD".into(),
        sending_facility: "CLINIC_A".into(),
        receiving_application: "EHR".into(),
        receiving_facility: "CLINIC_A".into(),
        waveform: false,
    }
}

fn sink(addr: SocketAddr, ack_timeout: Duration, max_ar: u32) -> MllpSink {
    MllpSink::new(&sink_config(addr, ack_timeout, max_ar)).expect("sink")
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts_per_reading: 10,
    }
}

/// A queue in `dir` with `readings` enqueued, and the delivery loop running `sink` on it.
async fn deliver_through_queue(
    dir: &std::path::Path,
    sink: MllpSink,
    readings: Vec<Reading>,
) -> (Queue, CancellationToken, tokio::task::JoinHandle<()>) {
    let q = Queue::open(dir, QueueOptions::new(vec![SinkId::new("engine")])).expect("queue");
    q.enqueue(readings).await.expect("enqueue");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_delivery(
        q.clone(),
        Box::new(sink),
        fast_policy(),
        cancel.clone(),
        None,
    ));
    (q, cancel, task)
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pending(q: &Queue) -> u64 {
    q.stats()
        .expect("stats")
        .sinks
        .iter()
        .map(|s| s.pending)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The sink against receivers.

#[tokio::test]
async fn an_accepted_message_is_delivered_and_has_the_pcd01_layout() {
    let rx = Receiver::start(|_, _| Reply::Ack("AA"));
    let mut s = sink(rx.addr, Duration::from_secs(5), 5);
    assert_eq!(s.max_batch(), 1);
    let r = reading(1);
    assert_eq!(
        s.deliver(std::slice::from_ref(&r)).await,
        vec![Outcome::Delivered]
    );
    assert_eq!(s.deliver(&[reading(2)]).await, vec![Outcome::Delivered]);
    let msgs = rx.messages();
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        *rx.connections.lock().expect("lock"),
        1,
        "one connection for both"
    );
    let (id, obx) = check_layout(&msgs[0]);
    assert_eq!(id, r.id.expect("id").to_string());
    assert_eq!(
        obx,
        [
            "150021^MDC_PRESS_BLD_NONINV_SYS^MDC^8480-6^Systolic blood pressure^LN=101|exam3-cuff",
            "150022^MDC_PRESS_BLD_NONINV_DIA^MDC^8462-4^Diastolic blood pressure^LN=70|exam3-cuff",
        ]
    );
    let m =
        hl7_parser::Message::parse(std::str::from_utf8(&msgs[0]).expect("utf-8")).expect("parse");
    let f = |q: &str| {
        m.query(q)
            .map(|r| r.raw_value().to_string())
            .unwrap_or_default()
    };
    assert_eq!(f("MSH.3"), "VITALSD");
    assert_eq!(f("MSH.4"), "CLINIC_A");
    assert_eq!(f("MSH.5"), "EHR");
    assert_eq!(f("PID.3"), "MRN0012345^^^&2.16.840.1.113883.3.999&ISO^MR");
    assert_eq!(f("PV1.3"), "^exam-3");
    assert_eq!(f("OBX.6"), "266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM");
}

#[tokio::test]
async fn delimiters_in_a_room_name_survive_the_round_trip() {
    let rx = Receiver::start(|_, _| Reply::Ack("AA"));
    let mut s = sink(rx.addr, Duration::from_secs(5), 5);
    let mut r = reading(1);
    let room = r"exam|3^a~b\c&d";
    r.room = Some(room.into());
    r.device.id = DeviceId::new("cuff&1|x");
    assert_eq!(s.deliver(&[r]).await, vec![Outcome::Delivered]);
    let msg = String::from_utf8(rx.messages()[0].clone()).expect("utf-8");
    check_layout(msg.as_bytes());
    let m = hl7_parser::Message::parse(&msg).expect("parse");
    let pv1 = m.segment("PV1").expect("PV1");
    assert_eq!(pv1.fields().count(), 3, "no field split by the room name");
    let room_field = pv1.field(3).expect("PV1-3");
    let c2 = room_field.component(2).expect("PV1-3.2");
    assert!(!c2.has_subcomponents());
    // Escaped, the room is longer than PL-2's 20 characters: PL-2 holds what fits, PL-9
    // (location description) the whole room.
    assert_eq!(c2.display(&m.separators).to_string(), r"exam|3^a~b\c");
    let c9 = room_field.component(9).expect("PV1-3.9");
    assert_eq!(c9.display(&m.separators).to_string(), room);
    let obx = m.segment("OBX").expect("OBX");
    let device = obx.field(18).expect("OBX-18");
    assert_eq!(device.display(&m.separators).to_string(), "cuff&1|x");
}

#[tokio::test]
async fn a_connection_dropped_before_the_ack_is_resent_with_the_same_bytes() {
    // The first message is received, then the connection drops before any ACK.
    let rx = Receiver::start(|i, _| {
        if i == 0 {
            Reply::Close
        } else {
            Reply::Ack("AA")
        }
    });
    let mut s = sink(rx.addr, Duration::from_secs(5), 5);
    let r = reading(1);
    let first = s.deliver(std::slice::from_ref(&r)).await;
    assert!(
        matches!(&first[..], [Outcome::Retry(w)] if w.contains("before the ACK")),
        "{first:?}"
    );
    assert!(!s.is_connected(), "the broken connection is closed");
    assert_eq!(
        s.deliver(std::slice::from_ref(&r)).await,
        vec![Outcome::Delivered]
    );
    let msgs = rx.messages();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0], msgs[1], "the resend is byte-identical (MSH-7 too)");
    assert_eq!(rx.accepted(), [r.id.expect("id").to_string()]);
    assert_eq!(*rx.connections.lock().expect("lock"), 2, "reconnected");
}

#[tokio::test]
async fn an_ack_for_another_message_is_ignored_until_the_timeout() {
    let rx = Receiver::start(|i, _| {
        if i == 0 {
            Reply::WrongId
        } else {
            Reply::Ack("AA")
        }
    });
    let mut s = sink(rx.addr, Duration::from_millis(400), 5);
    let r = reading(1);
    let t0 = Instant::now();
    let out = s.deliver(std::slice::from_ref(&r)).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(w)] if w.contains("no ACK")),
        "{out:?}"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "waited for the real ACK"
    );
    assert_eq!(
        s.deliver(std::slice::from_ref(&r)).await,
        vec![Outcome::Delivered]
    );
    let msgs = rx.messages();
    assert_eq!(msgs[0], msgs[1]);
}

#[tokio::test]
async fn a_silent_receiver_times_out_and_gets_the_same_message_again() {
    let rx = Receiver::start(|i, _| {
        if i == 0 {
            Reply::Silent
        } else {
            Reply::Ack("AA")
        }
    });
    let mut s = sink(rx.addr, Duration::from_millis(300), 5);
    let r = reading(1);
    assert!(s.deliver(std::slice::from_ref(&r)).await[0].is_retry());
    assert_eq!(
        s.deliver(std::slice::from_ref(&r)).await,
        vec![Outcome::Delivered]
    );
    assert_eq!(rx.messages()[0], rx.messages()[1]);
}

#[tokio::test]
async fn a_connection_the_receiver_closed_while_idle_is_replaced_without_a_retry() {
    let rx = Receiver::start(|_, _| Reply::AckThenClose);
    let mut s = sink(rx.addr, Duration::from_secs(5), 5);
    for i in 0..3 {
        assert_eq!(s.deliver(&[reading(i)]).await, vec![Outcome::Delivered]);
        // Let the close reach the sink before the next message.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rx.messages().len(), 3, "each message sent once");
    assert_eq!(*rx.connections.lock().expect("lock"), 3);
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut s = sink(addr, Duration::from_secs(2), 5);
    let out = s.deliver(&[reading(1)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(w)] if w.contains("connect")),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Through the real queue and delivery loop.

#[tokio::test]
async fn an_application_error_ack_dead_letters_the_reading_and_the_rest_flows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bad, good) = (reading(1), reading(2));
    let bad_id = bad.id.expect("id").to_string();
    let b = bad_id.clone();
    let rx = Receiver::start(move |_, id| {
        if id == b {
            Reply::Ack("AE")
        } else {
            Reply::Ack("AA")
        }
    });
    let s = sink(rx.addr, Duration::from_secs(5), 5);
    let (q, cancel, task) = deliver_through_queue(tmp.path(), s, vec![bad, good.clone()]).await;
    wait_until("both settled", Duration::from_secs(10), || pending(&q) == 0).await;
    cancel.cancel();
    task.await.expect("delivery loop");
    let dead = q.dead(None, 10).expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id.to_string(), bad_id);
    assert_eq!(
        dead[0].reason, "AE (application error): ERR 101 Required field missing, severity E",
        "the coded reason only, never the receiver's ERR-8 text"
    );
    assert_eq!(rx.accepted(), [good.id.expect("id").to_string()]);
    assert_eq!(rx.messages().len(), 2, "an AE is never resent");
}

#[tokio::test]
async fn repeated_application_rejects_dead_letter_after_the_cap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(|_, _| Reply::Ack("AR"));
    let s = sink(rx.addr, Duration::from_secs(5), 3);
    let (q, cancel, task) = deliver_through_queue(tmp.path(), s, vec![reading(1)]).await;
    wait_until("dead-lettered", Duration::from_secs(10), || {
        pending(&q) == 0
    })
    .await;
    cancel.cancel();
    task.await.expect("delivery loop");
    let dead = q.dead(None, 10).expect("dead");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.starts_with("gave up after 3 AR: "),
        "{}",
        dead[0].reason
    );
    let msgs = rx.messages();
    assert_eq!(msgs.len(), 3, "sent exactly max_ar_retries times");
    assert!(
        msgs.iter().all(|m| *m == msgs[0]),
        "every resend is the same bytes"
    );
}

#[tokio::test]
async fn a_receiver_down_for_a_while_then_up_gets_everything_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A port nobody listens on, until the receiver starts on it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let readings: Vec<Reading> = (0..20).map(reading).collect();
    let want: Vec<String> = readings
        .iter()
        .map(|r| r.id.expect("id").to_string())
        .collect();
    let s = sink(addr, Duration::from_secs(2), 5);
    let (q, cancel, task) = deliver_through_queue(tmp.path(), s, readings).await;
    // Let the loop fail and rotate through the readings for a while.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        pending(&q),
        20,
        "nothing delivered, nothing dead-lettered while down"
    );
    let rx = Receiver::start_on(addr, Arc::new(|_, _| Reply::Ack("AA")));
    wait_until("all delivered", Duration::from_secs(15), || {
        pending(&q) == 0
    })
    .await;
    cancel.cancel();
    task.await.expect("delivery loop");
    assert_eq!(rx.accepted(), want, "capture order at the receiver");
    assert!(q.dead(None, 10).expect("dead").is_empty());
    let unique: HashSet<String> = rx.messages().iter().map(|m| msh10(m)).collect();
    assert_eq!(unique.len(), 20);
}

// ---------------------------------------------------------------------------------------------
// The real daemon.

fn daemon_config(data: &std::path::Path, pty: &std::path::Path, addr: SocketAddr) -> String {
    format!(
        r#"[daemon]
data_dir = {data:?}
admin_listen = ""
shutdown_timeout = "5s"

[patient]
mode = "location"

[[device]]
id = "bridge"
driver = "json"
room = "exam-2"
serial = {{ path = {pty:?} }}

[[sink]]
id = "engine"
type = "hl7-mllp"
address = "{addr}"
ack_timeout = "1s"
sending_application = "VITALSD_EAST"
receiving_application = "EHR"
"#
    )
}

fn bp_line(i: u32) -> String {
    format!(
        r#"{{"kind":"blood_pressure","device_time":"2026-11-27T10:{i:02}:00Z","values":[{{"name":"systolic","value":{},"unit":"mm[Hg]"}},{{"name":"diastolic","value":79,"unit":"mm[Hg]"}}]}}"#,
        110 + i
    ) + "\n"
}

#[test]
fn the_daemon_restarted_after_partial_delivery_delivers_the_rest_exactly_once() {
    use support::{Daemon, Pty};
    let tmp = tempfile::tempdir().expect("tempdir");
    // 0 = answer AA, 1 = stay silent.
    let mode = Arc::new(AtomicU8::new(0));
    let m = mode.clone();
    let rx = Receiver::start(move |_, _| {
        if m.load(Ordering::SeqCst) == 0 {
            Reply::Ack("AA")
        } else {
            Reply::Silent
        }
    });
    let pty = Pty::new();
    let cfg = tmp.path().join("vitalsd.toml");
    std::fs::write(
        &cfg,
        daemon_config(&tmp.path().join("data"), &pty.path, rx.addr),
    )
    .expect("cfg");
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let d = Daemon::start(&cfg, &tmp.path().join("log1"));
    d.wait_log("serial port open", Duration::from_secs(10));
    pty.send(bp_line(1).as_bytes());
    pty.send(bp_line(2).as_bytes());
    wait("two accepted", &|| rx.accepted().len() == 2);
    mode.store(1, Ordering::SeqCst);
    pty.send(bp_line(3).as_bytes());
    wait("the third received, unanswered", &|| {
        rx.messages().len() >= 3
    });
    let (status, _) = d.stop();
    assert!(status.success(), "clean stop: {status:?}");

    mode.store(0, Ordering::SeqCst);
    let d = Daemon::start(&cfg, &tmp.path().join("log2"));
    wait("the third accepted after the restart", &|| {
        rx.accepted().len() == 3
    });
    d.wait_log("serial port open", Duration::from_secs(10));
    pty.send(bp_line(4).as_bytes());
    wait("the fourth accepted", &|| rx.accepted().len() == 4);
    let (status, _) = d.stop();
    assert!(status.success());

    let msgs = rx.messages();
    let mut by_id: Vec<(String, Vec<u8>)> = Vec::new();
    for m in &msgs {
        let (id, obx) = check_layout(m);
        assert!(obx[0].ends_with("|bridge"), "OBX-18 is the device: {obx:?}");
        let text = std::str::from_utf8(m).expect("utf-8");
        assert!(text.contains("\rPV1||O|^exam-2\r"), "room in PV1-3");
        assert!(
            text.starts_with("MSH|^~\\&|VITALSD_EAST||EHR|"),
            "configured header"
        );
        match by_id.iter().find(|(i, _)| *i == id) {
            Some((_, first)) => assert_eq!(first, m, "every resend of {id} is byte-identical"),
            None => by_id.push((id, m.clone())),
        }
    }
    let order: Vec<String> = by_id.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(rx.accepted(), order, "accepted once each, in capture order");
    let systolic: Vec<String> = by_id
        .iter()
        .map(|(_, m)| {
            let text = String::from_utf8_lossy(m).to_string();
            let obx = text
                .split('\r')
                .find(|l| l.starts_with("OBX|1|"))
                .unwrap_or("")
                .to_string();
            obx.split('|').nth(5).unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(systolic, ["111", "112", "113", "114"]);
    assert!(
        msgs.len() > 4,
        "the unanswered third was sent again after the restart"
    );
}

// ---------------------------------------------------------------------------------------------
// Figure: backlog drain rate to a local receiver.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test --release --test mllp_sink -- --ignored --nocapture"]
async fn drain_rate_to_a_local_mllp_receiver() {
    const N: i64 = 5000;
    let tmp = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(|_, _| Reply::Ack("AA"));
    let q = Queue::open(tmp.path(), QueueOptions::new(vec![SinkId::new("engine")])).expect("queue");
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        q.enqueue(chunk.iter().map(|&i| reading(i)).collect())
            .await
            .expect("enqueue");
    }
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    let task = tokio::spawn(run_delivery(
        q.clone(),
        Box::new(sink(rx.addr, Duration::from_secs(5), 5)),
        fast_policy(),
        cancel.clone(),
        None,
    ));
    wait_until("drained", Duration::from_secs(300), || pending(&q) == 0).await;
    let secs = t0.elapsed().as_secs_f64();
    cancel.cancel();
    task.await.expect("delivery loop");
    assert_eq!(rx.accepted().len(), usize::try_from(N).expect("n"));
    // The same readings straight through the sink, without the queue's per-settle flush.
    let mut direct = sink(rx.addr, Duration::from_secs(5), 5);
    let batch: Vec<Reading> = (0..N).map(reading).collect();
    let t1 = Instant::now();
    for r in &batch {
        assert_eq!(
            direct.deliver(std::slice::from_ref(r)).await,
            vec![Outcome::Delivered]
        );
    }
    let direct_secs = t1.elapsed().as_secs_f64();
    println!(
        "MLLP sink alone: {N} messages in {direct_secs:.2} s = {:.0} messages/s",
        N as f64 / direct_secs
    );
    println!(
        "MLLP drain: {N} readings in {secs:.2} s = {:.0} readings/s (one message per ACK, local receiver)",
        N as f64 / secs
    );
}

// ---------------------------------------------------------------------------------------------
// TLS: a private CA and a `localhost` certificate made with the openssl CLI.

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_sink_speaks_mllp_over_tls_trusting_the_configured_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        d,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );

    vitalsd::tls::init();
    let certs = vitalsd::tls::load_certs(&d.join("leaf.pem")).expect("leaf");
    let key = vitalsd::tls::load_key(&d.join("leaf.key")).expect("key");
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, g) = (acceptor.clone(), g.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // A client that does not trust this server fails the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.ends_with(&[0x1C, 0x0D]) {
                    match tls.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let msg = buf[1..buf.len() - 2].to_vec();
                let id = msh10(&msg);
                g.lock().expect("lock").push(msg);
                tls.write_all(&ack("AA", &id)).await.expect("write ACK");
                tls.flush().await.expect("flush");
                // Keep the session open until the client is done.
                let _ = tls.read(&mut chunk).await;
            });
        }
    });

    let mut cfg = sink_config(
        "127.0.0.1:1".parse().expect("addr"),
        Duration::from_secs(5),
        5,
    );
    cfg.address = format!("localhost:{port}");
    cfg.tls = true;
    cfg.ca_file = Some(d.join("ca.pem"));
    let mut s = MllpSink::new(&cfg).expect("TLS sink");
    let r = reading(1);
    assert_eq!(
        s.deliver(std::slice::from_ref(&r)).await,
        vec![Outcome::Delivered]
    );
    let msgs = got.lock().expect("lock").clone();
    assert_eq!(msgs.len(), 1);
    assert_eq!(check_layout(&msgs[0]).0, r.id.expect("id").to_string());

    // A sink that trusts another CA refuses the server: retried, never delivered.
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "other.key",
                "-out",
                "other.pem",
                "-days",
                "2",
                "-subj",
                "/CN=other-ca",
            ],
        ]
        .concat(),
    );
    cfg.ca_file = Some(d.join("other.pem"));
    let mut s = MllpSink::new(&cfg).expect("TLS sink");
    let out = s.deliver(&[reading(2)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(w)] if w.contains("TLS handshake") && !w.contains("timed out")),
        "{out:?}"
    );
    assert_eq!(
        got.lock().expect("lock").len(),
        1,
        "nothing sent to an untrusted server"
    );
}
