//! Tests of the MLLP listener source: the pure answer rules on literals, and the listener's
//! timeouts and limits in-process over real TCP (short timeouts, so no fake clock is needed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::ingest::{IngestError, IngestOutcome};
use crate::net::hl7::{mllp_frame, parse_ack, Ack};

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
        answer(&Ok(IngestOutcome {
            decoded,
            stored,
            duplicates,
            ..IngestOutcome::default()
        }))
    };
    assert_eq!(ok(5, 0, 5), (AckCode::AA, None));
    assert_eq!(ok(0, 5, 5), (AckCode::AA, None));
    assert_eq!(ok(0, 0, 0), (AckCode::AA, None));
    let quarantined = IngestOutcome {
        decoded: 1,
        quarantined: 1,
        ..IngestOutcome::default()
    };
    assert_eq!(answer(&Ok(quarantined)).0, AckCode::AA);
    let held = IngestOutcome {
        decoded: 2,
        held: 2,
        ..IngestOutcome::default()
    };
    assert_eq!(answer(&Ok(held)).0, AckCode::AA);
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
    let partly = IngestOutcome {
        decoded: 3,
        stored: 2,
        rejected: 1,
        ..IngestOutcome::default()
    };
    let (code, err) = answer(&Ok(partly));
    assert_eq!(code, AckCode::AE);
    assert_eq!(
        err.expect("ERR").text,
        "1 of 3 readings could not be normalised"
    );
    let none_kept = IngestOutcome {
        decoded: 1,
        rejected: 1,
        ..IngestOutcome::default()
    };
    assert_eq!(answer(&Ok(none_kept)).0, AckCode::AE);
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
    rig_allowing(limits, Cidr::loopback().to_vec()).await
}

async fn rig_allowing(limits: MllpLimits, allow: Vec<Cidr>) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[daemon]\ndata_dir = {:?}\nadmin_listen = \"\"\n\n[[device]]\nid = \"mon\"\ndriver = \"hl7v2\"\nroom = \"exam-5\"\nmllp = {{ listen = \"127.0.0.1:0\" }}\n\n[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = {:?}\n",
        dir.path().join("data"),
        dir.path().join("outbox")
    );
    let cfg = crate::config::parse(&toml, "test").expect("config");
    let d = &cfg.devices[0];
    let status = DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
    let ingest = crate::ingest::Ingest::in_memory(Duration::ZERO)
        .device(d, &cfg, status.clone())
        .expect("ingest");
    let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let cancel = CancellationToken::new();
    let src = MllpSource {
        device: d.id.clone(),
        limits,
        allow,
        tls: None,
        status: status.clone(),
        ingest,
    };
    let done = tokio::spawn(src.run(listener, cancel.clone()));
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

/// A connection from `from` (a loopback source address) to `to`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{from}:0").parse().expect("addr"))
        .expect("bind the source address");
    sock.connect(to).await.expect("connect")
}

#[tokio::test]
async fn a_message_trickling_in_past_its_deadline_is_dropped_and_the_connection_closed() {
    let r = rig(MllpLimits {
        message_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_secs(30),
        ..MllpLimits::default()
    })
    .await;
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    let started = Instant::now();
    let frame = mllp_frame(ORU.as_bytes());
    // One byte every 100 ms: never silent long enough for any silence timer.
    let mut closed = false;
    for b in &frame[..frame.len() - 2] {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut one = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut one)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("no answer to a message that never ended"),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still open");
    }
    assert!(closed, "the trickling sender was cut");
    assert!(started.elapsed() >= Duration::from_millis(400));
    wait_for("the drop counted", || r.status.snapshot().frames_bad == 1).await;
    wait_for("disconnected", || !r.status.snapshot().connected).await;
    assert_eq!(r.status.snapshot().readings, 0);
    // A whole message on a new connection is served.
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    s.write_all(&frame).await.expect("write");
    assert_eq!(read_ack(&mut s).await.expect("ACK").code, AckCode::AA);
    r.cancel.cancel();
    r.done.await.expect("listener stops");
}

#[tokio::test]
async fn whitespace_between_messages_does_not_hold_a_connection_past_the_idle_timeout() {
    let r = rig(MllpLimits {
        idle_timeout: Duration::from_millis(500),
        ..MllpLimits::default()
    })
    .await;
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    // Taken before the message goes out: the listener's idle time starts after it, so the
    // close cannot come sooner than 500 ms after this, however late this task reads the ACK.
    let sent = Instant::now();
    s.write_all(&mllp_frame(ORU.as_bytes()))
        .await
        .expect("write");
    assert_eq!(read_ack(&mut s).await.expect("ACK").code, AckCode::AA);
    let answered = Instant::now();
    let mut closed = false;
    while answered.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"\n").await.is_err() {
            closed = true;
            break;
        }
        let mut one = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut one)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "closed for want of a complete message");
    assert!(
        sent.elapsed() >= Duration::from_millis(450),
        "closed {:?} after the message was sent, before the idle timeout",
        sent.elapsed()
    );
    r.cancel.cancel();
    r.done.await.expect("listener stops");
}

#[tokio::test]
async fn a_peer_outside_the_allow_list_is_closed_unanswered_and_counted() {
    let r = rig_allowing(
        MllpLimits::default(),
        vec!["127.0.0.1/32".parse().expect("cidr")],
    )
    .await;
    let mut stranger = connect_from("127.0.0.2", r.addr).await;
    stranger.write_all(&mllp_frame(ORU.as_bytes())).await.ok();
    assert!(read_ack(&mut stranger).await.is_none(), "refused");
    wait_for("the refusal counted", || {
        r.status.snapshot().connections_refused == 1
    })
    .await;
    let mut monitor = connect_from("127.0.0.1", r.addr).await;
    monitor
        .write_all(&mllp_frame(ORU.as_bytes()))
        .await
        .expect("write");
    assert_eq!(read_ack(&mut monitor).await.expect("ACK").code, AckCode::AA);
    assert_eq!(r.status.snapshot().readings, 1);
    r.cancel.cancel();
    r.done.await.expect("listener stops");
}

#[tokio::test]
async fn one_peer_cannot_take_more_than_its_share_of_connections() {
    let r = rig(MllpLimits {
        max_connections_per_peer: 2,
        ..MllpLimits::default()
    })
    .await;
    let _a = connect_from("127.0.0.3", r.addr).await;
    let _b = connect_from("127.0.0.3", r.addr).await;
    let mut c = connect_from("127.0.0.3", r.addr).await;
    c.write_all(&mllp_frame(ORU.as_bytes())).await.ok();
    assert!(
        read_ack(&mut c).await.is_none(),
        "third from one address refused"
    );
    assert_eq!(r.status.snapshot().connections_refused, 1);
    let mut other = connect_from("127.0.0.4", r.addr).await;
    other
        .write_all(&mllp_frame(ORU.as_bytes()))
        .await
        .expect("write");
    assert_eq!(read_ack(&mut other).await.expect("ACK").code, AckCode::AA);
    drop(_a);
    // The slot comes back when a connection closes.
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut d = connect_from("127.0.0.3", r.addr).await;
        d.write_all(&mllp_frame(ORU.as_bytes())).await.ok();
        if let Some(ack) = read_ack(&mut d).await {
            again = Some(ack.code);
            break;
        }
    }
    assert_eq!(again, Some(AckCode::AA));
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
