//! `/api/quarantine`: readings that failed a hard plausibility limit, listed (in full behind
//! the token, or as the CLI's masked summary), released to every sink or discarded, audited.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::super::AdminState;
use super::held::Discard;
use super::{by_field, context_err, fail, parse_body, queue_err, reading_id, Answer, Limit};
use crate::config::PatientMode;
use crate::reading::PatientRef;

/// `GET /api/quarantine`: the quarantined readings with their values and patient (behind the
/// token, like the other patient-data calls).
pub(super) async fn quarantine(State(s): State<AdminState>, Query(q): Query<Limit>) -> Answer {
    let limit = q.limit.unwrap_or(1000);
    let list = s
        .queue
        .quarantine()
        .read(move |h| h.list(limit))
        .await
        .map_err(|e| queue_err(&e))?;
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleaseBody {
    by: String,
    reason: String,
    /// Required for a reading without a patient in `[patient] mode = "hold"`.
    #[serde(default)]
    patient: Option<PatientRef>,
}

fn reason_field(reason: String) -> Result<String, Response> {
    let reason = reason.trim().to_string();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "`reason` (why) is required, at most 1000 bytes",
        ));
    }
    Ok(reason)
}

/// `POST /api/quarantine/{id}/release`: a named person sends a quarantined reading to every
/// sink (audited; it stays flagged `rejected:`).
pub(super) async fn release_quarantined(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    use crate::queue::{Release, ReleaseRequest};
    let id = reading_id(&id)?;
    let b: ReleaseBody = parse_body(&body)?;
    let by = by_field(b.by)?;
    let reason = reason_field(b.reason)?;
    if let Some(p) = &b.patient {
        crate::context::check_patient(p).map_err(|e| context_err(&e))?;
    }
    let req = ReleaseRequest {
        by,
        reason,
        patient: b.patient,
        require_patient: s.mode == PatientMode::Hold,
    };
    match s.queue.quarantine().release(id, req).await {
        Ok(Release::Released(r)) => {
            tracing::info!(reading = %id, "quarantined reading released");
            Ok(Json(json!({ "released": true, "reading": r })).into_response())
        }
        Ok(Release::NotFound) => Err(fail(
            StatusCode::NOT_FOUND,
            "no quarantined reading with this id",
        )),
        Ok(Release::NeedsPatient) => Err(fail(
            StatusCode::CONFLICT,
            "the reading has no patient and [patient] mode is \"hold\": give `patient` ({\"id\", \"system\"}) in the release",
        )),
        Ok(Release::HasPatient) => Err(fail(
            StatusCode::CONFLICT,
            "the reading already has another patient; it is never re-attributed",
        )),
        Ok(Release::NoSinks) => Err(fail(
            StatusCode::CONFLICT,
            "no sink is configured: nothing could deliver it, so it stays in the quarantine",
        )),
        Err(e) => Err(queue_err(&e)),
    }
}

/// `POST /api/quarantine/{id}/discard`: removes a quarantined reading, audited.
pub(super) async fn discard_quarantined(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = reading_id(&id)?;
    let b: Discard = parse_body(&body)?;
    let by = by_field(b.by)?;
    let reason = reason_field(b.reason)?;
    match s.queue.quarantine().discard(id, by, reason).await {
        Ok(true) => {
            tracing::info!(reading = %id, "quarantined reading discarded");
            Ok(Json(json!({ "discarded": true })).into_response())
        }
        Ok(false) => Err(fail(
            StatusCode::NOT_FOUND,
            "no quarantined reading with this id",
        )),
        Err(e) => Err(queue_err(&e)),
    }
}

/// `GET /api/quarantine/summary`: the quarantined readings as `vitalsd queue quarantine` lists
/// them (id, device, room, kind, limit, when; the patient masked).
pub(super) async fn quarantine_summary(
    State(s): State<AdminState>,
    Query(q): Query<Limit>,
) -> Answer {
    let limit = q.limit.unwrap_or(1000);
    let list = s
        .queue
        .quarantine()
        .read(move |h| h.list(limit))
        .await
        .map_err(|e| queue_err(&e))?;
    let out: Vec<_> = list.iter().map(|e| e.summary()).collect();
    Ok(Json(out).into_response())
}
