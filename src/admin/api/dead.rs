//! `/api/dead`: each sink's dead-letter entries, listed, sent again (one or all) or purged.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::super::AdminState;
use super::{fail, queue_err, reading_id, Answer};
use crate::reading::{ReadingId, SinkId};

#[derive(Deserialize)]
pub(super) struct DeadQuery {
    #[serde(default)]
    sink: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub(super) async fn dead(State(s): State<AdminState>, Query(q): Query<DeadQuery>) -> Answer {
    let sink = q.sink.map(SinkId::new);
    let limit = q.limit.unwrap_or(1000);
    let list = s
        .queue
        .read(move |q| q.dead(sink.as_ref(), limit))
        .await
        .map_err(|e| queue_err(&e))?;
    Ok(Json(list).into_response())
}

pub(super) async fn retry_dead(
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

/// `POST /api/dead/{sink}/retry-all`: every dead-letter entry of the sink back to pending.
pub(super) async fn retry_dead_all(
    State(s): State<AdminState>,
    Path(sink): Path<String>,
) -> Answer {
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
pub(super) struct PurgeQuery {
    #[serde(default)]
    id: Option<String>,
}

/// `POST /api/dead/purge[?id=ID]`: deletes every sink's dead-letter entries (or the entries of
/// one reading, whatever the sink).
pub(super) async fn purge_dead_all(
    State(s): State<AdminState>,
    Query(q): Query<PurgeQuery>,
) -> Answer {
    let id = q.id.as_deref().map(reading_id).transpose()?;
    purge(&s, None, id).await
}

/// `POST /api/dead/{sink}/purge`: deletes one sink's dead-letter entries.
pub(super) async fn purge_dead_sink(
    State(s): State<AdminState>,
    Path(sink): Path<String>,
) -> Answer {
    purge(&s, Some(SinkId::new(sink)), None).await
}

/// `POST /api/dead/{sink}/{id}/purge`: deletes one dead-letter entry (`purged: 0` when absent).
pub(super) async fn purge_dead_one(
    State(s): State<AdminState>,
    Path((sink, id)): Path<(String, String)>,
) -> Answer {
    let id = reading_id(&id)?;
    purge(&s, Some(SinkId::new(sink)), Some(id)).await
}
