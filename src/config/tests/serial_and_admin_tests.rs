//! Serial line settings per driver and their overrides; the admin token file, address and
//! host names.

use super::*;

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
