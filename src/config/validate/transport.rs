//! Validation of the network transports: the shared `[mqtt]` broker, MQTT and MLLP device
//! tables, broker URLs and topic filters.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::file::{MllpDeviceFile, MqttDeviceFile, MqttFile};
use super::super::*;
use super::Validator;
use crate::net::mqtt::BrokerUrl;

impl Validator {
    /// The `mllp` table of an `hl7v2` device: the listen address, who may connect and the
    /// connection limits (docs/network-security.md).
    pub(super) fn mllp_listen(&mut self, at: &str, m: MllpDeviceFile) -> Option<DeviceTransport> {
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

    pub(super) fn mqtt_device(
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

    pub(super) fn mqtt(&mut self, m: MqttFile) -> Option<MqttConfig> {
        let before = self.problems.len();
        let (host, port, tls) = match BrokerUrl::parse(&m.url) {
            Ok(b) => (b.host, b.port, b.tls),
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
}

/// An MQTT topic filter: non-empty, `#` only last, wildcards only as whole levels.
pub(in crate::config) fn check_topic_filter(t: &str) -> Result<(), String> {
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
