//! The real daemon: serial PTY json device to the hl7-mllp sink, restarted after a partial
//! delivery.

use super::receiver::*;
use super::*;

fn daemon_config(
    dir: &std::path::Path,
    pty: &std::path::Path,
    addr: SocketAddr,
) -> std::path::PathBuf {
    support::DaemonBuilder::new(dir)
        .patient_mode("location")
        .device(support::Device::serial("bridge", "json", "exam-2", pty))
        .sink(
            support::Sink::mllp("engine", &addr.to_string())
                .line("ack_timeout = \"1s\"")
                .line("sending_application = \"VITALSD_EAST\"")
                .line("receiving_application = \"EHR\""),
        )
        .write()
}

fn bp_line(i: u32) -> String {
    format!(
        r#"{{"kind":"blood_pressure","device_time":"2026-11-27T10:{i:02}:00Z","values":[{{"name":"systolic","value":{},"unit":"mm[Hg]"}},{{"name":"diastolic","value":79,"unit":"mm[Hg]"}}]}}"#,
        110 + i
    ) + "\n"
}

#[test]
fn the_daemon_restarted_after_partial_delivery_delivers_the_rest_exactly_once() {
    use support::{Daemon, Pty};
    let tmp = tempfile::tempdir().expect("tempdir");
    // 0 = answer AA, 1 = stay silent.
    let mode = Arc::new(AtomicU8::new(0));
    let m = mode.clone();
    let rx = Receiver::start(move |_, _| {
        if m.load(Ordering::SeqCst) == 0 {
            Reply::Ack("AA")
        } else {
            Reply::Silent
        }
    });
    let pty = Pty::new();
    let cfg = daemon_config(tmp.path(), &pty.path, rx.addr);
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let d = Daemon::start(&cfg, &tmp.path().join("log1"));
    d.wait_log("serial port open", Duration::from_secs(10));
    pty.send(bp_line(1).as_bytes());
    pty.send(bp_line(2).as_bytes());
    wait("two accepted", &|| rx.accepted().len() == 2);
    mode.store(1, Ordering::SeqCst);
    pty.send(bp_line(3).as_bytes());
    wait("the third received, unanswered", &|| {
        rx.messages().len() >= 3
    });
    let (status, _) = d.stop();
    assert!(status.success(), "clean stop: {status:?}");

    mode.store(0, Ordering::SeqCst);
    let d = Daemon::start(&cfg, &tmp.path().join("log2"));
    wait("the third accepted after the restart", &|| {
        rx.accepted().len() == 3
    });
    d.wait_log("serial port open", Duration::from_secs(10));
    pty.send(bp_line(4).as_bytes());
    wait("the fourth accepted", &|| rx.accepted().len() == 4);
    let (status, _) = d.stop();
    assert!(status.success());

    let msgs = rx.messages();
    let mut by_id: Vec<(String, Vec<u8>)> = Vec::new();
    for m in &msgs {
        let (id, obx) = check_layout(m);
        assert!(obx[0].ends_with("|bridge"), "OBX-18 is the device: {obx:?}");
        let text = std::str::from_utf8(m).expect("utf-8");
        assert!(text.contains("\rPV1||O|^exam-2\r"), "room in PV1-3");
        assert!(
            text.starts_with("MSH|^~\\&|VITALSD_EAST||EHR|"),
            "configured header"
        );
        match by_id.iter().find(|(i, _)| *i == id) {
            Some((_, first)) => assert_eq!(first, m, "every resend of {id} is byte-identical"),
            None => by_id.push((id, m.clone())),
        }
    }
    let order: Vec<String> = by_id.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(rx.accepted(), order, "accepted once each, in capture order");
    let systolic: Vec<String> = by_id
        .iter()
        .map(|(_, m)| {
            let text = String::from_utf8_lossy(m).to_string();
            let obx = text
                .split('\r')
                .find(|l| l.starts_with("OBX|1|"))
                .unwrap_or("")
                .to_string();
            obx.split('|').nth(5).unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(systolic, ["111", "112", "113", "114"]);
    assert!(
        msgs.len() > 4,
        "the unanswered third was sent again after the restart"
    );
}
