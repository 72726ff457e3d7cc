//! Serial devices as an IT person meets them: spot-check devices idle between patients, a
//! streaming device that falls silent, and a BLE gateway whose lines arrive in any chunking.

mod support;

use std::time::Duration;

use support::{wait_outbox, Daemon, DaemonBuilder, Device, Pty};

fn warn_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("WARN"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_streaming_device_that_falls_silent_is_logged_once_and_idle_spot_check_devices_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (ox, scanner, cuff) = (Pty::new(), Pty::new(), Pty::new());
    DaemonBuilder::new(dir.path())
        .patient_mode("location")
        .device(
            // The oximeter streams every second: a 1 s timeout shows the behaviour quickly.
            Device::serial("ox", "nonin-ascii", "exam-1", &ox.path)
                .options(r#"report = "every""#)
                .line(r#"inactivity_timeout = "1s""#),
        )
        .device(
            Device::serial("scan", "barcode", "exam-1", &scanner.path)
                .options(r#"system = "urn:oid:1.2.3""#),
        )
        .device(
            Device::serial("cuff", "ble-gatt", "exam-1", &cuff.path).options(r#"payload = "json""#),
        )
        .outbox("reading")
        .write_as("v.toml");
    let d = Daemon::start(&dir.path().join("v.toml"), &dir.path().join("log"));
    d.wait_log("vitalsd ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    ox.send(b"SPO2=097 HR=072\r\n");
    wait_outbox(&dir.path().join("outbox"), 2, Duration::from_secs(10));
    // Six timeouts' worth of silence from the oximeter, and the scanner and cuff idle.
    std::thread::sleep(Duration::from_secs(6));
    let log = d.log();
    assert!(warn_lines(&log).is_empty(), "no WARN for silence:\n{log}");
    assert_eq!(
        log.matches("serial device fell silent").count(),
        1,
        "one line when the oximeter falls silent:\n{log}"
    );
    assert_eq!(
        log.matches("serial port open").count(),
        3,
        "each port announced once:\n{log}"
    );
    // It speaks again: its readings still arrive (the port was kept reopened).
    ox.send(b"SPO2=098 HR=071\r\n");
    wait_outbox(&dir.path().join("outbox"), 4, Duration::from_secs(10));
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn a_ble_gateway_on_a_serial_port_reads_lines_however_they_are_chunked() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pty::new();
    // No `payload` option: a serial gateway sends JSON envelopes by default.
    DaemonBuilder::new(dir.path())
        .patient_mode("location")
        .device(Device::serial("gw", "ble-gatt", "exam-1", &gw.path))
        .outbox("reading")
        .write_as("v.toml");
    let d = Daemon::start(&dir.path().join("v.toml"), &dir.path().join("log"));
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let line = |hex: &str| format!("{{\"chr\":\"2a9d\",\"data_hex\":\"{hex}\"}}\n");
    // Two envelopes in one write, then one split in the middle.
    gw.send(format!("{}{}", line("00a438"), line("00803e")).as_bytes());
    let third = line("00c03e");
    let (a, b) = third.split_at(12);
    gw.send(a.as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    gw.send(b.as_bytes());
    let lines = wait_outbox(&dir.path().join("outbox"), 3, Duration::from_secs(10));
    let weights: Vec<String> = lines
        .iter()
        .map(|r| r["values"][0]["value"].to_string())
        .collect();
    assert_eq!(weights, ["72.5", "80.0", "80.32"], "{}", d.log());
    assert!(!d.log().contains("frame skipped"), "{}", d.log());
}
