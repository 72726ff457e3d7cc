//! The `serial.usb` key: a serial device named by its USB adapter's ids instead of a path.
//!
//! Owns the file shape (`usb = { vendor = "0403", product = "6001", serial = "A12345" }`) and
//! its checks: exactly one of `serial.path` and `serial.usb`, ids of exactly 4 hex digits, a
//! serial number that is not blank. Resolving the ids to a port is `crate::source::usb`'s job.

use std::path::PathBuf;

use serde::Deserialize;

use super::validate::Validator;
use super::UsbMatch;

/// `serial.usb` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbFile {
    pub vendor: String,
    pub product: String,
    #[serde(default)]
    pub serial: Option<String>,
}

/// A USB id written as exactly 4 hex digits (`"0403"`, `"6A01"`) (pure).
pub fn parse_id(s: &str) -> Result<u16, String> {
    let ok = s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(format!(
            "`{s}` is not a USB id: expected 4 hex digits like \"0403\" (see `lsusb` or udevadm info)"
        ));
    }
    u16::from_str_radix(s, 16).map_err(|e| format!("`{s}`: {e}"))
}

impl Validator {
    /// Checks `serial.path` / `serial.usb` at `at` (`device[i].serial`): exactly one of them.
    /// Returns the path (empty with `usb`) and the USB match.
    pub(super) fn serial_port(
        &mut self,
        at: &str,
        path: Option<PathBuf>,
        usb: Option<UsbFile>,
    ) -> Option<(PathBuf, Option<UsbMatch>)> {
        match (path, usb) {
            (Some(_), Some(_)) => {
                self.problem(
                    format!("{at}.usb"),
                    "give either `path` or `usb`, not both: `usb` finds the adapter by its ids at every open",
                );
                None
            }
            (None, None) => {
                self.problem(
                    at.to_string(),
                    "needs the port: `path = \"/dev/serial/by-id/...\"` or `usb = { vendor = \"0403\", product = \"6001\", serial = \"...\" }`",
                );
                None
            }
            (Some(p), None) => {
                if p.as_os_str().is_empty() {
                    self.problem(format!("{at}.path"), "must not be empty");
                    return None;
                }
                Some((p, None))
            }
            (None, Some(u)) => {
                let before = self.problems.len();
                let mut id = |key: &str, text: &str| match parse_id(text) {
                    Ok(v) => v,
                    Err(why) => {
                        self.problem(format!("{at}.usb.{key}"), why);
                        0
                    }
                };
                let vendor = id("vendor", &u.vendor);
                let product = id("product", &u.product);
                if u.serial.as_deref().is_some_and(|s| s.trim().is_empty()) {
                    self.problem(
                        format!("{at}.usb.serial"),
                        "must not be empty (leave it out to match any serial number)",
                    );
                }
                (self.problems.len() == before).then(|| {
                    let m = UsbMatch {
                        vendor,
                        product,
                        serial: u.serial,
                    };
                    (PathBuf::new(), Some(m))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, DeviceTransport};
    use super::*;

    fn device(serial: &str) -> String {
        format!(
            "[[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"r\"\nserial = {serial}\n\n[[sink]]\nid = \"o\"\ntype = \"file\"\ndir = \"/tmp/o\"\n"
        )
    }

    fn problems(src: &str) -> Vec<String> {
        match parse(src, "t.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn usb_ids_are_exactly_four_hex_digits() {
        assert_eq!(parse_id("0403"), Ok(0x0403));
        assert_eq!(parse_id("6a0F"), Ok(0x6a0f));
        for bad in ["403", "04030", "0x03", "zzzz", "", " 403"] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_serial_device_named_by_usb_ids_is_valid() {
        let cfg = parse(
            &device(
                "{ usb = { vendor = \"0403\", product = \"6001\", serial = \"A12345\" }, baud = 19200 }",
            ),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let DeviceTransport::Serial(s) = &cfg.devices[0].transport else {
            panic!("serial")
        };
        let usb = s.usb.as_ref().expect("usb");
        assert_eq!((usb.vendor, usb.product), (0x0403, 0x6001));
        assert_eq!(usb.serial.as_deref(), Some("A12345"));
        assert_eq!(usb.to_string(), "0403:6001 serial A12345");
        assert_eq!(s.baud, 19200);
        assert!(s.path.as_os_str().is_empty());
    }

    #[test]
    fn both_path_and_usb_is_a_problem_on_the_usb_key_with_its_line() {
        let p = problems(&device(
            "{ path = \"/dev/ttyUSB0\", usb = { vendor = \"0403\", product = \"6001\" } }",
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("device[0].serial.usb (line 5): give either `path` or `usb`"),
            "{p:?}"
        );
    }

    #[test]
    fn neither_path_nor_usb_is_a_problem_naming_both_keys() {
        let p = problems(&device("{ baud = 9600 }"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("device[0].serial (line 5): needs the port"),
            "{p:?}"
        );
        assert!(p[0].contains("path = ") && p[0].contains("usb = "), "{p:?}");
    }

    #[test]
    fn bad_ids_are_reported_each_with_its_key() {
        let p = problems(&device(
            "{ usb = { vendor = \"403\", product = \"60g1\", serial = \" \" } }",
        ));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("device[0].serial.usb.vendor (line 5): `403` is not a USB id"));
        assert!(p[1].starts_with("device[0].serial.usb.product (line 5): `60g1`"));
        assert!(p[2].starts_with("device[0].serial.usb.serial (line 5): must not be empty"));
    }

    #[test]
    fn an_unknown_key_in_usb_is_refused() {
        let p = problems(&device(
            "{ usb = { vendor = \"0403\", product = \"6001\", port = 2 } }",
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("device[0].serial.usb.port"), "{p:?}");
    }
}
