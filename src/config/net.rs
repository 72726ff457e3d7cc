//! The net layer's settings built from the validated config: the FHIR server's HTTP client
//! ([`ClientSettings`]) and the MQTT broker ([`Broker`]). The net layer names no config type;
//! the config hands it these plain values (docs/ARCHITECTURE.md, "Modules and their imports").
//!
//! Receives a validated [`FhirSinkConfig`] or [`MqttConfig`]; promises the same settings the
//! config says, copied field by field (the address and URL rules both use are `net`'s:
//! [`crate::net::mqtt::BrokerUrl`], [`crate::net::is_loopback_host`]).

use super::{FhirSinkConfig, MqttConfig};
use crate::net::http::ClientSettings;
use crate::net::mqtt::Broker;

impl FhirSinkConfig {
    /// The settings of this sink's HTTP client (the patient lookup on its server uses them too).
    pub fn client_settings(&self) -> ClientSettings {
        ClientSettings::for_server(
            &self.base_url,
            &self.auth,
            self.ca_file.clone(),
            self.timeout,
        )
    }
}

impl From<&MqttConfig> for Broker {
    /// The `[mqtt]` broker.
    fn from(cfg: &MqttConfig) -> Broker {
        Broker {
            url: cfg.url.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            tls: cfg.tls,
            client_id: cfg.client_id.clone(),
            username: cfg.username.clone(),
            password_file: cfg.password_file.clone(),
            ca_file: cfg.ca_file.clone(),
            client_auth: cfg
                .client_cert_file
                .clone()
                .zip(cfg.client_key_file.clone()),
            keep_alive: cfg.keep_alive,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{FhirAuth, OAuthConfig, OAuthCredential};

    fn sink(base_url: &str, auth: FhirAuth) -> FhirSinkConfig {
        FhirSinkConfig {
            id: crate::reading::SinkId::new("ehr"),
            base_url: base_url.into(),
            auth,
            ca_file: Some("/etc/ca.pem".into()),
            batch_size: 10,
            concurrency: 1,
            timeout: Duration::from_secs(7),
        }
    }

    #[test]
    fn a_fhir_sink_gives_its_client_its_trust_timeout_and_https() {
        let s = sink("http://127.0.0.1:8080/fhir", FhirAuth::None).client_settings();
        assert_eq!(
            s,
            ClientSettings {
                https: false,
                ca_file: Some("/etc/ca.pem".into()),
                timeout: Duration::from_secs(7),
            }
        );
        let oauth = FhirAuth::OAuth(OAuthConfig {
            token_url: "https://idp.example/token".into(),
            client_id: "vitalsd".into(),
            credential: OAuthCredential::SecretFile("/s".into()),
            scope: "system/Observation.write".into(),
        });
        assert!(
            sink("http://127.0.0.1:8080/fhir", oauth)
                .client_settings()
                .https
        );
        assert!(
            sink("https://ehr.example/fhir", FhirAuth::None)
                .client_settings()
                .https
        );
    }

    #[test]
    fn the_mqtt_table_becomes_the_broker_with_its_client_certificate_pair() {
        let mut m = MqttConfig {
            url: "mqtts://broker.example:8884".into(),
            host: "broker.example".into(),
            port: 8884,
            tls: true,
            client_id: "vitalsd-1".into(),
            username: Some("vd".into()),
            password_file: Some("/p".into()),
            ca_file: Some("/ca".into()),
            client_cert_file: Some("/cert".into()),
            client_key_file: Some("/key".into()),
            keep_alive: Duration::from_secs(15),
            patient_topic: None,
        };
        let b = Broker::from(&m);
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.example", 8884, true)
        );
        assert_eq!(b.client_id, "vitalsd-1");
        assert_eq!(b.username.as_deref(), Some("vd"));
        assert_eq!(b.keep_alive, Duration::from_secs(15));
        assert_eq!(b.client_auth, Some(("/cert".into(), "/key".into())));
        m.client_key_file = None;
        assert_eq!(Broker::from(&m).client_auth, None);
    }
}
