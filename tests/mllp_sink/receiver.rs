//! A test MLLP receiver: std threads, its own framing, de-duplication on MSH-10, scripted
//! replies; ACK building and the checks of a received message's layout.

use super::*;

/// What the receiver answers to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
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

pub(crate) type Policy = Arc<dyn Fn(usize, &str) -> Reply + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    /// Every message received (framing removed), in arrival order.
    pub(crate) got: Arc<Mutex<Vec<Vec<u8>>>>,
    /// MSH-10 of every message answered AA, first time only (an engine de-duplicating).
    pub(crate) accepted: Arc<Mutex<Vec<String>>>,
    pub(crate) connections: Arc<Mutex<usize>>,
}

impl Receiver {
    pub(crate) fn start(policy: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), Arc::new(policy))
    }

    pub(crate) fn start_on(addr: SocketAddr, policy: Policy) -> Receiver {
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

    pub(crate) fn serve(
        &self,
        mut s: TcpStream,
        policy: &(dyn Fn(usize, &str) -> Reply + Send + Sync),
    ) {
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

    pub(crate) fn messages(&self) -> Vec<Vec<u8>> {
        self.got.lock().expect("lock").clone()
    }

    pub(crate) fn accepted(&self) -> Vec<String> {
        self.accepted.lock().expect("lock").clone()
    }
}

pub(crate) fn ack(code: &str, id: &str) -> Vec<u8> {
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

pub(crate) fn msh10(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    text.split('\r')
        .next()
        .and_then(|msh| msh.split('|').nth(9))
        .unwrap_or("")
        .to_string()
}

/// Parses with the independent `hl7-parser` and checks the docs/hl7-inbound.md#a-complete-example layout.
#[track_caller]
pub(crate) fn check_layout(msg: &[u8]) -> (String, Vec<String>) {
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
