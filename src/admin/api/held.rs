//! `/api/held`: readings held without a patient, listed behind the token, assigned to a
//! patient or discarded by a named person.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::super::AdminState;
use super::{by_field, context_err, fail, parse_body, queue_err, reading_id, Answer, Limit};
use crate::reading::PatientRef;

pub(super) async fn held(State(s): State<AdminState>, Query(q): Query<Limit>) -> Answer {
    let now = OffsetDateTime::now_utc();
    let limit = q.limit.unwrap_or(1000);
    let list = s
        .queue
        .held()
        .read(move |h| h.list(limit))
        .await
        .map_err(|e| queue_err(&e))?;
    let out: Vec<Value> = list
        .into_iter()
        .map(|e| {
            let state = if e.in_review(s.hold_for, now) {
                "review"
            } else {
                "held"
            };
            let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
            v["state"] = json!(state);
            v
        })
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Assign {
    patient: PatientRef,
    by: String,
}

pub(super) async fn assign(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = reading_id(&id)?;
    let b: Assign = parse_body(&body)?;
    let by = by_field(b.by)?;
    crate::context::check_patient(&b.patient).map_err(|e| context_err(&e))?;
    let masked = b.patient.masked();
    match s.queue.held().assign(id, b.patient, by).await {
        Ok(Some(r)) => {
            tracing::info!(reading = %id, patient = %masked, "held reading assigned");
            Ok(Json(json!({ "assigned": true, "reading": r })).into_response())
        }
        Ok(None) => Err(fail(StatusCode::NOT_FOUND, "no held reading with this id")),
        Err(e) => Err(queue_err(&e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Discard {
    pub(super) reason: String,
    pub(super) by: String,
}

pub(super) async fn discard(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = reading_id(&id)?;
    let b: Discard = parse_body(&body)?;
    let by = by_field(b.by)?;
    if b.reason.trim().is_empty() {
        return Err(fail(StatusCode::BAD_REQUEST, "`reason` is required"));
    }
    match s.queue.held().discard(id, b.reason, by).await {
        Ok(Some(_)) => {
            tracing::info!(reading = %id, "held reading discarded");
            Ok(Json(json!({ "discarded": true })).into_response())
        }
        Ok(None) => Err(fail(StatusCode::NOT_FOUND, "no held reading with this id")),
        Err(e) => Err(queue_err(&e)),
    }
}
