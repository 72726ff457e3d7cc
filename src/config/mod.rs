//! Configuration: the TOML file → a validated [`Config`], or every problem at once.
//!
//! Parsing is strict: every table rejects unknown keys. Each top-level table and each
//! `[[device]]` / `[[sink]]` entry is read on its own, so one bad entry does not hide the
//! problems of the others; then cross-checks run (unique ids, drivers and their transports and
//! options). Every problem is reported as `key.path (line N): why`, and a config with any
//! problem never starts a daemon.

mod file;
mod locate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::decode::{self, Options, Transport};
use crate::reading::{DeviceId, SinkId};
use file::{DaemonFile, DeviceFile, FileSinkFile, PatientFile, SerialFile};
use locate::Locator;

/// The default config path of the daemon.
pub const DEFAULT_PATH: &str = "/etc/vitalsd/vitalsd.toml";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub patient: PatientConfig,
    pub devices: Vec<DeviceConfig>,
    pub sinks: Vec<SinkConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    /// `None` when `admin_listen = ""`.
    pub admin_listen: Option<SocketAddr>,
    pub admin_token_file: Option<PathBuf>,
    pub queue_max_bytes: u64,
    /// sled's page cache; bounds the daemon's memory whatever the backlog.
    pub cache_size: u64,
    pub clock_skew_tolerance: Duration,
    /// How long shutdown may take to drain before giving up (keep below systemd's
    /// `TimeoutStopSec`).
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientMode {
    /// Readings go with the room as subject, for the record system to match.
    Location,
}

#[derive(Debug, Clone)]
pub struct PatientConfig {
    pub mode: PatientMode,
    pub context_ttl: Duration,
    pub hold_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    pub path: PathBuf,
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
    pub flow_control: FlowControl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceTransport {
    Serial(SerialSettings),
}

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub id: DeviceId,
    pub driver: String,
    pub room: String,
    pub transport: DeviceTransport,
    pub options: Options,
    /// No valid frame for this long marks the device disconnected (cable faults give no EOF).
    pub inactivity_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxFormat {
    Fhir,
    Reading,
}

#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    pub id: SinkId,
    pub dir: PathBuf,
    pub format: OutboxFormat,
}

#[derive(Debug, Clone)]
pub enum SinkConfig {
    File(FileSinkConfig),
}

impl SinkConfig {
    pub fn id(&self) -> &SinkId {
        match self {
            SinkConfig::File(f) => &f.id,
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(file)"
        } else {
            &self.path
        };
        match self.line {
            Some(l) => write!(f, "{path} (line {l}): {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        problems: vec![Problem {
            path: String::new(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        }],
    })?;
    parse(&src, &origin)
}

/// Validates config text; `origin` names it in messages.
pub fn parse(src: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut v = Validator {
        loc: Locator::new(src),
        problems: Vec::new(),
    };
    let cfg = v.run(src);
    match cfg {
        Some(cfg) if v.problems.is_empty() => Ok(cfg),
        _ => Err(ConfigError {
            origin: origin.to_string(),
            problems: v.problems,
        }),
    }
}

struct Validator {
    loc: Locator,
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let line = self.loc.line(&path);
        self.problems.push(Problem {
            path,
            line,
            message: message.into(),
        });
    }

    /// Deserializes one table, recording a problem (with the failing key's path) on error.
    fn section<T: DeserializeOwned>(&mut self, path: &str, value: toml::Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.inner().to_string();
                let mut p = path.to_string();
                let sub = e.path().to_string();
                if sub != "." && !sub.is_empty() {
                    p = join(&p, &sub);
                }
                // Depending on the table, the unknown key may or may not be part of the path yet.
                if let Some(rest) = inner.strip_prefix("unknown field `") {
                    if let Some(name) = rest.split('`').next() {
                        let last = p.rsplit(['.', ']']).next().unwrap_or("");
                        if last != name {
                            p = join(&p, name);
                        }
                    }
                }
                self.problem(p, inner.replace('\n', " ").trim().to_string());
                None
            }
        }
    }

    fn run(&mut self, src: &str) -> Option<Config> {
        let mut root: toml::Table = match toml::from_str(src) {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map(|s| self.loc.line_of(s.start));
                self.problems.push(Problem {
                    path: String::new(),
                    line,
                    message: format!("not valid TOML: {}", e.message()),
                });
                return None;
            }
        };
        let daemon: Option<DaemonFile> = match root.remove("daemon") {
            Some(t) => self.section("daemon", t),
            None => Some(DaemonFile::default()),
        };
        let patient: Option<PatientFile> = match root.remove("patient") {
            Some(t) => self.section("patient", t),
            None => Some(PatientFile::default()),
        };
        let devices = self.array(root.remove("device"), "device");
        let sinks = self.array(root.remove("sink"), "sink");
        if root.remove("mqtt").is_some() {
            self.problem(
                "mqtt",
                "the MQTT source is not available in this version of vitalsd",
            );
        }
        for key in root.keys() {
            self.problem(
                key.clone(),
                format!("unknown table `{key}`, expected one of daemon, patient, device, sink"),
            );
        }

        let daemon = daemon.and_then(|d| self.daemon(d));
        let patient = patient.and_then(|p| self.patient(p));
        let devices: Vec<_> = devices
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.device(i, v))
            .collect();
        let sinks: Vec<_> = sinks
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.sink(i, v))
            .collect();
        self.unique("device", devices.iter().map(|d| d.id.as_str().to_string()));
        self.unique("sink", sinks.iter().map(|s| s.id().as_str().to_string()));
        if sinks.is_empty() && !self.problems.iter().any(|p| p.path.starts_with("sink")) {
            self.problem(
                "sink",
                "no [[sink]] configured: readings would have nowhere to go",
            );
        }
        Some(Config {
            daemon: daemon?,
            patient: patient?,
            devices,
            sinks,
        })
    }

    fn array(&mut self, v: Option<toml::Value>, name: &str) -> Vec<toml::Value> {
        match v {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                self.problem(
                    name,
                    format!("must be an array of tables: write [[{name}]]"),
                );
                Vec::new()
            }
        }
    }

    fn unique(&mut self, what: &str, ids: impl Iterator<Item = String>) {
        let mut seen = std::collections::HashSet::new();
        for (i, id) in ids.enumerate() {
            if !seen.insert(id.clone()) {
                self.problem(
                    format!("{what}[{i}].id"),
                    format!("duplicate {what} id `{id}`"),
                );
            }
        }
    }

    fn daemon(&mut self, d: DaemonFile) -> Option<DaemonConfig> {
        let admin_listen = if d.admin_listen.is_empty() {
            None
        } else {
            match d.admin_listen.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.problem(
                        "daemon.admin_listen",
                        format!("`{}` is not an address like \"127.0.0.1:9750\" (\"\" disables the admin API)", d.admin_listen),
                    );
                    return None;
                }
            }
        };
        let log_format = match d.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.problem(
                    "daemon.log_format",
                    format!("unknown log format `{other}`, expected text or json"),
                );
                return None;
            }
        };
        if d.data_dir.as_os_str().is_empty() {
            self.problem("daemon.data_dir", "must not be empty");
        }
        if d.cache_size.0 < 1024 * 1024 {
            self.problem("daemon.cache_size", "must be at least 1MiB");
        }
        Some(DaemonConfig {
            data_dir: d.data_dir,
            admin_listen,
            admin_token_file: (!d.admin_token_file.is_empty())
                .then(|| PathBuf::from(&d.admin_token_file)),
            queue_max_bytes: d.queue_max_bytes.0,
            cache_size: d.cache_size.0,
            clock_skew_tolerance: d.clock_skew_tolerance.0,
            shutdown_timeout: d.shutdown_timeout.0,
            log_format,
        })
    }

    fn patient(&mut self, p: PatientFile) -> Option<PatientConfig> {
        let mode = match p.mode.as_str() {
            "location" => PatientMode::Location,
            "hold" => {
                self.problem(
                    "patient.mode",
                    "`hold` is not available in this version of vitalsd; use \"location\"",
                );
                return None;
            }
            other => {
                self.problem(
                    "patient.mode",
                    format!("unknown mode `{other}`, expected location"),
                );
                return None;
            }
        };
        Some(PatientConfig {
            mode,
            context_ttl: p.context_ttl.0,
            hold_for: p.hold_for.0,
        })
    }

    fn device(&mut self, i: usize, v: toml::Value) -> Option<DeviceConfig> {
        let at = format!("device[{i}]");
        let d: DeviceFile = self.section(&at, v)?;
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
            let names: Vec<_> = decode::drivers().iter().map(|d| d.name).collect();
            self.problem(
                format!("{at}.driver"),
                format!(
                    "unknown driver `{}`, expected one of {}",
                    d.driver,
                    names.join(", ")
                ),
            );
        }
        let mut transports = Vec::new();
        if d.mqtt.is_some() {
            self.problem(
                format!("{at}.mqtt"),
                "the mqtt transport is not available in this version of vitalsd",
            );
        }
        if d.mllp.is_some() {
            self.problem(
                format!("{at}.mllp"),
                "the mllp transport is not available in this version of vitalsd",
            );
        }
        if let Some(s) = d.serial {
            if let Some(t) = self.serial(&format!("{at}.serial"), s) {
                transports.push(t);
            }
        } else if d.mqtt.is_none() && d.mllp.is_none() {
            self.problem(
                at.clone(),
                "needs exactly one transport table: serial = { path = \"/dev/...\" }",
            );
        }
        if let (Some(info), Some(DeviceTransport::Serial(_))) = (info, transports.first()) {
            if !info.transports.contains(&Transport::Serial) {
                self.problem(
                    format!("{at}.serial"),
                    format!("driver `{}` does not read from a serial port", d.driver),
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
        Some(DeviceConfig {
            id: DeviceId::new(d.id),
            driver: d.driver,
            room: d.room,
            transport: transports.pop()?,
            options,
            inactivity_timeout: d.inactivity_timeout.0,
        })
    }

    fn serial(&mut self, at: &str, s: SerialFile) -> Option<DeviceTransport> {
        let before = self.problems.len();
        let parity = match s.parity.as_str() {
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
        if !(5..=8).contains(&s.data_bits) {
            self.problem(format!("{at}.data_bits"), "expected 5, 6, 7 or 8");
        }
        if !(1..=2).contains(&s.stop_bits) {
            self.problem(format!("{at}.stop_bits"), "expected 1 or 2");
        }
        if s.baud == 0 {
            self.problem(format!("{at}.baud"), "must be greater than 0");
        }
        if s.path.as_os_str().is_empty() {
            self.problem(format!("{at}.path"), "must not be empty");
        }
        (self.problems.len() == before).then_some(DeviceTransport::Serial(SerialSettings {
            path: s.path,
            baud: s.baud,
            data_bits: s.data_bits,
            parity,
            stop_bits: s.stop_bits,
            flow_control,
        }))
    }

    fn sink(&mut self, i: usize, v: toml::Value) -> Option<SinkConfig> {
        let at = format!("sink[{i}]");
        let mut t = match v {
            toml::Value::Table(t) => t,
            _ => {
                self.problem(at, "must be a table");
                return None;
            }
        };
        let kind = match t.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => {
                self.problem(format!("{at}.type"), "must be a string");
                return None;
            }
            None => {
                self.problem(at, "missing `type` (file)");
                return None;
            }
        };
        match kind.as_str() {
            "file" => {
                let f: FileSinkFile = self.section(&at, toml::Value::Table(t))?;
                let format = match f.format.as_str() {
                    "fhir" => OutboxFormat::Fhir,
                    "reading" => OutboxFormat::Reading,
                    other => {
                        self.problem(
                            format!("{at}.format"),
                            format!("unknown outbox format `{other}`, expected fhir or reading"),
                        );
                        return None;
                    }
                };
                if !valid_id(&f.id) {
                    self.problem(format!("{at}.id"), format!("`{}` is not a valid id", f.id));
                    return None;
                }
                Some(SinkConfig::File(FileSinkConfig {
                    id: SinkId::new(f.id),
                    dir: f.dir,
                    format,
                }))
            }
            "fhir" | "hl7-mllp" | "mqtt" => {
                self.problem(
                    format!("{at}.type"),
                    format!(
                        "sink type `{kind}` is not available in this version of vitalsd; use file"
                    ),
                );
                None
            }
            other => {
                self.problem(
                    format!("{at}.type"),
                    format!("unknown sink type `{other}`, expected file"),
                );
                None
            }
        }
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else if b.starts_with('[') {
        format!("{a}{b}")
    } else {
        format!("{a}.{b}")
    }
}

/// Ids appear in file names, metric labels and store keys: keep them plain.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests;
