//! The driver registry: which drivers exist, what they read, and how to build their decoders.
//!
//! One [`DriverInfo`] entry per driver in [`DRIVERS`]: what `vitalsd drivers` prints, the
//! transports and serial defaults `check-config` validates against, the options the driver
//! accepts (each with a checker), and the function that builds its decoder. Adding a driver is
//! one entry here plus one decoder file.
//!
//! Option handling: [`validate_options`] returns every problem at once (unknown keys name the
//! accepted keys); [`build`] validates first and only then constructs. Continuous drivers
//! (1 value/s streams) also accept the common options `report` (`spot`, the default, or
//! `every`) and `settle` (a duration, default `10s`), read by [`report_options`] for the
//! spot-check stage (`normalize::spot`).

use std::time::Duration;

use super::json::{JsonDecoder, JsonFraming};
use super::nonin_ascii::NoninAscii;
use super::{Decoder, OptionError, Options};
pub use crate::model::options::{OptionSpec, Report};
use crate::reading::Kind;

/// A transport a driver can be read over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Serial,
    Mqtt,
    Mllp,
}

impl Transport {
    pub fn as_str(&self) -> &'static str {
        match self {
            Transport::Serial => "serial",
            Transport::Mqtt => "mqtt",
            Transport::Mllp => "mllp",
        }
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// The line settings a driver's devices use by default (config may override them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialDefaults {
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
}

/// 9600 baud, 8 data bits, no parity, 1 stop bit.
pub const SERIAL_9600_8N1: SerialDefaults = SerialDefaults {
    baud: 9600,
    data_bits: 8,
    parity: Parity::None,
    stop_bits: 1,
};

/// Builds a decoder for a transport from already-validated options.
pub type BuildFn = fn(Transport, &Options) -> Result<Box<dyn Decoder>, Vec<OptionError>>;

/// Whether a driver's data names patients, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientIds {
    /// Readings only: their patient comes from the room's context.
    None,
    /// Patient scans (a barcode reader): each scan sets the device's room's patient; the
    /// option `system_option` names the identifier system of the scanned ids.
    Scans { system_option: &'static str },
    /// Whole messages that name their patient (HL7 PID-3); the option `system_option` names
    /// the system of ids that carry none.
    InMessage { system_option: &'static str },
}

/// How the MQTT source hands a message's payload to a decoder (the device's `mqtt.payload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttPayload {
    /// The payload's bytes as received (`payload = "binary"`).
    AsReceived,
    /// Hex or base64 text the source already decoded: the decoder sees binary.
    DecodedText,
    /// A JSON envelope (`payload = "json"`).
    Json,
}

/// A driver that reads part of each MQTT message from the message's topic: a BLE gateway
/// publishes every GATT characteristic under its own topic level (`gw/exam3/AA:BB/2A1C`). The
/// MQTT source asks this capability, never a driver's name: it builds the decoder with
/// [`TopicInput::options`] and tells it each message's topic through [`Decoder::set_topic`]
/// before feeding the payload.
#[derive(Debug)]
pub struct TopicInput {
    /// What the decoder takes from the topic.
    pub takes: &'static str,
    /// The decoder's options when the source hands it payloads as `payload` (the configured
    /// options otherwise unchanged).
    pub options: fn(&Options, MqttPayload) -> Options,
}

/// What the registry knows about one driver.
#[derive(Debug)]
pub struct DriverInfo {
    pub name: &'static str,
    pub devices: &'static str,
    pub transports: &'static [Transport],
    pub kinds: &'static [Kind],
    pub framing: &'static str,
    pub experimental: bool,
    /// True for free-running streams (1 value/s): the spot-check options apply.
    pub continuous: bool,
    /// Whether the driver's data names patients, and how (asked by the ingest stage instead
    /// of checking driver names).
    pub patient_ids: PatientIds,
    /// Default serial line settings, for drivers with a serial transport.
    pub serial: Option<SerialDefaults>,
    /// Set when the decoder reads part of each MQTT message from its topic.
    pub mqtt_topic: Option<TopicInput>,
    /// Driver-specific options (the common `report`/`settle` are added for continuous drivers).
    pub options: &'static [OptionSpec],
    pub build: BuildFn,
}

impl DriverInfo {
    pub fn supports(&self, t: Transport) -> bool {
        self.transports.contains(&t)
    }

    /// Every option key this driver accepts, common ones included.
    pub fn accepted_keys(&self) -> Vec<&'static str> {
        let common: &[OptionSpec] = if self.continuous { &COMMON } else { &[] };
        common.iter().chain(self.options).map(|o| o.key).collect()
    }

    /// Every problem with `opts` for this driver (empty when they are valid).
    pub fn validate(&self, opts: &Options) -> Vec<OptionError> {
        let name = self.name;
        let whole = whole_check(name);
        let mut errors = Vec::new();
        for (key, value) in opts {
            match self.spec(key) {
                Some(_) if whole.is_some() => {}
                Some(spec) => {
                    if let Err(reason) = (spec.check)(value) {
                        errors.push(OptionError {
                            key: key.clone(),
                            reason,
                        });
                    }
                }
                None => {
                    let accepted = self.accepted_keys();
                    let reason = if accepted.is_empty() {
                        format!("unknown option; driver `{name}` takes no options")
                    } else {
                        format!(
                            "unknown option; driver `{name}` accepts: {}",
                            accepted.join(", ")
                        )
                    };
                    errors.push(OptionError {
                        key: key.clone(),
                        reason,
                    });
                }
            }
        }
        if let Some(check) = whole {
            for e in check(opts) {
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// Builds this driver's decoder for `transport`, after validating every option.
    pub fn build_for(
        &self,
        transport: Transport,
        opts: &Options,
    ) -> Result<Box<dyn Decoder>, Vec<OptionError>> {
        let mut errors = self.validate(opts);
        if !self.supports(transport) {
            let ts: Vec<&str> = self.transports.iter().map(Transport::as_str).collect();
            errors.push(OptionError {
                key: "transport".into(),
                reason: format!(
                    "driver `{}` does not read {}; it reads {}",
                    self.name,
                    transport.as_str(),
                    ts.join(", ")
                ),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        (self.build)(transport, opts)
    }

    fn spec(&self, key: &str) -> Option<&OptionSpec> {
        let common: &[OptionSpec] = if self.continuous { &COMMON } else { &[] };
        // A spec key ending in `*` takes every key with that prefix (`value.*` → `value.sys`).
        common.iter().chain(self.options).find(|o| {
            o.key == key
                || o.key
                    .strip_suffix('*')
                    .is_some_and(|prefix| key.starts_with(prefix) && key.len() > prefix.len())
        })
    }
}

/// The common options of a driver, resolved with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    pub report: Report,
    pub settle: Duration,
}

/// Default `settle` for continuous drivers.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(10);
/// Largest `settle` accepted: a spot check longer than this is not a spot check.
pub const MAX_SETTLE: Duration = Duration::from_secs(300);

const COMMON: [OptionSpec; 2] = [
    OptionSpec {
        key: "report",
        help: "`spot` (default): one reading per measurement; `every`: one per message",
        check: check_report,
    },
    OptionSpec {
        key: "settle",
        help: "how long a measurement runs before its spot reading is taken (default 10s)",
        check: check_settle,
    },
];

fn parse_report(v: &str) -> Result<Report, String> {
    match v {
        "spot" => Ok(Report::Spot),
        "every" => Ok(Report::Every),
        _ => Err(format!("`{v}` is not one of: spot, every")),
    }
}

fn check_report(v: &str) -> Result<(), String> {
    parse_report(v).map(|_| ())
}

fn parse_settle(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v).map_err(|e| format!("`{v}` is not a duration: {e}"))?;
    if d > MAX_SETTLE {
        return Err(format!(
            "`{v}` is longer than {}",
            humantime::format_duration(MAX_SETTLE)
        ));
    }
    Ok(d)
}

fn check_settle(v: &str) -> Result<(), String> {
    parse_settle(v).map(|_| ())
}

const ALL_KINDS: [Kind; 9] = Kind::ALL;

/// The drivers, in the order `vitalsd drivers` lists them. Each decoder file owns its entry.
pub static DRIVERS: &[&DriverInfo] = &[
    &super::ble_gatt::INFO,
    &NONIN_ASCII,
    &super::nonin_binary::INFO_8,
    &super::nonin_binary::INFO_7,
    &super::nonin_binary::INFO_13,
    &super::masimo::INFO,
    &super::suretemp::INFO,
    &super::suntech::INFO,
    &super::hl7v2::INFO,
    &JSON,
    &super::lines::INFO,
    &super::barcode::INFO,
    &super::polar_ecg::INFO,
    &super::openbci::INFO,
];

static NONIN_ASCII: DriverInfo = DriverInfo {
    name: "nonin-ascii",
    devices: "Nonin pulse oximeters in ASCII mode (2500, 8500, 8600V, 9847, 7500FO, Avant)",
    transports: &[Transport::Serial],
    kinds: &[Kind::Spo2, Kind::HeartRate],
    framing: "ASCII lines, CR LF, 1/s",
    experimental: false,
    continuous: true,
    patient_ids: PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &[],
    build: |_, _| Ok(Box::new(NoninAscii::new())),
};

static JSON: DriverInfo = DriverInfo {
    name: "json",
    devices: "readings already in the vitalsd JSON shape, from other software",
    transports: &[Transport::Serial, Transport::Mqtt],
    kinds: &ALL_KINDS,
    framing: "one JSON object per line (serial) or per message (mqtt)",
    experimental: false,
    continuous: false,
    patient_ids: PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &[],
    build: |t, _| {
        let framing = match t {
            Transport::Mqtt => JsonFraming::PerMessage,
            Transport::Serial | Transport::Mllp => JsonFraming::Lines,
        };
        Ok(Box::new(JsonDecoder::new(framing)))
    },
};

/// All drivers.
pub fn drivers() -> &'static [&'static DriverInfo] {
    DRIVERS
}

/// The driver called `name`.
pub fn driver_info(name: &str) -> Option<&'static DriverInfo> {
    drivers().iter().find(|d| d.name == name).copied()
}

fn unknown_driver(name: &str) -> OptionError {
    let known: Vec<&str> = drivers().iter().map(|d| d.name).collect();
    OptionError {
        key: "driver".into(),
        reason: format!(
            "unknown driver `{name}`; known drivers: {}",
            known.join(", ")
        ),
    }
}

/// Every problem with `opts` for driver `name` (empty when they are valid). An unknown driver
/// is reported under the key `driver`.
pub fn validate_options(name: &str, opts: &Options) -> Vec<OptionError> {
    match driver_info(name) {
        Some(info) => info.validate(opts),
        None => vec![unknown_driver(name)],
    }
}

/// Drivers whose options only make sense together (required keys, keys that refer to each
/// other): their own check sees the whole table and also runs the per-key checks.
fn whole_check(name: &str) -> Option<fn(&Options) -> Vec<OptionError>> {
    match name {
        "lines" => Some(super::lines::validate),
        "barcode" => Some(|o| {
            super::barcode::Barcode::from_options(o)
                .err()
                .unwrap_or_default()
        }),
        _ => None,
    }
}

/// Builds the decoder of driver `name` for its first transport (serial for the line-based
/// drivers); see [`build_for`].
pub fn build(name: &str, opts: &Options) -> Result<Box<dyn Decoder>, Vec<OptionError>> {
    let info = driver_info(name).ok_or_else(|| vec![unknown_driver(name)])?;
    let transport = info
        .transports
        .first()
        .copied()
        .unwrap_or(Transport::Serial);
    build_for(name, transport, opts)
}

/// Builds the decoder of driver `name` for `transport`, after validating every option.
pub fn build_for(
    name: &str,
    transport: Transport,
    opts: &Options,
) -> Result<Box<dyn Decoder>, Vec<OptionError>> {
    let info = driver_info(name).ok_or_else(|| vec![unknown_driver(name)])?;
    info.build_for(transport, opts)
}

/// The spot-check options of driver `name`: `report`/`settle` with defaults for continuous
/// drivers; [`Report::Every`] for the others.
pub fn report_options(name: &str, opts: &Options) -> Result<ReportOptions, Vec<OptionError>> {
    let info = driver_info(name).ok_or_else(|| vec![unknown_driver(name)])?;
    if !info.continuous {
        return Ok(ReportOptions {
            report: Report::Every,
            settle: Duration::ZERO,
        });
    }
    fn err(key: &'static str) -> impl Fn(String) -> Vec<OptionError> {
        move |reason| {
            vec![OptionError {
                key: key.into(),
                reason,
            }]
        }
    }
    let report = opts
        .get("report")
        .map_or(Ok(Report::Spot), |v| parse_report(v))
        .map_err(err("report"))?;
    let settle = opts
        .get("settle")
        .map_or(Ok(DEFAULT_SETTLE), |v| parse_settle(v))
        .map_err(err("settle"))?;
    Ok(ReportOptions { report, settle })
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
