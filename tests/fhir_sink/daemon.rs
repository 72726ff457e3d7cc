//! The real daemon binary stopped and restarted in the middle of a delivery.

use super::server::*;
use super::*;

fn daemon_config(tmp: &Path, pty: &Path, addr: SocketAddr) -> PathBuf {
    support::DaemonBuilder::new(tmp)
        .admin(support::Admin::Token)
        .daemon("clock_skew_tolerance = \"1s\"")
        .patient_mode("hold")
        .device(support::Device::serial("bridge", "json", "exam-2", pty))
        .sink(
            support::Sink::fhir("ehr", &format!("http://{addr}/fhir"))
                .line("batch_size = 2")
                .line("timeout = \"5s\""),
        )
        .write()
}

#[test]
fn the_daemon_restarted_mid_delivery_leaves_every_reading_on_the_server_exactly_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = Srv::default();
    srv.with(|s| s.delay = Duration::from_millis(250));
    let addr = rt.block_on(serve(srv.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let pty = support::Pty::new();
    let cfg = daemon_config(tmp.path(), &pty.path, addr);
    let d = support::Daemon::start(&cfg, &tmp.path().join("log1"));
    d.wait_log("serial port open", Duration::from_secs(10));
    d.wait_log("FHIR server reachable", Duration::from_secs(10));
    // FHIR output needs the room's patient; the readings are measured more than the clock-skew
    // tolerance (1 s) after it was set, so the context covers each one's whole window.
    let set_at = time::OffsetDateTime::now_utc();
    support::set_patient(&d.admin_addr(), "exam-2");
    std::thread::sleep(Duration::from_millis(1500));
    const N: i64 = 24;
    for i in 0..N {
        let at = (set_at + time::Duration::milliseconds(1200 + 10 * i))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        pty.send(format!(
            "{{\"kind\":\"body_temperature\",\"device_time\":\"{at}\",\"values\":[{{\"name\":\"temperature\",\"value\":36.{i:02},\"unit\":\"Cel\"}}]}}\n"
        ).as_bytes());
    }
    let stored = |n: usize| srv.with(|s| s.stored.len() >= n);
    let until = Instant::now() + Duration::from_secs(20);
    while !stored(4) {
        assert!(Instant::now() < until, "nothing delivered:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
    let partial = srv.with(|s| s.stored.len());
    assert!(
        partial < 24,
        "all delivered before the stop: the test proves nothing"
    );

    let d = support::Daemon::start(&cfg, &tmp.path().join("log2"));
    let until = Instant::now() + Duration::from_secs(30);
    while !stored(24) {
        assert!(
            Instant::now() < until,
            "only {} of 24 after restart:\n{}",
            srv.with(|s| s.stored.len()),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = d.stop();
    assert!(status.success());
    srv.with(|s| {
        assert_eq!(s.stored.len(), 24, "{:?}", s.stored);
        assert!(
            s.stored.values().all(|n| *n == 1),
            "duplicates: {:?}",
            s.stored
        );
        for b in &s.bundles {
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .for_each(check_entry_daemon);
        }
    });
    drop(rt);
}

/// Daemon readings: the §5.1 rules except the offset; the room's patient as subject.
#[track_caller]
fn check_entry_daemon(e: &Json) {
    let o = &e["resource"];
    assert_eq!(o["subject"]["type"], "Patient");
    let value = o["identifier"][0]["value"].as_str().expect("identifier");
    assert_eq!(
        e["request"]["ifNoneExist"],
        format!("identifier=urn:ietf:rfc:3986|{value}")
    );
    assert_eq!(o["valueQuantity"]["system"], "http://unitsofmeasure.org");
}
