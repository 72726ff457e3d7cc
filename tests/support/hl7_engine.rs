//! A small HL7 v2 engine behind MLLP for the tests of the `hl7-mllp` sink.
//!
//! Receives: an answer for each message, made from its MSH-10 (an ACK with AA, AE or AR).
//! Promises: it listens on a free port of 127.0.0.1 at once, serves every connection on a
//! thread of its own, records every message in arrival order and writes each answer framed
//! (0x0B ... 0x1C 0x0D) on the connection the message came on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// An HL7 v2 receiver over MLLP.
#[derive(Clone)]
pub struct Engine {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<String>>>,
}

type Answer = Arc<dyn Fn(&str) -> String + Send + Sync>;

impl Engine {
    /// An engine on a free port of 127.0.0.1 that answers each message with `answer(MSH-10)`
    /// (an ER7 message without its MLLP frame).
    pub fn start(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Engine {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind engine");
        let e = Engine {
            addr: listener.local_addr().expect("addr"),
            got: Arc::default(),
        };
        let (rx, answer): (Engine, Answer) = (e.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (rx, answer) = (rx.clone(), answer.clone());
                std::thread::spawn(move || rx.serve(stream, &*answer));
            }
        });
        e
    }

    fn serve(&self, mut s: TcpStream, answer: &(dyn Fn(&str) -> String + Send + Sync)) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(2).position(|w| w == [0x1C, 0x0D]) {
                let frame: Vec<u8> = buf.drain(..end + 2).collect();
                let start = frame.iter().position(|&b| b == 0x0B).expect("start block");
                let msg = String::from_utf8(frame[start + 1..end].to_vec()).expect("UTF-8");
                let id = msg
                    .split('\r')
                    .next()
                    .and_then(|msh| msh.split('|').nth(9))
                    .unwrap_or("")
                    .to_string();
                self.got.lock().expect("lock").push(msg);
                let mut reply = vec![0x0B];
                reply.extend_from_slice(answer(&id).as_bytes());
                reply.extend_from_slice(&[0x1C, 0x0D]);
                if s.write_all(&reply).is_err() {
                    return;
                }
            }
        }
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<String> {
        self.got.lock().expect("lock").clone()
    }
}
