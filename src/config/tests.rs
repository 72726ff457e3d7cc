use super::*;

const MINIMAL: &str = r#"
[[device]]
id = "ox"
driver = "nonin-ascii"
room = "exam-1"
serial = { path = "/dev/ttyUSB0" }

[[sink]]
id = "outbox"
type = "file"
dir = "/tmp/outbox"
"#;

fn problems(src: &str) -> Vec<String> {
    match parse(src, "test.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn a_minimal_config_is_valid_and_takes_the_defaults() {
    let cfg = parse(MINIMAL, "test.toml").unwrap();
    assert_eq!(cfg.daemon.data_dir, PathBuf::from("/var/lib/vitalsd"));
    assert_eq!(cfg.daemon.cache_size, 16 * 1024 * 1024);
    assert_eq!(cfg.patient.mode, PatientMode::Hold);
    let DeviceTransport::Serial(s) = &cfg.devices[0].transport else {
        panic!("serial")
    };
    assert_eq!((s.baud, s.data_bits, s.stop_bits), (9600, 8, 1));
    assert_eq!(s.parity, Parity::None);
}

/// MINIMAL's device with an `hl7-mllp` sink and `extra` keys on it: its `waveform`, or why not.
fn mllp_waveform(extra: &str) -> Result<bool, Vec<String>> {
    let (device, _) = MINIMAL.split_once("[[sink]]").expect("MINIMAL has a sink");
    let src = format!(
        "{device}[[sink]]\nid = \"engine\"\ntype = \"hl7-mllp\"\naddress = \"localhost:6661\"\n{extra}"
    );
    match parse(&src, "t.toml") {
        Ok(cfg) => match &cfg.sinks[0] {
            SinkConfig::Mllp(m) => Ok(m.waveform),
            _ => Err(vec!["not mllp".into()]),
        },
        Err(e) => Err(e.problems.iter().map(ToString::to_string).collect()),
    }
}

#[test]
fn the_hl7_waveform_option_is_off_by_default_and_must_be_a_boolean() {
    assert_eq!(mllp_waveform(""), Ok(false));
    assert_eq!(mllp_waveform("waveform = true\n"), Ok(true));
    let p = mllp_waveform("waveform = \"yes\"\n").unwrap_err();
    assert!(
        p.iter()
            .any(|x| x.starts_with("sink[0].waveform") && x.contains("boolean")),
        "{p:?}"
    );
}

#[test]
fn the_file_outbox_takes_waveform_only_with_the_hl7_format() {
    // MINIMAL ends inside its file sink's table: the keys go on that sink.
    let cfg = |format: &str| {
        parse(
            &format!("{MINIMAL}format = \"{format}\"\nwaveform = true\n"),
            "t.toml",
        )
    };
    match &cfg("hl7").expect("valid").sinks[0] {
        SinkConfig::File(f) => assert!(f.waveform),
        other => panic!("{other:?}"),
    }
    let e = cfg("fhir").expect_err("refused");
    assert!(
        e.problems
            .iter()
            .any(|p| p.to_string().starts_with("sink[0].waveform")),
        "{e:?}"
    );
}

#[test]
fn history_max_bytes_defaults_to_512_mib_and_refuses_less_than_16_mib() {
    let cfg = parse(MINIMAL, "test.toml").unwrap();
    assert_eq!(cfg.daemon.history_max_bytes, 512 * 1024 * 1024);
    let p = problems(&format!(
        "[daemon]\nhistory_max_bytes = \"1MiB\"\n{MINIMAL}"
    ));
    assert!(
        p.iter()
            .any(|x| x.starts_with("daemon.history_max_bytes (line 2)")),
        "{p:?}"
    );
}

#[test]
fn audit_retention_defaults_to_90_days_and_refuses_less_than_a_day() {
    let cfg = parse(MINIMAL, "test.toml").unwrap();
    assert_eq!(
        cfg.daemon.audit_retention,
        std::time::Duration::from_secs(90 * 24 * 3600)
    );
    let p = problems(&format!("[daemon]\naudit_retention = \"2h\"\n{MINIMAL}"));
    assert!(
        p.iter()
            .any(|x| x.starts_with("daemon.audit_retention (line 2)") && x.contains("at least 1d")),
        "{p:?}"
    );
}

#[test]
fn the_example_config_is_valid_and_states_the_real_defaults() {
    let src = include_str!("../../config/example.toml");
    let example = parse(src, "example.toml").unwrap_or_else(|e| panic!("{e}"));
    let defaults = parse(MINIMAL, "minimal.toml").unwrap();
    assert_eq!(
        format!("{:?}", example.daemon),
        format!("{:?}", defaults.daemon),
        "[daemon] in config/example.toml differs from the built-in defaults"
    );
    assert_eq!(
        format!("{:?}", example.patient),
        format!("{:?}", defaults.patient),
        "[patient] in config/example.toml differs from the built-in defaults"
    );
    let DeviceTransport::Serial(ex) = &example.devices[0].transport else {
        panic!("serial")
    };
    let DeviceTransport::Serial(de) = &defaults.devices[0].transport else {
        panic!("serial")
    };
    assert_eq!(
        (
            ex.baud,
            ex.data_bits,
            ex.parity,
            ex.stop_bits,
            ex.flow_control
        ),
        (
            de.baud,
            de.data_bits,
            de.parity,
            de.stop_bits,
            de.flow_control
        )
    );
    assert_eq!(
        example.devices[0].inactivity_timeout,
        defaults.devices[0].inactivity_timeout
    );
}

#[test]
fn every_problem_is_reported_at_once_with_key_and_line() {
    let src = r#"[daemon]
data_dir = "/x"
queue_max_bytes = "lots"

[[device]]
id = "ox"
driver = "nonin-ascii"
room = "exam-1"
serial = { path = "/dev/ttyUSB0", baud = 9600, parity = "mark" }

[[device]]
id = "ox"
driver = "no-such-driver"
room = "exam-2"
serial = { path = "/dev/ttyUSB1" }
colour = "blue"

[[sink]]
id = "outbox"
type = "file"
dir = "/tmp/o"
fromat = "fhir"
"#;
    let p = problems(src);
    let expect = [
        "daemon.queue_max_bytes (line 3): invalid size `lots`",
        "device[0].serial.parity (line 9): `mark`",
        "device[1].colour (line 16): unknown field `colour`",
        // The unknown key does not hide the same table's unknown driver.
        "device[1].driver (line 13): unknown driver `no-such-driver`",
        "sink[0].fromat (line 22): unknown field `fromat`",
    ];
    for e in expect {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing `{e}` in {p:#?}"
        );
    }
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn semantic_problems_name_their_keys() {
    let src = r#"
[[device]]
id = "ox"
driver = "no-such-driver"
room = "exam-1"
serial = { path = "/dev/ttyUSB0" }

[[device]]
id = "ox"
driver = "nonin-ascii"
room = "exam-1"
serial = { path = "/dev/ttyUSB1" }
options = { report = "sometimes" }

[[device]]
id = "bad id!"
driver = "nonin-ascii"
room = "exam-1"

[[sink]]
id = "ehr"
type = "carrier-pigeon"
"#;
    let p = problems(src);
    let has = |s: &str| p.iter().any(|x| x.contains(s));
    assert!(
        has("device[0].driver (line 4): unknown driver `no-such-driver`"),
        "{p:#?}"
    );
    assert!(has("device[1].options.report (line 13)"), "{p:#?}");
    assert!(has("device[2].id (line 16)"), "{p:#?}");
    assert!(
        has("device[2] (line 15): needs exactly one transport"),
        "{p:#?}"
    );
    assert!(
        has("sink[0].type (line 22): unknown sink type `carrier-pigeon`"),
        "{p:#?}"
    );
}

#[test]
fn duplicate_ids_and_unknown_tables_are_errors() {
    let src = format!(
        "{MINIMAL}\n[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/o\"\n\n[extras]\nx = 1\n"
    );
    let p = problems(&src);
    assert!(
        p.iter()
            .any(|x| x.starts_with("sink[1].id") && x.contains("duplicate sink id `outbox`")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|x| x.starts_with("extras") && x.contains("unknown table")),
        "{p:#?}"
    );
}

#[test]
fn broken_toml_reports_the_line() {
    let p = problems("[daemon]\ndata_dir = \n");
    assert_eq!(p.len(), 1);
    assert!(
        p[0].contains("(line 2)") && p[0].contains("not valid TOML"),
        "{p:#?}"
    );
}

#[test]
fn a_config_without_sinks_is_refused() {
    let src = "[[device]]\nid = \"a\"\ndriver = \"nonin-ascii\"\nroom = \"r\"\nserial = { path = \"/dev/x\" }\n";
    assert!(problems(src).iter().any(|p| p.contains("no [[sink]]")));
}

#[test]
fn fhir_hl7_and_mqtt_sinks_are_read_with_their_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("ehr.token");
    std::fs::write(&token, "t0k3n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let src = format!(
        r#"
[mqtt]
url = "mqtts://broker.clinic.local"
client_id = "vitalsd-east"

[[device]]
id = "thermo"
driver = "json"
room = "exam-3"
mqtt = {{ topic = "gw/exam3/+/json", payload = "json" }}

[[sink]]
id = "ehr"
type = "fhir"
base_url = "https://ehr.clinic.local/fhir/R4/"
token_file = {token:?}

[[sink]]
id = "engine"
type = "hl7-mllp"
address = "127.0.0.1:6661"

[[sink]]
id = "region"
type = "mqtt"
topic = "vitals/{{room}}/{{kind}}"
"#
    );
    let cfg = parse(&src, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let mqtt = cfg.mqtt.as_ref().unwrap();
    assert_eq!(
        (mqtt.host.as_str(), mqtt.port, mqtt.tls),
        ("broker.clinic.local", 8883, true)
    );
    assert!(
        matches!(&cfg.devices[0].transport, DeviceTransport::Mqtt(m) if m.payload == PayloadMode::Json)
    );
    let SinkConfig::Fhir(f) = &cfg.sinks[0] else {
        panic!("not fhir")
    };
    assert_eq!(f.base_url, "https://ehr.clinic.local/fhir/R4");
    assert_eq!((f.batch_size, f.timeout), (50, Duration::from_secs(10)));
    assert_eq!(f.auth, FhirAuth::TokenFile(token.clone()));
    let SinkConfig::Mllp(m) = &cfg.sinks[1] else {
        panic!("not mllp")
    };
    assert_eq!(
        (m.ack_timeout, m.max_ar_retries, m.tls),
        (Duration::from_secs(10), 5, false)
    );
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn transport_and_sink_mistakes_name_their_keys() {
    let src = r#"
[[device]]
id = "gw"
driver = "json"
room = "exam-3"
mqtt = { topic = "gw/exam#" }

[[device]]
id = "ox"
driver = "nonin-ascii"
room = "exam-3"
mllp = { listen = "0.0.0.0:2575", allow = ["10.20.0.0/16"] }

[[sink]]
id = "ehr"
type = "fhir"
base_url = "ftp://ehr"
token_file = "/nonexistent/token"

[[sink]]
id = "engine"
type = "hl7-mllp"
address = "engine"
sending_facility = "EAST|WING"

[[sink]]
id = "region"
type = "mqtt"
topic = "vitals/{patient}"
"#;
    let p = problems(src);
    let has = |s: &str| p.iter().any(|x| x.contains(s));
    assert!(
        has("device[0].mqtt (line 6): an mqtt device needs the [mqtt] table"),
        "{p:#?}"
    );
    assert!(has("device[0].mqtt.topic (line 6)"), "{p:#?}");
    assert!(
        has("device[1].mllp (line 12): driver `nonin-ascii` does not read over mllp"),
        "{p:#?}"
    );
    assert!(has("sink[0].base_url (line 17)"), "{p:#?}");
    assert!(
        has("sink[0].token_file (line 18): cannot read /nonexistent/token"),
        "{p:#?}"
    );
    assert!(has("sink[1].address (line 23)"), "{p:#?}");
    assert!(has("sink[1].sending_facility (line 24)"), "{p:#?}");
    assert!(
        has("sink[2].topic (line 29): unknown placeholder"),
        "{p:#?}"
    );
    assert!(has("sink[2].url"), "{p:#?}");
}

#[test]
fn a_secret_readable_by_everyone_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("ehr.token");
    std::fs::write(&token, "t").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let src = format!("{MINIMAL}\n[[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"https://e/fhir\"\ntoken_file = {token:?}\n");
    let cfg = parse(&src, "t.toml").unwrap();
    assert_eq!(cfg.warnings.len(), 1);
    assert!(
        cfg.warnings[0]
            .to_string()
            .starts_with("sink[1].token_file (line 17)"),
        "{}",
        cfg.warnings[0]
    );
}

/// A one-device config for `driver` on a serial port with nothing but the path.
fn serial_device(driver: &str) -> String {
    let options = match driver {
        "lines" => {
            r#"options = { pattern = '^(?P<w>[0-9.]+) kg$', kind = "body_weight", "value.w" = "weight:kg" }"#
        }
        "barcode" => r#"options = { system = "urn:oid:1.2.3" }"#,
        _ => "",
    };
    format!(
        "[[device]]\nid = \"d\"\ndriver = \"{driver}\"\nroom = \"r\"\nserial = {{ path = \"/dev/ttyUSB0\" }}\n{options}\n\n[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/tmp/outbox\"\n"
    )
}

#[test]
fn every_serial_driver_gets_its_own_line_settings_and_silence_when_the_config_leaves_them_out() {
    let serial = crate::decode::drivers()
        .iter()
        .filter(|d| d.supports(crate::decode::Transport::Serial));
    let mut seen = 0;
    for info in serial {
        let src = serial_device(info.name);
        let cfg = parse(&src, "t.toml").unwrap_or_else(|e| panic!("{}: {e}", info.name));
        let DeviceTransport::Serial(s) = &cfg.devices[0].transport else {
            panic!("serial")
        };
        let want = info
            .serial
            .unwrap_or(crate::decode::registry::SERIAL_9600_8N1);
        assert_eq!(
            (s.baud, s.data_bits, s.stop_bits),
            (want.baud, want.data_bits, want.stop_bits),
            "{}",
            info.name
        );
        let streams = info.continuous || info.kinds.contains(&crate::reading::Kind::Ecg);
        let silence = cfg.devices[0].inactivity_timeout;
        assert_eq!(
            silence,
            if streams {
                CONTINUOUS_SILENCE
            } else {
                Duration::ZERO
            },
            "{}",
            info.name
        );
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} serial drivers");
    // The two documented exceptions to 9600 baud.
    for driver in ["ble-gatt", "openbci"] {
        let cfg = parse(&serial_device(driver), "t.toml").unwrap();
        let DeviceTransport::Serial(s) = &cfg.devices[0].transport else {
            panic!("serial")
        };
        assert_eq!(s.baud, 115_200, "{driver}");
    }
    // A spot-check device is never reopened for silence; a streaming oximeter is.
    let cuff = parse(&serial_device("barcode"), "t.toml").unwrap();
    assert_eq!(cuff.devices[0].inactivity_timeout, Duration::ZERO);
    let ox = parse(&serial_device("nonin-ascii"), "t.toml").unwrap();
    assert_eq!(ox.devices[0].inactivity_timeout, Duration::from_secs(30));
}

#[test]
fn settings_the_config_gives_override_the_drivers_defaults() {
    let src = serial_device("ble-gatt").replace(
        "serial = { path = \"/dev/ttyUSB0\" }",
        "serial = { path = \"/dev/ttyUSB0\", baud = 57600, parity = \"even\" }\ninactivity_timeout = \"2m\"",
    );
    let cfg = parse(&src, "t.toml").unwrap();
    let DeviceTransport::Serial(s) = &cfg.devices[0].transport else {
        panic!("serial")
    };
    assert_eq!((s.baud, s.parity), (57_600, Parity::Even));
    assert_eq!(cfg.devices[0].inactivity_timeout, Duration::from_secs(120));
}

#[test]
fn an_open_admin_token_file_and_an_open_admin_address_without_one_are_problems() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("admin.token");
    std::fs::write(&token, "t").unwrap();
    let daemon = |listen: &str, file: &str| {
        format!("[daemon]\nadmin_listen = {listen:?}\nadmin_token_file = {file:?}\n{MINIMAL}")
    };
    let file = token.to_str().unwrap();
    for (mode, ok) in [(0o600, true), (0o640, true), (0o644, false), (0o660, false)] {
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
        let p = problems(&daemon("127.0.0.1:9750", file));
        assert_eq!(p.is_empty(), ok, "{mode:o}: {p:?}");
        if !ok {
            assert!(
                p[0].starts_with("daemon.admin_token_file (line 3)") && p[0].contains("chmod 640"),
                "{p:?}"
            );
        }
    }
    let p = problems(&daemon("0.0.0.0:9750", ""));
    assert!(
        p.len() == 1
            && p[0].starts_with("daemon.admin_listen (line 2)")
            && p[0].contains("admin_token_file"),
        "{p:?}"
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(problems(&daemon("0.0.0.0:9750", file)).is_empty());
}

#[test]
fn admin_hosts_are_bare_names_or_addresses() {
    let src = |hosts: &str| format!("[daemon]\nadmin_hosts = {hosts}\n{MINIMAL}");
    let cfg = parse(
        &src(r#"["vitals-box.clinic.local", "192.168.1.5", "::1"]"#),
        "t",
    )
    .unwrap();
    assert_eq!(cfg.daemon.admin_hosts.len(), 3);
    for bad in ["http://box", "box:9750", "box/x", "a..b", ""] {
        let p = problems(&src(&format!("[{bad:?}]")));
        assert!(
            p.len() == 1 && p[0].starts_with("daemon.admin_hosts[0]"),
            "{bad}: {p:?}"
        );
    }
}
