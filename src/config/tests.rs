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
    assert_eq!(cfg.patient.mode, PatientMode::Location);
    let DeviceTransport::Serial(s) = &cfg.devices[0].transport;
    assert_eq!((s.baud, s.data_bits, s.stop_bits), (9600, 8, 1));
    assert_eq!(s.parity, Parity::None);
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
    let DeviceTransport::Serial(ex) = &example.devices[0].transport;
    let DeviceTransport::Serial(de) = &defaults.devices[0].transport;
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
        "sink[0].fromat (line 22): unknown field `fromat`",
    ];
    for e in expect {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing `{e}` in {p:#?}"
        );
    }
    assert_eq!(p.len(), 4, "{p:#?}");
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
