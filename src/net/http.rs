//! The HTTP client for a FHIR server, shared by the FHIR sink and the patient lookup
//! (`[patient] lookup`) that searches the same server (docs/network-security.md).
//!
//! Receives [`ClientSettings`] (the config builds them from a FHIR sink's base URL, `ca_file`,
//! `timeout` and credentials) and the server's responses. Promises:
//! - [`client`]: TLS (ring) trusting `ca_file` or the system store when the base URL or the
//!   OAuth token URL is https ([`ClientSettings::for_server`]), the request and connect timeout
//!   from `timeout`, and redirects never followed (a redirect would resend readings or a token
//!   wherever the answer points);
//! - [`read_bounded`] reads at most a given number of bytes of a body; a bigger body is an
//!   error, never a partial read;
//! - the reasons it gives ([`redirect_reason`], [`transport_reason`]) name a scheme, host and
//!   port or the kind of failure, never a path or query (they could carry identifiers);
//!   [`bounded`] cuts any server text to a length and removes control characters.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;

use super::oauth::Credentials;
use crate::tls::{self, TlsError};

/// What the client of one FHIR server is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Whether any URL the client asks is https: TLS is set up only then.
    pub https: bool,
    /// The CA file to trust instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// The request and connect timeout.
    pub timeout: Duration,
}

impl ClientSettings {
    /// The settings for a server at `base_url` reached with `credentials`: TLS when the base
    /// URL or the OAuth token URL is https.
    pub fn for_server(
        base_url: &str,
        credentials: &Credentials,
        ca_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Self {
        Self {
            https: base_url.starts_with("https:") || credentials.uses_https(),
            ca_file,
            timeout,
        }
    }
}

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The client `cfg` describes. See the module docs.
pub fn client(cfg: &ClientSettings) -> Result<reqwest::Client, ClientError> {
    tls::init();
    // Never follow a redirect: it would resend the Bundle (and the token) to wherever the
    // answer points, possibly another host or plain http.
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .user_agent(concat!("vitalsd/", env!("CARGO_PKG_VERSION")));
    if cfg.https {
        let tls = tls::client_config(cfg.ca_file.as_deref(), None)?;
        builder = builder.use_preconfigured_tls((*tls).clone());
    }
    Ok(builder.build()?)
}

/// `text` cut to `max` characters (an ellipsis marks the cut), control characters removed.
pub fn bounded(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() <= max {
        return clean.to_string();
    }
    let mut out: String = clean.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Why a 3xx answer is a failure, naming only the scheme, host and port it pointed to (a path
/// or query could carry identifiers).
pub fn redirect_reason(status: u16, headers: &HeaderMap) -> String {
    let target = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| reqwest::Url::parse(l).ok())
        .map(|u| {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        })
        .unwrap_or_else(|| "another address".to_string());
    format!("HTTP {status}: the server redirected to {target}; redirects are not followed: set the URL to the final address")
}

/// A transport failure as a retry reason: `transport: ` and its kind (timed out, cannot
/// connect, request failed) with the innermost cause, bounded. The error's own text is not
/// used: it quotes the request URL.
pub fn transport_reason(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        format!("transport: {what}")
    } else {
        format!("transport: {what}: {}", bounded(&detail, 120))
    }
}

/// Reads at most `limit` bytes of a body; a bigger body is an error (the caller retries).
pub async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_big = || format!("response larger than {limit} bytes");
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > limit {
                    return Err(too_big());
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("reading the response: {}", transport_reason(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_set_up_when_the_server_or_the_token_endpoint_is_https() {
        let oauth = |url: &str| {
            Credentials::OAuth(super::super::oauth::OAuthSettings {
                token_url: url.into(),
                client_id: "c".into(),
                credential: super::super::oauth::ClientCredential::SecretFile("/s".into()),
                scope: "s".into(),
            })
        };
        let t = Duration::from_secs(5);
        let https =
            |base: &str, c: &Credentials| ClientSettings::for_server(base, c, None, t).https;
        assert!(https("https://ehr/fhir", &Credentials::None));
        assert!(!https("http://127.0.0.1:8080/fhir", &Credentials::None));
        assert!(https("http://127.0.0.1/fhir", &oauth("https://idp/token")));
        assert!(!https(
            "http://127.0.0.1/fhir",
            &oauth("http://127.0.0.1/token")
        ));
        assert!(!https(
            "http://127.0.0.1/fhir",
            &Credentials::TokenFile("/t".into())
        ));
    }

    #[test]
    fn server_text_is_bounded_and_loses_control_characters() {
        assert_eq!(bounded("a\nb", 10), "a b");
        assert_eq!(bounded("abcdef", 4), "abc…");
        assert_eq!(bounded("abcd", 4), "abcd");
    }

    #[test]
    fn a_redirect_reason_names_the_host_never_the_path() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LOCATION,
            "https://other.example:8443/Patient?identifier=MRN1"
                .parse()
                .unwrap(),
        );
        let r = redirect_reason(302, &h);
        assert!(r.contains("https://other.example:8443;"), "{r}");
        assert!(!r.contains("MRN1") && !r.contains("Patient"), "{r}");
        assert!(redirect_reason(301, &HeaderMap::new()).contains("another address"));
    }
}
