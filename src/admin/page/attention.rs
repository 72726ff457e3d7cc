//! "Needs attention": the top of the status page, what an MA or IT should act on first.
//!
//! Receives counts and states the page already gathered. Promises, in this order: readings
//! without a patient (to assign), readings to review before filing, refused scans and patients
//! not found in the record, failing sinks, devices not connected, quarantined readings. Each
//! item names a room, device or sink and a time, never a value or a patient; each links to
//! the part of the page where it is handled. Nothing to do: one calm line.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::esc;
use super::when::Clock;

/// One thing that needs someone.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Readings of a room held without a patient (oldest first time).
    Held {
        room: String,
        count: usize,
        oldest: OffsetDateTime,
    },
    /// Readings of a room waiting for review.
    Review {
        room: String,
        count: usize,
        oldest: OffsetDateTime,
    },
    /// A room's last scan was refused, or its patient is not in the record.
    Refused {
        room: String,
        at: Option<OffsetDateTime>,
    },
    /// A sink failing since, or with dead-letters.
    Sink {
        sink: String,
        failing_since: Option<OffsetDateTime>,
        dead: u64,
    },
    /// A device not connected (last frame, if any).
    Device {
        device: String,
        room: String,
        last_frame: Option<OffsetDateTime>,
    },
    Quarantined {
        count: u64,
    },
}

impl Item {
    fn rank(&self) -> u8 {
        match self {
            Item::Held { .. } => 0,
            Item::Review { .. } => 1,
            Item::Refused { .. } => 2,
            Item::Sink { .. } => 3,
            Item::Device { .. } => 4,
            Item::Quarantined { .. } => 5,
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Renders the list, most urgent first (stable within a kind).
pub fn render(h: &mut String, mut items: Vec<Item>, clock: &Clock) {
    items.sort_by_key(Item::rank);
    h.push_str("<section id=\"attention\"><h2>Needs attention</h2>");
    if items.is_empty() {
        h.push_str("<p id=\"all-clear\" class=\"ok\">Nothing needs attention.</p></section>");
        return;
    }
    h.push_str("<ul class=\"attention\">");
    for it in &items {
        let (kind, text) = match it {
            Item::Held {
                room,
                count,
                oldest,
            } => (
                "held",
                format!(
                    "<a href=\"#held-section\"><b>{}</b>: {} without a patient — assign or discard</a> <span class=\"muted\">oldest {}</span>",
                    esc(room),
                    plural(*count, "reading", "readings"),
                    clock.tag(*oldest)
                ),
            ),
            Item::Review {
                room,
                count,
                oldest,
            } => (
                "review",
                format!(
                    "<a href=\"#review-room-{}\"><b>{}</b>: {} to review before filing</a> <span class=\"muted\">oldest {}</span>",
                    esc(&super::path_segment(room)),
                    esc(room),
                    plural(*count, "reading", "readings"),
                    clock.tag(*oldest)
                ),
            ),
            Item::Refused { room, at } => (
                "refused",
                format!(
                    "<a href=\"#room-{}\"><b>{}</b>: scan refused or patient not found — check the wristband</a> {}",
                    esc(&super::path_segment(room)),
                    esc(room),
                    at.map(|t| clock.tag(t)).unwrap_or_default()
                ),
            ),
            Item::Sink {
                sink,
                failing_since,
                dead,
            } => {
                let mut t = format!("<a href=\"#sinks-section\">Sink <b>{}</b>", esc(sink));
                if let Some(since) = failing_since {
                    let _ = write!(t, " failing since {}", clock.tag(*since));
                }
                if *dead > 0 {
                    let _ = write!(t, " · {dead} in the dead-letter");
                }
                t.push_str("</a>");
                ("sink", t)
            }
            Item::Device {
                device,
                room,
                last_frame,
            } => (
                "device",
                format!(
                    "<a href=\"#devices-section\">Device <b>{}</b> ({}) not connected</a> <span class=\"muted\">last heard {}</span>",
                    esc(device),
                    esc(room),
                    last_frame.map_or_else(|| "never".to_string(), |t| clock.tag(t))
                ),
            ),
            Item::Quarantined { count } => (
                "quarantine",
                format!(
                    "<a href=\"#quarantine-section\">{} failed a plausibility limit (quarantined)</a>",
                    plural(usize::try_from(*count).unwrap_or(usize::MAX), "reading", "readings")
                ),
            ),
        };
        let _ = write!(
            h,
            "<li class=\"attn {kind}\" data-attn=\"{kind}\">{text}</li>"
        );
    }
    h.push_str("</ul></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn held_readings_come_first_then_review_then_the_rest() {
        let clock = Clock {
            now: datetime!(2026-12-06 15:10 UTC),
            zone: crate::normalize::LocalZone::utc(),
        };
        let at = datetime!(2026-12-06 15:00 UTC);
        let items = vec![
            Item::Device {
                device: "ox".into(),
                room: "exam-1".into(),
                last_frame: None,
            },
            Item::Review {
                room: "exam-1".into(),
                count: 2,
                oldest: at,
            },
            Item::Held {
                room: "exam-4".into(),
                count: 1,
                oldest: at,
            },
        ];
        let mut h = String::new();
        render(&mut h, items, &clock);
        let held = h.find("data-attn=\"held\"").unwrap();
        let review = h.find("data-attn=\"review\"").unwrap();
        let device = h.find("data-attn=\"device\"").unwrap();
        assert!(held < review && review < device, "{h}");
        assert!(h.contains("1 reading without a patient"), "{h}");
        assert!(h.contains("10 min ago"), "{h}");
        let mut calm = String::new();
        render(&mut calm, Vec::new(), &clock);
        assert!(calm.contains("Nothing needs attention"));
    }
}
