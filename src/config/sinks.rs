//! `[[sink]]` entries: the `type` picks the table's shape (file, fhir, hl7-mllp, mqtt); each
//! shape is strict and checked on its own.

use super::file::{FhirSinkFile, FileSinkFile, MllpSinkFile, MqttSinkFile, OAuthFile};
use super::validate::{valid_id, Validator};
use super::*;
use crate::net::mqtt::BrokerUrl;

const TYPES: &str = "file, fhir, hl7-mllp, mqtt";

/// Transaction Bundles a FHIR sink keeps in flight unless `concurrency` says otherwise
/// (docs/throughput.md).
pub fn default_fhir_concurrency() -> usize {
    4
}

/// The most Bundles in flight a FHIR sink may be configured with.
pub const MAX_FHIR_CONCURRENCY: usize = 32;

impl Validator {
    pub(super) fn sink(&mut self, i: usize, v: toml::Value, has_mqtt: bool) -> Option<SinkConfig> {
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
                self.problem(at, format!("missing `type` ({TYPES})"));
                return None;
            }
        };
        let body = toml::Value::Table(t);
        let before = self.problems.len();
        let sink = match kind.as_str() {
            "file" => self
                .section::<FileSinkFile>(&at, body)
                .and_then(|f| self.file_sink(&at, f)),
            "fhir" => self
                .section::<FhirSinkFile>(&at, body)
                .and_then(|f| self.fhir_sink(&at, f)),
            "hl7-mllp" => self
                .section::<MllpSinkFile>(&at, body)
                .and_then(|f| self.mllp_sink(&at, f)),
            "mqtt" => self
                .section::<MqttSinkFile>(&at, body)
                .and_then(|f| self.mqtt_sink(&at, f, has_mqtt)),
            other => {
                self.problem(
                    format!("{at}.type"),
                    format!("unknown sink type `{other}`, expected one of {TYPES}"),
                );
                None
            }
        }?;
        if !valid_id(sink.id().as_str()) {
            self.problem(
                format!("{at}.id"),
                format!(
                    "`{}` is not a valid id: use letters, digits, `.`, `_` and `-`",
                    sink.id()
                ),
            );
        }
        (self.problems.len() == before).then_some(sink)
    }

    fn file_sink(&mut self, at: &str, f: FileSinkFile) -> Option<SinkConfig> {
        let format = match f.format.as_str() {
            "fhir" => OutboxFormat::Fhir,
            "reading" => OutboxFormat::Reading,
            "hl7" => OutboxFormat::Hl7,
            other => {
                self.problem(
                    format!("{at}.format"),
                    format!("unknown outbox format `{other}`, expected fhir, reading or hl7"),
                );
                return None;
            }
        };
        if f.waveform && format != OutboxFormat::Hl7 {
            self.problem(
                format!("{at}.waveform"),
                "only the hl7 outbox format carries waveforms (FHIR strips always have them)",
            );
            return None;
        }
        Some(SinkConfig::File(FileSinkConfig {
            id: SinkId::new(f.id),
            dir: f.dir,
            format,
            waveform: f.waveform,
        }))
    }

    fn fhir_sink(&mut self, at: &str, f: FhirSinkFile) -> Option<SinkConfig> {
        let before = self.problems.len();
        match reqwest::Url::parse(&f.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                let host = u.host_str().unwrap_or_default();
                if u.scheme() == "http" && !crate::net::is_loopback_host(host) {
                    let what = if f.token_file.is_empty() {
                        format!("readings would travel to {host}")
                    } else {
                        format!("readings and the bearer token would travel to {host}")
                    };
                    self.plaintext(
                        &format!("{at}.base_url"),
                        f.allow_insecure,
                        &what,
                        "use https://",
                    );
                }
            }
            _ => self.problem(
                format!("{at}.base_url"),
                format!("`{}` is not an http(s) URL", f.base_url),
            ),
        }
        if f.batch_size == 0 || f.batch_size > 1000 {
            self.problem(format!("{at}.batch_size"), "must be between 1 and 1000");
        }
        if f.concurrency == 0 || f.concurrency > MAX_FHIR_CONCURRENCY {
            self.problem(
                format!("{at}.concurrency"),
                format!("must be between 1 and {MAX_FHIR_CONCURRENCY}"),
            );
        }
        let auth = match (&f.oauth, f.token_file.is_empty()) {
            (Some(_), false) => {
                self.problem(
                    format!("{at}.token_file"),
                    "set either token_file or [sink.oauth], not both",
                );
                FhirAuth::None
            }
            (Some(o), true) => self.oauth(&format!("{at}.oauth"), o),
            (None, false) => self
                .secret_file(&format!("{at}.token_file"), &f.token_file)
                .map_or(FhirAuth::None, FhirAuth::TokenFile),
            (None, true) => FhirAuth::None,
        };
        let ca_file = self.readable_file(&format!("{at}.ca_file"), &f.ca_file);
        (self.problems.len() == before).then(|| {
            SinkConfig::Fhir(FhirSinkConfig {
                id: SinkId::new(f.id),
                base_url: f.base_url.trim_end_matches('/').to_string(),
                auth,
                ca_file,
                batch_size: f.batch_size,
                concurrency: f.concurrency,
                timeout: f.timeout.0,
            })
        })
    }

    fn oauth(&mut self, at: &str, o: &OAuthFile) -> FhirAuth {
        match reqwest::Url::parse(&o.token_url) {
            Err(_) => self.problem(
                format!("{at}.token_url"),
                format!("`{}` is not a URL", o.token_url),
            ),
            Ok(u) => {
                let loopback = u.host_str().is_some_and(crate::net::is_loopback_host);
                let ok = match u.scheme() {
                    "https" => u.host_str().is_some(),
                    "http" => loopback,
                    _ => false,
                };
                if !ok {
                    self.problem(
                        format!("{at}.token_url"),
                        "the client credentials go to the token endpoint: it must be an https:// URL (http:// only to this machine)",
                    );
                }
            }
        }
        if o.client_id.is_empty() {
            self.problem(format!("{at}.client_id"), "must not be empty");
        }
        let credential = match (
            o.client_secret_file.is_empty(),
            o.private_key_file.is_empty(),
        ) {
            (false, true) => self
                .secret_file(&format!("{at}.client_secret_file"), &o.client_secret_file)
                .map(OAuthCredential::SecretFile),
            (true, false) => self
                .secret_file(&format!("{at}.private_key_file"), &o.private_key_file)
                .map(|key_file| OAuthCredential::PrivateKeyJwt {
                    key_file,
                    key_id: (!o.key_id.is_empty()).then(|| o.key_id.clone()),
                }),
            _ => {
                self.problem(
                    at,
                    "set exactly one of client_secret_file or private_key_file",
                );
                None
            }
        };
        match credential {
            Some(credential) => FhirAuth::OAuth(OAuthConfig {
                token_url: o.token_url.clone(),
                client_id: o.client_id.clone(),
                credential,
                scope: o.scope.clone(),
            }),
            None => FhirAuth::None,
        }
    }

    fn mllp_sink(&mut self, at: &str, m: MllpSinkFile) -> Option<SinkConfig> {
        let before = self.problems.len();
        match m.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => self.problem(
                format!("{at}.address"),
                format!("`{}` is not host:port", m.address),
            ),
        }
        if let Some(host) = crate::net::host_of_address(&m.address) {
            if !m.tls && !host.is_empty() && !crate::net::is_loopback_host(host) {
                self.plaintext(
                    &format!("{at}.address"),
                    m.allow_insecure,
                    &format!("HL7 messages would travel to {host}"),
                    "set tls = true (and ca_file for a clinic CA)",
                );
            }
        }
        let ca_file = self.readable_file(&format!("{at}.ca_file"), &m.ca_file);
        if ca_file.is_some() && !m.tls {
            self.problem(format!("{at}.ca_file"), "set tls = true to use a CA file");
        }
        for (key, v) in [
            ("sending_application", &m.sending_application),
            ("sending_facility", &m.sending_facility),
            ("receiving_application", &m.receiving_application),
            ("receiving_facility", &m.receiving_facility),
        ] {
            if v.chars()
                .any(|c| matches!(c, '|' | '^' | '~' | '\\' | '&' | '\r' | '\n'))
            {
                self.problem(
                    format!("{at}.{key}"),
                    "must not contain HL7 delimiters (| ^ ~ \\ &) or line breaks",
                );
            }
        }
        (self.problems.len() == before).then(|| {
            SinkConfig::Mllp(MllpSinkConfig {
                id: SinkId::new(m.id),
                address: m.address,
                ack_timeout: m.ack_timeout.0,
                tls: m.tls,
                ca_file,
                max_ar_retries: m.max_ar_retries,
                sending_application: m.sending_application,
                sending_facility: m.sending_facility,
                receiving_application: m.receiving_application,
                receiving_facility: m.receiving_facility,
                waveform: m.waveform,
            })
        })
    }

    fn mqtt_sink(&mut self, at: &str, m: MqttSinkFile, has_mqtt: bool) -> Option<SinkConfig> {
        let before = self.problems.len();
        let format = match m.format.as_str() {
            "reading" => PublishFormat::Reading,
            "fhir" => PublishFormat::Fhir,
            other => {
                self.problem(
                    format!("{at}.format"),
                    format!("`{other}`: expected reading or fhir"),
                );
                PublishFormat::Reading
            }
        };
        if m.topic.is_empty() || m.topic.contains(['+', '#']) {
            self.problem(
                format!("{at}.topic"),
                "a topic to publish to: no wildcards (placeholders {room}, {kind}, {device})",
            );
        }
        let stripped = ["{room}", "{kind}", "{device}"]
            .iter()
            .fold(m.topic.clone(), |t, p| t.replace(p, ""));
        if stripped.contains(['{', '}']) {
            self.problem(
                format!("{at}.topic"),
                "unknown placeholder: use {room}, {kind} or {device}",
            );
        }
        if m.url.is_empty() {
            if !has_mqtt {
                self.problem(
                    format!("{at}.url"),
                    "set url, or configure the [mqtt] broker to publish on",
                );
            } else if let Some((host, shared_allowed)) = self.plain_shared_broker.clone() {
                self.plaintext(
                    at,
                    m.allow_insecure || shared_allowed,
                    &format!("readings would be published through the [mqtt] broker {host}"),
                    "use an mqtts:// broker",
                );
            }
        } else {
            match BrokerUrl::parse(&m.url) {
                Err(why) => self.problem(format!("{at}.url"), why),
                Ok(b) if !b.tls && !crate::net::is_loopback_host(&b.host) => self.plaintext(
                    &format!("{at}.url"),
                    m.allow_insecure,
                    &format!("readings would be published to {}", b.host),
                    "use mqtts://",
                ),
                Ok(_) => {}
            }
        }
        (self.problems.len() == before).then(|| {
            SinkConfig::Mqtt(MqttSinkConfig {
                id: SinkId::new(m.id),
                topic: m.topic,
                format,
                url: (!m.url.is_empty()).then_some(m.url),
            })
        })
    }
}

#[cfg(test)]
mod concurrency_tests {
    use crate::config::{parse, SinkConfig};

    fn fhir(extra: &str) -> Result<usize, Vec<String>> {
        let src = format!(
            r#"
[[device]]
id = "ox"
driver = "nonin-ascii"
room = "exam-1"
serial = {{ path = "/dev/ttyUSB0" }}

[[sink]]
id = "ehr"
type = "fhir"
base_url = "http://127.0.0.1:8080/fhir"
{extra}
"#
        );
        match parse(&src, "t.toml") {
            Ok(cfg) => match &cfg.sinks[0] {
                SinkConfig::Fhir(f) => Ok(f.concurrency),
                other => panic!("not fhir: {other:?}"),
            },
            Err(e) => Err(e.problems.iter().map(|p| p.to_string()).collect()),
        }
    }

    #[test]
    fn a_fhir_sink_keeps_four_bundles_in_flight_unless_told() {
        assert_eq!(fhir(""), Ok(4));
        assert_eq!(fhir("concurrency = 1"), Ok(1));
        assert_eq!(fhir("concurrency = 32"), Ok(32));
    }

    #[test]
    fn a_fhir_concurrency_outside_1_to_32_is_refused_by_key() {
        for bad in ["concurrency = 0", "concurrency = 33"] {
            let problems = fhir(bad).expect_err(bad);
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("sink[0].concurrency") && p.contains("between 1 and 32")),
                "{bad}: {problems:?}"
            );
        }
    }
}
