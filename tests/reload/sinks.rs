//! Sinks added, removed and changed in place by a reload while the serial device runs on.

use super::*;

#[test]
fn a_reload_adds_removes_and_changes_sinks_in_place_and_leaves_the_device_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let (out_a, out_a2, out_b) = (
        tmp.path().join("a"),
        tmp.path().join("a2"),
        tmp.path().join("b"),
    );
    let pty = Pty::new();
    let device = [serial_device("ox", "exam-1", &pty.path)];
    let write = |sinks: &[Sink]| site(tmp.path(), true, &device, sinks).write();
    let cfg = write(&[file_sink("outA", &out_a), refused_mllp_sink("ehr-hl7")]);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let admin = d.admin_addr();
    wait_lines(
        &d,
        &["serial port open", "device=ox"],
        1,
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(300));
    pty.send(&nonin(61));
    wait_out(&d, &out_a, 2, Duration::from_secs(10));

    // Remove the HL7 sink (its readings stay pending), add outB, keep outA as it is.
    write(&[file_sink("outA", &out_a), file_sink("outB", &out_b)]);
    signal(&d, Signal::SIGHUP);
    wait_lines(
        &d,
        &[
            "config reloaded",
            "sinks_added=outB",
            "sinks_removed=ehr-hl7",
            "sinks_changed= ",
        ],
        1,
        Duration::from_secs(10),
    );
    pty.send(&nonin(62));
    wait_out(&d, &out_b, 2, Duration::from_secs(10));
    wait_out(&d, &out_a, 4, Duration::from_secs(10));
    assert_eq!(
        heart_rates(&out_b),
        vec![62],
        "outB gets what came after it was added"
    );

    // Change outA (a new directory): it restarts there; outB keeps running.
    write(&[file_sink("outA", &out_a2), file_sink("outB", &out_b)]);
    signal(&d, Signal::SIGHUP);
    wait_lines(
        &d,
        &["config reloaded", "sinks_changed=outA", "sinks_added= "],
        1,
        Duration::from_secs(10),
    );
    pty.send(&nonin(63));
    wait_out(&d, &out_a2, 2, Duration::from_secs(10));
    wait_out(&d, &out_b, 4, Duration::from_secs(10));
    assert_eq!(heart_rates(&out_a), vec![61, 62]);
    assert_eq!(heart_rates(&out_a2), vec![63]);
    assert_eq!(heart_rates(&out_b), vec![62, 63]);

    // The device was never reopened and its counters run on.
    assert_eq!(
        lines_with(&d, &["serial port open", "device=ox"]),
        1,
        "{}",
        d.plain_log()
    );
    assert_eq!(lines_with(&d, &["stopped by reload", "device=ox"]), 0);
    let (code, body) = support::http(&admin, "GET", "/api/status", &[], "");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ox = status["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "ox")
        .expect("ox in /api/status")
        .clone();
    assert_eq!(ox["readings"], 6, "{ox}");
    assert_eq!(ox["port"], pty.path.display().to_string(), "{ox}");

    // Both reloads are in the audit trail, with ids only.
    let (_, body) = support::http(
        &admin,
        "GET",
        "/api/audit?limit=1000&order=oldest",
        &[support::AUTH],
        "",
    );
    let audit: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let reloads: Vec<_> = audit.iter().filter(|e| e["event"] == "reload").collect();
    assert_eq!(reloads.len(), 2, "{body}");
    assert_eq!(reloads[0]["applied"], true);
    assert_eq!(
        reloads[0]["changes"]["sinks_added"],
        serde_json::json!(["outB"])
    );
    assert_eq!(
        reloads[0]["changes"]["sinks_removed"],
        serde_json::json!(["ehr-hl7"])
    );
    assert_eq!(
        reloads[1]["changes"]["sinks_changed"],
        serde_json::json!(["outA"])
    );
    assert!(
        !body.contains(out_a2.to_str().unwrap()),
        "no settings in the audit: {body}"
    );

    // A new sink that cannot be set up refuses the whole reload: nothing changes.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    write(&[
        file_sink("outC", &file.join("sub")),
        file_sink("outB", &out_b),
    ]);
    signal(&d, Signal::SIGHUP);
    wait_lines(
        &d,
        &["config reload refused", "sink outC: cannot use outbox"],
        1,
        Duration::from_secs(10),
    );
    pty.send(&nonin(64));
    wait_out(&d, &out_a2, 4, Duration::from_secs(10));
    wait_out(&d, &out_b, 6, Duration::from_secs(10));

    let (st, _) = d.stop();
    assert!(st.success());
    // The removed sink's readings are still queued, shown as not configured.
    let stats: serde_json::Value =
        serde_json::from_str(&vitalsd(&["queue", "stats"], &cfg)).unwrap();
    let hl7 = stats["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == "ehr-hl7")
        .expect("the removed sink in the stats")
        .clone();
    assert_eq!(
        (hl7["pending"].as_u64(), hl7["configured"].as_bool()),
        (Some(2), Some(false)),
        "{stats}"
    );
    let trail = vitalsd(&["audit"], &cfg);
    assert_eq!(
        trail
            .lines()
            .filter(|l| l.contains("\"event\":\"reload\"") && l.contains("\"applied\":true"))
            .count(),
        2,
        "{trail}"
    );
    assert_eq!(
        trail
            .lines()
            .filter(|l| l.contains("\"applied\":false") && l.contains("sink outC"))
            .count(),
        1,
        "{trail}"
    );
}
