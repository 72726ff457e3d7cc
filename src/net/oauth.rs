//! How vitalsd authenticates to a FHIR server: nothing, a bearer token from a file, or OAuth2
//! client credentials (a client secret, or a SMART Backend Services private-key JWT). The one
//! token handling of the FHIR sink and of the patient lookup that searches the same server.
//!
//! Receives [`Credentials`] (the config check builds them from a sink's `auth` keys and
//! `[sink.oauth]`); emits the bearer token for the next request.
//! - **Token file**: read at first use and again whenever the file's modification time or
//!   length changes (a rotated token is picked up without a restart). After a 401,
//!   [`TokenSource::rejected`] forces one re-read even when the file looks unchanged.
//! - **OAuth2**: `POST token_url` (form `grant_type=client_credentials`, `scope`, and either
//!   `client_id` + `client_secret` or `client_assertion_type` + `client_assertion`). The access
//!   token is cached until `expires_in` minus a margin; [`TokenSource::rejected`] drops it. The
//!   secret and key files are read at each token request, so they can rotate too. The request
//!   goes through the caller's client ([`super::http::client`]), which never follows redirects:
//!   a 3xx from the token endpoint is [`AuthError::Redirected`] (`token_url` is https, or http
//!   only to this machine, as the config check demands).
//! - **One token per credential set**: a [`TokenSource`] is shared (behind an `Arc`) by every
//!   client with the same [`Credentials`] — the FHIR sink's delivery handles, other sinks with
//!   the same credentials and the patient lookup (docs/patient-lookup.md). One request at a
//!   time fetches a token; the others wait for it and use it. A 401 drops the cached token only
//!   when it is the one that was refused, so clients refused together renew it once.
//!
//! Secrets never reach a log: they live in [`Secret`], whose `Debug` is redacted, and errors
//! name files and statuses, never contents.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::http::{bounded, read_bounded, redirect_reason};
use super::jwt::{self, SigningKey};

/// How a client authenticates to a FHIR server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    None,
    /// A bearer token read from a file (re-read when it changes).
    TokenFile(PathBuf),
    /// OAuth2 client credentials.
    OAuth(OAuthSettings),
}

/// What proves the OAuth2 client's identity to the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientCredential {
    /// `client_secret` sent to the token endpoint.
    SecretFile(PathBuf),
    /// A signed JWT assertion (SMART Backend Services), signed with this key.
    PrivateKeyJwt {
        key_file: PathBuf,
        key_id: Option<String>,
    },
}

/// An OAuth2 client-credentials client: where it asks, who it is, for what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OAuthSettings {
    pub token_url: String,
    pub client_id: String,
    pub credential: ClientCredential,
    pub scope: String,
}

impl Credentials {
    /// Whether a request of these credentials goes to an https URL (the OAuth token endpoint).
    pub fn uses_https(&self) -> bool {
        matches!(self, Self::OAuth(o) if o.token_url.starts_with("https:"))
    }
}

/// The most bytes of a token endpoint's answer that are read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// A secret string whose `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why no token is available. The sink retries (the receiver never saw the readings); the
/// lookup answers "no answer".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("private key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: jwt::JwtError,
    },
    #[error("token endpoint unreachable: {0}")]
    Transport(String),
    #[error("token endpoint answered HTTP {status}: {error}")]
    Endpoint { status: u16, error: String },
    #[error("token endpoint: {0}")]
    Redirected(String),
    #[error("token endpoint answer has no access_token: {0}")]
    BadAnswer(String),
}

/// The authentication state of one client of a FHIR server.
#[derive(Debug)]
pub enum Auth {
    None,
    TokenFile(TokenFile),
    OAuth(OAuthClient),
}

impl Auth {
    pub fn new(cfg: &Credentials) -> Self {
        match cfg {
            Credentials::None => Self::None,
            Credentials::TokenFile(path) => Self::TokenFile(TokenFile::new(path.clone())),
            Credentials::OAuth(o) => Self::OAuth(OAuthClient::new(o.clone())),
        }
    }

    /// The bearer token for the next request (`None` without authentication).
    pub async fn bearer(&mut self, http: &reqwest::Client) -> Result<Option<Secret>, AuthError> {
        match self {
            Self::None => Ok(None),
            Self::TokenFile(t) => t.current().map(Some),
            Self::OAuth(o) => o.token(http).await.map(Some),
        }
    }

    /// The server answered 401 to a request sent with `sent`: re-read the token file / drop
    /// the cached access token, unless another request already renewed it (then the cached
    /// one is newer than `sent` and is kept). Returns whether a retry can use different
    /// credentials.
    pub fn rejected(&mut self, sent: Option<&Secret>) -> bool {
        match self {
            Self::None => false,
            Self::TokenFile(t) => {
                if t.token.as_ref() == sent {
                    t.stamp = None;
                }
                true
            }
            Self::OAuth(o) => {
                if o.cached.as_ref().map(|(t, _)| t) == sent {
                    o.cached = None;
                }
                true
            }
        }
    }
}

/// The credential state every client with the same [`Credentials`] shares (behind an `Arc`):
/// one cached token, fetched by one request at a time (the others wait for it).
#[derive(Debug)]
pub struct TokenSource {
    credentials: Credentials,
    auth: tokio::sync::Mutex<Auth>,
}

impl TokenSource {
    pub fn new(credentials: &Credentials) -> Self {
        Self {
            credentials: credentials.clone(),
            auth: tokio::sync::Mutex::new(Auth::new(credentials)),
        }
    }

    /// The credentials this source holds tokens for.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The bearer token for the next request (`None` without authentication). A token request
    /// holds the source: concurrent callers wait and then use the token it obtained.
    pub async fn bearer(&self, http: &reqwest::Client) -> Result<Option<Secret>, AuthError> {
        self.auth.lock().await.bearer(http).await
    }

    /// The server answered 401 to a request sent with `sent` ([`Auth::rejected`]).
    pub async fn rejected(&self, sent: Option<&Secret>) -> bool {
        self.auth.lock().await.rejected(sent)
    }
}

/// A bearer token kept in a file.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    token: Option<Secret>,
    /// Modification time and length when the token was read.
    stamp: Option<(SystemTime, u64)>,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            token: None,
            stamp: None,
        }
    }

    /// The token, re-read when the file changed (or after [`Auth::rejected`]).
    pub fn current(&mut self) -> Result<Secret, AuthError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| file_error(&self.path, &e))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        match (&self.token, self.stamp) {
            (Some(t), Some(s)) if s == stamp => Ok(t.clone()),
            _ => {
                let t = read_secret(&self.path)?;
                if self.token.is_some() {
                    tracing::info!(file = %self.path.display(), "bearer token file re-read");
                }
                self.token = Some(t.clone());
                self.stamp = Some(stamp);
                Ok(t)
            }
        }
    }
}

/// An OAuth2 client-credentials client with its cached access token.
pub struct OAuthClient {
    cfg: OAuthSettings,
    cached: Option<(Secret, Instant)>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.cfg.token_url)
            .field("client_id", &self.cfg.client_id)
            .field("cached", &self.cached.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    error_description: Option<String>,
}

impl OAuthClient {
    pub fn new(cfg: OAuthSettings) -> Self {
        Self { cfg, cached: None }
    }

    async fn token(&mut self, http: &reqwest::Client) -> Result<Secret, AuthError> {
        if let Some((t, until)) = &self.cached {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let form = self.form()?;
        let resp = http
            .post(&self.cfg.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            return Err(AuthError::Redirected(redirect_reason(
                status,
                resp.headers(),
            )));
        }
        let body = read_bounded(resp, MAX_TOKEN_RESPONSE)
            .await
            .map_err(AuthError::Transport)?;
        if !(200..300).contains(&status) {
            let error = serde_json::from_slice::<ErrorAnswer>(&body)
                .ok()
                .map(|e| {
                    let d = e.error_description.unwrap_or_default();
                    format!("{} {d}", e.error.unwrap_or_default())
                })
                .unwrap_or_default();
            return Err(AuthError::Endpoint {
                status,
                error: bounded(&error, 200),
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| AuthError::BadAnswer(bounded(&e.to_string(), 120)))?;
        let token = answer
            .access_token
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| AuthError::BadAnswer("missing".into()))?;
        let life = token_lifetime(answer.expires_in);
        tracing::info!(client_id = %self.cfg.client_id, valid_for = ?life, "access token obtained");
        self.cached = Some((token.clone(), Instant::now() + life));
        Ok(token)
    }

    fn form(&self) -> Result<Vec<(&'static str, String)>, AuthError> {
        let c = &self.cfg;
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("scope", c.scope.clone()),
        ];
        match &c.credential {
            ClientCredential::SecretFile(path) => {
                form.push(("client_id", c.client_id.clone()));
                form.push(("client_secret", read_secret(path)?.0));
            }
            ClientCredential::PrivateKeyJwt { key_file, key_id } => {
                let pem = std::fs::read(key_file).map_err(|e| file_error(key_file, &e))?;
                let key_err = |source| AuthError::Key {
                    path: key_file.clone(),
                    source,
                };
                let key = SigningKey::from_pem(&pem).map_err(key_err)?;
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let jti = jwt::random_jti(&ring::rand::SystemRandom::new()).map_err(key_err)?;
                let assertion = jwt::client_assertion(
                    &key,
                    key_id.as_deref(),
                    &c.client_id,
                    &c.token_url,
                    now,
                    &jti,
                )
                .map_err(key_err)?;
                form.push(("client_assertion_type", jwt::ASSERTION_TYPE.to_string()));
                form.push(("client_assertion", assertion));
            }
        }
        Ok(form)
    }
}

/// How long an access token is used: `expires_in` (300 s when absent) minus a margin of a
/// fifth of it, at most 60 s, so a token is never sent in its last moments.
pub fn token_lifetime(expires_in: Option<u64>) -> Duration {
    let secs = expires_in.unwrap_or(300);
    let margin = (secs / 5).min(60);
    Duration::from_secs(secs - margin)
}

fn read_secret(path: &Path) -> Result<Secret, AuthError> {
    let s = std::fs::read_to_string(path).map_err(|e| file_error(path, &e))?;
    let s = s.trim();
    if s.is_empty() {
        return Err(AuthError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(s))
}

fn file_error(path: &Path, e: &std::io::Error) -> AuthError {
    AuthError::File {
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lives_until_expiry_minus_a_margin() {
        assert_eq!(token_lifetime(Some(3600)), Duration::from_secs(3540));
        assert_eq!(token_lifetime(Some(100)), Duration::from_secs(80));
        assert_eq!(token_lifetime(None), Duration::from_secs(240));
        assert_eq!(token_lifetime(Some(0)), Duration::ZERO);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let mut t = TokenFile::new("/x".into());
        t.token = Some(s);
        assert!(!format!("{t:?}").contains("hunter2"));
        let mut o = OAuthClient::new(OAuthSettings {
            token_url: "https://a/token".into(),
            client_id: "c".into(),
            credential: ClientCredential::SecretFile("/s".into()),
            scope: "system/Observation.write".into(),
        });
        o.cached = Some((Secret::new("tok-123"), Instant::now()));
        assert!(!format!("{o:?}").contains("tok-123"));
    }

    #[test]
    fn a_token_file_is_reread_when_it_changes_and_after_a_401() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one\n").unwrap();
        let mut t = TokenFile::new(path.clone());
        assert_eq!(t.current().unwrap().expose(), "one");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(t.current().unwrap().expose(), "second");
        // Same length and mtime: only a 401 makes it look again.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, "third!").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(mtime).unwrap();
        assert_eq!(t.current().unwrap().expose(), "second");
        let mut auth = Auth::TokenFile(t);
        assert!(auth.rejected(Some(&Secret::new("second"))));
        let Auth::TokenFile(t) = &mut auth else {
            unreachable!()
        };
        assert_eq!(t.current().unwrap().expose(), "third!");
    }

    #[test]
    fn an_empty_or_missing_token_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            TokenFile::new(path.clone()).current(),
            Err(AuthError::Empty { .. })
        ));
        let missing = dir.path().join("nope");
        let e = TokenFile::new(missing).current().unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}

#[cfg(test)]
#[path = "oauth_tests.rs"]
mod source_tests;
