//! The CLI's side of the admin API: while the daemon runs, its store is locked (sled allows one
//! process), so `vitalsd queue held` and `vitalsd audit` ask the daemon instead.
//!
//! Receives a config; connects to `daemon.admin_listen` on loopback (a wildcard listen address
//! is reached through 127.0.0.1 / ::1) with the token from `daemon.admin_token_file` when set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::Config;

/// Why the daemon could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there: the daemon is probably not running.
    #[error("the admin API at {0} does not answer")]
    Unreachable(String),
    #[error("the admin API answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("admin API call failed: {0}")]
    Other(String),
}

/// A client for one daemon's admin API.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    /// `None` when the config disables the admin API (or listens on port 0).
    pub fn from_config(cfg: &Config) -> Result<Option<Self>, ClientError> {
        let Some(listen) = cfg.daemon.admin_listen else {
            return Ok(None);
        };
        if listen.port() == 0 {
            return Ok(None);
        }
        let ip = match listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let token = match &cfg.daemon.admin_token_file {
            Some(p) => Some(super::read_token(p).map_err(|e| ClientError::Other(e.to_string()))?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(Some(Self {
            base: format!("http://{}", SocketAddr::new(ip, listen.port())),
            token,
            http,
        }))
    }

    /// GET `path_and_query`; the JSON answer.
    pub async fn get(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        let mut req = self.http.get(format!("{}{path_and_query}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                ClientError::Unreachable(self.base.clone())
            } else {
                ClientError::Other(e.to_string())
            }
        })?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| ClientError::Other(e.to_string()))?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status: status.as_u16(),
                body,
            });
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Other(e.to_string()))
    }
}
