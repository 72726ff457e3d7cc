use super::*;

const BASE: &str = "[daemon]\ndata_dir = \"/tmp/x\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"a\"\n\n[[sink]]\nid = \"o\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"reading\"\n\n[[sink]]\nid = \"m\"\ntype = \"mqtt\"\ntopic = \"vitals/{room}\"\n";

fn cfg(src: &str) -> Config {
    config::parse(src, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn only_daemon_and_patient_keys_that_changed_need_a_restart() {
    let a = cfg(BASE);
    assert!(needs_restart(&a, &cfg(BASE)).is_empty());
    // Sinks and [mqtt] apply in place.
    let sinks = cfg(&BASE
        .replace("/tmp/o", "/tmp/p")
        .replace("client_id = \"a\"", "client_id = \"b\""));
    assert!(needs_restart(&a, &sinks).is_empty());
    let daemon = cfg(&BASE.replace(
        "data_dir = \"/tmp/x\"",
        "data_dir = \"/tmp/y\"\nqueue_max_bytes = \"1GiB\"\n\n[patient]\nmode = \"location\"",
    ));
    assert_eq!(
        needs_restart(&a, &daemon),
        vec!["daemon.data_dir", "daemon.queue_max_bytes", "patient.mode"]
    );
}

#[test]
fn the_effective_config_keeps_the_running_daemon_and_patient_sections() {
    let running = cfg(BASE);
    let new = cfg(&BASE.replace("/tmp/x", "/tmp/y").replace("/tmp/o", "/tmp/p"));
    let eff = effective(&running, new);
    assert_eq!(eff.daemon.data_dir, std::path::PathBuf::from("/tmp/x"));
    let config::SinkConfig::File(f) = &eff.sinks[0] else {
        panic!("file sink")
    };
    assert_eq!(f.dir, std::path::PathBuf::from("/tmp/p"));
}

#[test]
fn an_mqtt_sink_on_the_shared_broker_changes_with_mqtt_and_a_file_sink_does_not() {
    let a = cfg(BASE);
    let b = cfg(&BASE.replace("client_id = \"a\"", "client_id = \"b\""));
    let settings = |c: &Config, i: usize| SinkSettings::of(&c.sinks[i], c.mqtt.as_ref());
    assert_eq!(settings(&a, 0), settings(&b, 0));
    assert_ne!(settings(&a, 1), settings(&b, 1));
    use super::super::mqtt::Wiring;
    assert_ne!(Wiring::of(&a), Wiring::of(&b));
    assert_eq!(Wiring::of(&a), Wiring::of(&cfg(BASE)));
}

#[test]
fn a_missing_file_is_refused_with_the_reason() {
    let err = load(Path::new("/nonexistent/vitalsd.toml")).unwrap_err();
    assert!(err.contains("cannot read the config file"), "{err}");
}
