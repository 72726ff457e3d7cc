//! The rooms as cards: who is in the room, how long the context stays valid, and the buttons
//! the MA needs there ("Still this patient", "End visit").
//!
//! Receives the rooms' context views (as their JSON, so fields a patient lookup adds are read
//! when present: `patient.name`, `patient.birth_date`, `patient.verified`,
//! `context.expires_in_s`, `last_refusal {at, reason}`). Promises: a name and birth date only
//! for a signed-in user, the masked tag otherwise; a room without those fields renders the
//! tag; every form posts to this page's own routes and needs a signed-in session.

use std::fmt::Write as _;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::when::{remaining, Clock};
use super::{esc, path_segment};
use crate::status::DeviceSnapshot;

/// What the page shows of one room's context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomInfo {
    pub room: String,
    /// The masked tag of the current patient.
    pub tag: Option<String>,
    pub name: Option<String>,
    pub birth_date: Option<String>,
    /// `record`, `identifier_only` or `none`, when a lookup said so.
    pub verified: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub remaining_seconds: Option<u64>,
    pub user: Option<u64>,
    pub refusal_at: Option<OffsetDateTime>,
    pub refusal_reason: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

fn instant(v: &Value) -> Option<OffsetDateTime> {
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

impl RoomInfo {
    /// Reads a room view's JSON (`/api/status` `rooms[]`), tolerating absent fields.
    pub fn from_json(v: &Value) -> RoomInfo {
        let p = &v["patient"];
        let tag = text(p)
            .or_else(|| text(&p["tag"]))
            .or_else(|| text(&p["masked"]));
        RoomInfo {
            room: text(&v["room"]).unwrap_or_default(),
            tag,
            name: text(&p["name"]).or_else(|| text(&v["name"])),
            birth_date: text(&p["birth_date"]).or_else(|| text(&v["birth_date"])),
            verified: text(&p["verified"]).or_else(|| text(&v["verified"])),
            since: instant(&v["since"]),
            expires_at: instant(&v["expires_at"]),
            remaining_seconds: v["context"]["expires_in_s"]
                .as_u64()
                .or_else(|| v["remaining_seconds"].as_u64()),
            user: v["user"].as_u64(),
            refusal_at: instant(&v["last_refusal"]["at"]),
            refusal_reason: text(&v["last_refusal"]["reason"]),
        }
    }

    /// Whether the room has a patient now.
    pub fn occupied(&self) -> bool {
        self.tag.is_some() || self.name.is_some()
    }
}

/// The patient line of a card: name and birth date for a signed-in user when known, else
/// the masked tag.
fn patient_line(r: &RoomInfo, signed_in: bool) -> String {
    let tag = r
        .tag
        .as_deref()
        .map(|t| {
            format!(
                "<span class=\"tag\" title=\"masked patient tag\">#{}</span>",
                esc(t)
            )
        })
        .unwrap_or_default();
    let verified = match r.verified.as_deref() {
        Some("record") => " <span class=\"ok\">✓ in the record</span>",
        Some("identifier_only") => " <span class=\"warn\">identifier only</span>",
        _ => "",
    };
    match (&r.name, signed_in) {
        (Some(name), true) => {
            let born = r
                .birth_date
                .as_deref()
                .map(|b| format!(" <span class=\"born\">born {}</span>", esc(b)))
                .unwrap_or_default();
            format!(
                "<p class=\"patient\"><b class=\"name\">{}</b>{born}{verified} {tag}</p>",
                esc(name)
            )
        }
        _ if r.occupied() => format!("<p class=\"patient\">{tag}{verified}</p>"),
        _ => "<p class=\"patient empty\">No patient — scan the wristband</p>".to_string(),
    }
}

/// One card per room, with the room's devices, and what waits there (`waiting`: readings
/// to review, held readings).
pub fn cards(
    h: &mut String,
    rooms: &[RoomInfo],
    devices: &[DeviceSnapshot],
    waiting: &dyn Fn(&str) -> (usize, usize),
    clock: &Clock,
    signed_in: bool,
) {
    h.push_str("<section id=\"rooms\"><h2>Rooms</h2><div class=\"cards\" id=\"cardlist\">");
    for r in rooms {
        let room = esc(&r.room);
        let seg = esc(&path_segment(&r.room));
        let _ = write!(
            h,
            "<article class=\"card\" id=\"room-{seg}\" data-room=\"{room}\"><h3>{room}</h3>{}",
            patient_line(r, signed_in)
        );
        if r.occupied() {
            let since = clock.tag_opt(r.since);
            let left = remaining(r.remaining_seconds);
            let low = r.remaining_seconds.is_some_and(|s| s < 180);
            let _ = write!(
                h,
                "<p class=\"context\">Scanned {since} · <span class=\"remaining\"{}>{left}</span> left (until {})</p>",
                if low { " data-low" } else { "" },
                clock.tag_opt(r.expires_at),
            );
            if let Some(u) = r.user {
                let _ = write!(h, "<p>Device user {u}</p>");
            }
            if signed_in {
                let _ = write!(
                    h,
                    "<form method=\"post\" action=\"/rooms/{seg}/confirm\" class=\"row\"><input name=\"by\" placeholder=\"your name\" aria-label=\"your name\" required autocomplete=\"name\"> \
<button type=\"submit\">Still this patient</button> <button type=\"submit\" class=\"secondary\" formaction=\"/rooms/{seg}/end\">End visit</button></form>"
                );
            } else {
                h.push_str("<p class=\"hint\">Sign in to confirm or end the visit.</p>");
            }
        }
        if let Some(at) = r.refusal_at {
            let why = match (&r.refusal_reason, signed_in) {
                (Some(w), true) => format!(": {}", esc(w)),
                _ => String::new(),
            };
            let _ = write!(
                h,
                "<p class=\"refusal bad\">Last scan refused {}{why}</p>",
                clock.tag(at)
            );
        }
        let (review, held) = waiting(&r.room);
        if review > 0 {
            let _ = write!(
                h,
                "<p class=\"waiting\"><a href=\"#review-room-{seg}\">{review} reading{} to review</a></p>",
                if review == 1 { "" } else { "s" }
            );
        }
        if held > 0 {
            let _ = write!(
                h,
                "<p class=\"waiting bad\"><a href=\"#held-section\">{held} reading{} without a patient</a></p>",
                if held == 1 { "" } else { "s" }
            );
        }
        let mine: Vec<String> = devices
            .iter()
            .filter(|d| d.room == r.room)
            .map(|d| {
                let cls = if d.connected { "ok" } else { "bad" };
                format!(
                    "<li class=\"{cls}\">{} <span class=\"muted\">{}</span></li>",
                    esc(d.id.as_str()),
                    clock.tag_opt(d.last_frame_at)
                )
            })
            .collect();
        if !mine.is_empty() {
            let _ = write!(h, "<ul class=\"devices\">{}</ul>", mine.join(""));
        }
        h.push_str("</article>");
    }
    h.push_str("</div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::{datetime, offset};

    fn clock() -> Clock {
        Clock {
            now: datetime!(2026-12-06 15:10 UTC),
            zone: crate::normalize::LocalZone::fixed(offset!(-5)),
        }
    }

    fn render(v: &Value, signed_in: bool) -> String {
        let mut h = String::new();
        let info = [RoomInfo::from_json(v)];
        cards(&mut h, &info, &[], &|_| (2, 1), &clock(), signed_in);
        h
    }

    #[test]
    fn a_room_as_the_context_store_shows_it_renders_its_masked_tag() {
        let v = json!({"room": "exam-1", "patient": "a1b2c3d4e5f6", "since": "2026-12-06T15:05:00Z",
            "expires_at": "2026-12-06T15:25:00Z", "remaining_seconds": 900, "user": null});
        let h = render(&v, true);
        assert!(h.contains("#a1b2c3d4e5f6"), "{h}");
        assert!(h.contains("class=\"remaining\">15m 00s"), "{h}");
        assert!(h.contains("action=\"/rooms/exam-1/confirm\""), "{h}");
        assert!(h.contains("formaction=\"/rooms/exam-1/end\""), "{h}");
        assert!(
            h.contains("2 readings to review") && h.contains("1 reading without"),
            "{h}"
        );
        assert!(h.contains("<span class=\"clock\">10:05</span>"), "{h}");
        let out = render(&v, false);
        assert!(!out.contains("<form"), "{out}");
    }

    #[test]
    fn a_looked_up_patient_shows_name_and_birth_date_only_when_signed_in() {
        let v = json!({"room": "exam-2",
            "patient": {"tag": "0f0f0f0f0f0f", "name": "Jane Roe", "birth_date": "1980-01-01", "verified": "record"},
            "context": {"expires_in_s": 120},
            "last_refusal": {"at": "2026-12-06T15:08:00Z", "reason": "unknown wristband"}});
        let h = render(&v, true);
        assert!(h.contains("<b class=\"name\">Jane Roe</b>"), "{h}");
        assert!(
            h.contains("born 1980-01-01") && h.contains("in the record"),
            "{h}"
        );
        assert!(h.contains("class=\"remaining\" data-low>2m 00s"), "{h}");
        assert!(
            h.contains("Last scan refused") && h.contains("unknown wristband"),
            "{h}"
        );
        let out = render(&v, false);
        assert!(!out.contains("Jane") && !out.contains("1980"), "{out}");
        assert!(!out.contains("unknown wristband"), "{out}");
        assert!(out.contains("#0f0f0f0f0f0f"), "{out}");
        let empty = render(&json!({"room": "exam-3", "patient": null}), true);
        assert!(empty.contains("No patient"), "{empty}");
    }
}
