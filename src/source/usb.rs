//! Finding a USB serial adapter by its ids (`serial.usb` in the config).
//!
//! Receives the configured [`UsbMatch`] and the ports the system lists
//! (`tokio_serial::available_ports`, which reads sysfs); emits the one path that matches, or
//! why there is none. A replugged adapter may come back as another `ttyUSBn`, so the serial
//! source resolves again before every open. Two adapters that both match are never guessed
//! between: the device stays disconnected until exactly one matches.

use std::fmt;

use crate::config::UsbMatch;

/// One serial port as the system lists it; `usb` is `(vendor, product, serial number)` for a
/// USB adapter, `None` for other ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub path: String,
    pub usb: Option<(u16, u16, Option<String>)>,
}

/// What the ids resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one adapter matches: its path.
    Found(String),
    /// No adapter matches (unplugged, or other ids).
    Missing,
    /// More than one adapter matches: their paths, sorted.
    Ambiguous(Vec<String>),
}

/// Why a `usb` device cannot be opened now; the text names the ids (and the candidates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub want: UsbMatch,
    pub resolution: Resolution,
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resolution {
            Resolution::Found(p) => write!(f, "USB adapter {} is {p}", self.want),
            Resolution::Missing => write!(f, "no USB serial adapter {} is plugged in", self.want),
            Resolution::Ambiguous(paths) => write!(
                f,
                "{} USB serial adapters match {} ({}); not guessing: add `serial` to serial.usb or unplug one",
                paths.len(),
                self.want,
                paths.join(", ")
            ),
        }
    }
}

/// The ports that match `want` (pure): vendor and product always, the serial number when
/// configured (exactly, after trimming).
pub fn resolve(want: &UsbMatch, ports: &[PortInfo]) -> Resolution {
    let mut hits: Vec<String> = ports
        .iter()
        .filter(|p| match &p.usb {
            Some((vid, pid, serial)) => {
                *vid == want.vendor
                    && *pid == want.product
                    && want
                        .serial
                        .as_deref()
                        .is_none_or(|w| serial.as_deref().map(str::trim) == Some(w.trim()))
            }
            None => false,
        })
        .map(|p| p.path.clone())
        .collect();
    hits.sort();
    hits.dedup();
    match hits.len() {
        0 => Resolution::Missing,
        1 => Resolution::Found(hits.remove(0)),
        _ => Resolution::Ambiguous(hits),
    }
}

/// The serial ports the system lists now (an error when the listing itself fails).
pub fn system_ports() -> Result<Vec<PortInfo>, String> {
    // serialport panics when sysfs is missing (some containers); say so instead.
    if cfg!(target_os = "linux") && !std::path::Path::new("/sys/class/tty").is_dir() {
        return Err("cannot list serial ports: /sys/class/tty is not mounted".into());
    }
    let ports =
        tokio_serial::available_ports().map_err(|e| format!("cannot list serial ports: {e}"))?;
    Ok(ports
        .into_iter()
        .map(|p| PortInfo {
            usb: match p.port_type {
                tokio_serial::SerialPortType::UsbPort(u) => Some((u.vid, u.pid, u.serial_number)),
                _ => None,
            },
            path: p.port_name,
        })
        .collect())
}

/// Resolves `want` against the system's ports now.
pub fn find(want: &UsbMatch) -> Result<String, Unresolved> {
    let ports = system_ports().unwrap_or_else(|e| {
        tracing::warn!(error = %e, usb = %want, "serial port listing failed");
        Vec::new()
    });
    match resolve(want, &ports) {
        Resolution::Found(p) => Ok(p),
        other => Err(Unresolved {
            want: want.clone(),
            resolution: other,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb(path: &str, vid: u16, pid: u16, serial: Option<&str>) -> PortInfo {
        PortInfo {
            path: path.into(),
            usb: Some((vid, pid, serial.map(String::from))),
        }
    }

    fn want(serial: Option<&str>) -> UsbMatch {
        UsbMatch {
            vendor: 0x0403,
            product: 0x6001,
            serial: serial.map(String::from),
        }
    }

    fn ports() -> Vec<PortInfo> {
        vec![
            PortInfo {
                path: "/dev/ttyS0".into(),
                usb: None,
            },
            usb("/dev/ttyUSB1", 0x0403, 0x6001, Some("A12345")),
            usb("/dev/ttyUSB0", 0x0403, 0x6001, Some("B99999")),
            usb("/dev/ttyUSB2", 0x067b, 0x2303, Some("A12345")),
            usb("/dev/ttyACM0", 0x0403, 0x6015, None),
        ]
    }

    #[test]
    fn vendor_product_and_serial_pick_exactly_one_adapter() {
        assert_eq!(
            resolve(&want(Some("A12345")), &ports()),
            Resolution::Found("/dev/ttyUSB1".into())
        );
        assert_eq!(
            resolve(&want(Some(" B99999 ")), &ports()),
            Resolution::Found("/dev/ttyUSB0".into())
        );
    }

    #[test]
    fn a_replugged_adapter_is_found_under_its_new_name() {
        let mut list = ports();
        list[1].path = "/dev/ttyUSB7".into();
        assert_eq!(
            resolve(&want(Some("A12345")), &list),
            Resolution::Found("/dev/ttyUSB7".into())
        );
    }

    #[test]
    fn two_matching_adapters_are_ambiguous_and_named_in_order() {
        let r = resolve(&want(None), &ports());
        assert_eq!(
            r,
            Resolution::Ambiguous(vec!["/dev/ttyUSB0".into(), "/dev/ttyUSB1".into()])
        );
        let text = Unresolved {
            want: want(None),
            resolution: r,
        }
        .to_string();
        assert!(
            text.contains("2 USB serial adapters match 0403:6001 (/dev/ttyUSB0, /dev/ttyUSB1)"),
            "{text}"
        );
    }

    #[test]
    fn no_match_is_missing_and_says_which_ids() {
        assert_eq!(resolve(&want(Some("NOPE")), &ports()), Resolution::Missing);
        assert_eq!(resolve(&want(None), &[]), Resolution::Missing);
        let text = Unresolved {
            want: want(Some("NOPE")),
            resolution: Resolution::Missing,
        }
        .to_string();
        assert_eq!(
            text,
            "no USB serial adapter 0403:6001 serial NOPE is plugged in"
        );
    }

    #[test]
    fn an_adapter_without_a_serial_number_never_matches_a_configured_one() {
        let list = vec![usb("/dev/ttyUSB0", 0x0403, 0x6001, None)];
        assert_eq!(resolve(&want(Some("A12345")), &list), Resolution::Missing);
        assert_eq!(
            resolve(&want(None), &list),
            Resolution::Found("/dev/ttyUSB0".into())
        );
    }

    #[test]
    fn non_usb_ports_never_match() {
        let list = vec![PortInfo {
            path: "/dev/ttyS0".into(),
            usb: None,
        }];
        assert_eq!(resolve(&want(None), &list), Resolution::Missing);
    }
}
