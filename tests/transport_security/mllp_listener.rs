//! The MLLP listener's limits: strangers and idle sockets over the cap refused while an
//! allowed monitor gets AA; a sender trickling bytes cut at the message deadline.

use super::*;

#[test]
fn strangers_and_idle_sockets_over_the_cap_are_refused_while_an_allowed_monitor_gets_aa() {
    let site = site("allow = [\"127.0.0.1/32\", \"127.0.0.3/32\"], max_connections_per_peer = 2");
    let d = Daemon::start(&site.config, &site.tmp.path().join("daemon.log"));
    d.wait_log("MLLP listener ready", WAIT);
    let addr = mllp_addr(&d.log()).expect("the MLLP listener's address in the log");

    // 127.0.0.2 is not allowed: closed without an answer, nothing charted.
    let mut stranger = connect_from("127.0.0.2", addr);
    assert_eq!(send(&mut stranger, &oru("STRANGER-1")), None);
    d.wait_log("MLLP connection refused", WAIT);
    let log = d.plain_log();
    assert!(
        log.lines().any(|l| l.contains("MLLP connection refused")
            && l.contains("peer=127.0.0.2")
            && l.contains("WARN")),
        "{log}"
    );
    // A second try within the minute is refused too but not logged again.
    let mut again = connect_from("127.0.0.2", addr);
    assert_eq!(send(&mut again, &oru("STRANGER-2")), None);

    // 127.0.0.3 holds its two idle sockets; a third from it is refused.
    let _idle1 = connect_from("127.0.0.3", addr);
    let _idle2 = connect_from("127.0.0.3", addr);
    std::thread::sleep(Duration::from_millis(300));
    let mut third = connect_from("127.0.0.3", addr);
    assert!(closed_unanswered(&mut third, WAIT), "third socket refused");

    // The allowed monitor is answered and charted.
    let mut monitor = connect_from("127.0.0.1", addr);
    assert_eq!(send(&mut monitor, &oru("MON-1")), Some(AckCode::AA));
    let lines = wait_outbox(&site.outbox, 1, WAIT);
    assert_eq!(lines.len(), 1, "only the monitor's reading: {lines:?}");
    std::thread::sleep(Duration::from_millis(300));
    let log = d.plain_log();
    assert_eq!(
        log.matches("peer=127.0.0.2").count(),
        1,
        "one WARN per peer per minute: {log}"
    );
    assert!(!log.contains("MRN777"), "no patient id in the log");
    drop(d);
}

#[test]
fn a_sender_trickling_one_byte_at_a_time_is_cut_at_the_message_deadline() {
    let site = site("message_timeout = \"2s\", idle_timeout = \"60s\"");
    let d = Daemon::start(&site.config, &site.tmp.path().join("daemon.log"));
    d.wait_log("MLLP listener ready", WAIT);
    let addr = mllp_addr(&d.log()).expect("the MLLP listener's address in the log");
    let mut s = connect_from("127.0.0.1", addr);
    s.set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let frame = oru("SLOW-1");
    let started = Instant::now();
    let mut cut = None;
    // A byte every 250 ms: the whole frame would take over a minute.
    for b in &frame {
        if s.write_all(&[*b]).is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let mut one = [0u8; 16];
        match s.read(&mut one) {
            Ok(0) => {
                cut = Some(started.elapsed());
                break;
            }
            Ok(_) => panic!("an answer to a message that never ended"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                cut = Some(started.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
        assert!(started.elapsed() < Duration::from_secs(20), "never cut");
    }
    let cut = cut.expect("the connection was cut");
    assert!(
        cut >= Duration::from_millis(1900) && cut < Duration::from_secs(8),
        "{cut:?}"
    );
    d.wait_log("not complete within message_timeout", WAIT);
    // A whole message afterwards is served.
    let mut s = connect_from("127.0.0.1", addr);
    assert_eq!(send(&mut s, &oru("FAST-1")), Some(AckCode::AA));
    drop(d);
}
