//! The status page `GET /`: one server-rendered HTML document (no CDN, no script) with the
//! rooms and their MASKED patient, the time left on each room's context with a "Still this
//! patient" form (`POST /rooms/{room}/confirm`, renews the context), the devices, the sinks (pending, dead, last success, last
//! error with its reason; red while failing), a queue-depth sparkline, and the held
//! readings with plain HTML forms to assign or discard them (`POST /held/{id}/assign|discard`,
//! form-encoded, answered with a redirect back to `/`), and the quarantined readings (which
//! limit they failed, no values; released through the CLI or the API).
//!
//! The forms pass the same guard as the API: a cross-origin form post is refused, and every
//! post needs a signed-in session. Signing in (`POST /login`, the admin token in a password
//! field) sets a session cookie; `POST /logout` ends it. Until then the page shows the rooms
//! (masked), devices, sinks and counts, and a sign-in form instead of the held and
//! quarantined readings and the confirm forms. Without a configured token nobody can sign in
//! and the page says how to set one (docs/security.md).

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use time::OffsetDateTime;

use super::guard::SignedIn;
use super::session::Sessions;
use super::AdminState;
use crate::reading::{PatientRef, ReadingId};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An inline SVG polyline of `samples` scaled into `w`×`h` (empty samples: a flat line).
pub fn sparkline(samples: &[u64], w: u32, h: u32) -> String {
    let max = samples.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = samples.len().max(2) - 1;
    let points: Vec<String> = samples
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = f64::from(w) * i as f64 / n as f64;
            let y = f64::from(h) - f64::from(h) * (*v as f64) / max;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        "<svg id=\"depth\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"queue depth, max {max}\"><polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

/// Decodes an `application/x-www-form-urlencoded` body into pairs (`+` is a space).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(a), Some(b2)) => {
                            out.push(u8::try_from(a * 16 + b2).unwrap_or(b'?'));
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn field(form: &[(String, String)], name: &str) -> String {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

fn ts(t: Option<OffsetDateTime>) -> String {
    let fmt = time::format_description::well_known::Rfc3339;
    t.and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "—".into())
}

pub fn page_routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(page))
        .route("/held/{id}/assign", post(assign))
        .route("/held/{id}/discard", post(discard))
        .route("/rooms/{room}/confirm", post(confirm))
        .route("/login", post(login))
        .route("/logout", post(logout))
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}\
th{background:#f3f3f3}.bad{color:#b00}.ok{color:#070}form{display:inline}input{width:9em}#login input{width:20em}";

/// The sign-in form, sign-out button or how to get a token, by the visitor's state.
fn sign_in_section(h: &mut String, s: &AdminState, signed_in: bool) {
    if signed_in {
        h.push_str("<div id=\"signed-in\">Signed in. <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form></div>");
    } else if s.access.token.is_some() {
        h.push_str("<form id=\"login\" method=\"post\" action=\"/login\"><label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
<button type=\"submit\">Sign in</button></form><p>Sign in to see and act on held and quarantined readings and to confirm patients.</p>");
    } else {
        h.push_str("<p id=\"no-token\">No admin token is configured, so nobody can sign in here and the API refuses changes and patient data. \
Put a random token in a file (<code>openssl rand -hex 32</code>, mode 0640) and set <code>[daemon] admin_token_file</code> to it.</p>");
    }
}

/// The page's HTML, from the current state; `signed_in` shows the forms and the readings.
pub fn render(
    s: &AdminState,
    now: OffsetDateTime,
    signed_in: bool,
) -> Result<String, crate::queue::QueueError> {
    let stats = s.queue.stats()?;
    let held_count = s.queue.held_count()?;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vitalsd</title><style>{STYLE}</style></head><body><h1>vitalsd</h1>"
    );
    sign_in_section(&mut h, s, signed_in);
    rooms_table(&mut h, s, now, signed_in);
    h.push_str("<h2>Devices</h2><table id=\"devices\"><tr><th>Device</th><th>Driver</th><th>Room</th><th>Connected</th><th>Last frame</th><th>Readings</th><th>Bad frames</th><th>Rejected</th><th>Clock drift (s)</th><th>Port</th></tr>");
    for d in &s.devices {
        let snap = d.snapshot();
        let drift = s
            .quality
            .drift(&snap.id)
            .map(|d| format!("{:+.1}", d.last_seconds))
            .unwrap_or_else(|| "—".into());
        let (cls, conn) = if snap.connected {
            ("ok", "yes")
        } else {
            ("bad", "no")
        };
        let _ = write!(
            h,
            "<tr data-device=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td class=\"{cls}\">{conn}</td><td>{}</td><td class=\"readings\">{}</td><td>{}</td><td>{}</td><td>{drift}</td><td class=\"port\">{}</td></tr>",
            esc(&snap.driver),
            esc(&snap.room),
            ts(snap.last_frame_at),
            snap.readings,
            snap.frames_bad,
            snap.rejected,
            esc(snap.port.as_deref().unwrap_or("—")),
            id = esc(snap.id.as_str()),
        );
    }
    h.push_str("</table><h2>Sinks</h2><table id=\"sinks\"><tr><th>Sink</th><th>Pending</th><th>Dead</th><th>Last success</th><th>Last error</th></tr>");
    for st in &stats.sinks {
        let health = s
            .ops
            .sinks
            .get(&st.sink)
            .map(|x| x.snapshot())
            .unwrap_or_default();
        let failing = health.failing_since.is_some();
        let error = match (&health.last_error, health.last_error_at) {
            (Some(reason), at) => format!("{} {}", ts(at), esc(reason)),
            (None, _) => "—".into(),
        };
        let _ = write!(
            h,
            "<tr data-sink=\"{id}\"><td>{id}</td><td class=\"pending\">{}</td><td class=\"{}\">{}</td><td class=\"last-success\">{}</td><td class=\"last-error{}\">{error}</td></tr>",
            st.pending,
            if st.dead > 0 { "bad" } else { "ok" },
            st.dead,
            ts(health.last_success),
            if failing { " bad" } else { "" },
            id = esc(st.sink.as_str()),
        );
    }
    let _ = write!(
        h,
        "</table><p>Queue depth (all sinks, last samples): {}</p>",
        sparkline(&s.ops.depth_samples(), 300, 40)
    );
    let _ = write!(
        h,
        "<h2>Held readings (<span id=\"held-count\">{held_count}</span>)</h2>"
    );
    if signed_in {
        held_table(&mut h, s, now)?;
    } else {
        h.push_str("<p>Sign in to list and assign them (or <code>vitalsd queue held</code>).</p>");
    }
    quarantine_section(&mut h, s, stats.quarantined, signed_in)?;
    h.push_str("</body></html>");
    Ok(h)
}

/// A room's remaining context time as `12m 05s` (`—` without a context).
fn remaining(secs: Option<u64>) -> String {
    match secs {
        Some(s) if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        Some(s) => format!("{s}s"),
        None => "—".into(),
    }
}

fn rooms_table(h: &mut String, s: &AdminState, now: OffsetDateTime, signed_in: bool) {
    h.push_str("<h2>Rooms</h2><table id=\"rooms\"><tr><th>Room</th><th>Patient (masked)</th><th>Device user</th><th>Since</th><th>Expires</th><th>Remaining</th><th>Confirm</th></tr>");
    for r in s.contexts.views(now) {
        let room = esc(&r.room);
        let confirm = match (&r.patient, signed_in) {
            (None, _) => String::new(),
            (Some(_), false) => "sign in".to_string(),
            (Some(_), true) => format!(
                "<form method=\"post\" action=\"/rooms/{}/confirm\"><input name=\"by\" placeholder=\"your name\" required> \
<button type=\"submit\">Still this patient</button></form>",
                esc(&path_segment(&r.room))
            ),
        };
        let _ = write!(
            h,
            "<tr data-room=\"{room}\"><td>{room}</td><td class=\"patient\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"remaining\">{}</td><td>{confirm}</td></tr>",
            esc(r.patient.as_deref().unwrap_or("—")),
            r.user.map_or_else(|| "—".to_string(), |u| u.to_string()),
            ts(r.since),
            ts(r.expires_at),
            remaining(r.remaining_seconds),
        );
    }
    h.push_str("</table>");
}

/// Percent-encodes a room name for a URL path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn held_table(
    h: &mut String,
    s: &AdminState,
    now: OffsetDateTime,
) -> Result<(), crate::queue::QueueError> {
    h.push_str("<table id=\"held\"><tr><th>Held since</th><th>Room</th><th>Device</th><th>Kind</th><th>State</th><th>Assign</th><th>Discard</th></tr>");
    for e in s.queue.held(200)? {
        let id = e.id.to_string();
        let state = if e.in_review(s.hold_for, now) {
            "review"
        } else {
            "held"
        };
        let _ = write!(
            h,
            "<tr data-held=\"{id}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td>\
<td><form method=\"post\" action=\"/held/{id}/assign\"><input name=\"patient_id\" placeholder=\"patient id\" required> \
<input name=\"patient_system\" placeholder=\"system\" required> <input name=\"by\" placeholder=\"your name\" required> \
<button type=\"submit\">Assign</button></form></td>\
<td><form method=\"post\" action=\"/held/{id}/discard\"><input name=\"reason\" placeholder=\"reason\" required> \
<input name=\"by\" placeholder=\"your name\" required> <button type=\"submit\">Discard</button></form></td></tr>",
            ts(Some(e.held_at)),
            esc(e.room.as_deref().unwrap_or("—")),
            esc(e.reading.device.id.as_str()),
            esc(e.reading.kind.as_str()),
        );
    }
    h.push_str("</table>");
    Ok(())
}

/// The quarantined readings: which limit, never the value or the patient (the page may be
/// unauthenticated); releasing is a named person's act through the CLI or the API.
fn quarantine_section(
    h: &mut String,
    s: &AdminState,
    count: u64,
    signed_in: bool,
) -> Result<(), crate::queue::QueueError> {
    let _ = write!(
        h,
        "<h2>Quarantined readings (<span id=\"quarantine-count\">{count}</span>)</h2>\
<p>Failed a hard plausibility limit: sent nowhere, and no dead-letter retry sends them. Review, then \
<code>vitalsd queue release ID --by NAME --reason TEXT</code> or <code>vitalsd queue discard</code> \
(or <code>POST /api/quarantine/ID/release</code>).</p>"
    );
    if !signed_in {
        h.push_str("<p>Sign in to list them (or <code>vitalsd queue quarantine</code>).</p>");
        return Ok(());
    }
    h.push_str("<table id=\"quarantine\"><tr><th>Since</th><th>Room</th><th>Device</th><th>Kind</th><th>Limit</th><th>Id</th></tr>");
    for e in s.queue.quarantined(200)? {
        let limit = e.reason.split_whitespace().next().unwrap_or("—");
        let _ = write!(
            h,
            "<tr data-quarantined=\"{id}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{id}</td></tr>",
            ts(Some(e.quarantined_at)),
            esc(e.reading.room.as_deref().unwrap_or("—")),
            esc(e.reading.device.id.as_str()),
            esc(e.reading.kind.as_str()),
            esc(limit),
            id = e.id,
        );
    }
    h.push_str("</table>");
    Ok(())
}

fn problem(status: StatusCode, msg: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vitalsd</title></head><body><p id=\"error\">{}</p><p><a href=\"/\">Back</a></p></body></html>",
        esc(msg)
    );
    (status, Html(body)).into_response()
}

fn back() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
}

async fn page(State(s): State<AdminState>, signed_in: Option<Extension<SignedIn>>) -> Response {
    let signed_in = signed_in.is_some_and(|Extension(SignedIn(b))| b);
    match render(&s, OffsetDateTime::now_utc(), signed_in) {
        Ok(html) => Html(html).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn held_id(id: &str) -> Option<ReadingId> {
    id.parse().ok()
}

async fn assign(State(s): State<AdminState>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(id) = held_id(&id) else {
        return problem(StatusCode::BAD_REQUEST, "not a reading id");
    };
    let form = parse_form(&body);
    let by = field(&form, "by");
    let patient = PatientRef {
        id: field(&form, "patient_id"),
        system: field(&form, "patient_system"),
    };
    if by.is_empty() || by.len() > 128 {
        return problem(StatusCode::BAD_REQUEST, "your name (by) is required");
    }
    if let Err(e) = crate::context::check_patient(&patient) {
        return problem(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let masked = patient.masked();
    match s.queue.assign_held(id, patient, by).await {
        Ok(Some(_)) => {
            tracing::info!(reading = %id, patient = %masked, "held reading assigned from the status page");
            back()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "no held reading with this id"),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn discard(State(s): State<AdminState>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(id) = held_id(&id) else {
        return problem(StatusCode::BAD_REQUEST, "not a reading id");
    };
    let form = parse_form(&body);
    let (by, reason) = (field(&form, "by"), field(&form, "reason"));
    if by.is_empty() || by.len() > 128 || reason.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "a reason and your name (by) are required",
        );
    }
    match s.queue.discard_held(id, reason, by).await {
        Ok(Some(_)) => {
            tracing::info!(reading = %id, "held reading discarded from the status page");
            back()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "no held reading with this id"),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `POST /login` (form field `token`): a right token starts a session (cookie) and goes back
/// to the page; a wrong one is 401.
async fn login(State(s): State<AdminState>, body: Bytes) -> Response {
    let Some(token) = &s.access.token else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "no admin token is configured: set [daemon] admin_token_file to a file holding one",
        );
    };
    let form = parse_form(&body);
    if !token.matches(field(&form, "token").as_bytes()) {
        tracing::warn!("status page sign-in with a wrong token");
        return problem(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let Some(id) = s.access.sessions.create() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "no random source for a session",
        );
    };
    tracing::info!("status page signed in");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, Sessions::cookie_for(&id)),
        ],
    )
        .into_response()
}

/// `POST /logout`: ends the session of the cookie sent and clears the cookie.
async fn logout(State(s): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    let id = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| super::guard::cookie(c, super::session::COOKIE));
    if let Some(id) = id {
        s.access.sessions.remove(id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, Sessions::cookie_cleared()),
        ],
    )
        .into_response()
}

/// "Still this patient" from the status page: renews the room's context like
/// `POST /api/rooms/{room}/patient/confirm`.
async fn confirm(State(s): State<AdminState>, Path(room): Path<String>, body: Bytes) -> Response {
    let form = parse_form(&body);
    let by = field(&form, "by");
    if by.is_empty() || by.len() > 128 {
        return problem(StatusCode::BAD_REQUEST, "your name (by) is required");
    }
    match s
        .contexts
        .confirm(&room, &by, OffsetDateTime::now_utc())
        .await
    {
        Ok(true) => back(),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            "this room has no valid patient context any more: scan the patient again",
        ),
        Err(crate::context::ContextError::Store(e)) => {
            problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_and_room_paths_render_plainly() {
        assert_eq!(remaining(Some(725)), "12m 05s");
        assert_eq!(remaining(Some(9)), "9s");
        assert_eq!(remaining(None), "—");
        assert_eq!(path_segment("exam 1/b"), "exam%201%2Fb");
    }

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_form_body_decodes_plus_and_percent_escapes() {
        let f = parse_form(b"patient_id=MRN+12%2F3&by=Ann%20B&empty=&bad=%zz%4");
        assert_eq!(field(&f, "patient_id"), "MRN 12/3");
        assert_eq!(field(&f, "by"), "Ann B");
        assert_eq!(field(&f, "empty"), "");
        assert_eq!(field(&f, "bad"), "%zz%4");
        assert_eq!(field(&f, "missing"), "");
    }

    #[test]
    fn the_sparkline_scales_samples_into_the_box() {
        let svg = sparkline(&[0, 5, 10], 100, 20);
        assert!(
            svg.contains(r#"points="0.0,20.0 50.0,10.0 100.0,0.0""#),
            "{svg}"
        );
        assert!(sparkline(&[], 100, 20).contains(r#"points="""#));
    }
}
