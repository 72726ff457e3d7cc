//! Problems reported with key and line: every one at once, semantic ones, duplicates,
//! broken TOML, no sinks, sink defaults and mistakes, open secrets.

use super::*;

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
