//! TLS with a private CA (and a wrong one refused), a full queue holding messages
//! unacknowledged, undecodable payloads counted without their content.

use super::*;

/// A private CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl CLI");
        assert!(st.success(), "openssl {args:?}");
    };
    let ca = format!("{name}-ca.pem");
    let ca_key = format!("{name}-ca.key");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join(&ca),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn tls_with_a_private_ca_delivers_and_a_wrong_ca_is_refused_with_a_clear_error() {
    let s = Setup::new();
    let (ca, cert, key) = make_ca(&s.tmp.path().join("pki"), "clinic");
    let (other_ca, _, _) = make_ca(&s.tmp.path().join("pki-other"), "other");
    let tls_port = free_port();
    let broker = broker_with(
        &s.tmp.path().join("broker"),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    wait_port(tls_port);
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let cfg = s.config("tls", &url, &format!("ca_file = {ca:?}"), "");
    let d = s.daemon(&cfg, "log");
    publish(broker.port, vec![("bridge/exam4".into(), weight(8001))]);
    wait_outbox(&s.outbox, 1, Duration::from_secs(15));
    assert_eq!(weights(&s.outbox), [8001]);
    d.stop();

    let bad = Setup::new();
    let cfg = bad.config("tls-bad", &url, &format!("ca_file = {other_ca:?}"), "");
    let d = Daemon::start(&cfg, &bad.tmp.path().join("log"));
    d.wait_log("mqtt TLS handshake failed", Duration::from_secs(15));
    let log = d.log();
    assert!(
        log.contains("UnknownIssuer") || log.contains("invalid peer certificate"),
        "{log}"
    );
    assert!(!log.contains("mqtt subscribed"), "{log}");
}

#[test]
fn a_full_queue_holds_messages_unacknowledged_and_a_restart_with_room_stores_them_all() {
    let s = Setup::new();
    let broker = broker(&s.tmp.path().join("broker"));
    let tiny = s.config("full", &broker.url(), "", "queue_max_bytes = \"1KiB\"");
    // The cap counts undelivered readings only: a second sink, an HL7 engine that never
    // answers, keeps every reading pending while the outbox shows what was stored.
    let text = std::fs::read_to_string(&tiny).unwrap()
        + "\n[[sink]]\nid = \"engine\"\ntype = \"hl7-mllp\"\naddress = \"127.0.0.1:1\"\n";
    std::fs::write(&tiny, text).unwrap();
    let d = s.daemon(&tiny, "log1");
    // The first reading fits (nothing is undelivered yet) and puts the undelivered bytes over
    // the cap; the queue notices within 250 ms.
    publish(broker.port, vec![("bridge/exam4".into(), weight(6999))]);
    wait_outbox(&s.outbox, 1, Duration::from_secs(15));
    // The queue reads its size at most every 250 ms: send small rounds until it refuses.
    let mut next = 7000;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(300));
        if d.log().contains("queue refuses the message") {
            break;
        }
        publish(
            broker.port,
            (next..next + 5)
                .map(|i| ("bridge/exam4".into(), weight(i)))
                .collect(),
        );
        next += 5;
    }
    d.wait_log("queue refuses the message", Duration::from_secs(15));
    // The cap is checked against the size read at most every 250 ms: a few may get in first.
    std::thread::sleep(Duration::from_millis(500));
    let before = weights(&s.outbox).len();
    std::thread::sleep(Duration::from_millis(2500));
    let after = weights(&s.outbox).len();
    assert!(
        after < (next - 6999) as usize,
        "all stored although the queue is full"
    );
    assert_eq!(before, after, "stored although the queue is full");
    assert!(!d.log().contains("acknowledged and recorded"));
    let (st, took) = d.stop();
    assert!(st.success(), "{took:?}");

    // Nothing was acknowledged: the broker redelivers all of them to the same session.
    let roomy = s.config("full", &broker.url(), "", "");
    let d = s.daemon(&roomy, "log2");
    let until = Instant::now() + Duration::from_secs(30);
    let total = (next - 6999) as usize;
    while weights(&s.outbox).len() < total {
        assert!(
            Instant::now() < until,
            "only {} of {total}",
            weights(&s.outbox).len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&weights(&s.outbox), 6999..next);
    d.stop();
}

#[test]
fn undecodable_payloads_are_acknowledged_counted_and_recorded_without_content() {
    let s = Setup::new();
    let broker = broker(&s.tmp.path().join("broker"));
    let cfg = s.config("bad", &broker.url(), "", "");
    let d = s.daemon(&cfg, "log1");
    publish(
        broker.port,
        vec![
            ("gw/exam3/2A1C".into(), vec![0x00]), // truncated value
            ("gw/exam5/2A1C".into(), b"zz-not-hex-MRN999".to_vec()), // not hex
            ("gw/exam3/FFFF".into(), TEMP_2A1C.to_vec()), // unknown characteristic
            ("bridge/exam4".into(), b"{\"kind\":\"MRN999\"}".to_vec()), // not a reading
            ("bridge/exam4".into(), weight(9001)),
        ],
    );
    wait_outbox(&s.outbox, 1, Duration::from_secs(15));
    d.wait_log("acknowledged and recorded", Duration::from_secs(5));
    assert!(!d.log().contains("MRN999"), "payload content in the log");
    d.stop();
    assert_eq!(s.rejected_payloads(&cfg), 4);

    // They were acknowledged: a restart gets no redelivery of them.
    let d = s.daemon(&cfg, "log2");
    publish(broker.port, vec![("bridge/exam4".into(), weight(9002))]);
    wait_outbox(&s.outbox, 2, Duration::from_secs(15));
    d.stop();
    assert_eq!(s.rejected_payloads(&cfg), 4);
    assert_each_once(&weights(&s.outbox), 9001..9003);
}
