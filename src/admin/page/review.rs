//! The review list on the status page (`[patient] review = true`, docs/review.md): per room,
//! each waiting reading with its values, when it was measured and how long it has waited,
//! and buttons to confirm (file) or reject it, or the room's whole batch.
//!
//! Receives the list from the queue; the form posts `POST /review/{id}/confirm|reject` and
//! `POST /review/rooms/{room}/confirm|reject` (form field `by`, optional `reason`), answered
//! with a redirect back to `/`. Promises: listed only to a signed-in user (values are patient
//! data); one name field per room serves every button of that room; a decision the queue
//! no longer finds (decided elsewhere) is a readable 404 page, never a second filing.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::when::Clock;
use super::{back, esc, field, parse_form, path_segment, problem};
use crate::admin::review::{decide, decide_all, who, Action};
use crate::admin::AdminState;
use crate::queue::{Decision, ReviewEntry};

/// `97 %, 72 /min` from a reading's values.
fn values(e: &ReviewEntry) -> String {
    let r = &e.reading;
    let v: Vec<String> = r
        .values
        .iter()
        .map(|v| {
            let n = v.value.map_or_else(|| "--".to_string(), |d| d.to_string());
            format!("{} {n} {}", v.name, v.unit)
        })
        .collect();
    v.join(", ")
}

/// The section: `<h2>` with the count, then one block per room (signed in only).
pub fn section(h: &mut String, list: &[ReviewEntry], clock: &Clock, signed_in: bool) {
    let _ = write!(
        h,
        "<section id=\"review\"><h2>To review before filing (<span id=\"review-count\">{}</span>)</h2>",
        list.len()
    );
    if list.is_empty() {
        h.push_str("<p class=\"muted\">Nothing waits for review.</p></section>");
        return;
    }
    if !signed_in {
        h.push_str("<p>Sign in to review them.</p></section>");
        return;
    }
    h.push_str("<p class=\"muted\">Nothing here is filed until someone confirms it; readings wait as long as it takes.</p>");
    let mut rooms: Vec<&str> = list
        .iter()
        .map(|e| e.room.as_deref().unwrap_or(""))
        .collect();
    rooms.dedup();
    rooms.sort_unstable();
    rooms.dedup();
    for room in rooms {
        let seg = esc(&path_segment(room));
        let shown = if room.is_empty() { "—" } else { room };
        let _ = write!(
            h,
            "<div class=\"review-room\" id=\"review-room-{seg}\" data-review-room=\"{}\"><h3>{}</h3>\
<form method=\"post\" action=\"/review/rooms/{seg}/confirm\"><p class=\"row\"><input name=\"by\" placeholder=\"your name\" aria-label=\"your name\" required autocomplete=\"name\"> \
<button type=\"submit\">Confirm all</button> <button type=\"submit\" class=\"secondary\" formaction=\"/review/rooms/{seg}/reject\">Reject all</button></p>\
<table class=\"review\"><tr><th>Measured</th><th>Kind</th><th>Values</th><th>Patient</th><th>Waiting</th><th></th></tr>",
            esc(room),
            esc(shown)
        );
        for e in list
            .iter()
            .filter(|e| e.room.as_deref().unwrap_or("") == room)
        {
            let id = e.id;
            let patient = e
                .reading
                .patient
                .as_ref()
                .map_or_else(|| "—".to_string(), |p| format!("#{}", p.masked()));
            let _ = write!(
                h,
                "<tr id=\"review-{id}\" data-review=\"{id}\"><td>{}</td><td>{}</td><td class=\"values\">{}</td><td>{}</td><td>{}</td>\
<td class=\"actions\"><button type=\"submit\" formaction=\"/review/{id}/confirm\">Confirm</button> \
<button type=\"submit\" class=\"secondary\" formaction=\"/review/{id}/reject\">Reject</button></td></tr>",
                clock.tag(e.reading.observed_at),
                esc(e.reading.kind.as_str()),
                esc(&values(e)),
                esc(&patient),
                clock.tag(e.waiting_since),
            );
        }
        h.push_str("</table></form></div>");
    }
    h.push_str("</section>");
}

fn action(s: &str) -> Option<Action> {
    Action::parse(s)
}

fn no_action() -> Response {
    problem(StatusCode::NOT_FOUND, "expected confirm or reject")
}

/// `POST /review/{id}/confirm|reject` from the page.
pub async fn decide_one(
    State(s): State<AdminState>,
    Path((id, act)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(act) = action(&act) else {
        return no_action();
    };
    let Ok(id) = id.parse() else {
        return problem(StatusCode::BAD_REQUEST, "not a reading id");
    };
    let form = parse_form(&body);
    let Some(by) = who(&field(&form, "by")) else {
        return problem(StatusCode::BAD_REQUEST, "your name (by) is required");
    };
    let reason = Some(field(&form, "reason")).filter(|r| !r.is_empty());
    match decide(&s, id, act, by, reason).await {
        Ok(Decision::Done(_)) => back(),
        Ok(Decision::NotWaiting) => problem(
            StatusCode::NOT_FOUND,
            "this reading no longer waits for review (someone already confirmed or rejected it)",
        ),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `POST /review/rooms/{room}/confirm|reject` from the page.
pub async fn decide_room(
    State(s): State<AdminState>,
    Path((room, act)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(act) = action(&act) else {
        return no_action();
    };
    let form = parse_form(&body);
    let Some(by) = who(&field(&form, "by")) else {
        return problem(StatusCode::BAD_REQUEST, "your name (by) is required");
    };
    match decide_all(&s, &room, act, by).await {
        Ok(ids) if ids.is_empty() => problem(
            StatusCode::NOT_FOUND,
            "no reading of this room waits for review",
        ),
        Ok(_) => back(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
