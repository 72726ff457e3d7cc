//! Validation: the file structs of [`super::file`] → the typed [`super::Config`], collecting
//! every problem with its key path and line instead of stopping at the first.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::DeserializeOwned;

use super::file::{DaemonFile, DeviceFile, MqttDeviceFile, MqttFile, PatientFile, SerialFile};
use super::locate::Locator;
use super::*;
use crate::decode::{self, Options, Transport};
use crate::reading::DeviceId;

pub(super) struct Validator {
    loc: Locator,
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
}

impl Validator {
    pub(super) fn new(loc: Locator) -> Self {
        Self {
            loc,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let line = self.loc.line(&path);
        self.problems.push(Problem {
            path,
            line,
            message: message.into(),
        });
    }

    /// Deserializes one table, recording a problem (with the failing key's path) on error.
    pub(super) fn section<T: DeserializeOwned>(
        &mut self,
        path: &str,
        value: toml::Value,
    ) -> Option<T> {
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

    pub(super) fn run(&mut self, src: &str) -> Option<Config> {
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
        let mqtt = match root.remove("mqtt") {
            Some(t) => self
                .section::<MqttFile>("mqtt", t)
                .and_then(|m| self.mqtt(m)),
            None => None,
        };
        for key in root.keys() {
            self.problem(
                key.clone(),
                format!(
                    "unknown table `{key}`, expected one of daemon, patient, mqtt, device, sink"
                ),
            );
        }

        let daemon = daemon.and_then(|d| self.daemon(d));
        let patient = patient.and_then(|p| self.patient(p));
        let has_mqtt = mqtt.is_some();
        let devices: Vec<_> = devices
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.device(i, v, has_mqtt))
            .collect();
        let sinks: Vec<_> = sinks
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.sink(i, v, has_mqtt))
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
            mqtt,
            devices,
            sinks,
            warnings: Vec::new(),
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
        if d.history_max_bytes.0 < 16 * 1024 * 1024 {
            self.problem("daemon.history_max_bytes", "must be at least 16MiB");
        }
        if d.audit_retention.0 < std::time::Duration::from_secs(24 * 3600) {
            self.problem("daemon.audit_retention", "must be at least 1d");
        }
        Some(DaemonConfig {
            data_dir: d.data_dir,
            admin_listen,
            admin_token_file: (!d.admin_token_file.is_empty())
                .then(|| PathBuf::from(&d.admin_token_file)),
            queue_max_bytes: d.queue_max_bytes.0,
            history_max_bytes: d.history_max_bytes.0,
            cache_size: d.cache_size.0,
            clock_skew_tolerance: d.clock_skew_tolerance.0,
            shutdown_timeout: d.shutdown_timeout.0,
            audit_retention: d.audit_retention.0,
            log_format,
        })
    }

    fn patient(&mut self, p: PatientFile) -> Option<PatientConfig> {
        let mode = match p.mode.as_str() {
            "location" => PatientMode::Location,
            "hold" => PatientMode::Hold,
            other => {
                self.problem(
                    "patient.mode",
                    format!("unknown mode `{other}`, expected hold or location"),
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

    fn device(&mut self, i: usize, v: toml::Value, has_mqtt: bool) -> Option<DeviceConfig> {
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
            match m.listen.parse::<SocketAddr>() {
                Ok(listen) => Some(DeviceTransport::Mllp(MllpListenSettings { listen })),
                Err(_) => {
                    self.problem(
                        at_t("mllp.listen"),
                        format!("`{}` is not an address like \"0.0.0.0:2575\"", m.listen),
                    );
                    None
                }
            }
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

    fn mqtt_device(
        &mut self,
        at: &str,
        m: MqttDeviceFile,
        has_mqtt: bool,
    ) -> Option<DeviceTransport> {
        if !has_mqtt {
            self.problem(
                at,
                "an mqtt device needs the [mqtt] table with the broker's url",
            );
        }
        if let Err(why) = check_topic_filter(&m.topic) {
            self.problem(format!("{at}.topic"), why);
            return None;
        }
        let payload = match m.payload.as_str() {
            "hex" => PayloadMode::Hex,
            "base64" => PayloadMode::Base64,
            "binary" => PayloadMode::Binary,
            "json" => PayloadMode::Json,
            other => {
                self.problem(
                    format!("{at}.payload"),
                    format!("`{other}`: expected hex, base64, binary or json"),
                );
                return None;
            }
        };
        Some(DeviceTransport::Mqtt(MqttDeviceSettings {
            topic: m.topic,
            payload,
        }))
    }

    fn mqtt(&mut self, m: MqttFile) -> Option<MqttConfig> {
        let before = self.problems.len();
        let (host, port, tls) = match parse_broker_url(&m.url) {
            Ok(x) => x,
            Err(why) => {
                self.problem("mqtt.url", why);
                return None;
            }
        };
        if m.client_id.trim().is_empty() {
            self.problem(
                "mqtt.client_id",
                "must be a stable, non-empty id (the broker keeps the session under it)",
            );
        }
        let password_file = self.secret_file("mqtt.password_file", &m.password_file);
        let ca_file = self.readable_file("mqtt.ca_file", &m.ca_file);
        let client_cert_file = self.readable_file("mqtt.client_cert_file", &m.client_cert_file);
        let client_key_file = self.secret_file("mqtt.client_key_file", &m.client_key_file);
        if client_cert_file.is_some() != client_key_file.is_some() {
            self.problem(
                "mqtt.client_cert_file",
                "client_cert_file and client_key_file go together",
            );
        }
        if !tls && (ca_file.is_some() || client_cert_file.is_some()) {
            self.problem("mqtt.url", "TLS files are set but the url is not mqtts://");
        }
        if !m.patient_topic.is_empty() {
            if let Err(why) = check_topic_filter(&m.patient_topic) {
                self.problem("mqtt.patient_topic", why);
            } else if m.patient_topic.split('/').filter(|l| *l == "+").count() != 1
                || m.patient_topic.contains('#')
            {
                self.problem(
                    "mqtt.patient_topic",
                    "needs exactly one `+` level, standing for the room (e.g. \"clinic/rooms/+/patient\"), and no `#`",
                );
            }
        }
        if m.keep_alive.0 < std::time::Duration::from_secs(5) {
            self.problem("mqtt.keep_alive", "must be at least 5s");
        }
        (self.problems.len() == before).then(|| MqttConfig {
            url: m.url.clone(),
            host,
            port,
            tls,
            client_id: m.client_id,
            username: (!m.username.is_empty()).then_some(m.username),
            password_file,
            ca_file,
            client_cert_file,
            client_key_file,
            keep_alive: m.keep_alive.0,
            patient_topic: (!m.patient_topic.is_empty()).then_some(m.patient_topic),
        })
    }

    /// A file the daemon must read: it must exist. `""` means not set.
    pub(super) fn readable_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        if path.is_empty() {
            return None;
        }
        let p = PathBuf::from(path);
        if let Err(e) = std::fs::metadata(&p) {
            self.problem(key, format!("cannot read {path}: {e}"));
        }
        Some(p)
    }

    /// A secret file: it must exist, and one readable by others is a warning.
    pub(super) fn secret_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.readable_file(key, path)?;
        if let Ok(meta) = std::fs::metadata(&p) {
            if meta.permissions().mode() & 0o004 != 0 {
                let line = self.loc.line(key);
                self.warnings.push(Problem {
                    path: key.to_string(),
                    line,
                    message: format!("{path} is readable by every user: chmod o-r it"),
                });
            }
        }
        Some(p)
    }

    /// The serial table; settings it leaves out take `driver`'s defaults, then 9600 8N1.
    fn serial(
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

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else if b.starts_with('[') {
        format!("{a}{b}")
    } else {
        format!("{a}.{b}")
    }
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` → (host, port, tls).
pub fn parse_broker_url(url: &str) -> Result<(String, u16, bool), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "`{url}`: put credentials in username and password_file, not in the URL"
        ));
    }
    let tls = match u.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => return Err(format!("scheme `{other}`: expected mqtt:// or mqtts://")),
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` has no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    if u.path() != "/" && !u.path().is_empty() {
        return Err(format!("`{url}`: a broker URL has no path"));
    }
    Ok((host, u.port().unwrap_or(if tls { 8883 } else { 1883 }), tls))
}

/// An MQTT topic filter: non-empty, `#` only last, wildcards only as whole levels.
pub(super) fn check_topic_filter(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    let levels: Vec<&str> = t.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if l.contains('#') && (*l != "#" || i + 1 != levels.len()) {
            return Err(format!("`{t}`: `#` must be a whole last level"));
        }
        if l.contains('+') && *l != "+" {
            return Err(format!("`{t}`: `+` must be a whole level"));
        }
    }
    Ok(())
}

/// Ids appear in file names, metric labels and store keys: keep them plain.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
