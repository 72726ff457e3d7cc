//! The page's own handlers: `GET /` and the form posts (assign or discard a held reading,
//! sign in and out, "Still this patient", "End visit"), each answered with a redirect back to
//! `/` or a short error page that names no patient.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use time::OffsetDateTime;

use super::super::guard::SignedIn;
use super::super::session::Sessions;
use super::super::AdminState;
use super::{esc, field, parse_form, render};
use crate::reading::{PatientRef, ReadingId};

pub(in crate::admin) fn problem(status: StatusCode, msg: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vitalsd</title></head><body><p id=\"error\">{}</p><p><a href=\"/\">Back</a></p></body></html>",
        esc(msg)
    );
    (status, Html(body)).into_response()
}

pub(in crate::admin) fn back() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
}

pub(super) async fn page(
    State(s): State<AdminState>,
    signed_in: Option<Extension<SignedIn>>,
) -> Response {
    let signed_in = signed_in.is_some_and(|Extension(SignedIn(b))| b);
    // The page reads the store (held, review, quarantine lists): rendered off the runtime.
    let state = s.clone();
    let html = s
        .queue
        .read(move |_| render(&state, OffsetDateTime::now_utc(), signed_in))
        .await;
    match html {
        Ok(html) => Html(html).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn held_id(id: &str) -> Option<ReadingId> {
    id.parse().ok()
}

pub(super) async fn assign(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(id) = held_id(&id) else {
        return problem(StatusCode::BAD_REQUEST, "not a reading id");
    };
    let form = parse_form(&body);
    let by = field(&form, "by");
    let patient = PatientRef {
        id: field(&form, "patient_id"),
        system: field(&form, "patient_system"),
    };
    if by.is_empty() || by.len() > 128 {
        return problem(StatusCode::BAD_REQUEST, "your name (by) is required");
    }
    if let Err(e) = crate::context::check_patient(&patient) {
        return problem(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let masked = patient.masked();
    match s.queue.held().assign(id, patient, by).await {
        Ok(Some(_)) => {
            tracing::info!(reading = %id, patient = %masked, "held reading assigned from the status page");
            back()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "no held reading with this id"),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub(super) async fn discard(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(id) = held_id(&id) else {
        return problem(StatusCode::BAD_REQUEST, "not a reading id");
    };
    let form = parse_form(&body);
    let (by, reason) = (field(&form, "by"), field(&form, "reason"));
    if by.is_empty() || by.len() > 128 || reason.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "a reason and your name (by) are required",
        );
    }
    match s.queue.held().discard(id, reason, by).await {
        Ok(Some(_)) => {
            tracing::info!(reading = %id, "held reading discarded from the status page");
            back()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "no held reading with this id"),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `POST /login` (form field `token`): a right token starts a session (cookie) and goes back
/// to the page; a wrong one is 401.
pub(super) async fn login(State(s): State<AdminState>, body: Bytes) -> Response {
    let Some(token) = &s.access.token else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "no admin token is configured: set [daemon] admin_token_file to a file holding one",
        );
    };
    let form = parse_form(&body);
    if !token.matches(field(&form, "token").as_bytes()) {
        tracing::warn!("status page sign-in with a wrong token");
        return problem(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let Some(id) = s.access.sessions.create() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "no random source for a session",
        );
    };
    tracing::info!("status page signed in");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, Sessions::cookie_for(&id)),
        ],
    )
        .into_response()
}

/// `POST /logout`: ends the session of the cookie sent and clears the cookie.
pub(super) async fn logout(
    State(s): State<AdminState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let id = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| super::super::guard::cookie(c, super::super::session::COOKIE));
    if let Some(id) = id {
        s.access.sessions.remove(id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, Sessions::cookie_cleared()),
        ],
    )
        .into_response()
}

/// "Still this patient" from the status page: renews the room's context like
/// `POST /api/rooms/{room}/patient/confirm`.
pub(super) async fn confirm(
    State(s): State<AdminState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let by = field(&form, "by");
    if by.is_empty() || by.len() > 128 {
        return problem(StatusCode::BAD_REQUEST, "your name (by) is required");
    }
    match s
        .contexts
        .confirm(&room, &by, OffsetDateTime::now_utc())
        .await
    {
        Ok(true) => back(),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            "this room has no valid patient context any more: scan the patient again",
        ),
        Err(crate::context::ContextError::Store(e)) => {
            problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// "End visit" from a room's card: clears the room's patient context (audited with `by`),
/// like `DELETE /api/rooms/{room}/patient`.
pub(super) async fn end_visit(
    State(s): State<AdminState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let by = field(&form, "by");
    if by.is_empty() || by.len() > 128 {
        return problem(StatusCode::BAD_REQUEST, "your name (by) is required");
    }
    if !s.contexts.is_known_room(&room) {
        return problem(
            StatusCode::NOT_FOUND,
            "no configured device is in this room",
        );
    }
    let now = OffsetDateTime::now_utc();
    match s
        .contexts
        .clear(&room, crate::context::audit::ContextSource::Api, &by, now)
        .await
    {
        Ok(_) => back(),
        Err(crate::context::ContextError::Store(e)) => {
            problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
