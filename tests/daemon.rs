//! The daemon end to end through the real binary: pseudo-terminals as serial devices, a
//! config file, the file outbox, signals.

mod support;

use std::time::Duration;

use support::{wait_outbox, Admin, DaemonBuilder, Device, Pty, Sink};

const BP: &str = r#"{"kind":"blood_pressure","device_time":"2026-11-27T10:00:00Z","values":[{"name":"systolic","value":121,"unit":"mm[Hg]"},{"name":"diastolic","value":79,"unit":"mm[Hg]"},{"name":"mean","value":93,"unit":"mm[Hg]"}]}"#;

fn temp_line(t: &str, at: &str) -> String {
    format!(
        r#"{{"kind":"body_temperature","device_time":"{at}","values":[{{"name":"temperature","value":{t},"unit":"Cel","site":"oral"}}]}}"#
    )
}

#[test]
fn serial_readings_reach_the_fhir_outbox_and_sigterm_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    // FHIR output needs a patient: set one in each room through the admin API. The bridge's
    // readings carry device times from another day (untrusted clocks): each may have been
    // measured up to `clock_skew_tolerance` before it arrived, so the scans must be older than
    // that for the readings to be attributed rather than held as ambiguous.
    let mut d = DaemonBuilder::new(tmp.path())
        .admin(Admin::Token)
        .daemon("clock_skew_tolerance = \"1s\"")
        .patient_mode("hold")
        .serial_device("ox", "nonin-ascii", "exam-1", r#"report = "every""#)
        .serial_device("bridge", "json", "exam-2", "")
        .outbox("fhir")
        .start();
    let (ox, bridge, outbox) = (d.pty("ox"), d.pty("bridge"), d.outbox());
    d.wait_log("serial port open", Duration::from_secs(10));
    let admin = d.admin();
    support::set_patient(&admin, "exam-1");
    support::set_patient(&admin, "exam-2");
    std::thread::sleep(Duration::from_millis(1300));

    ox.send(b"SPO2=097 HR=072\r\n");
    bridge.send(format!("{BP}\n").as_bytes());
    bridge.send(format!("{}\n", temp_line("37.60", "2026-11-27T10:01:00Z")).as_bytes());
    let lines = wait_outbox(outbox, 4, Duration::from_secs(10));

    let codes: Vec<String> = lines
        .iter()
        .flat_map(|o| o["code"]["coding"].as_array().cloned().unwrap_or_default())
        .map(|c| c["code"].as_str().unwrap_or("").to_string())
        .collect();
    for c in ["59408-5", "8867-4", "85354-9", "8310-5"] {
        assert!(
            codes.iter().any(|x| x == c),
            "no Observation coded {c}: {codes:?}"
        );
    }
    // serde_json::Value would drop the trailing zero: look at the text on disk.
    let raw: String = std::fs::read_dir(outbox)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let temp = raw.lines().find(|l| l.contains("8310-5")).unwrap();
    assert!(temp.contains(r#""value":37.60"#), "precision lost: {temp}");
    for o in &lines {
        assert_eq!(o["resourceType"], "Observation");
        assert_eq!(o["subject"]["type"], "Patient", "the room's patient");
        assert!(o["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:"));
    }

    let (status, took) = d.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
}

#[test]
fn garbled_frames_are_counted_and_the_stream_resynchronises() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DaemonBuilder::new(tmp.path())
        .patient_mode("location")
        .serial_device("ox", "nonin-ascii", "exam-1", r#"report = "every""#)
        .outbox("reading")
        .start();
    let (ox, outbox) = (d.pty("ox"), d.outbox().to_path_buf());
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));

    ox.send(b"SPO2=0\xff\xfe\x00 HR=\x01\x02\r\n");
    ox.send(&[0xAA; 300]);
    ox.send(b"\r\nSPO2=095 HR=061\r\n");
    let lines = wait_outbox(&outbox, 2, Duration::from_secs(10));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let spo2 = lines
        .iter()
        .find(|r| r["kind"] == "spo2")
        .expect("spo2 reading");
    assert_eq!(spo2["values"][0]["value"], 95);
    d.wait_log("frame skipped", Duration::from_secs(2));
    assert!(!d.log().contains("\u{fffd}"), "payload bytes in the log");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn a_serial_port_that_disappears_and_comes_back_is_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("ttyUSB-oximeter");
    let first = Pty::new();
    std::os::unix::fs::symlink(&first.path, &link).unwrap();
    let mut d = DaemonBuilder::new(tmp.path())
        .patient_mode("location")
        .device(Device::serial("ox", "nonin-ascii", "exam-1", &link).options(r#"report = "every""#))
        .outbox("reading")
        .start();
    let outbox = d.outbox().to_path_buf();
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    first.send(b"SPO2=096 HR=070\r\n");
    wait_outbox(&outbox, 2, Duration::from_secs(10));

    // Unplug: the device side goes away, and so does its name.
    first.send(b"SPO2=09");
    drop(first);
    std::fs::remove_file(&link).unwrap();
    d.wait_log("serial device disconnected", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));

    // Replug at the same path.
    let second = Pty::new();
    std::os::unix::fs::symlink(&second.path, &link).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(40);
    while d.log().matches("serial port open").count() < 2 {
        assert!(
            std::time::Instant::now() < until,
            "port not reopened:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    second.send(b"SPO2=098 HR=066\r\n");
    let lines = wait_outbox(&outbox, 4, Duration::from_secs(10));
    let values: Vec<_> = lines
        .iter()
        .filter(|r| r["kind"] == "spo2")
        .map(|r| r["values"][0]["value"].as_i64().unwrap())
        .collect();
    assert_eq!(
        values,
        vec![96, 98],
        "the partial frame must not become a reading"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn an_unwritable_data_dir_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let cfg_path = DaemonBuilder::new(tmp.path())
        .data_dir(&blocker.join("data"))
        .patient_mode("hold")
        .serial_device("ox", "nonin-ascii", "exam-1", "")
        .outbox("fhir")
        .write();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(crate::support::KEY_ENV, crate::support::store_key_file())
        .args(["run", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("daemon.data_dir"), "{err}");
}

#[test]
fn an_unwritable_outbox_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let cfg_path = DaemonBuilder::new(tmp.path())
        .patient_mode("hold")
        .serial_device("ox", "nonin-ascii", "exam-1", "")
        .sink(Sink::file("outbox", &blocker.join("outbox"), "fhir"))
        .write();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(crate::support::KEY_ENV, crate::support::store_key_file())
        .args(["run", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sink outbox") && err.contains("not-a-dir"),
        "{err}"
    );
}

#[test]
fn readings_stored_before_a_restart_are_delivered_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bridge = Pty::new();
    let mut d = DaemonBuilder::new(tmp.path())
        .patient_mode("location")
        .device(Device::serial("bridge", "json", "exam-2", &bridge.path))
        .outbox("reading")
        .start();
    let outbox = d.outbox().to_path_buf();
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..20 {
        bridge.send(
            format!(
                "{}\n",
                temp_line("36.8", &format!("2026-11-27T10:{i:02}:00Z"))
            )
            .as_bytes(),
        );
    }
    wait_outbox(&outbox, 20, Duration::from_secs(10));
    let (status, _) = d.stop();
    assert!(status.success());

    // Same measurements again after a restart (a device's memory recall): stored once.
    d.restart("log2");
    d.wait_log("serial port open", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..20 {
        bridge.send(
            format!(
                "{}\n",
                temp_line("36.8", &format!("2026-11-27T10:{i:02}:00Z"))
            )
            .as_bytes(),
        );
    }
    bridge.send(format!("{}\n", temp_line("36.9", "2026-11-27T11:00:00Z")).as_bytes());
    let lines = wait_outbox(&outbox, 21, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let lines2 = support::outbox_lines(&outbox);
    assert_eq!(
        lines2.len(),
        21,
        "replayed measurements were stored twice: {}",
        lines.len()
    );
    let (status, _) = d.stop();
    assert!(status.success());
}
