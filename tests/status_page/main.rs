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

use support::{Admin, Daemon, DaemonBuilder, Device, Pty, AUTH, TOKEN};

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

/// The daemon with `TZ` set (the zone the status page shows times in).
fn start_in_zone(cfg: &Path, log: &Path, tz: &str) -> Daemon {
    Daemon::start_with_env(cfg, log, &[("TZ", tz)])
}

/// Every frame of an oximeter is a reading.
const EVERY: &str = r#"report = "every""#;
