//! The status page `/` through the real binary, rendered by headless Chromium (`--dump-dom`):
//! rooms with the masked patient, devices, sinks, the queue-depth sparkline, held readings with
//! their assign/discard forms; then real clicks on those forms (Chromium driven over the
//! DevTools protocol) assign and discard held readings and the page comes back updated.
//! The exam-room test: a held reading first in "Needs attention", review items confirmed by a
//! click and filed once, the page refreshing itself while typed text stays, local time in the
//! daemon's zone (`TZ=America/New_York`) and relative times. With `VITALSD_SCREENSHOTS=DIR`
//! it writes `normal.png`, `attention.png` and `review.png` at a tablet width into DIR.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod exam_room;
mod forms;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Admin, DaemonBuilder, AUTH, TOKEN};

/// A plain HTTP/1.1 request with extra headers; returns the status, the head and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let a = support::call(addr, method, path, headers, body);
    (a.status, a.head, a.body)
}

fn held_ids(addr: &str) -> Vec<String> {
    let (_, _, body) = http(addr, "GET", "/api/held", &[AUTH], "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (10 s at most) until `/api/status` shows a last success of sink `sink`.
#[track_caller]
fn wait_last_success(addr: &str, sink: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = http(addr, "GET", "/api/status", &[], "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let done = v["sinks"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["sink"] == sink))
            .is_some_and(|s| s["last_success"].is_string());
        if done {
            return;
        }
        assert!(
            Instant::now() < until,
            "no last success of {sink} within 10 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The UTC offset of `zone` now, and as the page writes it (`UTC-05:00`), from the time zone
/// database: New York's changes with daylight saving time.
fn offset_now(zone: &str) -> (time::UtcOffset, String) {
    let tz = jiff::tz::TimeZone::get(zone).expect("a known zone");
    let secs = tz.to_offset(jiff::Timestamp::now()).seconds();
    let offset = time::UtcOffset::from_whole_seconds(secs).expect("an offset");
    let (h, m, _) = offset.as_hms();
    let sign = if secs < 0 { '-' } else { '+' };
    (offset, format!("UTC{sign}{:02}:{:02}", h.abs(), m.abs()))
}

/// Every frame of an oximeter is a reading.
const EVERY: &str = r#"report = "every""#;
