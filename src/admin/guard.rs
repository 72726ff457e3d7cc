//! The admin API's gatekeeping, as pure decisions over request parts, plus the axum middleware
//! that applies them before any handler runs (docs/security.md).
//!
//! Receives every request. Promises:
//! - a `Host` (and an absolute request URI's authority) that is not one of the admin's own
//!   names is refused with 421: the listen address, `localhost`, `127.0.0.1`, `[::1]` (each
//!   with the bound port) and the names of `[daemon] admin_hosts`. A web page whose name
//!   resolves to this box (DNS rebinding) therefore gets nothing;
//! - cross-origin browser requests are refused with 403: an `Origin` that is not
//!   `http://` + `Host` (an `Origin: null` passes only with `Sec-Fetch-Site: same-origin`), or
//!   `Sec-Fetch-Site: cross-site` / `same-site`. Tools like curl send neither header and pass;
//! - every mutating call and every call that returns patient data or readings
//!   (`/api/audit`, `/api/held`, `/api/dead`, `/api/quarantine`) needs a credential: the
//!   token as `Authorization: Bearer <token>`, or a status-page session cookie got by signing
//!   in with it. Without a configured token these calls are refused with 401 and a message
//!   saying how to set one. Tokens are compared in constant time;
//! - every response carries the anti-framing, content-type, referrer, CSP and `no-store`
//!   headers, and a handler that takes longer than [`HANDLER_TIMEOUT`] is answered 503.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::hmac;

use super::session::{Sessions, COOKIE};
use super::AdminState;

/// How long a handler may run before the request is answered 503.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// What every response carries. The page needs inline CSS, one script served by the daemon
/// (`/static/page.js`, which fetches the page again to refresh it), no images but an inline
/// SVG, and posts forms to itself.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` is not one of the admin's own names.
    UnknownHost,
    CrossOrigin,
    /// A protected call without a valid credential.
    Unauthorized,
    /// A protected call while no token is configured at all.
    NoTokenConfigured,
}

/// The admin token, kept only as an HMAC under a per-process key: checking a candidate is a
/// constant-time tag comparison whatever its length or content.
pub struct Token {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl Token {
    pub fn new(token: &str) -> Result<Self, crate::reading::mask::MaskKeyError> {
        let key_bytes = crate::reading::mask::random_key()?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
        let tag = hmac::sign(&key, token.as_bytes());
        Ok(Self { key, tag })
    }

    /// Whether `given` is the token (constant time).
    pub fn matches(&self, given: &[u8]) -> bool {
        hmac::verify(&self.key, given, self.tag.as_ref()).is_ok()
    }
}

/// The `Host` values the admin answers to, lower-case `name:port`.
#[derive(Debug, Clone, Default)]
pub struct Hosts(Vec<String>);

impl Hosts {
    /// The bound address, the loopback names and `extra` (host names or addresses without a
    /// port), each with the bound port.
    pub fn new(bound: SocketAddr, extra: &[String]) -> Self {
        let port = bound.port();
        let mut v = vec![
            bound.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        for name in extra {
            let name = name.trim().trim_end_matches('.');
            if name.contains(':') && !name.starts_with('[') {
                v.push(format!("[{name}]:{port}"));
            } else {
                v.push(format!("{name}:{port}"));
            }
        }
        for h in &mut v {
            h.make_ascii_lowercase();
        }
        v.sort();
        v.dedup();
        Self(v)
    }

    /// Whether `host` (a `Host` header or URI authority) is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        // A fully qualified name may end in a dot: `box.local.:9750`.
        let host = match host.rsplit_once(':') {
            Some((name, port)) if name.ends_with('.') => {
                format!("{}:{port}", name.trim_end_matches('.'))
            }
            _ => host,
        };
        self.0.contains(&host)
    }
}

/// Everything the guard decides with: the token, the allowed hosts, the sessions.
#[derive(Default)]
pub struct Access {
    pub token: Option<Token>,
    pub hosts: Hosts,
    pub sessions: Sessions,
}

/// The cross-origin rule over the raw header values.
pub fn cross_origin(origin: Option<&str>, host: Option<&str>, fetch_site: Option<&str>) -> bool {
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return true;
    }
    match origin {
        None => false,
        // Browsers send `Origin: null` on form posts under `Referrer-Policy: no-referrer`;
        // then only their own `Sec-Fetch-Site` (which no page can set) vouches for the post.
        Some("null") => fetch_site != Some("same-origin"),
        Some(o) => host.is_none_or(|h| !o.eq_ignore_ascii_case(&format!("http://{h}"))),
    }
}

/// Whether a call needs a credential: everything that changes something (but signing in and
/// out) and every read of patient data or readings.
pub fn needs_auth(method: &Method, path: &str) -> bool {
    let reads = method == Method::GET || method == Method::HEAD;
    if !reads {
        return !(method == Method::POST && (path == "/login" || path == "/logout"));
    }
    [
        "/api/audit",
        "/api/held",
        "/api/dead",
        "/api/quarantine",
        "/api/review",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// The bearer token of an `Authorization` header (scheme case-insensitive).
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(cookies: &'a str, name: &str) -> Option<&'a str> {
    cookies.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

/// The request parts the decision reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Parts<'a> {
    pub host: Option<&'a str>,
    /// The request URI's authority (absolute-form requests), if any.
    pub authority: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub fetch_site: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub session: Option<&'a str>,
}

/// Whether the request carries a valid credential.
pub fn signed_in(access: &Access, p: &Parts<'_>) -> bool {
    let Some(token) = &access.token else {
        return false;
    };
    if let Some(given) = p.authorization.and_then(bearer) {
        if token.matches(given.as_bytes()) {
            return true;
        }
    }
    p.session.is_some_and(|id| access.sessions.valid(id))
}

/// The decision for one request: `Ok(signed_in)` or why it is refused.
pub fn check(access: &Access, method: &Method, path: &str, p: &Parts<'_>) -> Result<bool, Refusal> {
    let host_ok = p.host.is_some_and(|h| access.hosts.allows(h))
        && p.authority.is_none_or(|a| access.hosts.allows(a));
    if !host_ok {
        return Err(Refusal::UnknownHost);
    }
    if cross_origin(p.origin, p.host, p.fetch_site) {
        return Err(Refusal::CrossOrigin);
    }
    let authed = signed_in(access, p);
    if needs_auth(method, path) && !authed {
        return Err(if access.token.is_none() {
            Refusal::NoTokenConfigured
        } else {
            Refusal::Unauthorized
        });
    }
    Ok(authed)
}

/// Whether the request that reached a handler carries a valid credential (set by
/// [`middleware`]; the page shows its forms only then).
#[derive(Debug, Clone, Copy)]
pub struct SignedIn(pub bool);

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// The refusal as an answer: short, no request data in it.
pub fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::UnknownHost => text(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown Host: the admin API answers only to its own address, localhost and [daemon] admin_hosts",
        ),
        Refusal::CrossOrigin => {
            super::api::error(StatusCode::FORBIDDEN, "cross-origin requests are refused")
                .into_response()
        }
        Refusal::Unauthorized => {
            let mut r = super::api::error(
                StatusCode::UNAUTHORIZED,
                "this call needs `Authorization: Bearer <token>` (the token in daemon.admin_token_file) or a signed-in status page",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        Refusal::NoTokenConfigured => {
            let mut r = super::api::error(
                StatusCode::UNAUTHORIZED,
                "no admin token is configured, so this call is refused: put a random token in a file (e.g. `openssl rand -hex 32 > /etc/vitalsd/admin.token`, mode 0640) and set daemon.admin_token_file to it",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The access middleware: refuses before any handler runs; marks the request [`SignedIn`].
pub async fn middleware(State(state): State<AdminState>, mut req: Request, next: Next) -> Response {
    let verdict = {
        let h = req.headers();
        let parts = Parts {
            host: header_str(h, "host"),
            authority: req.uri().authority().map(|a| a.as_str()),
            origin: header_str(h, "origin"),
            fetch_site: header_str(h, "sec-fetch-site"),
            authorization: header_str(h, "authorization"),
            session: header_str(h, "cookie").and_then(|c| cookie(c, COOKIE)),
        };
        check(&state.access, req.method(), req.uri().path(), &parts)
    };
    match verdict {
        Ok(authed) => {
            req.extensions_mut().insert(SignedIn(authed));
            next.run(req).await
        }
        Err(r) => {
            if r != Refusal::Unauthorized && r != Refusal::NoTokenConfigured {
                tracing::warn!(path = %req.uri().path(), refusal = ?r, "admin request refused");
            }
            refusal(r)
        }
    }
}

/// The outermost layer: the handler timeout and the security headers on every response
/// (refusals and 404s included).
pub async fn headers(req: Request, next: Next) -> Response {
    let mut resp = match tokio::time::timeout(HANDLER_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "the request took too long"),
    };
    let h = resp.headers_mut();
    for (k, v) in SECURITY_HEADERS {
        h.insert(k, HeaderValue::from_static(v));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>) -> Access {
        Access {
            token: token.map(|t| Token::new(t).unwrap()),
            hosts: Hosts::new(
                "127.0.0.1:9750".parse().unwrap(),
                &["Vitals-Box.clinic.local".into(), "fe80::1".into()],
            ),
            sessions: Sessions::default(),
        }
    }

    fn parts(host: &str) -> Parts<'_> {
        Parts {
            host: Some(host),
            ..Parts::default()
        }
    }

    #[test]
    fn only_the_admins_own_host_names_pass() {
        let a = access(None);
        for ok in [
            "127.0.0.1:9750",
            "localhost:9750",
            "LOCALHOST:9750",
            "[::1]:9750",
            "vitals-box.clinic.local:9750",
            "vitals-box.clinic.local.:9750",
            "[fe80::1]:9750",
        ] {
            assert!(a.hosts.allows(ok), "{ok}");
            assert_eq!(check(&a, &Method::GET, "/", &parts(ok)), Ok(false), "{ok}");
        }
        for bad in [
            "evil.example:9750",
            "rebind.evil.example:9750",
            "127.0.0.1:80",
            "localhost",
            "127.0.0.1.evil.example:9750",
        ] {
            assert_eq!(
                check(&a, &Method::GET, "/healthz", &parts(bad)),
                Err(Refusal::UnknownHost),
                "{bad}"
            );
        }
        assert_eq!(
            check(&a, &Method::GET, "/healthz", &Parts::default()),
            Err(Refusal::UnknownHost),
            "no Host"
        );
        let p = Parts {
            authority: Some("evil.example:9750"),
            ..parts("127.0.0.1:9750")
        };
        assert_eq!(check(&a, &Method::GET, "/", &p), Err(Refusal::UnknownHost));
    }

    #[test]
    fn same_origin_and_plain_tools_pass_cross_origin_is_refused() {
        let host = Some("127.0.0.1:9750");
        assert!(!cross_origin(None, host, None));
        assert!(!cross_origin(
            Some("http://127.0.0.1:9750"),
            host,
            Some("same-origin")
        ));
        assert!(cross_origin(Some("http://evil.example"), host, None));
        assert!(cross_origin(None, host, Some("cross-site")));
        assert!(cross_origin(Some("http://127.0.0.1:9750"), None, None));
        // A same-origin form post under `Referrer-Policy: no-referrer`.
        assert!(!cross_origin(Some("null"), host, Some("same-origin")));
        assert!(cross_origin(Some("null"), host, None));
        assert!(cross_origin(Some("null"), host, Some("cross-site")));
    }

    #[test]
    fn protected_calls_need_the_token_or_a_session_and_refuse_without_a_configured_token() {
        let a = access(Some("s3cret"));
        let put = Method::PUT;
        let path = "/api/rooms/exam-1/patient";
        let host = "127.0.0.1:9750";
        let with = |auth: Option<&'static str>| Parts {
            authorization: auth,
            ..parts(host)
        };
        assert_eq!(
            check(&a, &put, path, &with(None)),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            check(&a, &put, path, &with(Some("Bearer wrong!"))),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            check(&a, &put, path, &with(Some("Bearer s3cret-and-more"))),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            check(&a, &put, path, &with(Some("Bearer s3cret"))),
            Ok(true)
        );
        assert_eq!(
            check(&a, &put, path, &with(Some("bearer s3cret"))),
            Ok(true)
        );
        assert_eq!(
            check(&a, &Method::GET, "/api/status", &with(None)),
            Ok(false)
        );
        for p in ["/api/audit", "/api/held", "/api/dead", "/api/quarantine"] {
            assert_eq!(
                check(&a, &Method::GET, p, &with(None)),
                Err(Refusal::Unauthorized),
                "{p}"
            );
        }
        assert_eq!(check(&a, &Method::POST, "/login", &with(None)), Ok(false));

        let id = a.sessions.create().unwrap();
        let p = Parts {
            session: Some(&id),
            ..parts(host)
        };
        assert_eq!(check(&a, &put, path, &p), Ok(true));
        let forged = Parts {
            session: Some("00ff"),
            ..parts(host)
        };
        assert_eq!(check(&a, &put, path, &forged), Err(Refusal::Unauthorized));

        let none = access(None);
        assert_eq!(
            check(&none, &put, path, &with(Some("Bearer s3cret"))),
            Err(Refusal::NoTokenConfigured)
        );
        assert_eq!(
            check(&none, &Method::GET, "/api/audit", &with(None)),
            Err(Refusal::NoTokenConfigured)
        );
        assert_eq!(
            check(&none, &Method::GET, "/metrics", &with(None)),
            Ok(false)
        );
    }

    #[test]
    fn headers_parse_plainly() {
        assert_eq!(bearer("Bearer abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(cookie("a=1; vitalsd_session=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
