//! SIGHUP reload against the real binary: the config file is rewritten between SIGHUPs and
//! the effects are observed where a user sees them — outboxes, the log, the admin API, the
//! audit trail, `vitalsd queue stats` — with real PTYs and a real Mosquitto.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::mosquitto::Mosquitto;
use support::{outbox_lines, Daemon, Pty};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn signal(d: &Daemon, sig: Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(d.child.id()).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// The ANSI-free log.
fn plain_log(d: &Daemon) -> String {
    let ansi = regex::Regex::new(r"\x1b\[[0-9;]*m").unwrap();
    ansi.replace_all(&d.log(), "").to_string()
}

/// Log lines holding every needle.
fn lines_with(d: &Daemon, needles: &[&str]) -> usize {
    plain_log(d)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Waits until `n` log lines hold every needle.
#[track_caller]
fn wait_lines(d: &Daemon, needles: &[&str], n: usize, within: Duration) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if lines_with(d, needles) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!(
        "fewer than {n} log lines with {needles:?}:\n{}",
        plain_log(d)
    );
}

/// Waits until the outbox holds at least `n` lines; panics with the daemon's log.
#[track_caller]
fn wait_out(d: &Daemon, dir: &Path, n: usize, within: Duration) {
    let until = Instant::now() + within;
    while outbox_lines(dir).len() < n {
        assert!(
            Instant::now() < until,
            "{} has {} of {n} lines:\n{}",
            dir.display(),
            outbox_lines(dir).len(),
            plain_log(d)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn daemon_section(data: &Path, admin: bool) -> String {
    let s = format!(
        "[daemon]\ndata_dir = {data:?}\nadmin_listen = \"{}\"\nshutdown_timeout = \"5s\"\n\n[patient]\nmode = \"location\"\n\n",
        if admin { "127.0.0.1:0" } else { "" }
    );
    match (admin, data.parent()) {
        (true, Some(dir)) => support::with_token(&s, dir),
        _ => s,
    }
}

fn serial_device(id: &str, room: &str, path: &Path) -> String {
    format!(
        "[[device]]\nid = {id:?}\ndriver = \"nonin-ascii\"\nroom = {room:?}\nserial = {{ path = {path:?} }}\noptions = {{ report = \"every\" }}\n\n"
    )
}

fn file_sink(id: &str, dir: &Path) -> String {
    format!("[[sink]]\nid = {id:?}\ntype = \"file\"\ndir = {dir:?}\nformat = \"reading\"\n\n")
}

/// An HL7 sink whose receiver refuses connections: its readings stay pending.
fn refused_mllp_sink(id: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("[[sink]]\nid = {id:?}\ntype = \"hl7-mllp\"\naddress = \"127.0.0.1:{port}\"\n\n")
}

/// Heart rates in an outbox of `reading` lines.
fn heart_rates(dir: &Path) -> Vec<i64> {
    outbox_lines(dir)
        .iter()
        .filter(|l| l["kind"] == "heart_rate")
        .filter_map(|l| l["values"][0]["value"].as_f64())
        .map(whole)
        .collect()
}

/// `v` rounded to a whole number (without a lossy cast).
fn whole(v: f64) -> i64 {
    format!("{v:.0}").parse().unwrap_or(i64::MIN)
}

/// A Nonin line whose SpO2 differs with `hr` too (equal values in the same second are one
/// measurement to the dedupe key).
fn nonin(hr: u32) -> Vec<u8> {
    format!("SPO2={:03} HR={hr:03}\r\n", 50 + hr % 50).into_bytes()
}

/// `vitalsd <args> --config <config>` with the daemon stopped; its stdout.
fn vitalsd(args: &[&str], config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .env(crate::support::KEY_ENV, crate::support::store_key_file())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Sinks and serial devices.

#[test]
fn a_reload_adds_removes_and_changes_sinks_in_place_and_leaves_the_device_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (out_a, out_a2, out_b) = (
        tmp.path().join("a"),
        tmp.path().join("a2"),
        tmp.path().join("b"),
    );
    let cfg = tmp.path().join("vitalsd.toml");
    let pty = Pty::new();
    let device = serial_device("ox", "exam-1", &pty.path);
    let held = refused_mllp_sink("ehr-hl7");
    let write = |sinks: &str| {
        std::fs::write(
            &cfg,
            format!("{}{device}{sinks}", daemon_section(&data, true)),
        )
        .unwrap()
    };
    write(&format!("{}{held}", file_sink("outA", &out_a)));
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
    write(&format!(
        "{}{}",
        file_sink("outA", &out_a),
        file_sink("outB", &out_b)
    ));
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
    write(&format!(
        "{}{}",
        file_sink("outA", &out_a2),
        file_sink("outB", &out_b)
    ));
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
        plain_log(&d)
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
    write(&format!(
        "{}{}",
        file_sink("outC", &file.join("sub")),
        file_sink("outB", &out_b)
    ));
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

#[test]
fn a_reload_storm_while_readings_flow_loses_nothing_ends_in_the_last_config_and_a_vanished_file_is_refused(
) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (out_a, out_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let cfg = tmp.path().join("vitalsd.toml");
    let pty = Pty::new();
    let device = serial_device("ox", "exam-1", &pty.path);
    let write = |with_b: bool| {
        let mut text = format!(
            "{}{device}{}",
            daemon_section(&data, false),
            file_sink("outA", &out_a)
        );
        if with_b {
            text.push_str(&file_sink("outB", &out_b));
        }
        std::fs::write(&cfg, text).unwrap();
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
            plain_log(&d)
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
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    let cfg = tmp.path().join("vitalsd.toml");
    let pty = Pty::new();
    let text = format!(
        "{}{}{}",
        daemon_section(&data, false),
        serial_device("ox", "exam-1", &pty.path),
        file_sink("outA", &out)
    );
    std::fs::write(&cfg, text).unwrap();
    let mut d = Daemon::start(&cfg, &tmp.path().join("log"));
    d.wait_log("vitalsd starting", Duration::from_secs(10));
    let until = Instant::now() + Duration::from_secs(10);
    // At least one SIGHUP, even when the daemon got ready between two polls of its log.
    loop {
        signal(&d, Signal::SIGHUP);
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "died: {}",
            plain_log(&d)
        );
        if d.log().contains("vitalsd ready") {
            break;
        }
        assert!(Instant::now() < until, "not ready:\n{}", plain_log(&d));
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
    assert!(status.success(), "{status:?}\n{}", plain_log(&d));
    assert!(d.log().contains("vitalsd stopped"));
}

#[test]
fn a_usb_device_without_its_adapter_is_not_connected_and_says_which_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("vitalsd.toml");
    let text = format!(
        "{}[[device]]\nid = \"ox-usb\"\ndriver = \"nonin-ascii\"\nroom = \"exam-9\"\n\
         serial = {{ usb = {{ vendor = \"0403\", product = \"6001\", serial = \"NO-SUCH-ADAPTER\" }} }}\n\n{}",
        daemon_section(&data, true),
        file_sink("outA", &tmp.path().join("out"))
    );
    std::fs::write(&cfg, &text).unwrap();
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

// ---------------------------------------------------------------------------------------------
// MQTT devices.

/// Publishes at QoS 1 and returns once the broker acknowledged every message.
fn publish(port: u16, msgs: &[(&str, Vec<u8>)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = MqttOptions::new(format!("pub-{:08x}", fastrand::u32(..)), "127.0.0.1", port);
        let (client, mut el) = AsyncClient::new(opts, 100);
        for (t, p) in msgs {
            client
                .publish(*t, QoS::AtLeastOnce, false, p.clone())
                .await
                .unwrap();
        }
        let mut acked = 0;
        let wait = async {
            while acked < msgs.len() {
                if let Event::Incoming(Packet::PubAck(_)) = el.poll().await.expect("broker") {
                    acked += 1;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("PUBACKs");
        let _ = client.disconnect().await;
    });
}

/// A `json` driver body weight; `centi` tells readings apart.
fn weight(centi: i64) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!(
        r#"{{"kind":"body_weight","device_time":"{now}","values":[{{"name":"weight","value":{}.{:02},"unit":"kg"}}]}}"#,
        centi / 100,
        centi % 100
    )
    .into_bytes()
}

fn mqtt_device(id: &str, topic: &str) -> String {
    format!(
        "[[device]]\nid = {id:?}\ndriver = \"json\"\nroom = \"exam-4\"\nmqtt = {{ topic = {topic:?}, payload = \"json\" }}\n\n"
    )
}

/// `(device id, weight in hundredths of a kg)` of every body weight in the outbox.
fn weights(dir: &Path) -> Vec<(String, i64)> {
    outbox_lines(dir)
        .iter()
        .filter(|l| l["kind"] == "body_weight")
        .map(|l| {
            (
                l["device"]["id"].as_str().unwrap_or("").to_string(),
                whole(l["values"][0]["value"].as_f64().unwrap() * 100.0),
            )
        })
        .collect()
}

#[test]
fn mqtt_devices_added_and_removed_by_reload_subscribe_and_unsubscribe_while_serial_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&tmp.path().join("broker"));
    let data = tmp.path().join("data");
    let out: PathBuf = tmp.path().join("out");
    let cfg = tmp.path().join("vitalsd.toml");
    let pty = Pty::new();
    let head = format!(
        "{}[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"vitalsd-reload\"\n\n{}",
        daemon_section(&data, false),
        broker.port,
        serial_device("ox", "exam-1", &pty.path)
    );
    let sink = file_sink("outA", &out);
    std::fs::write(
        &cfg,
        format!("{head}{}{sink}", mqtt_device("scale1", "bridge/one")),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &tmp.path().join("log"));
    wait_lines(&d, &["mqtt subscribed"], 1, Duration::from_secs(15));
    wait_lines(
        &d,
        &["serial port open", "device=ox"],
        1,
        Duration::from_secs(10),
    );
    publish(broker.port, &[("bridge/one", weight(7001))]);
    wait_out(&d, &out, 1, Duration::from_secs(10));

    // scale1 goes, scale2 comes on another topic.
    std::fs::write(
        &cfg,
        format!("{head}{}{sink}", mqtt_device("scale2", "bridge/two")),
    )
    .unwrap();
    signal(&d, Signal::SIGHUP);
    wait_lines(
        &d,
        &[
            "config reloaded",
            "devices_added=scale2",
            "devices_removed=scale1",
            "mqtt_restarted=true",
        ],
        1,
        Duration::from_secs(15),
    );
    wait_lines(
        &d,
        &["mqtt unsubscribing", "bridge/one"],
        1,
        Duration::from_secs(10),
    );
    wait_lines(&d, &["mqtt subscribed"], 2, Duration::from_secs(15));
    publish(
        broker.port,
        &[("bridge/one", weight(7002)), ("bridge/two", weight(7003))],
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !weights(&out).contains(&("scale2".into(), 7003)) {
        assert!(
            Instant::now() < until,
            "scale2 not delivered: {:?}",
            weights(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        weights(&out),
        vec![("scale1".to_string(), 7001), ("scale2".to_string(), 7003)]
    );
    // The serial device on the same daemon kept running untouched.
    pty.send(&nonin(64));
    let until = Instant::now() + Duration::from_secs(10);
    while !heart_rates(&out).contains(&64) {
        assert!(Instant::now() < until, "the serial device stopped reading");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines_with(&d, &["serial port open", "device=ox"]), 1);
    let (st, _) = d.stop();
    assert!(st.success());
    // The removed topic was unsubscribed: its message never reached vitalsd at all.
    let stats: serde_json::Value =
        serde_json::from_str(&vitalsd(&["queue", "stats"], &cfg)).unwrap();
    assert_eq!(stats["rejected_payloads"], 0, "{stats}");
}
