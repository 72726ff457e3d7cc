//! The admin side's defences through the real binary (docs/security.md): only the admin's own
//! `Host` names, a token (or a signed-in page) for every change and every patient-data read,
//! none of those without a configured token, the page's sign-in with a cookie, security
//! headers, idle and slow connections cut, rooms limited to the configured ones, the masking
//! key and check-config's refusals.

#[path = "../support/mod.rs"]
mod support;

mod access;
mod hardening;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{call, request, Admin, Daemon, DaemonBuilder, Device, AUTH, TOKEN};

/// A config with an MLLP monitor in `exam-1` (no serial port needed) and a file sink;
/// `extra` goes into `[daemon]`.
fn config(tmp: &Path, extra: &str, token: bool) -> PathBuf {
    DaemonBuilder::new(tmp)
        .admin(if token { Admin::Token } else { Admin::Open })
        .daemon(extra)
        .device(Device::mllp("mon", "hl7v2", "exam-1", "127.0.0.1:0"))
        .outbox("reading")
        .write()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const SET: &str = r#"{"id":"MRN0012345","system":"urn:oid:1.2.3","by":"ma-jo"}"#;
const HELD_ID: &str = "01938f4e-7b2a-7c4d-9a51-3f0c2b1d9e77";

/// Every route with a body that gets past validation where one is needed.
fn routes() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("GET", "/".into(), ""),
        ("GET", "/healthz".into(), ""),
        ("GET", "/readyz".into(), ""),
        ("GET", "/metrics".into(), ""),
        ("GET", "/api/status".into(), ""),
        ("GET", "/api/audit".into(), ""),
        ("GET", "/api/held".into(), ""),
        ("GET", "/api/dead".into(), ""),
        ("GET", "/api/quarantine".into(), ""),
        ("PUT", "/api/rooms/exam-1/patient".into(), SET),
        (
            "POST",
            "/api/rooms/exam-1/patient/confirm".into(),
            r#"{"by":"ma-jo"}"#,
        ),
        (
            "DELETE",
            "/api/rooms/exam-1/patient".into(),
            r#"{"by":"ma-jo"}"#,
        ),
        (
            "POST",
            format!("/api/held/{HELD_ID}/discard"),
            r#"{"reason":"r","by":"b"}"#,
        ),
        ("POST", "/login".into(), "token=x"),
        ("POST", "/logout".into(), ""),
        ("POST", "/rooms/exam-1/confirm".into(), "by=Ann"),
    ]
}
