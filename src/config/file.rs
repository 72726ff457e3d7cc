//! The config file as written: plain serde structs, strict (`deny_unknown_fields` on every
//! table), with named default functions. `config::load` turns these into the validated
//! [`super::Config`]; nothing else reads them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written like `"30s"`, `"5m"`, `"24h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write it like \"30s\", \"5m\" or \"24h\""
            ))
        })
    }
}

/// A size written like `"2GiB"`, `"512MiB"`, `"16MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid size `{s}` ({e}); write it like \"2GiB\" or \"512MiB\""
                ))
            })
    }
}

pub fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/vitalsd")
}
pub fn default_admin_listen() -> String {
    "127.0.0.1:9750".into()
}
pub fn default_queue_max_bytes() -> Size {
    Size(2 * 1024 * 1024 * 1024)
}
pub fn default_history_max_bytes() -> Size {
    // Under the online rewrite's live-data limit with room for undelivered readings, so space
    // comes back at high rates too (docs/store-bounds.md).
    Size(192 * 1024 * 1024)
}
pub fn default_audit_max_bytes() -> Size {
    Size(4 * 1024 * 1024 * 1024)
}
pub fn default_store_reclaim_slack() -> Size {
    Size(64 * 1024 * 1024)
}
pub fn default_store_reclaim_every() -> Dur {
    Dur(std::time::Duration::from_secs(600))
}
pub fn default_cache_size() -> Size {
    Size(16 * 1024 * 1024)
}
pub fn default_clock_skew_tolerance() -> Dur {
    Dur(Duration::from_secs(5 * 60))
}
pub fn default_shutdown_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}
pub fn default_audit_retention() -> Dur {
    Dur(Duration::from_secs(90 * 24 * 3600))
}
pub fn default_store_key_file() -> String {
    crate::queue::cipher::DEFAULT_KEY_FILE.into()
}
pub fn default_log_format() -> String {
    "text".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonFile {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    #[serde(default)]
    pub admin_token_file: String,
    /// Extra `Host` names (or addresses) the admin API answers to, without a port.
    #[serde(default)]
    pub admin_hosts: Vec<String>,
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: Size,
    #[serde(default = "default_history_max_bytes")]
    pub history_max_bytes: Size,
    #[serde(default = "default_cache_size")]
    pub cache_size: Size,
    #[serde(default = "default_clock_skew_tolerance")]
    pub clock_skew_tolerance: Dur,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Dur,
    #[serde(default = "default_audit_retention")]
    pub audit_retention: Dur,
    /// The audit files' size cap: above it the oldest days are removed (WARN first).
    #[serde(default = "default_audit_max_bytes")]
    pub audit_max_bytes: Size,
    /// The store is rewritten online when its files exceed twice its live data by this.
    #[serde(default = "default_store_reclaim_slack")]
    pub store_reclaim_slack: Size,
    /// At most one online rewrite per this interval.
    #[serde(default = "default_store_reclaim_every")]
    pub store_reclaim_every: Dur,
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// The store encryption key: a path, or `credential:<name>` for a systemd credential.
    #[serde(default = "default_store_key_file")]
    pub store_key_file: String,
}

impl Default for DaemonFile {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            admin_listen: default_admin_listen(),
            admin_token_file: String::new(),
            admin_hosts: Vec::new(),
            queue_max_bytes: default_queue_max_bytes(),
            history_max_bytes: default_history_max_bytes(),
            cache_size: default_cache_size(),
            clock_skew_tolerance: default_clock_skew_tolerance(),
            shutdown_timeout: default_shutdown_timeout(),
            audit_retention: default_audit_retention(),
            audit_max_bytes: default_audit_max_bytes(),
            store_reclaim_slack: default_store_reclaim_slack(),
            store_reclaim_every: default_store_reclaim_every(),
            log_format: default_log_format(),
            store_key_file: default_store_key_file(),
        }
    }
}

pub fn default_patient_mode() -> String {
    "hold".into()
}
pub fn default_context_ttl() -> Dur {
    Dur(Duration::from_secs(20 * 60))
}
pub fn default_hold_for() -> Dur {
    Dur(Duration::from_secs(24 * 3600))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientFile {
    #[serde(default = "default_patient_mode")]
    pub mode: String,
    #[serde(default = "default_context_ttl")]
    pub context_ttl: Dur,
    #[serde(default = "default_hold_for")]
    pub hold_for: Dur,
    /// Readings wait on a review list until a person confirms or rejects them (docs/review.md).
    #[serde(default)]
    pub review: bool,
    /// The id of a `type = "fhir"` sink whose server confirms every scanned identifier
    /// (docs/patient-lookup.md); empty: no lookup.
    #[serde(default)]
    pub lookup: String,
    /// `hold` or `identifier`: what a scan does while the lookup server cannot be reached.
    #[serde(default = "default_lookup_unavailable")]
    pub lookup_unavailable: String,
    #[serde(default = "default_lookup_cache_ttl")]
    pub lookup_cache_ttl: Dur,
}

pub fn default_lookup_unavailable() -> String {
    "hold".into()
}
pub fn default_lookup_cache_ttl() -> Dur {
    Dur(Duration::from_secs(10 * 60))
}

impl Default for PatientFile {
    fn default() -> Self {
        Self {
            mode: default_patient_mode(),
            context_ttl: default_context_ttl(),
            hold_for: default_hold_for(),
            review: false,
            lookup: String::new(),
            lookup_unavailable: default_lookup_unavailable(),
            lookup_cache_ttl: default_lookup_cache_ttl(),
        }
    }
}

pub fn default_flow_control() -> String {
    "none".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialFile {
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub usb: Option<super::usb::UsbFile>,
    /// Line settings left out take the driver's defaults (`vitalsd drivers`), then 9600 8N1.
    #[serde(default)]
    pub baud: Option<u32>,
    #[serde(default)]
    pub data_bits: Option<u8>,
    #[serde(default)]
    pub parity: Option<String>,
    #[serde(default)]
    pub stop_bits: Option<u8>,
    #[serde(default = "default_flow_control")]
    pub flow_control: String,
}

/// A driver option value: any TOML scalar, kept as its text.
#[derive(Debug, Clone)]
pub struct OptionValue(pub String);

impl<'de> Deserialize<'de> for OptionValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(Self(s)),
            toml::Value::Integer(i) => Ok(Self(i.to_string())),
            toml::Value::Float(f) => Ok(Self(f.to_string())),
            toml::Value::Boolean(b) => Ok(Self(b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "driver options are strings, numbers or booleans, not {}",
                other.type_str()
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFile {
    pub id: String,
    pub driver: String,
    pub room: String,
    #[serde(default)]
    pub serial: Option<SerialFile>,
    #[serde(default)]
    pub mqtt: Option<MqttDeviceFile>,
    #[serde(default)]
    pub mllp: Option<MllpDeviceFile>,
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
    /// Left out: the driver's default ([`crate::config::default_silence`]).
    #[serde(default)]
    pub inactivity_timeout: Option<Dur>,
}

pub fn default_file_format() -> String {
    "fhir".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkFile {
    pub id: String,
    pub dir: PathBuf,
    #[serde(default = "default_file_format")]
    pub format: String,
    #[serde(default)]
    pub waveform: bool,
}

pub fn default_payload() -> String {
    "binary".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttDeviceFile {
    pub topic: String,
    #[serde(default = "default_payload")]
    pub payload: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpDeviceFile {
    pub listen: String,
    /// Networks allowed to connect (CIDR or single addresses); empty: loopback only, and a
    /// problem when `listen` is not a loopback address.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default = "default_mllp_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_mllp_max_per_peer")]
    pub max_connections_per_peer: usize,
    #[serde(default = "default_mllp_idle_timeout")]
    pub idle_timeout: Dur,
    #[serde(default = "default_mllp_message_timeout")]
    pub message_timeout: Dur,
    #[serde(default)]
    pub tls: Option<MllpTlsFile>,
}

/// `tls = { cert_file, key_file, client_ca_file }` on an MLLP listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpTlsFile {
    pub cert_file: String,
    pub key_file: String,
    /// Set: senders must present a certificate issued by this CA.
    #[serde(default)]
    pub client_ca_file: String,
}

pub fn default_mllp_max_connections() -> usize {
    64
}
pub fn default_mllp_max_per_peer() -> usize {
    4
}
pub fn default_mllp_idle_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
pub fn default_mllp_message_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

pub fn default_client_id() -> String {
    "vitalsd".into()
}
pub fn default_keep_alive() -> Dur {
    Dur(Duration::from_secs(30))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttFile {
    pub url: String,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password_file: String,
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub client_cert_file: String,
    #[serde(default)]
    pub client_key_file: String,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Dur,
    #[serde(default)]
    pub patient_topic: String,
    /// Accept a password (and the shared broker's patient data) over plain `mqtt://` to a host
    /// that is not this machine (logged at WARN at every start).
    #[serde(default)]
    pub allow_insecure: bool,
}

pub fn default_batch_size() -> usize {
    50
}
pub fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
pub fn default_scope() -> String {
    "system/Observation.write".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthFile {
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret_file: String,
    #[serde(default)]
    pub private_key_file: String,
    #[serde(default)]
    pub key_id: String,
    #[serde(default = "default_scope")]
    pub scope: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSinkFile {
    pub id: String,
    pub base_url: String,
    #[serde(default)]
    pub token_file: String,
    #[serde(default)]
    pub ca_file: String,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "super::sinks::default_fhir_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    #[serde(default)]
    pub oauth: Option<OAuthFile>,
    /// Accept plain `http://` to a host that is not this machine (WARN at every start).
    #[serde(default)]
    pub allow_insecure: bool,
}

pub fn default_max_ar_retries() -> u32 {
    5
}
pub fn default_sending_application() -> String {
    "VITALSD".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpSinkFile {
    pub id: String,
    pub address: String,
    #[serde(default = "default_timeout")]
    pub ack_timeout: Dur,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub ca_file: String,
    #[serde(default = "default_max_ar_retries")]
    pub max_ar_retries: u32,
    #[serde(default = "default_sending_application")]
    pub sending_application: String,
    #[serde(default)]
    pub sending_facility: String,
    #[serde(default)]
    pub receiving_application: String,
    #[serde(default)]
    pub receiving_facility: String,
    #[serde(default)]
    pub waveform: bool,
    /// Accept MLLP without TLS to a host that is not this machine (WARN at every start).
    #[serde(default)]
    pub allow_insecure: bool,
}

pub fn default_publish_format() -> String {
    "reading".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkFile {
    pub id: String,
    pub topic: String,
    #[serde(default = "default_publish_format")]
    pub format: String,
    #[serde(default)]
    pub url: String,
    /// Accept publishing over plain `mqtt://` to a host that is not this machine (WARN at
    /// every start).
    #[serde(default)]
    pub allow_insecure: bool,
}
