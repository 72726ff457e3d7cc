//! The daemon's state for operators: `GET /readyz`, `GET /api/status` (devices, sinks, queue,
//! rooms with the patient masked unless signed in) and `GET /api/queue/stats`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::super::AdminState;
use super::{queue_err, Answer};
use crate::config::PatientMode;

/// Ready when the queue is open and below its cap; else 503 with every reason.
pub(super) async fn readyz(State(s): State<AdminState>) -> Response {
    let mut reasons = Vec::new();
    match s.queue.read(|q| q.stats()).await {
        Ok(st) if st.undelivered_bytes > st.max_bytes => reasons.push(format!(
            "queue full: {} of {} bytes of undelivered readings",
            st.undelivered_bytes, st.max_bytes
        )),
        Ok(_) => {}
        Err(e) => reasons.push(format!("queue: {e}")),
    }
    // Reads the store (pending entries) and the file system: off the runtime's workers.
    let state = s.clone();
    match s
        .queue
        .read(move |_| Ok(super::super::ready::ready_problems(&state)))
        .await
    {
        Ok(problems) => reasons.extend(problems),
        Err(e) => reasons.push(format!("queue: {e}")),
    }
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

pub(super) async fn status(
    State(s): State<AdminState>,
    signed_in: Option<axum::Extension<super::super::guard::SignedIn>>,
) -> Answer {
    let signed_in = signed_in.is_some_and(|e| e.0 .0);
    let (stats, held) = s
        .queue
        .read(|q| Ok((q.stats()?, q.held().count()?)))
        .await
        .map_err(|e| queue_err(&e))?;
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

/// `GET /api/queue/stats`: what `vitalsd queue stats` prints (readings, quarantined, disk
/// and per-sink pending/dead, plus the count of acknowledged undecodable MQTT payloads).
pub(super) async fn queue_stats(State(s): State<AdminState>) -> Answer {
    let (stats, rejected) = s
        .queue
        .read(|q| Ok((q.stats()?, q.rejected().count()?)))
        .await
        .map_err(|e| queue_err(&e))?;
    let mut v = serde_json::to_value(&stats).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("rejected_payloads".into(), rejected.into());
    }
    Ok(Json(v).into_response())
}
