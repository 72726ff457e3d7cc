//! Validation: the file structs of [`super::file`] → the typed [`super::Config`], collecting
//! every problem with its key path and line instead of stopping at the first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::file::{
    DaemonFile, DeviceFile, MllpDeviceFile, MqttDeviceFile, MqttFile, PatientFile, SerialFile,
};
use super::locate::Locator;
use super::*;
use crate::decode::{self, Options, Transport};
use crate::reading::DeviceId;

pub(super) struct Validator {
    loc: Locator,
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    /// The `[mqtt]` broker when it is plain `mqtt://` to another machine: its host and
    /// whether `[mqtt] allow_insecure` accepts that (for sinks publishing through it).
    pub(super) plain_shared_broker: Option<(String, bool)>,
}

impl Validator {
    pub(super) fn new(loc: Locator) -> Self {
        Self {
            loc,
            problems: Vec::new(),
            warnings: Vec::new(),
            plain_shared_broker: None,
        }
    }

    /// Something sent unencrypted to another machine: a problem naming `key`, or with
    /// `allowed` (the table's `allow_insecure = true`) a warning, which the daemon logs at WARN
    /// at every start (docs/network-security.md).
    pub(super) fn plaintext(&mut self, key: &str, allowed: bool, what: &str, fix: &str) {
        if allowed {
            let line = self.loc.line(key);
            self.warnings.push(Problem {
                path: key.to_string(),
                line,
                message: format!("allow_insecure = true: {what} unencrypted"),
            });
        } else {
            self.problem(
                key,
                format!("{what} unencrypted: {fix}, or set allow_insecure = true on this table to accept that"),
            );
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
    ///
    /// serde stops at a table's first bad key, so after each error the offending key is taken
    /// out of a copy and the table is tried again: every bad key of the table is reported in
    /// one run (a missing key, or an error that names no key, ends the search). `None` when
    /// there was any problem.
    pub(super) fn section<T: DeserializeOwned>(
        &mut self,
        path: &str,
        value: toml::Value,
    ) -> Option<T> {
        let mut value = value;
        let mut failed = false;
        // Each round removes one key, so a table cannot loop for longer than it has keys.
        for _ in 0..64 {
            match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(t) if !failed => return Some(t),
                Ok(_) => return None,
                Err(e) => {
                    failed = true;
                    let inner = e.inner().to_string();
                    let segments: Vec<String> = e
                        .path()
                        .iter()
                        .filter_map(|seg| match seg {
                            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                            serde_path_to_error::Segment::Seq { index } => {
                                Some(format!("[{index}]"))
                            }
                            _ => None,
                        })
                        .collect();
                    let mut p = path.to_string();
                    let sub = e.path().to_string();
                    if sub != "." && !sub.is_empty() {
                        p = join(&p, &sub);
                    }
                    let mut keys = segments;
                    // Depending on the table, the unknown key may or may not be part of the
                    // path yet.
                    if let Some(rest) = inner.strip_prefix("unknown field `") {
                        if let Some(name) = rest.split('`').next() {
                            let last = p.rsplit(['.', ']']).next().unwrap_or("");
                            if last != name {
                                p = join(&p, name);
                                keys.push(name.to_string());
                            }
                        }
                    }
                    self.problem(p, inner.replace('\n', " ").trim().to_string());
                    if inner.starts_with("missing field") || !remove_key(&mut value, &keys) {
                        return None;
                    }
                }
            }
        }
        None
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
            .filter_map(|(i, v)| self.sink(i, v, has_mqtt).map(|s| (i, s)))
            .collect();
        if patient
            .as_ref()
            .is_some_and(|p| p.mode == PatientMode::Location)
        {
            self.location_without_fhir(&sinks);
        }
        let sinks: Vec<_> = sinks.into_iter().map(|(_, s)| s).collect();
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

    /// Location mode sends Observations whose subject is the room (a Location). FHIR R4 makes
    /// every Observation with a vital-sign LOINC code conform to the vital-signs profile, whose
    /// subject must be a Patient: no FHIR output may run in location mode (docs/fhir.md).
    fn location_without_fhir(&mut self, sinks: &[(usize, SinkConfig)]) {
        for (i, s) in sinks {
            let key = match s {
                SinkConfig::Fhir(_) => format!("sink[{i}].type"),
                SinkConfig::File(f) if f.format == OutboxFormat::Fhir => {
                    format!("sink[{i}].format")
                }
                SinkConfig::Mqtt(m) if m.format == PublishFormat::Fhir => {
                    format!("sink[{i}].format")
                }
                _ => continue,
            };
            let at = self
                .loc
                .line(&key)
                .map_or_else(String::new, |l| format!(" (line {l})"));
            self.problem(
                "patient.mode",
                format!(
                    "mode = \"location\" cannot be used with FHIR output: {key}{at} of sink `{}` sends \
                     FHIR Observations, and FHIR R4 requires the subject of a vital-sign Observation \
                     to be a Patient, not a room; use mode = \"hold\", or a non-FHIR format",
                    s.id()
                ),
            );
        }
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
        let store_key_file = match crate::queue::cipher::KeySource::parse(&d.store_key_file) {
            Ok(k) => k,
            Err(e) => {
                self.problem("daemon.store_key_file", e.to_string());
                return None;
            }
        };
        if let crate::queue::cipher::KeySource::File(p) = &store_key_file {
            if p.starts_with(&d.data_dir) {
                self.problem(
                    "daemon.store_key_file",
                    "must be outside data_dir (a copy of data_dir must not carry its key)",
                );
            }
        }
        let admin_token_file = self.admin_token_file(&d.admin_token_file);
        if let Some(listen) = admin_listen {
            if !listen.ip().is_loopback() && admin_token_file.is_none() {
                self.problem(
                    "daemon.admin_listen",
                    format!("`{listen}` is not a loopback address: set daemon.admin_token_file (the API then needs its token) or listen on 127.0.0.1"),
                );
            }
        }
        for (i, h) in d.admin_hosts.iter().enumerate() {
            if let Err(why) = check_admin_host(h) {
                self.problem(format!("daemon.admin_hosts[{i}]"), why);
            }
        }
        Some(DaemonConfig {
            store: super::store::check(self, &d),
            data_dir: d.data_dir,
            admin_listen,
            admin_token_file,
            admin_hosts: d.admin_hosts,
            queue_max_bytes: d.queue_max_bytes.0,
            history_max_bytes: d.history_max_bytes.0,
            cache_size: d.cache_size.0,
            clock_skew_tolerance: d.clock_skew_tolerance.0,
            shutdown_timeout: d.shutdown_timeout.0,
            audit_retention: d.audit_retention.0,
            log_format,
            store_key_file,
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

    fn unknown_driver(&mut self, at: &str, name: &str) {
        let names: Vec<_> = decode::drivers().iter().map(|d| d.name).collect();
        self.problem(
            format!("{at}.driver"),
            format!(
                "unknown driver `{name}`, expected one of {}",
                names.join(", ")
            ),
        );
    }

    /// The `mllp` table of an `hl7v2` device: the listen address, who may connect and the
    /// connection limits (docs/network-security.md).
    fn mllp_listen(&mut self, at: &str, m: MllpDeviceFile) -> Option<DeviceTransport> {
        let listen = match m.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    format!("{at}.listen"),
                    format!("`{}` is not an address like \"0.0.0.0:2575\"", m.listen),
                );
                None
            }
        };
        let mut allow = Vec::new();
        for (j, text) in m.allow.iter().enumerate() {
            match text.parse::<crate::net::Cidr>() {
                Ok(c) => allow.push(c),
                Err(e) => self.problem(format!("{at}.allow[{j}]"), e.to_string()),
            }
        }
        if m.allow.is_empty() {
            if listen.is_some_and(|a| !crate::net::unmap(a.ip()).is_loopback()) {
                self.problem(
                    format!("{at}.allow"),
                    "the listener is reachable from the network but no `allow` list says who may send: set allow = [\"10.20.0.0/16\", ...] to the monitors' addresses or subnets",
                );
            }
            allow.extend(crate::net::Cidr::loopback());
        }
        if m.max_connections == 0 {
            self.problem(format!("{at}.max_connections"), "must be at least 1");
        }
        if m.max_connections_per_peer == 0 || m.max_connections_per_peer > m.max_connections {
            self.problem(
                format!("{at}.max_connections_per_peer"),
                "must be between 1 and max_connections",
            );
        }
        if m.message_timeout.0 < Duration::from_secs(1) {
            self.problem(format!("{at}.message_timeout"), "must be at least 1s");
        }
        if m.idle_timeout.0 < Duration::from_secs(1) {
            self.problem(format!("{at}.idle_timeout"), "must be at least 1s");
        }
        let tls = m.tls.and_then(|t| {
            let cert = self.readable_file(&format!("{at}.tls.cert_file"), &t.cert_file);
            let key = self.secret_file(&format!("{at}.tls.key_file"), &t.key_file);
            let ca = self.readable_file(&format!("{at}.tls.client_ca_file"), &t.client_ca_file);
            if t.cert_file.is_empty() || t.key_file.is_empty() {
                self.problem(format!("{at}.tls"), "needs cert_file and key_file");
            }
            Some(ListenTls {
                cert_file: cert?,
                key_file: key?,
                client_ca_file: ca,
            })
        });
        // The transport stands when the address does, so the driver check still runs (the
        // device is dropped anyway when any problem was found).
        Some(DeviceTransport::Mllp(MllpListenSettings {
            listen: listen?,
            allow,
            max_connections: m.max_connections,
            max_connections_per_peer: m.max_connections_per_peer,
            idle_timeout: m.idle_timeout.0,
            message_timeout: m.message_timeout.0,
            tls,
        }))
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
        if !tls && !crate::net::is_loopback_host(&host) {
            if password_file.is_some() {
                self.plaintext(
                    "mqtt.url",
                    m.allow_insecure,
                    &format!("the MQTT password would travel to {host}"),
                    "use mqtts://",
                );
            }
            self.plain_shared_broker = Some((host.clone(), m.allow_insecure));
        }
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

    /// The admin token file: it must exist, and group or others may at most read it (0640).
    fn admin_token_file(&mut self, path: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let key = "daemon.admin_token_file";
        let p = self.readable_file(key, path)?;
        if let Ok(meta) = std::fs::metadata(&p) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o037 != 0 {
                self.problem(
                    key,
                    format!("{path} has mode {mode:04o}: only its owner may write it and only its group read it (chmod 640, or 600)"),
                );
            }
        }
        Some(p)
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

/// Takes the key at `keys` (table keys and `[i]` array indexes) out of `v`; false when there
/// is no such key (or `keys` is empty: the whole table failed).
fn remove_key(v: &mut toml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut cur = v;
    for k in parents {
        let next = match (k.strip_prefix('[').and_then(|r| r.strip_suffix(']')), cur) {
            (Some(i), toml::Value::Array(a)) => i.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            (None, toml::Value::Table(t)) => t.get_mut(k.as_str()),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (
        last.strip_prefix('[').and_then(|r| r.strip_suffix(']')),
        cur,
    ) {
        (Some(i), toml::Value::Array(a)) => match i.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        (None, toml::Value::Table(t)) => t.remove(last.as_str()).is_some(),
        _ => false,
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

#[cfg(test)]
mod location_mode_tests {
    use super::super::parse;

    const DEVICE: &str = "[patient]\nmode = \"location\"\n\n[[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\nserial = { path = \"/dev/ttyUSB0\" }\n\n";

    fn problems(sinks: &str) -> Vec<String> {
        match parse(&format!("{DEVICE}{sinks}"), "test.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn location_mode_with_a_fhir_sink_is_refused_naming_the_key_line_and_reason() {
        let p = problems(
            "[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"reading\"\n\n\
             [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"https://ehr.example/fhir\"\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("patient.mode"), "{}", p[0]);
        assert!(p[0].contains("line 2"), "the mode's line: {}", p[0]);
        assert!(p[0].contains("sink[1].type (line 18)"), "{}", p[0]);
        assert!(p[0].contains("to be a Patient"), "{}", p[0]);
    }

    #[test]
    fn location_mode_with_a_fhir_file_or_mqtt_format_is_refused() {
        let p = problems(
            "[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"fhir\"\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("sink[0].format"), "{}", p[0]);
        let p = problems(
            "[[sink]]\nid = \"bus\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n\
             topic = \"vitals/{room}\"\nformat = \"fhir\"\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("sink[0].format") && p[0].contains("`bus`"),
            "{}",
            p[0]
        );
        let reading = "[[sink]]\nid = \"bus\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n\
                       topic = \"vitals/{room}\"\nformat = \"reading\"\n";
        assert!(problems(reading).is_empty(), "{:?}", problems(reading));
    }

    #[test]
    fn location_mode_with_non_fhir_outputs_and_hold_mode_with_fhir_are_accepted() {
        assert!(problems(
            "[[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/tmp/o\"\nformat = \"reading\"\n"
        )
        .is_empty());
        let hold = "[[device]]\nid = \"ox\"\ndriver = \"nonin-ascii\"\nroom = \"exam-1\"\nserial = { path = \"/dev/ttyUSB0\" }\n\n\
                    [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"https://ehr.example/fhir\"\n";
        assert!(parse(hold, "test.toml").is_ok());
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod transport_tests;
/// An `admin_hosts` entry: a host name or an IP address, without scheme, port or path.
fn check_admin_host(h: &str) -> Result<(), String> {
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if name_ok {
        Ok(())
    } else {
        Err(format!(
            "`{h}` is not a host name or address (no scheme, port or path: e.g. \"vitals-box.clinic.local\")"
        ))
    }
}
