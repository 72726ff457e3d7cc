//! Transport security through the real binary (docs/network-security.md): who may send to an
//! MLLP listener and for how long, plaintext to another machine refused by `check-config`
//! unless `allow_insecure = true` (then a WARN at every start), and a FHIR server's redirect
//! never followed.

#[path = "../support/mod.rs"]
mod support;

mod mllp_listener;
mod plaintext;
mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{mllp_addr, wait_outbox, Daemon, DaemonBuilder, Device, Running, Sink};
use vitalsd::net::hl7::{mllp_frame, parse_ack, AckCode};

const WAIT: Duration = Duration::from_secs(15);

/// A one-SpO2 ORU with control id `id`.
fn oru(id: &str) -> Vec<u8> {
    let t = "20240315100000+0100";
    mllp_frame(
        format!(
            "MSH|^~\\&|MON|WARD|EHR|CLINIC_A|{t}||ORU^R01^ORU_R01|{id}|P|2.6\r\
             PID|||MRN777^^^CLINIC_A^MR\r\
             OBR|1|{id}|{id}|182777000^monitoring of patient^SCT|||{t}\r\
             OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R|||{t}\r"
        )
        .as_bytes(),
    )
}

/// A blocking connection to `to` from the loopback source address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(format!("{from}:0").parse().expect("addr"))
            .expect("bind the source address");
        sock.connect(to).await.expect("connect")
    });
    let s = s.into_std().expect("std stream");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

/// Sends one message and reads the answer: `Some(code)`, or `None` when the listener closed
/// the connection without answering.
fn send(s: &mut TcpStream, frame: &[u8]) -> Option<AckCode> {
    if s.write_all(frame).is_err() {
        return None;
    }
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.ends_with(&[0x1c, 0x0d]) {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    let ack = parse_ack(&got[1..got.len() - 2]).expect("an HL7 ACK");
    Some(ack.code)
}

/// Whether the listener closed `s` (EOF or reset) within `within`, without a byte of answer.
fn closed_unanswered(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

struct Site {
    tmp: tempfile::TempDir,
    config: PathBuf,
    outbox: PathBuf,
}

/// One `hl7v2` device listening on loopback with `mllp_keys` (more keys of its `mllp` table),
/// a `reading` file outbox.
fn site(mllp_keys: &str) -> Site {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = DaemonBuilder::new(tmp.path())
        .device(
            Device::mllp("ward-monitor", "hl7v2", "exam-5", "127.0.0.1:0")
                .transport_keys(mllp_keys),
        )
        .outbox("reading")
        .write();
    let outbox = tmp.path().join("outbox");
    Site {
        tmp,
        config,
        outbox,
    }
}
