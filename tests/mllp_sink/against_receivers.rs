//! The sink against receivers: the PCD-01 layout, delimiters in a room name, dropped
//! connections, foreign ACKs, silent receivers, idle closes and refused connections.

use super::receiver::*;
use super::*;

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
