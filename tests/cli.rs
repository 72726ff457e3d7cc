//! The command line as a user runs it: check-config, decode, drivers, queue, demo.

mod support;

fn vitalsd(args: &[&str]) -> std::process::Output {
    support::vitalsd(args)
}

#[test]
fn check_config_reports_every_problem_with_key_and_line_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.toml");
    std::fs::write(
        &path,
        "[daemon]\ndata_dir = \"/x\"\nclock_skew = \"5m\"\n\n[[device]]\nid = \"ox\"\ndriver = \"nope\"\nroom = \"r\"\nserial = { path = \"/dev/x\" }\n\n[[sink]]\nid = \"o\"\ntype = \"file\"\ndir = \"/o\"\nformat = \"pdf\"\n",
    )
    .unwrap();
    let out = vitalsd(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("daemon.clock_skew (line 3): unknown field `clock_skew`"),
        "{err}"
    );
    assert!(
        err.contains("device[0].driver (line 7): unknown driver `nope`"),
        "{err}"
    );
    assert!(err.contains("sink[0].format (line 15)"), "{err}");
}

#[test]
fn check_config_accepts_the_example_config() {
    let out = vitalsd(&[
        "check-config",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

/// Every shape the test builder writes (tests/support/daemon_builder.rs) passes check-config:
/// the admin token, `[patient]`, `[mqtt]`, serial, MQTT and MLLP devices, and file, FHIR,
/// MLLP and MQTT sinks with extra lines.
#[test]
fn check_config_accepts_every_shape_the_test_builder_writes() {
    use support::{Admin, DaemonBuilder, Device, Sink};
    let tmp = tempfile::tempdir().unwrap();
    let b = DaemonBuilder::new(tmp.path())
        .admin(Admin::Token)
        .daemon("clock_skew_tolerance = \"1s\"")
        .patient_mode("hold")
        .mqtt("mqtt://127.0.0.1:1883", "vitalsd-builder")
        .serial_device("ox", "nonin-ascii", "exam-1", "report = \"every\"")
        .device(Device::mqtt(
            "cuff",
            "ble-gatt",
            "exam-3",
            "gw/exam3/+",
            "binary",
        ))
        .device(
            Device::mllp("mon", "hl7v2", "exam-1", "127.0.0.1:0")
                .transport_keys(r#"allow = ["127.0.0.1/32"], max_connections_per_peer = 2"#),
        )
        .outbox("reading")
        .sink(
            Sink::fhir("ehr", "http://127.0.0.1:1/fhir")
                .line("batch_size = 2")
                .line("timeout = \"5s\""),
        )
        .sink(Sink::mllp("engine", "127.0.0.1:2575").line("ack_timeout = \"1s\""))
        .sink(Sink::mqtt(
            "region",
            "mqtt://127.0.0.1:1883",
            "vitals/{room}",
        ));
    let text = b.toml();
    assert!(text.contains("admin_token_file = "), "{text}");
    assert!(
        text.contains(r#"mllp = { listen = "127.0.0.1:0", allow = ["127.0.0.1/32"], max_"#),
        "{text}"
    );
    let cfg = b.write();
    let out = vitalsd(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("ok (3 devices, 4 sinks)"), "{said}");

    // Without the admin API and with the room as subject: accepted too.
    let b = DaemonBuilder::new(tmp.path())
        .patient_mode("location")
        .serial_device("bridge", "json", "exam-2", "")
        .outbox("hl7");
    let out = vitalsd(&[
        "check-config",
        "--config",
        b.write_as("plain.toml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The check above can fail: a builder config with a bad device line is refused, naming it.
#[test]
fn check_config_refuses_a_builder_config_with_a_bad_device_line() {
    use support::{DaemonBuilder, Device};
    let tmp = tempfile::tempdir().unwrap();
    let cfg = DaemonBuilder::new(tmp.path())
        .device(Device::mllp("mon", "hl7v2", "exam-1", "127.0.0.1:0").line("colour = \"red\""))
        .outbox("reading")
        .write();
    let out = vitalsd(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("device[0].colour"), "{err}");
}

#[test]
fn decode_prints_canonical_readings_for_device_bytes() {
    let out = vitalsd(&[
        "decode",
        "nonin-ascii",
        "--hex",
        "31343a30323a313120535030323d30393720485231373220",
    ]);
    // Not a valid Nonin line (SP02 with a zero): exit 1 with a reason.
    assert_eq!(out.status.code(), Some(1));

    let line = hex::encode(b"14:02:11 SPO2=097 HR=072*\r\n");
    let out = vitalsd(&["decode", "nonin-ascii", "--hex", &line]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let readings: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(readings.len(), 2, "{text}");
    assert_eq!(readings[0]["kind"], "spo2");
    assert_eq!(readings[0]["values"][0]["value"], 97);
    assert_eq!(readings[0]["values"][0]["code"], "59408-5");
    assert_eq!(readings[1]["kind"], "heart_rate");
    assert_eq!(readings[1]["values"][0]["unit"], "/min");
    assert!(readings[0]["id"].is_null() && readings[0]["room"].is_null());
}

#[test]
fn decode_rejects_unknown_options_with_the_key() {
    let out = vitalsd(&[
        "decode",
        "nonin-ascii",
        "--opt",
        "colour=blue",
        "--hex",
        "00",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn drivers_lists_name_transports_and_kinds() {
    let out = vitalsd(&["drivers"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("nonin-ascii") && l.contains("serial") && l.contains("spo2")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("json")), "{text}");
}

#[test]
fn queue_stats_opens_a_stopped_daemons_store() {
    let tmp = tempfile::tempdir().unwrap();
    let pty = support::Pty::new();
    let path = support::DaemonBuilder::new(tmp.path())
        .patient_mode("hold")
        .device(support::Device::serial(
            "ox",
            "nonin-ascii",
            "exam-1",
            &pty.path,
        ))
        .outbox("fhir")
        .write_as("v.toml");
    let out = vitalsd(&["queue", "stats", "--config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["readings"], 0);
}

#[test]
fn queue_compact_gives_back_the_space_of_a_drained_backlog_and_refuses_a_running_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let pty = support::Pty::new();
    let outbox = tmp.path().join("outbox");
    let path = support::DaemonBuilder::new(tmp.path())
        .patient_mode("location")
        .device(
            support::Device::serial("ox", "nonin-ascii", "exam-1", &pty.path)
                .options(r#"report = "every""#),
        )
        .outbox("reading")
        .write_as("v.toml");
    let config = path.to_str().unwrap();
    let daemon = support::Daemon::start(&path, &tmp.path().join("log"));
    daemon.wait_log("serial port open", std::time::Duration::from_secs(10));
    // Enough readings that the drained store's dead space outweighs sled's fixed size of a
    // fresh store (readings are stored compactly: 300 frames left 0.4 MiB).
    for n in 0..1500 {
        pty.send(format!("SPO2={:03} HR={:03}\r\n", 90 + n % 10, 50 + n % 90).as_bytes());
    }
    support::wait_outbox(&outbox, 3000, std::time::Duration::from_secs(120));
    let busy = vitalsd(&["queue", "compact", "--config", config]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"));
    daemon.stop();
    let out = vitalsd(&["queue", "compact", "--config", config]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "compacted DIR: N keys, B MiB on disk before, A MiB after, in S s"
    let mib: Vec<f64> = text
        .split(", ")
        .filter(|p| p.contains(" MiB"))
        .map(|p| p.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(mib.len() == 2 && mib[1] < mib[0], "{text}");
    let verify = vitalsd(&["queue", "verify", "--config", config]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let stats = vitalsd(&["queue", "stats", "--config", config]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["readings"], 0);
}

/// The first number of the printed value of the first `kind` line of `device`, e.g. the
/// systolic of `120/80 (93) mm[Hg]`.
fn demo_value(stdout: &str, kind: &str, device: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.contains(&kind) && w.last() == Some(&device)
    })?;
    let after = line.split_once(kind)?.1.trim_start();
    let number: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse().ok()
}

#[test]
fn the_demo_runs_the_whole_pipeline_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = vitalsd(&["demo", "--for", "14s", "--dir", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A BP cuff, a thermometer, a pulse oximeter and a scale, each through its real driver
    // (ble-gatt over a serial gateway, nonin-ascii), each with a plausible value.
    for (kind, device, driver, range) in [
        ("blood_pressure", "exam1-cuff", "ble-gatt", 80.0..=200.0),
        (
            "body_temperature",
            "exam2-thermometer",
            "ble-gatt",
            35.0..=39.0,
        ),
        ("spo2", "exam1-oximeter", "nonin-ascii", 85.0..=100.0),
        ("body_weight", "exam3-scale", "ble-gatt", 30.0..=150.0),
    ] {
        let v = demo_value(&stdout, kind, device)
            .unwrap_or_else(|| panic!("demo printed no {kind} from {device}:\n{stdout}"));
        assert!(range.contains(&v), "{kind} {v} from {device}:\n{stdout}");
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(device) && l.split_whitespace().any(|w| w == driver)),
            "{device} is not listed with driver {driver}:\n{stdout}"
        );
    }
    assert!(stdout.contains("mm[Hg]") && stdout.contains("Cel") && stdout.contains(" kg"));
    // Patients are shown masked (`#` and 8 hex digits), never as the wristband's MRN.
    assert!(stdout.contains(" #"), "{stdout}");
    assert!(!stdout.contains("MRN"), "{stdout}");
    let lines = support::outbox_lines(&dir.join("outbox"));
    assert!(lines.len() >= 5, "{} outbox lines", lines.len());
    assert!(lines.iter().all(|o| o["resourceType"] == "Observation"));
    let codes: Vec<String> = lines
        .iter()
        .map(|o| o["code"]["coding"].to_string())
        .collect();
    for loinc in ["85354-9", "8310-5", "59408-5", "29463-7"] {
        assert!(
            codes.iter().any(|c| c.contains(loinc)),
            "no {loinc} in the outbox: {codes:?}"
        );
    }
}
