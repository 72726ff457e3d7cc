//! The CLI's side of the admin API: while the daemon runs, its store is locked (sled allows one
//! process), so `vitalsd queue ...`, `vitalsd audit` and `vitalsd status` ask the daemon instead.
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
    /// The daemon answered with an error status; `message` is its `error` text.
    #[error("the daemon answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        body: String,
    },
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

    /// Where the client connects (`http://127.0.0.1:9750`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether a daemon answers `/healthz` at the configured address.
    pub async fn alive(&self) -> bool {
        let req = self.http.get(format!("{}/healthz", self.base));
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }

    /// GET `path_and_query`; the JSON answer.
    pub async fn get(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        let req = self.http.get(format!("{}{path_and_query}", self.base));
        self.send(req).await
    }

    /// POST `body` as JSON to `path_and_query`; the JSON answer.
    pub async fn post(
        &self,
        path_and_query: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let req = self
            .http
            .post(format!("{}{path_and_query}", self.base))
            .json(body);
        self.send(req).await
    }

    async fn send(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, ClientError> {
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
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| {
                    if status.as_u16() == 401 {
                        "unauthorized: set daemon.admin_token_file to the daemon's token file"
                            .to_string()
                    } else {
                        body.chars().take(200).collect()
                    }
                });
            return Err(ClientError::Status {
                status: status.as_u16(),
                message,
                body,
            });
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Other(e.to_string()))
    }
}
