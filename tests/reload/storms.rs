//! Reload storms while readings flow, SIGHUP during start-up and shutdown, a USB device
//! without its adapter.

use super::*;

#[test]
fn a_reload_storm_while_readings_flow_loses_nothing_ends_in_the_last_config_and_a_vanished_file_is_refused(
) {
    let tmp = tempfile::tempdir().unwrap();
    let (out_a, out_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let cfg = tmp.path().join("vitalsd.toml");
    let pty = Pty::new();
    let device = [serial_device("ox", "exam-1", &pty.path)];
    let write = |with_b: bool| {
        let mut sinks = vec![file_sink("outA", &out_a)];
        if with_b {
            sinks.push(file_sink("outB", &out_b));
        }
        // Written aside and renamed over, as editors and config tools do: a reload never reads
        // half a file.
        let aside = site(tmp.path(), false, &device, &sinks).write_as("vitalsd.toml.new");
        std::fs::rename(&aside, &cfg).unwrap();
    };
    write(false);
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    wait_lines(
        &d,
        &["serial port open", "device=ox"],
        1,
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(300));

    const N: u32 = 40;
    let mut master = pty.master.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        for i in 0..N {
            master.write_all(&nonin(60 + i)).unwrap();
            master.flush().unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    for i in 0..20 {
        write(i % 2 == 1); // the last (i = 19) has outB
        signal(&d, Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(25));
    }
    sender.join().unwrap();

    // outA was in every config: it has every reading exactly once.
    wait_out(&d, &out_a, 2 * N as usize, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let mut hr = heart_rates(&out_a);
    hr.sort_unstable();
    assert_eq!(hr, (60..60 + i64::from(N)).collect::<Vec<_>>());

    // Every SIGHUP that was taken has finished; the last config (with outB) runs.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let taken = lines_with(&d, &["SIGHUP: reloading"]);
        let done =
            lines_with(&d, &["config reloaded"]) + lines_with(&d, &["config reload refused"]);
        if taken > 0 && taken == done {
            break;
        }
        assert!(
            Instant::now() < until,
            "reloads did not settle:\n{}",
            d.plain_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines_with(&d, &["config reload refused"]), 0);
    pty.send(&nonin(150));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !heart_rates(&out_b).contains(&150) {
        assert!(
            Instant::now() < deadline,
            "outB of the last config did not get the reading"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines_with(&d, &["serial port open", "device=ox"]), 1);

    // The file vanishes: refused, and the running config keeps going.
    std::fs::remove_file(&cfg).unwrap();
    signal(&d, Signal::SIGHUP);
    wait_lines(
        &d,
        &["config reload refused", "cannot read the config file"],
        1,
        Duration::from_secs(10),
    );
    pty.send(&nonin(151));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(heart_rates(&out_b).contains(&151) && heart_rates(&out_a).contains(&151)) {
        assert!(
            Instant::now() < deadline,
            "the running config stopped after a refused reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, _) = d.stop();
    assert!(st.success());
}

#[test]
fn sighup_during_start_up_and_during_shutdown_does_not_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pty = Pty::new();
    let cfg = site(
        tmp.path(),
        false,
        &[serial_device("ox", "exam-1", &pty.path)],
        &[file_sink("outA", &out)],
    )
    .write();
    let mut d = Daemon::start(&cfg, &tmp.path().join("log"));
    d.wait_log("vitalsd starting", Duration::from_secs(10));
    let until = Instant::now() + Duration::from_secs(10);
    // At least one SIGHUP, even when the daemon got ready between two polls of its log.
    loop {
        signal(&d, Signal::SIGHUP);
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "died: {}",
            d.plain_log()
        );
        if d.log().contains("vitalsd ready") {
            break;
        }
        assert!(Instant::now() < until, "not ready:\n{}", d.plain_log());
        std::thread::sleep(Duration::from_millis(1));
    }
    // The SIGHUPs of start-up are handled once it is ready.
    wait_lines(&d, &["config reloaded"], 1, Duration::from_secs(10));
    assert!(d.child.try_wait().unwrap().is_none());

    signal(&d, Signal::SIGTERM);
    for _ in 0..20 {
        if d.child.try_wait().unwrap().is_some() {
            break;
        }
        signal(&d, Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(2));
    }
    let until = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", d.plain_log());
    assert!(d.log().contains("vitalsd stopped"));
}

#[test]
fn a_usb_device_without_its_adapter_is_not_connected_and_says_which_ids() {
    let tmp = tempfile::tempdir().unwrap();
    // The device by hand: the builder writes serial devices by path only.
    let cfg = site(tmp.path(), true, &[], &[file_sink("outA", &tmp.path().join("out"))])
        .toml_tail(
            "[[device]]\nid = \"ox-usb\"\ndriver = \"nonin-ascii\"\nroom = \"exam-9\"\n\
             serial = { usb = { vendor = \"0403\", product = \"6001\", serial = \"NO-SUCH-ADAPTER\" } }\n",
        )
        .write();
    let check = vitalsd(&["check-config"], &cfg);
    assert!(check.contains("ok"), "{check}");
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    let admin = d.admin_addr();
    wait_lines(
        &d,
        &[
            "serial port not found",
            "device=ox-usb",
            "no USB serial adapter 0403:6001 serial NO-SUCH-ADAPTER",
        ],
        1,
        Duration::from_secs(10),
    );
    let (_, body) = support::http(&admin, "GET", "/api/status", &[], "");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let dev = &status["devices"][0];
    assert_eq!(
        (dev["id"].as_str(), dev["connected"].as_bool()),
        (Some("ox-usb"), Some(false)),
        "{body}"
    );
    assert!(
        dev.get("port").is_none(),
        "no port is shown while unresolved: {body}"
    );
    let (st, _) = d.stop();
    assert!(st.success());
}
