//! The review API (`[patient] review = true`, docs/review.md): readings wait on a per-room list
//! until a person confirms (files) or rejects (never files) them.
//!
//! Receives, behind the token or a signed-in session like every patient-data call:
//! - `GET /api/review[?limit=N]`: the waiting readings, oldest first, each with `id`, `room`,
//!   `device`, `kind`, `values`, `observed_at`, `waiting_since`, `age_seconds`, the patient
//!   (and its masked `patient_tag`) and the reading's flags;
//! - `POST /api/review/{id}/confirm` and `/reject` with `{"by": "...", "reason": "..."}`
//!   (`reason` optional, reject only);
//! - `POST /api/review/rooms/{room}/confirm` and `/reject` with `{"by": "..."}`: every reading
//!   of the room waiting now, in one atomic batch.
//!
//! Promises: a confirmed reading is filed once (a second confirm, or one after a reject, is 404
//! and files nothing); every decision is audited with who and which reading; logs name the
//! reading id and counts, never values or patients.

// Handlers answer errors as ready `Response`s (the axum idiom), built once per failed request.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::AdminState;
use crate::queue::{Decision, QueueError, ReviewEntry};
use crate::reading::ReadingId;

type Answer = Result<Response, Response>;

fn fail(status: StatusCode, msg: &str) -> Response {
    super::api::error(status, msg).into_response()
}

fn queue_err(e: &QueueError) -> Response {
    tracing::warn!(error = %e, "review call failed in the queue");
    fail(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

/// The review routes (merged into the API's router).
pub fn review_routes() -> Router<AdminState> {
    Router::new()
        .route("/api/review", get(list))
        .route("/api/review/{id}/{action}", post(decide_one))
        .route("/api/review/rooms/{room}/{action}", post(decide_room))
}

/// What a person does with a reading on the review list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Confirm,
    Reject,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirm" => Some(Action::Confirm),
            "reject" => Some(Action::Reject),
            _ => None,
        }
    }
}

/// Who decides: required, trimmed, at most 128 bytes.
pub fn who(by: &str) -> Option<String> {
    let by = by.trim();
    (!by.is_empty() && by.len() <= 128).then(|| by.to_string())
}

/// One list item as the API shows it (`now` gives its age).
pub fn item(e: &ReviewEntry, now: OffsetDateTime) -> Value {
    let r = &e.reading;
    json!({
        "id": e.id,
        "room": e.room,
        "device": r.device.id,
        "kind": r.kind.as_str(),
        "values": r.values,
        "observed_at": r.observed_at.format(&time::format_description::well_known::Rfc3339).ok(),
        "waiting_since": e.waiting_since.format(&time::format_description::well_known::Rfc3339).ok(),
        "age_seconds": (now - e.waiting_since).whole_seconds().max(0),
        "patient": r.patient,
        "patient_tag": r.patient.as_ref().map(|p| p.masked()),
        "flags": r.flags,
    })
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

async fn list(State(s): State<AdminState>, Query(q): Query<Limit>) -> Answer {
    let now = OffsetDateTime::now_utc();
    let limit = q.limit.unwrap_or(1000);
    let list = s
        .queue
        .review()
        .read(move |r| r.list(limit))
        .await
        .map_err(|e| queue_err(&e))?;
    let out: Vec<Value> = list.iter().map(|e| item(e, now)).collect();
    Ok(Json(Value::Array(out)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    by: String,
    #[serde(default)]
    reason: Option<String>,
}

fn body(b: &Bytes) -> Result<(String, Option<String>), Response> {
    let d: DecideBody = serde_json::from_slice(b).map_err(|e| {
        fail(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid JSON body ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })?;
    let by = who(&d.by)
        .ok_or_else(|| fail(StatusCode::BAD_REQUEST, "`by` (who decides) is required"))?;
    let reason = d
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > 1000) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "`reason` is at most 1000 bytes",
        ));
    }
    Ok((by, reason))
}

fn action(s: &str) -> Result<Action, Response> {
    Action::parse(s).ok_or_else(|| fail(StatusCode::NOT_FOUND, "expected confirm or reject"))
}

/// Confirms or rejects one reading; the outcome for both the API and the page.
pub async fn decide(
    s: &AdminState,
    id: ReadingId,
    action: Action,
    by: String,
    reason: Option<String>,
) -> Result<Decision, QueueError> {
    let d = match action {
        Action::Confirm => s.queue.review().confirm(id, by).await?,
        Action::Reject => s.queue.review().reject(id, by, reason).await?,
    };
    if matches!(d, Decision::Done(_)) {
        let what = match action {
            Action::Confirm => "reading confirmed and filed",
            Action::Reject => "reading rejected, never filed",
        };
        tracing::info!(reading = %id, "{what}");
    }
    Ok(d)
}

/// Confirms or rejects every reading of `room` waiting now; the ids decided.
pub async fn decide_all(
    s: &AdminState,
    room: &str,
    action: Action,
    by: String,
) -> Result<Vec<ReadingId>, QueueError> {
    let ids = s
        .queue
        .review()
        .decide_room(room, action == Action::Confirm, by)
        .await?;
    if !ids.is_empty() {
        tracing::info!(
            count = ids.len(),
            confirmed = action == Action::Confirm,
            "room's review batch decided"
        );
    }
    Ok(ids)
}

async fn decide_one(
    State(s): State<AdminState>,
    Path((id, act)): Path<(String, String)>,
    b: Bytes,
) -> Answer {
    let act = action(&act)?;
    let id: ReadingId = id
        .parse()
        .map_err(|_| fail(StatusCode::BAD_REQUEST, "not a reading id (a UUID)"))?;
    let (by, reason) = body(&b)?;
    match decide(&s, id, act, by, reason).await {
        Ok(Decision::Done(r)) => {
            let key = if act == Action::Confirm {
                "confirmed"
            } else {
                "rejected"
            };
            Ok(Json(json!({ key: true, "id": id, "reading": r })).into_response())
        }
        Ok(Decision::NotWaiting) => Err(fail(
            StatusCode::NOT_FOUND,
            "no reading with this id waits for review (already confirmed or rejected?)",
        )),
        Err(e) => Err(queue_err(&e)),
    }
}

async fn decide_room(
    State(s): State<AdminState>,
    Path((room, act)): Path<(String, String)>,
    b: Bytes,
) -> Answer {
    let act = action(&act)?;
    let (by, _) = body(&b)?;
    let ids = decide_all(&s, &room, act, by)
        .await
        .map_err(|e| queue_err(&e))?;
    if ids.is_empty() {
        return Err(fail(
            StatusCode::NOT_FOUND,
            "no reading of this room waits for review",
        ));
    }
    let key = if act == Action::Confirm {
        "confirmed"
    } else {
        "rejected"
    };
    Ok(Json(json!({ "room": room, key: ids.len(), "ids": ids })).into_response())
}
