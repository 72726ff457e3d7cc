//! The page's tables of set-aside readings: held readings with their assign and discard
//! forms, and quarantined readings (which limit, never the value or the patient).

use std::fmt::Write as _;

use super::super::AdminState;
use super::esc;
use super::when::Clock;

pub(super) fn held_table(
    h: &mut String,
    s: &AdminState,
    held: &[crate::queue::HeldEntry],
    clock: &Clock,
) {
    h.push_str("<div class=\"scroll\"><table id=\"held\"><tr><th>Held since</th><th>Room</th><th>Device</th><th>Kind</th><th>State</th><th>Assign</th><th>Discard</th></tr>");
    for e in held {
        let id = e.id.to_string();
        let state = if e.in_review(s.hold_for, clock.now) {
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
<input name=\"by\" placeholder=\"your name\" required> <button type=\"submit\" class=\"secondary\">Discard</button></form></td></tr>",
            clock.tag(e.held_at),
            esc(e.room.as_deref().unwrap_or("—")),
            esc(e.reading.device.id.as_str()),
            esc(e.reading.kind.as_str()),
        );
    }
    h.push_str("</table></div>");
}

/// The quarantined readings: which limit, never the value or the patient (the page may be
/// unauthenticated); releasing is a named person's act through the CLI or the API.
pub(super) fn quarantine_section(
    h: &mut String,
    s: &AdminState,
    count: u64,
    signed_in: bool,
    clock: &Clock,
) -> Result<(), crate::queue::QueueError> {
    let _ = write!(
        h,
        "<section id=\"quarantine-section\"><h2>Quarantined readings (<span id=\"quarantine-count\">{count}</span>)</h2>"
    );
    if count > 0 {
        h.push_str("<p>Failed a hard plausibility limit: sent nowhere, and no dead-letter retry sends them. Review, then \
<code>vitalsd queue release ID --by NAME --reason TEXT</code> or <code>vitalsd queue discard</code> \
(or <code>POST /api/quarantine/ID/release</code>).</p>");
    }
    if !signed_in {
        if count > 0 {
            h.push_str("<p>Sign in to list them (or <code>vitalsd queue quarantine</code>).</p>");
        }
        h.push_str("</section>");
        return Ok(());
    }
    if count == 0 {
        h.push_str("</section>");
        return Ok(());
    }
    h.push_str("<div class=\"scroll\"><table id=\"quarantine\"><tr><th>Since</th><th>Room</th><th>Device</th><th>Kind</th><th>Limit</th><th>Id</th></tr>");
    for e in s.queue.quarantine().list(200)? {
        let limit = e.reason.split_whitespace().next().unwrap_or("—");
        let _ = write!(
            h,
            "<tr data-quarantined=\"{id}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{id}</td></tr>",
            clock.tag(e.quarantined_at),
            esc(e.reading.room.as_deref().unwrap_or("—")),
            esc(e.reading.device.id.as_str()),
            esc(e.reading.kind.as_str()),
            esc(limit),
            id = e.id,
        );
    }
    h.push_str("</table></div></section>");
    Ok(())
}
