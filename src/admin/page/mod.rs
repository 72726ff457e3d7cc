//! The status page `GET /`, made for the exam room: server-rendered HTML with one script
//! (`/static/page.js`, no inline script, no external resource), readable on a tablet.
//!
//! Receives the daemon's state (queue, contexts, devices, sinks) and the visitor's session.
//! Promises, top to bottom:
//! - the box's local time and zone; every time as local clock time plus "3 min ago";
//! - "Needs attention" first ([`attention`]): readings without a patient, readings to review,
//!   refused scans, failing sinks, silent devices, quarantined readings;
//! - the review list ([`review`], `[patient] review = true`) with confirm/reject per reading
//!   and per room (`POST /review/...`);
//! - the rooms as cards ([`rooms`]): the patient (signed in: name and birth date when a lookup
//!   gave them, else the masked tag), the time left on the context, "Still this patient"
//!   (`POST /rooms/{room}/confirm`) and "End visit" (`POST /rooms/{room}/end`);
//! - held readings with assign/discard forms (`POST /held/{id}/assign|discard`), quarantined
//!   readings (which limit, no values), devices, sinks and the queue-depth sparkline.
//!
//! The page refreshes itself in place every few seconds (`page.js` fetches `/` and swaps
//! every part the MA is not typing in), so a half-filled form is never wiped.
//!
//! Forms are form-encoded and answered with a redirect back to `/`. They pass the same guard
//! as the API: a cross-origin post is refused and every post needs a signed-in session
//! (`POST /login` with the admin token sets the cookie; `POST /logout` ends it). Until then the
//! page shows rooms (masked), devices, sinks, counts and a sign-in form. Without a configured
//! token nobody can sign in and the page says how to set one (docs/security.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use time::OffsetDateTime;

use super::AdminState;

mod attention;
mod forms;
mod html;
mod review;
mod rooms;
mod sections;
pub mod when;

use forms::{assign, confirm, discard, end_visit, login, logout, page};
pub(super) use forms::{back, problem};
pub(super) use html::field;
use html::ts;
pub use html::{esc, parse_form, path_segment, sparkline};
use rooms::RoomInfo;
use sections::{held_table, quarantine_section};
use when::Clock;

pub fn page_routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(page))
        .route("/static/page.js", get(script))
        .route("/held/{id}/assign", post(assign))
        .route("/held/{id}/discard", post(discard))
        .route("/rooms/{room}/confirm", post(confirm))
        .route("/rooms/{room}/end", post(end_visit))
        .route("/review/{id}/{action}", post(review::decide_one))
        .route("/review/rooms/{room}/{action}", post(review::decide_room))
        .route("/login", post(login))
        .route("/logout", post(logout))
}

/// The page's only script: refreshes the page in place and keeps relative times current.
const SCRIPT: &str = include_str!("page.js");

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// Tablet-first: 16 px text, 44 px touch targets, cards that fall into one column under
/// 700 px, wide tables that scroll sideways instead of squeezing.
const STYLE: &str = "body{font:16px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}\
header{display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:center;justify-content:space-between;padding:.6em 1em;background:#234;color:#fff}\
header h1{font-size:1.3em;margin:0}header a{color:#fff}#clock{margin:0}main{padding:0 1em 2em}\
h2{font-size:1.15em;margin:1.2em 0 .4em}h3{margin:0 0 .3em;font-size:1.1em}\
table{border-collapse:collapse;margin:.4em 0 1em;background:#fff}th,td{border:1px solid #ccc;padding:6px 8px;text-align:left;vertical-align:top}\
th{background:#eef0f3}.scroll{overflow-x:auto}.bad{color:#b00}.ok{color:#070}.warn{color:#a60}.muted{color:#667}\
form{display:inline}input{font:inherit;min-height:44px;padding:0 .5em;width:10em;box-sizing:border-box}#login input{width:16em}\
button{font:inherit;min-height:44px;min-width:44px;padding:0 1em;border-radius:6px;border:1px solid #245;background:#2a5d8f;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#245}\
ul.attention{list-style:none;padding:0;margin:0}li.attn{background:#fff;border-left:6px solid #b00;margin:.3em 0;padding:.6em .8em}\
li.attn a{color:inherit;text-decoration:none}li.attn.review{border-color:#a60}li.attn.device,li.attn.quarantine{border-color:#889}\
#all-clear{background:#fff;padding:.6em .8em;border-left:6px solid #070}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:.8em}\
.card{background:#fff;border:1px solid #ccd;border-radius:8px;padding:.8em}.card p{margin:.3em 0}.card form{display:block;margin-top:.5em}\
.card .name{font-size:1.15em}.tag{font-family:ui-monospace,monospace;color:#556}ul.devices{padding-left:1.2em;margin:.3em 0;font-size:.9em}\
.review-room{background:#fff;border:1px solid #ccd;border-radius:8px;padding:.8em;margin:.6em 0}.review-room form{display:block}\
.review-room table{width:100%}td.actions{white-space:nowrap}time .clock{font-variant-numeric:tabular-nums}.remaining[data-low]{color:#b00;font-weight:bold}\
@media (max-width:700px){.cards{grid-template-columns:1fr}main{padding:0 .5em 2em}input{width:100%;margin:.2em 0}}";

/// The sign-in form, sign-out button or how to get a token, by the visitor's state.
fn sign_in_section(h: &mut String, s: &AdminState, signed_in: bool) {
    if signed_in {
        h.push_str("<div id=\"signed-in\">Signed in. <form method=\"post\" action=\"/logout\"><button type=\"submit\" class=\"secondary\">Sign out</button></form></div>");
    } else if s.access.token.is_some() {
        h.push_str("<form id=\"login\" method=\"post\" action=\"/login\"><label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
<button type=\"submit\">Sign in</button></form>");
    } else {
        h.push_str("<p id=\"no-token\">No admin token is configured, so nobody can sign in here and the API refuses changes and patient data. \
Put a random token in a file (<code>openssl rand -hex 32</code>, mode 0640) and set <code>[daemon] admin_token_file</code> to it.</p>");
    }
}

/// What waits in each room: `(to review, held)`.
fn waiting_by_room(
    review: &[crate::queue::ReviewEntry],
    held: &[crate::queue::HeldEntry],
) -> BTreeMap<String, (usize, usize, OffsetDateTime, OffsetDateTime)> {
    let mut m: BTreeMap<String, (usize, usize, OffsetDateTime, OffsetDateTime)> = BTreeMap::new();
    let far = OffsetDateTime::now_utc() + time::Duration::days(36_500);
    for e in review {
        let w = m
            .entry(e.room.clone().unwrap_or_default())
            .or_insert((0, 0, far, far));
        w.0 += 1;
        w.2 = w.2.min(e.waiting_since);
    }
    for e in held {
        let w = m
            .entry(e.room.clone().unwrap_or_default())
            .or_insert((0, 0, far, far));
        w.1 += 1;
        w.3 = w.3.min(e.held_at);
    }
    m
}

/// The page's HTML, from the current state; `signed_in` shows the forms and the readings.
/// Reads the store: call it off the runtime (`queue.read`), as the page handler does.
pub fn render(
    s: &AdminState,
    now: OffsetDateTime,
    signed_in: bool,
) -> Result<String, crate::queue::QueueError> {
    let clock = Clock {
        now,
        zone: crate::model::zone::local_zone(),
    };
    let stats = s.queue.stats()?;
    let held_count = s.queue.held().count()?;
    let held = s.queue.held().list(200)?;
    let review_list = s.queue.review().list(500)?;
    let waiting = waiting_by_room(&review_list, &held);
    // Names and birth dates from a patient lookup only for a signed-in user.
    let views = if signed_in {
        s.contexts.views_with_names(now)
    } else {
        s.contexts.views(now)
    };
    let rooms: Vec<RoomInfo> = views
        .iter()
        .map(|v| RoomInfo::from_json(&serde_json::to_value(v).unwrap_or_default()))
        .collect();
    let devices: Vec<crate::status::DeviceSnapshot> =
        s.devices.iter().map(|d| d.snapshot()).collect();
    // Every room with a device gets a card, with or without a context.
    let mut rooms = rooms;
    for d in &devices {
        if !rooms.iter().any(|r| r.room == d.room) {
            rooms.push(RoomInfo {
                room: d.room.clone(),
                ..RoomInfo::default()
            });
        }
    }
    rooms.sort_by(|a, b| a.room.cmp(&b.room));
    let sink_health: Vec<_> = stats
        .sinks
        .iter()
        .map(|st| {
            let health = s
                .ops
                .sinks
                .get(&st.sink)
                .map(|x| x.snapshot())
                .unwrap_or_default();
            (st, health)
        })
        .collect();

    let mut items = Vec::new();
    for (room, (review, held, oldest_review, oldest_held)) in &waiting {
        if *held > 0 {
            items.push(attention::Item::Held {
                room: room.clone(),
                count: *held,
                oldest: *oldest_held,
            });
        }
        if *review > 0 {
            items.push(attention::Item::Review {
                room: room.clone(),
                count: *review,
                oldest: *oldest_review,
            });
        }
    }
    for r in &rooms {
        if r.refusal_at.is_some() || r.verified.as_deref() == Some("none") {
            items.push(attention::Item::Refused {
                room: r.room.clone(),
                at: r.refusal_at,
            });
        }
    }
    for (st, health) in &sink_health {
        if health.failing_since.is_some() || st.dead > 0 {
            items.push(attention::Item::Sink {
                sink: st.sink.as_str().to_string(),
                failing_since: health.failing_since,
                dead: st.dead,
            });
        }
    }
    for d in devices.iter().filter(|d| !d.connected) {
        items.push(attention::Item::Device {
            device: d.id.as_str().to_string(),
            room: d.room.clone(),
            last_frame: d.last_frame_at,
        });
    }
    if stats.quarantined > 0 {
        items.push(attention::Item::Quarantined {
            count: stats.quarantined,
        });
    }

    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>vitalsd</title><style>{STYLE}</style><script src=\"/static/page.js\" defer></script></head>\
<body><main id=\"live\" data-now=\"{}\" data-refresh=\"5\"><header id=\"top\"><h1>vitalsd</h1><p id=\"clock\">Local time <b>{}</b> · <span id=\"zone\">{}</span></p>",
        now.unix_timestamp() * 1000,
        {
            let l = clock.local(now);
            format!("{:02}:{:02}", l.hour(), l.minute())
        },
        esc(&clock.zone_label()),
    );
    sign_in_section(&mut h, s, signed_in);
    h.push_str("</header>");
    attention::render(&mut h, items, &clock);
    if !review_list.is_empty() {
        review::section(&mut h, &review_list, &clock, signed_in);
    }
    let per_room = |room: &str| {
        waiting
            .get(room)
            .map_or((0, 0), |(review, held, _, _)| (*review, *held))
    };
    rooms::cards(&mut h, &rooms, &devices, &per_room, &clock, signed_in);
    let _ = write!(
        h,
        "<section id=\"held-section\"><h2>Held readings — no patient (<span id=\"held-count\">{held_count}</span>)</h2>"
    );
    if held.is_empty() {
        h.push_str("<p class=\"muted\">None: every reading has its patient.</p>");
    } else if signed_in {
        held_table(&mut h, s, &held, &clock);
    } else {
        h.push_str("<p>Sign in to list and assign them (or <code>vitalsd queue held</code>).</p>");
    }
    h.push_str("</section>");
    quarantine_section(&mut h, s, stats.quarantined, signed_in, &clock)?;
    h.push_str("<section id=\"devices-section\"><h2>Devices</h2><div class=\"scroll\"><table id=\"devices\"><tr><th>Device</th><th>Driver</th><th>Room</th><th>Connected</th><th>Last frame</th><th>Readings</th><th>Bad frames</th><th>Rejected</th><th>Clock drift (s)</th><th>Port</th></tr>");
    for snap in &devices {
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
            clock.tag_opt(snap.last_frame_at),
            snap.readings,
            snap.frames_bad,
            snap.rejected,
            esc(snap.port.as_deref().unwrap_or("—")),
            id = esc(snap.id.as_str()),
        );
    }
    h.push_str("</table></div></section><section id=\"sinks-section\"><h2>Sinks</h2><div class=\"scroll\"><table id=\"sinks\"><tr><th>Sink</th><th>Pending</th><th>Dead</th><th>Last success</th><th>Last error</th></tr>");
    for (st, health) in &sink_health {
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
        "</table></div><p class=\"muted\">Sink times are UTC (RFC 3339).</p><p>Queue depth (all sinks, last samples): {}</p></section>",
        sparkline(&s.ops.depth_samples(), 300, 40)
    );
    h.push_str("</main></body></html>");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_and_room_paths_render_plainly() {
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
