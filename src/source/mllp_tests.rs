//! Tests of the MLLP listener source: the pure answer rules on literals, and the listener's
//! timeouts and limits in-process over real TCP (short timeouts, so no fake clock is needed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::decode::hl7v2::{parse_ack, Ack};
use crate::decode::{DecodeError, Transport};

#[test]
fn the_control_id_is_read_from_msh_10_even_when_the_message_does_not_parse() {
    let m = b"MSH|^~\\&|MON|WARD|||20240315103005||ADT^A01|CTRL-7|P|2.6\rPID|||X";
    assert_eq!(control_id_hint(m), "CTRL-7");
    let other_sep = b"MSH#^~\\&#A#B#C#D#T##ORU^R01#ID\\T\\2#P#2.6";
    assert_eq!(control_id_hint(other_sep), "ID&2");
    assert_eq!(
        control_id_hint(b"\r\nMSH|^~\\&|a|b|c|d|t||ORU|  X1 \n"),
        "X1"
    );
    assert_eq!(control_id_hint(b"MSH|^~\\&|too|short"), "");
    assert_eq!(control_id_hint(b"PID|||MRN1"), "");
    assert_eq!(control_id_hint(b"MSHA^~"), "");
    assert_eq!(control_id_hint(b""), "");
    assert_eq!(control_id_hint(&[0xff, 0xfe, 0x00]), "");
}

#[test]
fn a_stored_or_duplicate_or_empty_message_is_accepted() {
    let ok = |stored, duplicates, decoded| {
        answer(&Ok(IngestReport {
            decoded,
            stored,
            duplicates,
            ..IngestReport::default()
        }))
    };
    assert_eq!(ok(5, 0, 5), (AckCode::AA, None));
    assert_eq!(ok(0, 5, 5), (AckCode::AA, None));
    assert_eq!(ok(0, 0, 0), (AckCode::AA, None));
    let dead_lettered = IngestReport {
        decoded: 1,
        rejected: 1,
        ..IngestReport::default()
    };
    assert_eq!(answer(&Ok(dead_lettered)).0, AckCode::AA);
}

#[test]
fn a_full_queue_or_failed_store_is_answered_ar_so_the_sender_resends() {
    let (code, err) = answer(&Err(IngestError::Full { size: 10, max: 10 }));
    assert_eq!(code, AckCode::AR);
    let err = err.expect("an ERR segment");
    assert_eq!(
        (err.code, err.text.as_str()),
        (207, "queue full; resend later")
    );
    let (code, err) = answer(&Err(IngestError::Store("disk gone".into())));
    assert_eq!(code, AckCode::AR);
    assert!(
        !err.expect("ERR").text.contains("disk"),
        "internals stay out"
    );
}

#[test]
fn readings_lost_after_decoding_are_answered_ae_never_aa() {
    let partly = IngestReport {
        decoded: 3,
        stored: 2,
        ..IngestReport::default()
    };
    let (code, err) = answer(&Ok(partly));
    assert_eq!(code, AckCode::AE);
    assert_eq!(
        err.expect("ERR").text,
        "1 of 3 readings could not be normalised"
    );
    let undecodable = IngestReport {
        errors: vec![DecodeError::Malformed("x".into())],
        ..IngestReport::default()
    };
    assert_eq!(answer(&Ok(undecodable)).0, AckCode::AE);
}

#[test]
fn a_chunk_ending_inside_a_frame_arms_the_partial_frame_timer() {
    assert!(still_partial(b"\x0bMSH|", false));
    assert!(!still_partial(b"\x0bMSH|x\x1c\x0d", true));
    assert!(!still_partial(b"\x0bMSH|x\x1c", true));
    assert!(still_partial(b"\r\n", true));
    assert!(!still_partial(b"\r\n", false));
    assert!(still_partial(b"garbage", false));
}

const ORU: &str = "MSH|^~\\&|MON^0012345678ABCDEF^EUI-64|WARD|EHR|CLINIC|20240315103005+0100||ORU^R01^ORU_R01|CTRL-1|P|2.6|||AL|NE\r\
PID|||MRN1^^^CLINIC^MR\r\
OBR|1|X|X|182777000^monitoring of patient^SCT|||20240315102930+0100\r\
OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R|||20240315102945+0100\r";

/// A listener with `limits` on a free port, its device status, and the cancel token.
struct Rig {
    addr: std::net::SocketAddr,
    status: Arc<DeviceStatus>,
    cancel: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn rig(limits: MllpLimits) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("store.key");
    crate::queue::cipher::ensure_key_file(&key).expect("store key");
    let toml = format!(
        "[daemon]\ndata_dir = {:?}\nadmin_listen = \"\"\nstore_key_file = {key:?}\n\n[[device]]\nid = \"mon\"\ndriver = \"hl7v2\"\nroom = \"exam-5\"\nmllp = {{ listen = \"127.0.0.1:0\" }}\n\n[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = {:?}\n",
        dir.path().join("data"),
        dir.path().join("outbox")
    );
    let cfg = crate::config::parse(&toml, "test").expect("config");
    let d = &cfg.devices[0];
    let queue = crate::app::open_queue(&cfg).expect("queue");
    let status = DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
    let decoder =
        crate::decode::registry::build_for("hl7v2", Transport::Mllp, &d.options).expect("decoder");
    let (wr, _) = mpsc::channel(1);
    let pipeline = DevicePipeline::new(d, &cfg, decoder, queue, status.clone(), wr).expect("pipe");
    let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let cancel = CancellationToken::new();
    let src = MllpSource {
        device: d.id.clone(),
        limits,
        status: status.clone(),
    };
    let done = tokio::spawn(src.run(listener, pipeline, cancel.clone()));
    Rig {
        addr,
        status,
        cancel,
        done,
        _dir: dir,
    }
}

/// Reads one MLLP-framed answer (or `None` at EOF).
async fn read_ack(s: &mut TcpStream) -> Option<Ack> {
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.ends_with(&[EB, CR]) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("answer in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&b[..n]);
    }
    Some(parse_ack(&got).expect("an HL7 ACK"))
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "{what} did not happen within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_partial_frame_silent_past_its_timeout_is_dropped_and_the_connection_stays() {
    let r = rig(MllpLimits {
        partial_frame_timeout: Duration::from_millis(200),
        ..MllpLimits::default()
    })
    .await;
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    s.write_all(b"\x0bMSH|^~\\&|half a message")
        .await
        .expect("write");
    wait_for("the partial frame drop", || {
        r.status.snapshot().frames_bad == 1
    })
    .await;
    assert!(r.status.snapshot().connected);
    s.write_all(&mllp_frame(ORU.as_bytes()))
        .await
        .expect("write");
    let ack = read_ack(&mut s).await.expect("an ACK");
    assert_eq!(
        (ack.code, ack.acked_control_id.as_str()),
        (AckCode::AA, "CTRL-1")
    );
    let snap = r.status.snapshot();
    assert_eq!((snap.frames_bad, snap.readings), (1, 1));
    r.cancel.cancel();
    r.done.await.expect("listener stops");
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_connected_clears() {
    let r = rig(MllpLimits {
        idle_timeout: Duration::from_millis(200),
        ..MllpLimits::default()
    })
    .await;
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    wait_for("connected", || r.status.snapshot().connected).await;
    assert!(read_ack(&mut s).await.is_none(), "closed without an answer");
    wait_for("disconnected", || !r.status.snapshot().connected).await;
    r.cancel.cancel();
    r.done.await.expect("listener stops");
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_and_the_first_keeps_working() {
    let r = rig(MllpLimits {
        max_connections: 1,
        ..MllpLimits::default()
    })
    .await;
    let mut first = TcpStream::connect(r.addr).await.expect("connect");
    wait_for("connected", || r.status.snapshot().connected).await;
    let mut second = TcpStream::connect(r.addr).await.expect("connect");
    second.write_all(&mllp_frame(ORU.as_bytes())).await.ok();
    assert!(read_ack(&mut second).await.is_none(), "refused");
    first
        .write_all(&mllp_frame(ORU.as_bytes()))
        .await
        .expect("write");
    assert_eq!(read_ack(&mut first).await.expect("ACK").code, AckCode::AA);
    assert_eq!(r.status.snapshot().readings, 1);
    r.cancel.cancel();
    assert!(read_ack(&mut first).await.is_none(), "closed on shutdown");
    r.done.await.expect("listener stops");
    assert!(!r.status.snapshot().connected);
    assert!(
        TcpStream::connect(r.addr).await.is_err(),
        "no longer listening"
    );
}
