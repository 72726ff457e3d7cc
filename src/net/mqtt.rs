//! How vitalsd reaches an MQTT broker: address, TLS (rustls with the config's CA and optional
//! client certificate), credentials (password from a file), keep-alive.
//!
//! Receives a [`Broker`] (the config builds it from the `[mqtt]` table) or a sink's own `url`
//! ([`BrokerUrl::parse`], the URL rule the config check applies too); promises rumqttc options
//! that carry the password only in memory (never in a log or an error text). Shared by the MQTT
//! source and the `mqtt` sink, which import it from here and not from each other.

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

/// Why an MQTT connection (of the source or a sink) could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("device {device}: {reason}")]
    Device { device: String, reason: String },
    #[error("mqtt.url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("mqtt.password_file {path}: {reason}")]
    Password { path: String, reason: String },
    #[error("mqtt TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// A broker and how to log in to it.
#[derive(Clone)]
pub struct Broker {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub client_auth: Option<(PathBuf, PathBuf)>,
    pub keep_alive: Duration,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where a broker URL points: `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    /// The URL's port, else 1883 (`mqtt`) or 8883 (`mqtts`).
    pub port: u16,
    /// `mqtts`.
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses a broker URL; the error says why it is refused (it may quote the URL, which
    /// holds no credentials: a URL with user or password is refused).
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
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
        let port = u.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(BrokerUrl { host, port, tls })
    }
}

impl Broker {
    /// A broker given by URL alone (a sink's own `url`): no credentials, the system's CAs.
    pub fn from_url(url: &str, client_id: &str) -> Result<Broker, MqttError> {
        let BrokerUrl { host, port, tls } =
            BrokerUrl::parse(url).map_err(|reason| MqttError::Url {
                url: url.to_string(),
                reason,
            })?;
        Ok(Broker {
            url: url.to_string(),
            host,
            port,
            tls,
            client_id: client_id.to_string(),
            username: None,
            password_file: None,
            ca_file: None,
            client_auth: None,
            keep_alive: Duration::from_secs(30),
        })
    }
}

/// Client options for `broker` under `client_id`: MQTT 3.1.1, keep-alive, credentials, TLS.
pub fn mqtt_options(
    broker: &Broker,
    client_id: &str,
    clean_session: bool,
) -> Result<MqttOptions, MqttError> {
    let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    opts.set_keep_alive(broker.keep_alive);
    opts.set_clean_session(clean_session);
    if let Some(user) = &broker.username {
        let password = match &broker.password_file {
            Some(path) => read_password(path)?,
            None => String::new(),
        };
        opts.set_credentials(user.clone(), password);
    }
    if broker.tls {
        let auth = broker
            .client_auth
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let config = crate::tls::client_config(broker.ca_file.as_deref(), auth)?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    Ok(opts)
}

/// The password in `path`, without the trailing newline editors add.
fn read_password(path: &std::path::Path) -> Result<String, MqttError> {
    let text = std::fs::read_to_string(path).map_err(|e| MqttError::Password {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(trim_newline(&text).to_string())
}

/// Drops one trailing `\n` or `\r\n` (a password may end in spaces on purpose).
pub fn trim_newline(s: &str) -> &str {
    s.strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(String, u16, bool), String> {
        BrokerUrl::parse(url).map(|b| (b.host, b.port, b.tls))
    }

    #[test]
    fn urls_give_host_port_and_tls_with_default_ports() {
        assert_eq!(parse("mqtt://broker"), Ok(("broker".into(), 1883, false)));
        assert_eq!(
            parse("mqtts://b.local:8884"),
            Ok(("b.local".into(), 8884, true))
        );
        assert_eq!(
            parse("mqtt://127.0.0.1:1999/"),
            Ok(("127.0.0.1".into(), 1999, false))
        );
        assert_eq!(parse("mqtts://[::1]:8883"), Ok(("::1".into(), 8883, true)));
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(parse("http://x").unwrap_err().contains("scheme"));
        assert!(parse("broker:1883").is_err());
        assert!(parse("mqtt://x:port").unwrap_err().contains("port"));
        assert!(parse("mqtt://user@x").is_err());
    }

    #[test]
    fn a_password_loses_only_its_trailing_newline() {
        assert_eq!(trim_newline("s3cret\n"), "s3cret");
        assert_eq!(trim_newline("s3cret\r\n"), "s3cret");
        assert_eq!(trim_newline("s3cret \n\n"), "s3cret \n");
        assert_eq!(trim_newline("s3cret"), "s3cret");
    }
}
