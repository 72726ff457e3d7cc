//! Defaults: a minimal config, the waveform options, history and audit bounds, and the
//! example config stating the real defaults.

use super::*;

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
fn history_max_bytes_defaults_to_192_mib_and_refuses_less_than_16_mib() {
    let cfg = parse(MINIMAL, "test.toml").unwrap();
    assert_eq!(cfg.daemon.history_max_bytes, 192 * 1024 * 1024);
    // The library's default is the daemon's, and full history leaves 64 MiB of undelivered
    // readings before the online rewrite stops (space would no longer come back).
    let lib = crate::queue::QueueOptions::new(Vec::new());
    assert_eq!(lib.history_max_bytes, cfg.daemon.history_max_bytes);
    assert!(
        cfg.daemon.history_max_bytes + (64 << 20) <= crate::queue::reclaim::MAX_LIVE_BYTES,
        "history bound above the rewrite's limit"
    );
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
    let src = include_str!("../../../config/example.toml");
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
