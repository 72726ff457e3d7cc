//! `GET /api/audit`: pages of the audit log, oldest or newest first, by room and time.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use time::OffsetDateTime;

use super::super::AdminState;
use super::{fail, parse_since, queue_err, Answer};

#[derive(Deserialize)]
pub(super) struct AuditQuery {
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
pub(super) async fn audit(State(s): State<AdminState>, Query(q): Query<AuditQuery>) -> Answer {
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
    let page = s
        .queue
        .audit()
        .read(move |a| a.page(&query))
        .await
        .map_err(|e| queue_err(&e))?;
    let mut r = Json(page.entries).into_response();
    if let Some(next) = page
        .next
        .and_then(|n| axum::http::HeaderValue::from_str(&n).ok())
    {
        r.headers_mut().insert("x-vitalsd-next", next);
    }
    Ok(r)
}
