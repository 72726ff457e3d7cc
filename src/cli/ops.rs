//! `vitalsd status`, `vitalsd completions SHELL` and `vitalsd man`.
//!
//! Receives the config path (status) or the clap definition of the command line (completions,
//! man page). Promises: `status` prints a terse summary of the running daemon from its admin
//! API (readiness, queue, held and quarantined readings, each device and sink) and exits 1
//! when the daemon is not ready or does not answer; the completion scripts and the man page
//! are generated from the same definition as `--help`, so they never drift from it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;
use time::OffsetDateTime;

use super::{load, runtime};
use crate::admin::client::{AdminClient, ClientError};

/// `vitalsd status`: what `/api/status`, `/api/queue/stats` and `/readyz` say, one line each.
pub fn status(config_path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load(config_path)?;
    crate::tls::init();
    let Some(client) = AdminClient::from_config(&cfg)? else {
        bail!(
            "the admin API is disabled in {} (daemon.admin_listen): vitalsd status reads it",
            config_path.display()
        );
    };
    let rt = runtime()?;
    let (status, stats, ready) = rt.block_on(async {
        let status = client.get("/api/status").await;
        let stats = client.get("/api/queue/stats").await;
        // Not ready is a 503 whose body still says why.
        let ready = match client.get("/readyz").await {
            Err(ClientError::Status {
                status: 503, body, ..
            }) => serde_json::from_str(&body).map_err(|e| ClientError::Other(e.to_string())),
            other => other,
        };
        (status, stats, ready)
    });
    let unreachable = |e: ClientError| {
        match e {
        ClientError::Unreachable(at) => anyhow::anyhow!(
            "no daemon answers at {at}: is vitalsd running? (systemctl status vitalsd; journalctl -u vitalsd)"
        ),
        other => other.into(),
    }
    };
    let status = status.map_err(unreachable)?;
    let stats = stats.map_err(unreachable)?;
    let ready = ready.map_err(unreachable)?;
    let (text, is_ready) = render_status(&status, &stats, &ready, OffsetDateTime::now_utc());
    print!("{text}");
    Ok(if is_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// "12s ago", "3m ago", "2h ago", "4d ago" for an RFC 3339 time; "never" for null.
fn ago(v: &Value, now: OffsetDateTime) -> String {
    let rfc = time::format_description::well_known::Rfc3339;
    let Some(t) = v.as_str().and_then(|s| OffsetDateTime::parse(s, &rfc).ok()) else {
        return "never".into();
    };
    let secs = (now - t).whole_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn mib(v: &Value) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = num(v) as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}

/// The summary text and whether the daemon is ready (pure: the tests feed it JSON).
pub fn render_status(
    status: &Value,
    stats: &Value,
    ready: &Value,
    now: OffsetDateTime,
) -> (String, bool) {
    let mut out = String::new();
    let is_ready = ready["ready"].as_bool() == Some(true);
    if is_ready {
        out.push_str("ready: yes\n");
    } else {
        let reasons: Vec<&str> = ready["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(out, "ready: NO ({})", reasons.join("; "));
    }
    let q = &status["queue"];
    let _ = writeln!(
        out,
        "queue: {} readings, {} of {} on disk; held {}; quarantined {}",
        num(&q["readings"]),
        mib(&q["disk_bytes"]),
        mib(&q["max_bytes"]),
        num(&status["held"]),
        num(&stats["quarantined"]),
    );
    for d in status["devices"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "device {} ({}, room {}): {}, last frame {}, {} readings, {} bad frames",
            d["id"].as_str().unwrap_or("?"),
            d["driver"].as_str().unwrap_or("?"),
            d["room"].as_str().unwrap_or("?"),
            if d["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "DISCONNECTED"
            },
            ago(&d["last_frame_at"], now),
            num(&d["readings"]),
            num(&d["frames_bad"]),
        );
    }
    for s in status["sinks"].as_array().into_iter().flatten() {
        let mut line = format!(
            "sink {}: pending {}, dead {}, last success {}",
            s["sink"].as_str().unwrap_or("?"),
            num(&s["pending"]),
            num(&s["dead"]),
            ago(&s["last_success"], now),
        );
        if s["failing_since"].is_string() {
            let _ = write!(line, ", FAILING since {}", ago(&s["failing_since"], now));
        }
        if let Some(e) = s["last_error"].as_str() {
            let _ = write!(line, ", last error {}: {e}", ago(&s["last_error_at"], now));
        }
        if s["configured"].as_bool() == Some(false) {
            line.push_str(" (no longer configured)");
        }
        out.push_str(&line);
        out.push('\n');
    }
    (out, is_ready)
}

/// The shells `vitalsd completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `vitalsd completions SHELL`: the completion script for `cmd` on stdout.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> anyhow::Result<ExitCode> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "vitalsd", &mut out);
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// `vitalsd man`: the man page (roff, section 8) for `cmd` and its subcommands on stdout.
pub fn man(cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone()).section("8");
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    // One section per subcommand (and per `queue` action), so `man vitalsd` documents them all.
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_sub(&mut out, "vitalsd", sub)?;
    }
    man.render_version_section(&mut out)?;
    man.render_authors_section(&mut out)?;
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("writing the man page")?;
    Ok(ExitCode::SUCCESS)
}

fn write_sub(out: &mut Vec<u8>, parent: &str, sub: &clap::Command) -> anyhow::Result<()> {
    let name = format!("{parent} {}", sub.get_name());
    writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
    let about = sub
        .get_long_about()
        .or(sub.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    writeln!(out, "{}", roff_text(&about))?;
    for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(l), Some(s)) => format!("\\-{s}, \\-\\-{l}"),
            (Some(l), None) => format!("\\-\\-{l}"),
            (None, Some(s)) => format!("\\-{s}"),
            (None, None) => arg.get_id().as_str().to_uppercase(),
        };
        let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() {
            help.push_str(&format!(" [default: {}]", defaults.join(", ")));
        }
        if let Some(env) = arg.get_env() {
            help.push_str(&format!(" [env: {}]", env.to_string_lossy()));
        }
        writeln!(out, ".TP\n\\fB{flag}\\fR\n{}", roff_text(help.trim()))?;
    }
    for s in sub.get_subcommands().filter(|s| s.get_name() != "help") {
        write_sub(out, &name, s)?;
    }
    Ok(())
}

/// Text safe in a roff body: backslashes and `-` escaped, non-ASCII as `\[uXXXX]`, no line
/// starting with `.` or `'`.
fn roff_text(s: &str) -> String {
    let escaped: String = s
        .chars()
        .map(|c| match c {
            '\\' => "\\\\".to_string(),
            '-' => "\\-".to_string(),
            c if c.is_ascii() => c.to_string(),
            c => format!("\\[u{:04X}]", u32::from(c)),
        })
        .collect();
    escaped
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn status_names_every_device_and_sink_and_says_why_not_ready() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let status = json!({
            "devices": [{"id": "ox", "driver": "nonin-ascii", "room": "exam-1", "connected": false,
                         "last_frame_at": "2026-12-01T11:58:00Z", "readings": 7, "frames_bad": 1}],
            "sinks": [{"sink": "ehr", "pending": 3, "dead": 2, "configured": true,
                       "last_success": null, "last_error": "connection refused",
                       "last_error_at": "2026-12-01T11:59:50Z", "failing_since": "2026-12-01T11:50:00Z"}],
            "queue": {"readings": 5, "disk_bytes": 1048576, "max_bytes": 2097152},
            "held": 4,
        });
        let stats = json!({"quarantined": 1});
        let ready = json!({"ready": false, "reasons": ["sink ehr stuck"]});
        let (text, ok) = render_status(&status, &stats, &ready, now);
        assert!(!ok);
        assert!(text.contains("ready: NO (sink ehr stuck)"), "{text}");
        assert!(
            text.contains("queue: 5 readings, 1.0 MiB of 2.0 MiB on disk; held 4; quarantined 1"),
            "{text}"
        );
        assert!(text.contains("device ox (nonin-ascii, room exam-1): DISCONNECTED, last frame 2m ago, 7 readings, 1 bad frames"), "{text}");
        assert!(text.contains("sink ehr: pending 3, dead 2, last success never, FAILING since 10m ago, last error 10s ago: connection refused"), "{text}");
        let (_, ok) = render_status(&status, &stats, &json!({"ready": true}), now);
        assert!(ok);
    }

    #[test]
    fn roff_text_escapes_dashes_backslashes_leading_dots_and_non_ascii() {
        assert_eq!(
            roff_text("serial → FHIR\n.hidden -x \\n"),
            "serial \\[u2192] FHIR\n\\&.hidden \\-x \\\\n"
        );
    }
}
