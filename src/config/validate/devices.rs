//! Validation of `[[device]]` tables: id, driver and its options, room, serial settings.

use super::super::file::{DeviceFile, SerialFile};
use super::super::*;
use super::{valid_id, Validator};
use crate::decode::{self, Options, Transport};
use crate::reading::DeviceId;

impl Validator {
    pub(super) fn device(
        &mut self,
        i: usize,
        v: toml::Value,
        has_mqtt: bool,
    ) -> Option<DeviceConfig> {
        let at = format!("device[{i}]");
        // A table with a bad key still gets its driver name checked.
        let driver = v
            .get("driver")
            .and_then(toml::Value::as_str)
            .map(str::to_string);
        let Some(d) = self.section::<DeviceFile>(&at, v) else {
            if let Some(name) = driver.filter(|n| decode::driver_info(n).is_none()) {
                self.unknown_driver(&at, &name);
            }
            return None;
        };
        let before = self.problems.len();
        if !valid_id(&d.id) {
            self.problem(
                format!("{at}.id"),
                format!(
                    "`{}` is not a valid id: use letters, digits, `.`, `_` and `-`",
                    d.id
                ),
            );
        }
        if d.room.trim().is_empty() {
            self.problem(format!("{at}.room"), "must not be empty");
        }
        let info = decode::driver_info(&d.driver);
        if info.is_none() {
            self.unknown_driver(&at, &d.driver);
        }
        let at_t = |t: &str| format!("{at}.{t}");
        let count = usize::from(d.serial.is_some())
            + usize::from(d.mqtt.is_some())
            + usize::from(d.mllp.is_some());
        if count != 1 {
            self.problem(
                at.clone(),
                "needs exactly one transport table: serial = { path = \"/dev/...\" }, mqtt = { topic = \"...\" } or mllp = { listen = \"0.0.0.0:2575\" }",
            );
        }
        let transport = if let Some(s) = d.serial {
            self.serial(&at_t("serial"), s, info.and_then(|i| i.serial))
        } else if let Some(m) = d.mqtt {
            self.mqtt_device(&at_t("mqtt"), m, has_mqtt)
        } else if let Some(m) = d.mllp {
            self.mllp_listen(&at_t("mllp"), m)
        } else {
            None
        };
        if let (Some(info), Some(t)) = (info, &transport) {
            if !info.supports(t.kind()) {
                let name = t.kind().as_str();
                let ts: Vec<_> = info.transports.iter().map(Transport::as_str).collect();
                self.problem(
                    at_t(name),
                    format!(
                        "driver `{}` does not read over {name}; it reads {}",
                        d.driver,
                        ts.join(", ")
                    ),
                );
            }
        }
        let options: Options = d.options.into_iter().map(|(k, v)| (k, v.0)).collect();
        if info.is_some() {
            for e in decode::registry::validate_options(&d.driver, &options) {
                self.problem(format!("{at}.options.{}", e.key), e.reason);
            }
        }
        if self.problems.len() != before {
            return None;
        }
        let inactivity_timeout = d
            .inactivity_timeout
            .map_or_else(|| default_silence(&d.driver), |t| t.0);
        Some(DeviceConfig {
            id: DeviceId::new(d.id),
            driver: d.driver,
            room: d.room,
            transport: transport?,
            options,
            inactivity_timeout,
        })
    }

    pub(super) fn unknown_driver(&mut self, at: &str, name: &str) {
        let names: Vec<_> = decode::drivers().iter().map(|d| d.name).collect();
        self.problem(
            format!("{at}.driver"),
            format!(
                "unknown driver `{name}`, expected one of {}",
                names.join(", ")
            ),
        );
    }

    /// The serial table; settings it leaves out take `driver`'s defaults, then 9600 8N1.
    pub(super) fn serial(
        &mut self,
        at: &str,
        s: SerialFile,
        driver: Option<decode::registry::SerialDefaults>,
    ) -> Option<DeviceTransport> {
        let before = self.problems.len();
        let d = driver.unwrap_or(decode::registry::SERIAL_9600_8N1);
        let default_parity = match d.parity {
            decode::registry::Parity::None => "none",
            decode::registry::Parity::Odd => "odd",
            decode::registry::Parity::Even => "even",
        };
        let (baud, data_bits, stop_bits) = (
            s.baud.unwrap_or(d.baud),
            s.data_bits.unwrap_or(d.data_bits),
            s.stop_bits.unwrap_or(d.stop_bits),
        );
        let parity = match s.parity.as_deref().unwrap_or(default_parity) {
            "none" => Parity::None,
            "odd" => Parity::Odd,
            "even" => Parity::Even,
            other => {
                self.problem(
                    format!("{at}.parity"),
                    format!("`{other}`: expected none, odd or even"),
                );
                Parity::None
            }
        };
        let flow_control = match s.flow_control.as_str() {
            "none" => FlowControl::None,
            "software" => FlowControl::Software,
            "hardware" => FlowControl::Hardware,
            other => {
                self.problem(
                    format!("{at}.flow_control"),
                    format!("`{other}`: expected none, software or hardware"),
                );
                FlowControl::None
            }
        };
        if !(5..=8).contains(&data_bits) {
            self.problem(format!("{at}.data_bits"), "expected 5, 6, 7 or 8");
        }
        if !(1..=2).contains(&stop_bits) {
            self.problem(format!("{at}.stop_bits"), "expected 1 or 2");
        }
        if baud == 0 {
            self.problem(format!("{at}.baud"), "must be greater than 0");
        }
        let port = self.serial_port(at, s.path, s.usb);
        let (path, usb) = port.filter(|_| self.problems.len() == before)?;
        Some(DeviceTransport::Serial(SerialSettings {
            path,
            usb,
            baud,
            data_bits,
            parity,
            stop_bits,
            flow_control,
        }))
    }
}
