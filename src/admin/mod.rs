//! The admin HTTP server (axum): health, readiness, status, patient contexts, held readings,
//! dead-letter and the audit trail (docs/ARCHITECTURE.md#the-admin-api).
//!
//! Listens on `daemon.admin_listen` (loopback by default). Refuses to start on a non-loopback
//! address without `admin_token_file`. Every request passes [`guard`] (its own `Host` names
//! only, cross-origin refusal, a token or session for protected calls, security headers) and
//! a 64 KiB body limit (413 above); the listener caps open connections and cuts idle or slow
//! ones ([`listener`]). Routes are assembled in [`router`] from one function per area, so
//! `/metrics` and the status page `/` are one `.merge(...)` each. The threat model is in
//! docs/security.md.
//!
//! # Layout
//! - `guard`: the request checks (pure functions + middleware).
//! - `session`: the status page's sign-in sessions.
//! - `listener`: the connection cap and per-connection deadline.
//! - `api`: the handlers.
//! - `client`: the CLI's side, for `vitalsd queue held` / `vitalsd audit` while the daemon runs.
//! - `metrics`: `/metrics`, delivery/depth state and the sinks' health (`Ops`).
//! - `ready`: the readiness checks beyond the queue (disk, MQTT, stuck sinks).
//! - `page`: the HTML status page `/` and its assign/discard form posts.
//! - `review`: the review list's API (confirm or reject readings before they are filed).

pub mod api;
pub mod client;
pub mod guard;
pub mod listener;
pub mod metrics;
pub mod page;
pub mod ready;
pub mod review;
pub mod session;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::PatientMode;
use crate::context::quality::Quality;
use crate::context::ContextStore;
use crate::queue::Queue;
use crate::status::DeviceList;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// What the handlers read and change.
#[derive(Clone)]
pub struct AdminState {
    pub queue: Queue,
    pub contexts: ContextStore,
    /// The running devices (the app changes the set on a SIGHUP reload).
    pub devices: DeviceList,
    pub quality: Arc<Quality>,
    pub mode: PatientMode,
    pub hold_for: Duration,
    /// The token, the allowed `Host` names and the sessions ([`start`] fills it in).
    pub access: Arc<guard::Access>,
    /// Delivery counters, queue-depth samples and the readiness thresholds.
    pub ops: Arc<metrics::Ops>,
}

/// Why the admin server did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("daemon.admin_listen = \"{0}\" is not a loopback address: set daemon.admin_token_file (mutating calls then need its bearer token) or listen on 127.0.0.1")]
    NoTokenOffLoopback(SocketAddr),
    #[error("daemon.admin_token_file {path}: {reason}")]
    Token { path: PathBuf, reason: String },
    #[error("daemon.admin_token_file: {0}")]
    NoRandom(String),
    #[error("cannot listen on {addr} for the admin API: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// Reads the bearer token (first line, trimmed; must not be empty).
pub fn read_token(path: &Path) -> Result<String, AdminError> {
    let err = |reason: String| AdminError::Token {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(err("the file is empty".into()));
    }
    Ok(token)
}

/// Checks the listen address against the token file and reads the token: a non-loopback
/// address needs one. Call it before anything starts, so a bad setup fails at once.
pub fn check_access(
    listen: SocketAddr,
    token_file: Option<&Path>,
) -> Result<Option<String>, AdminError> {
    match token_file {
        Some(p) => read_token(p).map(Some),
        None if !listen.ip().is_loopback() => Err(AdminError::NoTokenOffLoopback(listen)),
        None => Ok(None),
    }
}

/// Every admin route with the guard and the body limit.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .merge(api::health_routes())
        .merge(api::api_routes())
        .merge(metrics::metrics_routes())
        .merge(page::page_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::middleware,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(guard::headers))
        .with_state(state)
}

/// Checks the listen address and token, binds, and serves until `cancel`. Returns the bound
/// address (port 0 picks a free one) once listening. `hosts` are the extra `Host` names it
/// answers to (`daemon.admin_hosts`).
pub async fn start(
    listen: SocketAddr,
    token_file: Option<&Path>,
    hosts: &[String],
    mut state: AdminState,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), AdminError> {
    let token = check_access(listen, token_file)?
        .map(|t| guard::Token::new(&t))
        .transpose()
        .map_err(|e| AdminError::NoRandom(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| AdminError::Bind {
            addr: listen,
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| AdminError::Bind {
        addr: listen,
        reason: e.to_string(),
    })?;
    state.access = Arc::new(guard::Access {
        token,
        hosts: guard::Hosts::new(addr, hosts),
        sessions: session::Sessions::default(),
    });
    let app = router(state);
    let listener =
        listener::Capped::new(listener, listener::MAX_CONNECTIONS, listener::IDLE_TIMEOUT);
    tracing::info!(%addr, "admin API listening");
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    Ok((addr, task))
}
