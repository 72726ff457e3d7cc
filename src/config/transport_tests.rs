//! The transport-security checks: plaintext to another machine, token endpoints, MLLP
//! listener allow lists and limits (docs/network-security.md).

use super::super::{parse, DeviceTransport};

const DEVICE: &str = "[[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\nserial = { path = \"/dev/ttyUSB0\" }\n\n";

/// Problems (`Err`) or warnings (`Ok`) of `DEVICE` plus `rest`.
fn check(rest: &str) -> Result<Vec<String>, Vec<String>> {
    match parse(&format!("{DEVICE}{rest}"), "t.toml") {
        Ok(cfg) => Ok(cfg.warnings.iter().map(ToString::to_string).collect()),
        Err(e) => Err(e.problems.iter().map(ToString::to_string).collect()),
    }
}

fn secret(dir: &tempfile::TempDir, name: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, "s3cret").unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    format!("{p:?}")
}

/// The case refused naming `key`, and accepted with `allow_insecure = true` (`insecure` is the
/// same text with it) with a warning naming `key`.
#[track_caller]
fn refused_then_accepted(plain: &str, insecure: &str, key: &str) {
    let p = check(plain).expect_err("refused");
    assert!(
        p.iter().any(|x| x.starts_with(key)
            && x.contains("unencrypted")
            && x.contains("allow_insecure")),
        "{p:#?}"
    );
    let w = check(insecure).unwrap_or_else(|p| panic!("{p:#?}"));
    assert!(
        w.iter()
            .any(|x| x.starts_with(key) && x.contains("allow_insecure = true")),
        "{w:#?}"
    );
}

#[test]
fn fhir_over_http_to_another_host_needs_allow_insecure() {
    let sink =
        "[[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"http://ehr.clinic.example/fhir\"\n";
    refused_then_accepted(
        sink,
        &format!("{sink}allow_insecure = true\n"),
        "sink[0].base_url (line 10)",
    );
    let dir = tempfile::tempdir().unwrap();
    let with_token = format!("{sink}token_file = {}\n", secret(&dir, "t"));
    let p = check(&with_token).expect_err("refused");
    assert!(p.iter().any(|x| x.contains("bearer token")), "{p:#?}");
    for fine in [
        "https://ehr.clinic.example/fhir",
        "http://127.0.0.1:8080/fhir",
        "http://localhost/fhir",
        "http://[::1]:8080/fhir",
    ] {
        let w = check(&format!(
            "[[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"{fine}\"\n"
        ))
        .unwrap_or_else(|p| panic!("{fine}: {p:#?}"));
        assert!(w.is_empty(), "{fine}: {w:#?}");
    }
}

#[test]
fn a_token_url_must_be_https_or_loopback_http_even_with_allow_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret(&dir, "client");
    let sink = |url: &str| {
        format!(
            "[[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"https://ehr.example/fhir\"\nallow_insecure = true\n[sink.oauth]\ntoken_url = \"{url}\"\nclient_id = \"vitalsd\"\nclient_secret_file = {s}\n"
        )
    };
    for bad in [
        "http://auth.example/token",
        "ftp://auth.example/token",
        "file:///tmp/token",
    ] {
        let p = check(&sink(bad)).expect_err(bad);
        assert!(
            p.iter()
                .any(|x| x.starts_with("sink[0].oauth.token_url") && x.contains("https://")),
            "{bad}: {p:#?}"
        );
    }
    for good in ["https://auth.example/token", "http://127.0.0.1:9000/token"] {
        check(&sink(good)).unwrap_or_else(|p| panic!("{good}: {p:#?}"));
    }
}

#[test]
fn plain_mllp_to_another_host_needs_tls_or_allow_insecure() {
    let sink = "[[sink]]\nid = \"engine\"\ntype = \"hl7-mllp\"\naddress = \"10.1.2.3:6661\"\n";
    refused_then_accepted(
        sink,
        &format!("{sink}allow_insecure = true\n"),
        "sink[0].address (line 10)",
    );
    check(&format!("{sink}tls = true\n")).unwrap_or_else(|p| panic!("{p:#?}"));
    check("[[sink]]\nid = \"engine\"\ntype = \"hl7-mllp\"\naddress = \"127.0.0.1:6661\"\n")
        .unwrap_or_else(|p| panic!("{p:#?}"));
}

#[test]
fn an_mqtt_password_or_published_readings_over_plain_mqtt_need_allow_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let pw = secret(&dir, "pw");
    let outbox = format!(
        "[[sink]]\nid = \"out\"\ntype = \"file\"\ndir = {:?}\n",
        dir.path()
    );
    let mqtt = format!(
        "[mqtt]\nurl = \"mqtt://broker.clinic.example\"\nusername = \"vitalsd\"\npassword_file = {pw}\n"
    );
    refused_then_accepted(
        &format!("{outbox}{mqtt}"),
        &format!("{outbox}{mqtt}allow_insecure = true\n"),
        "mqtt.url",
    );
    // Without a password and without publishing, a plain broker carries no secret out.
    check(&format!(
        "{outbox}[mqtt]\nurl = \"mqtt://broker.clinic.example\"\n"
    ))
    .unwrap_or_else(|p| panic!("{p:#?}"));
    check(&format!(
        "{outbox}{}",
        mqtt.replace("broker.clinic.example", "127.0.0.1")
    ))
    .unwrap_or_else(|p| panic!("{p:#?}"));
    // A sink with its own plain url.
    let own = "[[sink]]\nid = \"pub\"\ntype = \"mqtt\"\ntopic = \"v/{room}\"\nurl = \"mqtt://10.9.9.9\"\n";
    refused_then_accepted(own, &format!("{own}allow_insecure = true\n"), "sink[0].url");
    // A sink publishing through a plain shared broker.
    let shared = "[mqtt]\nurl = \"mqtt://broker.clinic.example\"\n[[sink]]\nid = \"pub\"\ntype = \"mqtt\"\ntopic = \"v/{room}\"\n";
    refused_then_accepted(
        shared,
        &format!("{shared}allow_insecure = true\n"),
        "sink[0]",
    );
    check(&shared.replace("mqtt://", "mqtts://")).unwrap_or_else(|p| panic!("{p:#?}"));
}

fn listener(table: &str) -> Result<DeviceTransport, Vec<String>> {
    let src = format!(
        "[[device]]\nid = \"mon\"\ndriver = \"hl7v2\"\nroom = \"exam-5\"\nmllp = {{ {table} }}\n\n[[sink]]\nid = \"out\"\ntype = \"file\"\ndir = \"/tmp/x\"\n"
    );
    match parse(&src, "t.toml") {
        Ok(cfg) => Ok(cfg.devices[0].transport.clone()),
        Err(e) => Err(e.problems.iter().map(ToString::to_string).collect()),
    }
}

#[test]
fn a_network_listener_needs_an_allow_list_and_a_loopback_one_defaults_to_loopback() {
    let p = listener("listen = \"0.0.0.0:2575\"").expect_err("refused");
    assert!(
        p.iter()
            .any(|x| x.starts_with("device[0].mllp.allow (line 5)") && x.contains("allow = [")),
        "{p:#?}"
    );
    let p = listener("listen = \"0.0.0.0:2575\", allow = [\"10.20.0.0/16\", \"bogus\"]")
        .expect_err("refused");
    assert!(
        p.iter().any(|x| x.starts_with("device[0].mllp.allow[1]")),
        "{p:#?}"
    );
    let Ok(DeviceTransport::Mllp(m)) = listener(
        "listen = \"0.0.0.0:2575\", allow = [\"10.20.0.0/16\", \"192.168.1.7\"], max_connections_per_peer = 2, idle_timeout = \"2m\", message_timeout = \"10s\"",
    ) else {
        panic!("accepted")
    };
    let nets: Vec<String> = m.allow.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["10.20.0.0/16", "192.168.1.7/32"]);
    assert_eq!(m.max_connections_per_peer, 2);
    assert_eq!(m.idle_timeout, std::time::Duration::from_secs(120));
    assert_eq!(m.message_timeout, std::time::Duration::from_secs(10));
    let Ok(DeviceTransport::Mllp(m)) = listener("listen = \"127.0.0.1:2575\"") else {
        panic!("accepted")
    };
    let nets: Vec<String> = m.allow.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
    assert_eq!((m.max_connections, m.max_connections_per_peer), (64, 4));
    assert_eq!(m.idle_timeout, std::time::Duration::from_secs(60));
    assert_eq!(m.message_timeout, std::time::Duration::from_secs(30));
    let p =
        listener("listen = \"127.0.0.1:2575\", max_connections_per_peer = 0").expect_err("refused");
    assert!(
        p.iter()
            .any(|x| x.starts_with("device[0].mllp.max_connections_per_peer")),
        "{p:#?}"
    );
}
