//! Through the real queue and delivery loop: application errors and rejects dead-letter,
//! a receiver down for a while gets everything in order.

use super::receiver::*;
use super::*;

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
