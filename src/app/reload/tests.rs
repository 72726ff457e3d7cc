use super::*;
use crate::reading::DeviceId;

fn ids(list: &[(&str, &str)]) -> Vec<(DeviceId, String)> {
    list.iter()
        .map(|(i, f)| (DeviceId::new(*i), f.to_string()))
        .collect()
}

const BASE: &str = "[daemon]\ndata_dir = \"/tmp/x\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"a\"\n\n[[sink]]\nid = \"o\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"reading\"\n\n[[sink]]\nid = \"m\"\ntype = \"mqtt\"\ntopic = \"vitals/{room}\"\n";

fn cfg(src: &str) -> Config {
    config::parse(src, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_reload_starts_new_stops_removed_restarts_changed_and_keeps_the_rest() {
    let p = plan(
        &ids(&[("a", "1"), ("b", "1"), ("c", "1")]),
        &ids(&[("a", "1"), ("c", "2"), ("d", "1")]),
    );
    assert_eq!(p.keep, vec![DeviceId::new("a")]);
    assert_eq!(p.restart, vec![DeviceId::new("c")]);
    assert_eq!(p.start, vec![DeviceId::new("d")]);
    assert_eq!(p.stop, vec![DeviceId::new("b")]);
}

#[test]
fn an_identical_config_changes_nothing() {
    let list = ids(&[("a", "1"), ("b", "2")]);
    let p = plan(&list, &list);
    assert_eq!(p.keep.len(), 2);
    assert!(p.start.is_empty() && p.stop.is_empty() && p.restart.is_empty());
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
    let fp = |c: &Config, i: usize| sinks::fingerprint(&c.sinks[i], c.mqtt.as_ref());
    assert_eq!(fp(&a, 0), fp(&b, 0));
    assert_ne!(fp(&a, 1), fp(&b, 1));
    assert_ne!(
        super::super::mqtt::fingerprint(&a),
        super::super::mqtt::fingerprint(&b)
    );
}

#[test]
fn a_missing_file_is_refused_with_the_reason() {
    let err = load(Path::new("/nonexistent/vitalsd.toml")).unwrap_err();
    assert!(err.contains("cannot read the config file"), "{err}");
}
