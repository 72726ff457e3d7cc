//! The admin API handlers: JSON in, JSON out; errors as `{"error": "..."}` with a status.
//!
//! Patient identifiers appear only where an MA needs them (assign bodies, the audit trail,
//! the held and quarantined readings behind the token); `/api/status` shows rooms with the
//! MASKED patient.
//!
//! This file holds the routes and the answers every resource shares (errors, bodies, ids,
//! `by`); one file per resource holds its handlers: [`status`] (readiness, status, queue
//! stats), [`rooms`] (patient contexts), [`held`], [`dead`], [`quarantine`], [`audit`].

// Handlers answer errors as ready `Response`s (the axum idiom); they are built once per failed
// request, so their size does not matter.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::AdminState;
use crate::context::ContextError;
use crate::queue::QueueError;
use crate::reading::ReadingId;

mod audit;
mod dead;
mod held;
mod quarantine;
mod rooms;
mod status;

use audit::audit;
use dead::{dead, purge_dead_all, purge_dead_one, purge_dead_sink, retry_dead, retry_dead_all};
use held::{assign, discard, held};
use quarantine::{discard_quarantined, quarantine, quarantine_summary, release_quarantined};
use rooms::{clear_patient, confirm_patient, set_patient};
use status::{queue_stats, readyz, status};

type Answer = Result<Response, Response>;

/// An error answer.
pub fn error(status: StatusCode, msg: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": msg })))
}

fn fail(status: StatusCode, msg: &str) -> Response {
    error(status, msg).into_response()
}

fn queue_err(e: &QueueError) -> Response {
    tracing::warn!(error = %e, "admin call failed in the queue");
    fail(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

fn context_err(e: &ContextError) -> Response {
    match e {
        ContextError::Store(q) => queue_err(q),
        // The lookup refused the patient (stored and audited; docs/patient-lookup.md).
        ContextError::Refused(r) => fail(
            match r {
                crate::context::lookup::RefusalReason::Unavailable => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::CONFLICT,
            },
            &e.to_string(),
        ),
        other => fail(StatusCode::BAD_REQUEST, &other.to_string()),
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        fail(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid JSON body ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

fn reading_id(s: &str) -> Result<ReadingId, Response> {
    s.parse()
        .map_err(|_| fail(StatusCode::BAD_REQUEST, "not a reading id (a UUID)"))
}

/// 404 unless `room` is the room of a configured device.
fn known_room(s: &AdminState, room: &str) -> Result<(), Response> {
    if s.contexts.is_known_room(room) {
        Ok(())
    } else {
        Err(fail(
            StatusCode::NOT_FOUND,
            "no configured device is in this room",
        ))
    }
}

fn by_field(by: String) -> Result<String, Response> {
    let by = by.trim().to_string();
    if by.is_empty() || by.len() > 128 {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "`by` (who decides) is required",
        ));
    }
    Ok(by)
}

/// `since` as RFC 3339 (`2026-11-27T12:00:00Z`) or a duration back from `now` (`2h`).
pub fn parse_since(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let rfc = time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &rfc) {
        return Ok(t);
    }
    humantime::parse_duration(s)
        .ok()
        .and_then(|d| time::Duration::try_from(d).ok())
        .map(|d| now - d)
        .ok_or_else(|| {
            format!("`{s}` is neither a time like 2026-11-27T12:00:00Z nor a duration like 2h")
        })
}

pub fn health_routes() -> Router<AdminState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
}

pub fn api_routes() -> Router<AdminState> {
    Router::new()
        .route("/api/status", get(status))
        .route(
            "/api/rooms/{room}/patient",
            put(set_patient).delete(clear_patient),
        )
        .route("/api/rooms/{room}/patient/confirm", post(confirm_patient))
        .route("/api/held", get(held))
        .route("/api/held/{id}/assign", post(assign))
        .route("/api/held/{id}/discard", post(discard))
        .route("/api/dead", get(dead))
        .route("/api/dead/{sink}/{id}/retry", post(retry_dead))
        .route("/api/quarantine", get(quarantine))
        .route("/api/quarantine/{id}/release", post(release_quarantined))
        .route("/api/quarantine/{id}/discard", post(discard_quarantined))
        .route("/api/audit", get(audit))
        .merge(queue_routes())
        .merge(super::review::review_routes())
}

/// The routes behind `vitalsd queue ...` while the daemon runs (the store is locked then):
/// the same answers the CLI prints from the store of a stopped daemon.
pub fn queue_routes() -> Router<AdminState> {
    Router::new()
        .route("/api/queue/stats", get(queue_stats))
        .route("/api/quarantine/summary", get(quarantine_summary))
        .route("/api/dead/{sink}/retry-all", post(retry_dead_all))
        .route("/api/dead/purge", post(purge_dead_all))
        .route("/api/dead/{sink}/purge", post(purge_dead_sink))
        .route("/api/dead/{sink}/{id}/purge", post(purge_dead_one))
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn since_takes_a_time_or_a_duration_back() {
        let now = datetime!(2026-11-27 12:00 UTC);
        assert_eq!(
            parse_since("2h", now).unwrap(),
            datetime!(2026-11-27 10:00 UTC)
        );
        assert_eq!(
            parse_since("2026-11-27T11:30:00Z", now).unwrap(),
            datetime!(2026-11-27 11:30 UTC)
        );
        assert!(parse_since("yesterday-ish", now).is_err());
    }
}
