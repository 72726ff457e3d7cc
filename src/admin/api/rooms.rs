//! `/api/rooms/{room}/patient`: set, confirm ("Still this patient") and clear a room's
//! patient context, each audited with who did it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::super::AdminState;
use super::{by_field, context_err, fail, known_room, parse_body, Answer};
use crate::context::audit::ContextSource;
use crate::reading::PatientRef;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetPatient {
    id: String,
    system: String,
    by: String,
    /// The device user (multi-user cuff or scale) whose readings go to this patient.
    #[serde(default)]
    user: Option<u8>,
}

pub(super) async fn set_patient(
    State(s): State<AdminState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Answer {
    known_room(&s, &room)?;
    let b: SetPatient = parse_body(&body)?;
    let by = by_field(b.by)?;
    let patient = PatientRef {
        id: b.id,
        system: b.system,
    };
    s.contexts
        .set(
            &room,
            patient,
            b.user,
            ContextSource::Api,
            &by,
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|e| context_err(&e))?;
    Ok(Json(json!({ "room": room, "set": true })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfirmPatient {
    by: String,
}

/// "Still this patient": renews the room's current context for `context_ttl` from now; 404
/// when the room has no valid context (it expired or was never set: scan again).
pub(super) async fn confirm_patient(
    State(s): State<AdminState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Answer {
    known_room(&s, &room)?;
    let b: ConfirmPatient = parse_body(&body)?;
    let by = by_field(b.by)?;
    let now = OffsetDateTime::now_utc();
    let confirmed = s
        .contexts
        .confirm(&room, &by, now)
        .await
        .map_err(|e| context_err(&e))?;
    if !confirmed {
        return Err(fail(
            StatusCode::NOT_FOUND,
            "no valid patient context in this room to confirm; scan or set the patient",
        ));
    }
    let view = s.contexts.views(now).into_iter().find(|v| v.room == room);
    Ok(Json(json!({ "room": room, "confirmed": true, "context": view })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ClearPatient {
    #[serde(default)]
    by: Option<String>,
}

pub(super) async fn clear_patient(
    State(s): State<AdminState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Answer {
    known_room(&s, &room)?;
    let b: ClearPatient = if body.is_empty() {
        ClearPatient::default()
    } else {
        parse_body(&body)?
    };
    let by = by_field(b.by.unwrap_or_else(|| "api".into()))?;
    let cleared = s
        .contexts
        .clear(&room, ContextSource::Api, &by, OffsetDateTime::now_utc())
        .await
        .map_err(|e| context_err(&e))?;
    Ok(Json(json!({ "room": room, "cleared": cleared })).into_response())
}
