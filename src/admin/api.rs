//! The admin API handlers: JSON in, JSON out; errors as `{"error": "..."}` with a status.
//!
//! Patient identifiers appear only where an MA needs them (assign bodies, the audit trail,
//! the held and quarantined readings behind the token); `/api/status` shows rooms with the
//! MASKED patient.

// Handlers answer errors as ready `Response`s (the axum idiom); they are built once per failed
// request, so their size does not matter.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::AdminState;
use crate::config::PatientMode;
use crate::context::audit::ContextSource;
use crate::context::ContextError;
use crate::queue::QueueError;
use crate::reading::{PatientRef, ReadingId, SinkId};

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

/// Ready when the queue is open and below its cap; else 503 with every reason.
async fn readyz(State(s): State<AdminState>) -> Response {
    let mut reasons = Vec::new();
    match s.queue.stats() {
        Ok(st) if st.undelivered_bytes > st.max_bytes => reasons.push(format!(
            "queue full: {} of {} bytes of undelivered readings",
            st.undelivered_bytes, st.max_bytes
        )),
        Ok(_) => {}
        Err(e) => reasons.push(format!("queue: {e}")),
    }
    reasons.extend(super::ready::ready_problems(&s));
    if reasons.is_empty() {
        Json(json!({ "ready": true })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": reasons })),
        )
            .into_response()
    }
}

async fn status(
    State(s): State<AdminState>,
    signed_in: Option<axum::Extension<super::guard::SignedIn>>,
) -> Answer {
    let signed_in = signed_in.is_some_and(|e| e.0 .0);
    let stats = s.queue.stats().map_err(|e| queue_err(&e))?;
    let held = s.queue.held_count().map_err(|e| queue_err(&e))?;
    let devices: Vec<Value> = s
        .devices
        .iter()
        .map(|d| {
            let mut v = serde_json::to_value(d.snapshot()).unwrap_or(Value::Null);
            v["clock_drift"] = serde_json::to_value(s.quality.drift(&d.id)).unwrap_or(Value::Null);
            v
        })
        .collect();
    // Each sink's queue counters plus its delivery health (null times before the first).
    let sinks: Vec<Value> = stats
        .sinks
        .iter()
        .map(|st| {
            let mut v = serde_json::to_value(st).unwrap_or(Value::Null);
            let health = s.ops.sinks.get(&st.sink).map(|x| x.snapshot());
            let health = serde_json::to_value(health.unwrap_or_default()).unwrap_or(Value::Null);
            if let (Value::Object(v), Value::Object(h)) = (&mut v, health) {
                v.extend(h);
            }
            v
        })
        .collect();
    let mode = match s.mode {
        PatientMode::Hold => "hold",
        PatientMode::Location => "location",
    };
    Ok(Json(json!({
        "devices": devices,
        "sinks": sinks,
        "queue": {
            "readings": stats.readings,
            "undelivered_bytes": stats.undelivered_bytes,
            "max_bytes": stats.max_bytes,
            "free_bytes": stats.free_bytes,
            "history": stats.history,
            "disk_bytes": stats.disk_bytes,
            "live_bytes": stats.live_bytes,
            "reclaims": stats.reclaims,
        },
        "held": held,
        "patient_mode": mode,
        // Names and birth dates of looked-up patients only for a token or a session.
        "rooms": if signed_in {
            s.contexts.views_with_names(OffsetDateTime::now_utc())
        } else {
            s.contexts.views(OffsetDateTime::now_utc())
        },
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPatient {
    id: String,
    system: String,
    by: String,
    /// The device user (multi-user cuff or scale) whose readings go to this patient.
    #[serde(default)]
    user: Option<u8>,
}

async fn set_patient(State(s): State<AdminState>, Path(room): Path<String>, body: Bytes) -> Answer {
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
struct ConfirmPatient {
    by: String,
}

/// "Still this patient": renews the room's current context for `context_ttl` from now; 404
/// when the room has no valid context (it expired or was never set: scan again).
async fn confirm_patient(
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
struct ClearPatient {
    #[serde(default)]
    by: Option<String>,
}

async fn clear_patient(
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

#[derive(Deserialize)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

async fn held(State(s): State<AdminState>, Query(q): Query<Limit>) -> Answer {
    let now = OffsetDateTime::now_utc();
    let list = s
        .queue
        .held(q.limit.unwrap_or(1000))
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
struct Assign {
    patient: PatientRef,
    by: String,
}

async fn assign(State(s): State<AdminState>, Path(id): Path<String>, body: Bytes) -> Answer {
    let id = reading_id(&id)?;
    let b: Assign = parse_body(&body)?;
    let by = by_field(b.by)?;
    crate::context::check_patient(&b.patient).map_err(|e| context_err(&e))?;
    let masked = b.patient.masked();
    match s.queue.assign_held(id, b.patient, by).await {
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
struct Discard {
    reason: String,
    by: String,
}

async fn discard(State(s): State<AdminState>, Path(id): Path<String>, body: Bytes) -> Answer {
    let id = reading_id(&id)?;
    let b: Discard = parse_body(&body)?;
    let by = by_field(b.by)?;
    if b.reason.trim().is_empty() {
        return Err(fail(StatusCode::BAD_REQUEST, "`reason` is required"));
    }
    match s.queue.discard_held(id, b.reason, by).await {
        Ok(Some(_)) => {
            tracing::info!(reading = %id, "held reading discarded");
            Ok(Json(json!({ "discarded": true })).into_response())
        }
        Ok(None) => Err(fail(StatusCode::NOT_FOUND, "no held reading with this id")),
        Err(e) => Err(queue_err(&e)),
    }
}

#[derive(Deserialize)]
struct DeadQuery {
    #[serde(default)]
    sink: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn dead(State(s): State<AdminState>, Query(q): Query<DeadQuery>) -> Answer {
    let sink = q.sink.map(SinkId::new);
    let list = s
        .queue
        .dead(sink.as_ref(), q.limit.unwrap_or(1000))
        .map_err(|e| queue_err(&e))?;
    Ok(Json(list).into_response())
}

async fn retry_dead(
    State(s): State<AdminState>,
    Path((sink, id)): Path<(String, String)>,
) -> Answer {
    let id = reading_id(&id)?;
    let n = s
        .queue
        .retry_dead(&SinkId::new(sink), Some(id))
        .await
        .map_err(|e| queue_err(&e))?;
    if n == 0 {
        return Err(fail(
            StatusCode::NOT_FOUND,
            "no dead-letter entry with this sink and id",
        ));
    }
    Ok(Json(json!({ "moved": n })).into_response())
}

/// `GET /api/quarantine`: the quarantined readings with their values and patient (behind the
/// token, like the other patient-data calls).
async fn quarantine(State(s): State<AdminState>, Query(q): Query<Limit>) -> Answer {
    let list = s
        .queue
        .quarantined(q.limit.unwrap_or(1000))
        .map_err(|e| queue_err(&e))?;
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
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
async fn release_quarantined(
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
    match s.queue.release_quarantined(id, req).await {
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
async fn discard_quarantined(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let id = reading_id(&id)?;
    let b: Discard = parse_body(&body)?;
    let by = by_field(b.by)?;
    let reason = reason_field(b.reason)?;
    match s.queue.discard_quarantined(id, by, reason).await {
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

/// `GET /api/queue/stats`: what `vitalsd queue stats` prints (readings, quarantined, disk
/// and per-sink pending/dead, plus the count of acknowledged undecodable MQTT payloads).
async fn queue_stats(State(s): State<AdminState>) -> Answer {
    let stats = s.queue.stats().map_err(|e| queue_err(&e))?;
    let rejected = s.queue.rejected_count().map_err(|e| queue_err(&e))?;
    let mut v = serde_json::to_value(&stats).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("rejected_payloads".into(), rejected.into());
    }
    Ok(Json(v).into_response())
}

/// `GET /api/quarantine/summary`: the quarantined readings as `vitalsd queue quarantine` lists
/// them (id, device, room, kind, limit, when; the patient masked).
async fn quarantine_summary(State(s): State<AdminState>, Query(q): Query<Limit>) -> Answer {
    let list = s
        .queue
        .quarantined(q.limit.unwrap_or(1000))
        .map_err(|e| queue_err(&e))?;
    let out: Vec<_> = list.iter().map(|e| e.summary()).collect();
    Ok(Json(out).into_response())
}

/// `POST /api/dead/{sink}/retry-all`: every dead-letter entry of the sink back to pending.
async fn retry_dead_all(State(s): State<AdminState>, Path(sink): Path<String>) -> Answer {
    let n = s
        .queue
        .retry_dead(&SinkId::new(sink), None)
        .await
        .map_err(|e| queue_err(&e))?;
    tracing::info!(moved = n, "dead-letter entries moved back to pending");
    Ok(Json(json!({ "moved": n })).into_response())
}

async fn purge(s: &AdminState, sink: Option<SinkId>, id: Option<ReadingId>) -> Answer {
    let n = s
        .queue
        .purge_dead(sink.as_ref(), id)
        .await
        .map_err(|e| queue_err(&e))?;
    tracing::info!(purged = n, "dead-letter entries purged");
    Ok(Json(json!({ "purged": n })).into_response())
}

#[derive(Deserialize)]
struct PurgeQuery {
    #[serde(default)]
    id: Option<String>,
}

/// `POST /api/dead/purge[?id=ID]`: deletes every sink's dead-letter entries (or the entries of
/// one reading, whatever the sink).
async fn purge_dead_all(State(s): State<AdminState>, Query(q): Query<PurgeQuery>) -> Answer {
    let id = q.id.as_deref().map(reading_id).transpose()?;
    purge(&s, None, id).await
}

/// `POST /api/dead/{sink}/purge`: deletes one sink's dead-letter entries.
async fn purge_dead_sink(State(s): State<AdminState>, Path(sink): Path<String>) -> Answer {
    purge(&s, Some(SinkId::new(sink)), None).await
}

/// `POST /api/dead/{sink}/{id}/purge`: deletes one dead-letter entry (`purged: 0` when absent).
async fn purge_dead_one(
    State(s): State<AdminState>,
    Path((sink, id)): Path<(String, String)>,
) -> Answer {
    let id = reading_id(&id)?;
    purge(&s, Some(SinkId::new(sink)), Some(id)).await
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    /// Only entries that name this room.
    #[serde(default)]
    room: Option<String>,
    /// `newest` first (the default: what just happened) or `oldest` first.
    #[serde(default)]
    order: Option<String>,
    /// The `x-vitalsd-next` header of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /api/audit`: a page of audit entries (docs/audit-log.md); when more may follow, the
/// `x-vitalsd-next` header holds the `cursor` of the next page.
async fn audit(State(s): State<AdminState>, Query(q): Query<AuditQuery>) -> Answer {
    let since = q
        .since
        .as_deref()
        .map(|t| parse_since(t, OffsetDateTime::now_utc()))
        .transpose()
        .map_err(|e| fail(StatusCode::BAD_REQUEST, &e))?;
    let newest_first = match q.order.as_deref() {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(_) => {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "order is `oldest` or `newest`",
            ))
        }
    };
    let query = crate::audit::AuditQuery {
        since,
        room: q.room,
        limit: q.limit.unwrap_or(10_000),
        newest_first,
        cursor: q.cursor,
    };
    let page = s.queue.audit_page(&query).map_err(|e| queue_err(&e))?;
    let mut r = Json(page.entries).into_response();
    if let Some(next) = page
        .next
        .and_then(|n| axum::http::HeaderValue::from_str(&n).ok())
    {
        r.headers_mut().insert("x-vitalsd-next", next);
    }
    Ok(r)
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
