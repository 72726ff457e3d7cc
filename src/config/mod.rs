//! Configuration: the TOML file → a validated [`Config`], or every problem at once.
//!
//! Parsing is strict: every table rejects unknown keys. Each top-level table and each
//! `[[device]]` / `[[sink]]` entry is read on its own, so one bad entry does not hide the
//! problems of the others; then cross-checks run (unique ids, drivers and their transports and
//! options). Every problem is reported as `key.path (line N): why`, and a config with any
//! problem never starts a daemon.

mod file;
mod locate;
mod net;
mod patient;
mod sinks;
mod store;
pub use store::StoreConfig;
mod usb;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::decode::Options;
use crate::reading::{DeviceId, SinkId};
use locate::Locator;
pub use sinks::{default_fhir_concurrency, MAX_FHIR_CONCURRENCY};
use validate::Validator;

/// The default config path of the daemon.
pub const DEFAULT_PATH: &str = "/etc/vitalsd/vitalsd.toml";

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub patient: PatientConfig,
    pub mqtt: Option<MqttConfig>,
    pub devices: Vec<DeviceConfig>,
    pub sinks: Vec<SinkConfig>,
    /// Things that work but deserve a look (e.g. a secret file readable by others).
    pub warnings: Vec<Problem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    /// `None` when `admin_listen = ""`.
    pub admin_listen: Option<SocketAddr>,
    pub admin_token_file: Option<PathBuf>,
    /// Extra `Host` names the admin API answers to (besides its address and loopback names).
    pub admin_hosts: Vec<String>,
    /// The cap on undelivered readings (pending, retry, dead-letter, held, quarantined).
    pub queue_max_bytes: u64,
    /// Retained history (dedupe index, audit log, rejected payloads) above this is pruned
    /// oldest first, before its age limit (docs/store-bounds.md).
    pub history_max_bytes: u64,
    /// sled's page cache (sled's own tables grow with the number of stored entries besides).
    pub cache_size: u64,
    pub clock_skew_tolerance: Duration,
    /// How long shutdown may take to drain before giving up (keep below systemd's
    /// `TimeoutStopSec`).
    pub shutdown_timeout: Duration,
    /// Audit entries older than this are pruned.
    pub audit_retention: Duration,
    /// The store's and audit files' own settings (see `store`).
    pub store: StoreConfig,
    pub log_format: LogFormat,
    /// Where the key that encrypts the store comes from (outside `data_dir`).
    pub store_key_file: crate::queue::cipher::KeySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientMode {
    /// Readings go with the room as subject, for the record system to match.
    Location,
    /// Readings without a valid patient context wait for an MA to assign or discard them.
    Hold,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatientConfig {
    pub mode: PatientMode,
    pub context_ttl: Duration,
    pub hold_for: Duration,
    /// Every reading bound for the sinks waits on the review list until a person confirms it.
    pub review: bool,
    /// `[patient] lookup`: confirm every scanned identifier with a FHIR server.
    pub lookup: Option<LookupConfig>,
}

/// What a scan does while the lookup server cannot be reached (`lookup_unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupUnavailable {
    /// The room gets no patient; its readings are held.
    Hold,
    /// The room gets the scanned identifier, unconfirmed: readings are flagged
    /// `patient_unverified`.
    Identifier,
}

/// `[patient] lookup = "<fhir sink id>"` and its settings (docs/patient-lookup.md).
#[derive(Debug, Clone, PartialEq)]
pub struct LookupConfig {
    /// The FHIR sink whose server, credentials, TLS trust and timeout the lookup uses.
    pub sink: SinkId,
    pub unavailable: LookupUnavailable,
    /// How long an answer is reused.
    pub cache_ttl: Duration,
    /// A server to ask instead of `sink`'s (the built-in demo's own directory); `None` from a
    /// config file.
    pub server: Option<FhirSinkConfig>,
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
    /// The port; empty when `usb` names the adapter instead.
    pub path: PathBuf,
    /// The USB adapter to look up at every open (`serial.usb`), instead of a fixed `path`.
    pub usb: Option<UsbMatch>,
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
    pub flow_control: FlowControl,
}

/// A USB serial adapter named by its ids (`serial.usb = { vendor, product, serial }`):
/// resolved to its current `/dev/tty*` path at every open, since a replugged adapter may come
/// back as another `ttyUSBn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbMatch {
    pub vendor: u16,
    pub product: u16,
    /// The adapter's USB serial number (`iSerial`); `None` matches any.
    pub serial: Option<String>,
}

impl fmt::Display for UsbMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.product)?;
        match &self.serial {
            Some(s) => write!(f, " serial {s}"),
            None => Ok(()),
        }
    }
}

/// How an MQTT payload carries the device's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode {
    /// The device's bytes as hex text.
    Hex,
    /// The device's bytes in base64.
    Base64,
    /// The device's bytes as they are.
    Binary,
    /// A JSON document (the `json` driver, or a gateway's JSON envelope).
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttDeviceSettings {
    /// Subscription filter; `+` and `#` wildcards allowed.
    pub topic: String,
    pub payload: PayloadMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpListenSettings {
    pub listen: SocketAddr,
    /// Peers allowed to connect; never empty (loopback when the file leaves it out).
    pub allow: Vec<crate::net::Cidr>,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// No complete message for this long: the connection is closed.
    pub idle_timeout: Duration,
    /// Longest time from a message's first byte to its end block.
    pub message_timeout: Duration,
    /// TLS on the listener; `None`: plain TCP.
    pub tls: Option<ListenTls>,
}

/// The server side of TLS on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: clients must present a certificate issued by this CA.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceTransport {
    Serial(SerialSettings),
    Mqtt(MqttDeviceSettings),
    Mllp(MllpListenSettings),
}

impl DeviceTransport {
    pub fn kind(&self) -> crate::decode::Transport {
        match self {
            DeviceTransport::Serial(_) => crate::decode::Transport::Serial,
            DeviceTransport::Mqtt(_) => crate::decode::Transport::Mqtt,
            DeviceTransport::Mllp(_) => crate::decode::Transport::Mllp,
        }
    }
}

/// The broker shared by MQTT devices (`[mqtt]`).
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub keep_alive: Duration,
    pub patient_topic: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub id: DeviceId,
    pub driver: String,
    pub room: String,
    pub transport: DeviceTransport,
    pub options: Options,
    /// No bytes for this long closes and reopens the port (cable faults give no EOF);
    /// `Duration::ZERO` never does. Defaults per driver: [`default_silence`].
    pub inactivity_timeout: Duration,
}

/// How long a device of `driver` may be silent before its port is reopened, when the config
/// does not say: [`CONTINUOUS_SILENCE`] for drivers whose devices stream without pause
/// (continuous oximeters, ECG), none for spot-check devices (scanners, cuffs, thermometers,
/// scales, gateways), which are silent between patients as a matter of course.
pub fn default_silence(driver: &str) -> Duration {
    match crate::decode::driver_info(driver) {
        Some(i) if i.continuous || i.kinds.contains(&crate::reading::Kind::Ecg) => {
            CONTINUOUS_SILENCE
        }
        _ => Duration::ZERO,
    }
}

/// The default inactivity timeout of streaming devices (they send at least once a second).
pub const CONTINUOUS_SILENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxFormat {
    Fhir,
    Reading,
    /// HL7 v2 ORU^R01 messages, one per line group (`YYYY-MM-DD.hl7`).
    Hl7,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSinkConfig {
    pub id: SinkId,
    pub dir: PathBuf,
    pub format: OutboxFormat,
    /// `hl7` format only: ECG strips also as waveform OBX rows (`waveform`, default false).
    pub waveform: bool,
}

/// How the FHIR sink authenticates (`auth`, `token_file`, `[sink.oauth]`): the validated
/// config holds the net layer's credential types, under the names the config has always used.
pub use crate::net::oauth::{
    ClientCredential as OAuthCredential, Credentials as FhirAuth, OAuthSettings as OAuthConfig,
};

#[derive(Debug, Clone, PartialEq)]
pub struct FhirSinkConfig {
    pub id: SinkId,
    /// The server's base URL, without a trailing slash.
    pub base_url: String,
    pub auth: FhirAuth,
    pub ca_file: Option<PathBuf>,
    pub batch_size: usize,
    /// Transaction Bundles in flight at once (1 = one at a time).
    pub concurrency: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MllpSinkConfig {
    pub id: SinkId,
    /// `host:port` of the receiving engine.
    pub address: String,
    pub ack_timeout: Duration,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    /// AR (application reject: "try later") answers before the message is dead-lettered.
    pub max_ar_retries: u32,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// Send ECG strips as waveform OBX rows (`waveform`, default false: the receiver must agree).
    pub waveform: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFormat {
    Reading,
    Fhir,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MqttSinkConfig {
    pub id: SinkId,
    /// Topic template with `{room}`, `{kind}`, `{device}` placeholders.
    pub topic: String,
    pub format: PublishFormat,
    /// Its own broker; `None` publishes on the `[mqtt]` broker.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    File(FileSinkConfig),
    Fhir(FhirSinkConfig),
    Mllp(MllpSinkConfig),
    Mqtt(MqttSinkConfig),
}

impl SinkConfig {
    pub fn id(&self) -> &SinkId {
        match self {
            SinkConfig::File(f) => &f.id,
            SinkConfig::Fhir(f) => &f.id,
            SinkConfig::Mllp(m) => &m.id,
            SinkConfig::Mqtt(m) => &m.id,
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
    let mut v = Validator::new(Locator::new(src));
    let cfg = v.run(src);
    match cfg {
        Some(mut cfg) if v.problems.is_empty() => {
            cfg.warnings = std::mem::take(&mut v.warnings);
            Ok(cfg)
        }
        _ => Err(ConfigError {
            origin: origin.to_string(),
            problems: v.problems,
        }),
    }
}

#[cfg(test)]
mod tests;
