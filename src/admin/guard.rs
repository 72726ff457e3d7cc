//! The admin API's gatekeeping, as pure decisions over request parts, plus the axum middleware
//! that applies them.
//!
//! - Cross-origin browser requests are refused: an `Origin` that is not the admin's own
//!   (`http://` + `Host`), or `Sec-Fetch-Site: cross-site` / `same-site`. Tools like curl send
//!   neither header and pass.
//! - With a token file, mutating calls and the calls that return patient data or readings
//!   (`/api/audit`, `/api/held`, `/api/dead`, `/api/quarantine`) need `Authorization: Bearer <token>`; the token
//!   is compared in constant time.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AdminState;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    CrossOrigin,
    Unauthorized,
}

/// The cross-origin rule over the raw header values.
pub fn cross_origin(origin: Option<&str>, host: Option<&str>, fetch_site: Option<&str>) -> bool {
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return true;
    }
    match origin {
        None => false,
        Some(o) => host.is_none_or(|h| o != format!("http://{h}")),
    }
}

/// Whether a call needs the bearer token (when one is configured).
pub fn needs_token(method: &Method, path: &str) -> bool {
    let reads = method == Method::GET || method == Method::HEAD;
    !reads
        || ["/api/audit", "/api/held", "/api/dead", "/api/quarantine"]
            .iter()
            .any(|p| path.starts_with(p))
}

/// Compares without an early exit, so timing tells nothing about the token.
pub fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The decision for one request.
pub fn check(
    method: &Method,
    path: &str,
    origin: Option<&str>,
    host: Option<&str>,
    fetch_site: Option<&str>,
    authorization: Option<&str>,
    token: Option<&str>,
) -> Result<(), Refusal> {
    if cross_origin(origin, host, fetch_site) {
        return Err(Refusal::CrossOrigin);
    }
    if let Some(expected) = token {
        if needs_token(method, path) {
            let given = authorization
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or("");
            if !token_matches(given.trim().as_bytes(), expected.as_bytes()) {
                return Err(Refusal::Unauthorized);
            }
        }
    }
    Ok(())
}

/// The middleware: refuses before any handler runs.
pub async fn middleware(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let get = |name: header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    let verdict = check(
        req.method(),
        req.uri().path(),
        get(header::ORIGIN),
        get(header::HOST),
        h.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        get(header::AUTHORIZATION),
        state.token.as_deref().map(String::as_str),
    );
    match verdict {
        Ok(()) => next.run(req).await,
        Err(Refusal::CrossOrigin) => {
            tracing::warn!(path = %req.uri().path(), "cross-origin admin request refused");
            super::api::error(StatusCode::FORBIDDEN, "cross-origin requests are refused")
                .into_response()
        }
        Err(Refusal::Unauthorized) => {
            let mut r = super::api::error(
                StatusCode::UNAUTHORIZED,
                "this call needs `Authorization: Bearer <token>` (daemon.admin_token_file)",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn mutating_calls_and_patient_data_need_the_token_status_does_not() {
        let tok = Some("s3cret");
        let put = Method::PUT;
        let path = "/api/rooms/exam-1/patient";
        assert_eq!(
            check(&put, path, None, None, None, None, tok),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            check(&put, path, None, None, None, Some("Bearer wrong!"), tok),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            check(&put, path, None, None, None, Some("Bearer s3cret"), tok),
            Ok(())
        );
        assert_eq!(
            check(&Method::GET, "/api/status", None, None, None, None, tok),
            Ok(())
        );
        assert_eq!(
            check(&Method::GET, "/api/audit", None, None, None, None, tok),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(check(&put, path, None, None, None, None, None), Ok(()));
    }
}
