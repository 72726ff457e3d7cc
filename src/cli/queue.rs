//! `vitalsd queue stats|dead|retry|purge-dead|quarantine|release|discard`.
//!
//! Receives the config path and the command's arguments. Promises the same output whether the
//! daemon runs or not: while it runs its store is locked (sled allows one process), so the
//! command goes through the admin API (`daemon.admin_listen`, with the bearer token from
//! `daemon.admin_token_file`); when no daemon answers there, it opens the store itself. A
//! request the daemon refuses (401, 404, 409) is reported as an error, never retried on the
//! store.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::{call_daemon, load, with_queue};
use crate::admin::client::ClientError;
use crate::config;
use crate::reading::{ReadingId, SinkId};

fn entries(n: u64) -> &'static str {
    if n == 1 {
        "y"
    } else {
        "ies"
    }
}

/// One JSON line with its keys in the same (sorted) order as the admin API's answers, so a
/// line reads the same whether it came from the daemon or from the store.
pub(super) fn json_line(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&serde_json::to_value(v)?)?)
}

fn count(v: &Value, key: &str) -> anyhow::Result<u64> {
    v[key]
        .as_u64()
        .with_context(|| format!("the daemon's answer has no `{key}` count"))
}

/// The status code of a refusal from the daemon, if that is what `e` is.
fn refused(e: &anyhow::Error) -> Option<u16> {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Status { status, .. }) => Some(*status),
        _ => None,
    }
}

pub fn queue_stats(config_path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load(config_path)?;
    if let Some(v) = call_daemon(&cfg, "/api/queue/stats", None)? {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    with_queue(config_path, |q| async move {
        let stats = q.stats()?;
        let mut json = serde_json::to_value(&stats)?;
        if let Some(obj) = json.as_object_mut() {
            // Undecodable MQTT payloads that were acknowledged (kept in the rejected log).
            obj.insert("rejected_payloads".into(), q.rejected().count()?.into());
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
        Ok(ExitCode::SUCCESS)
    })
}

pub fn queue_dead(
    config_path: &Path,
    sink: Option<&str>,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let cfg = load(config_path)?;
    let mut path = format!("/api/dead?limit={limit}");
    if let Some(s) = sink {
        path.push_str(&format!("&sink={}", url_part(s)));
    }
    if let Some(v) = call_daemon(&cfg, &path, None)? {
        for e in v.as_array().into_iter().flatten() {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let sink = sink.map(SinkId::new);
    with_queue(config_path, |q| async move {
        for e in q.dead(sink.as_ref(), limit)? {
            println!("{}", json_line(&e)?);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A path segment or query value: sink ids are plain (letters, digits, `.`, `_`, `-`), but a
/// mistyped one must not change the request's path.
fn url_part(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn queue_retry(config_path: &Path, sink: &str, id: Option<&str>) -> anyhow::Result<ExitCode> {
    let id = id
        .map(str::parse::<ReadingId>)
        .transpose()
        .context("not a reading id")?;
    let cfg = load(config_path)?;
    let path = match id {
        Some(id) => format!("/api/dead/{}/{id}/retry", url_part(sink)),
        None => format!("/api/dead/{}/retry-all", url_part(sink)),
    };
    let print = |n: u64| println!("{n} entr{} moved back to pending", entries(n));
    match call_daemon(&cfg, &path, Some(&json!({}))) {
        Ok(Some(v)) => {
            print(count(&v, "moved")?);
            return Ok(ExitCode::SUCCESS);
        }
        // One id that is not in the sink's dead-letter: nothing moved, as on the store.
        Err(e) if id.is_some() && refused(&e) == Some(404) => {
            print(0);
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
        Ok(None) => {}
    }
    let sink = SinkId::new(sink);
    with_queue(config_path, |q| async move {
        let n = q.retry_dead(&sink, id).await?;
        print(n as u64);
        Ok(ExitCode::SUCCESS)
    })
}

pub fn queue_purge_dead(
    config_path: &Path,
    sink: Option<&str>,
    id: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let id = id
        .map(str::parse::<ReadingId>)
        .transpose()
        .context("not a reading id")?;
    let cfg = load(config_path)?;
    let path = match (sink, id) {
        (None, None) => "/api/dead/purge".to_string(),
        (None, Some(id)) => format!("/api/dead/purge?id={id}"),
        (Some(s), None) => format!("/api/dead/{}/purge", url_part(s)),
        (Some(s), Some(id)) => format!("/api/dead/{}/{id}/purge", url_part(s)),
    };
    let print = |n: u64| println!("{n} dead-letter entr{} purged", entries(n));
    if let Some(v) = call_daemon(&cfg, &path, Some(&json!({})))? {
        print(count(&v, "purged")?);
        return Ok(ExitCode::SUCCESS);
    }
    let sink = sink.map(SinkId::new);
    with_queue(config_path, |q| async move {
        let n = q.purge_dead(sink.as_ref(), id).await?;
        print(n as u64);
        Ok(ExitCode::SUCCESS)
    })
}

/// `vitalsd queue quarantine`: the readings that failed a hard limit, one JSON line each (id,
/// device, room, kind, the limit, when; the patient masked).
pub fn queue_quarantine(config_path: &Path, limit: usize) -> anyhow::Result<ExitCode> {
    let cfg = load(config_path)?;
    let path = format!("/api/quarantine/summary?limit={limit}");
    if let Some(v) = call_daemon(&cfg, &path, None)? {
        for e in v.as_array().into_iter().flatten() {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    with_queue(config_path, |q| async move {
        for e in q.quarantine().list(limit)? {
            println!("{}", json_line(&e.summary())?);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `by` and `reason` of a release or discard: both required, trimmed.
fn decision(by: &str, reason: &str) -> anyhow::Result<(String, String)> {
    let (by, reason) = (by.trim(), reason.trim());
    if by.is_empty() || by.len() > 128 {
        bail!("--by (who decides, up to 128 bytes) is required");
    }
    if reason.is_empty() || reason.len() > 1000 {
        bail!("--reason (why, up to 1000 bytes) is required");
    }
    Ok((by.to_string(), reason.to_string()))
}

/// A quarantine release decided on the command line.
pub struct ReleaseArgs<'a> {
    pub id: &'a str,
    pub by: &'a str,
    pub reason: &'a str,
    pub patient_id: Option<&'a str>,
    pub patient_system: Option<&'a str>,
}

/// The daemon's refusal of a release or discard, worded as on the store.
fn quarantine_refusal(e: anyhow::Error, id: ReadingId) -> anyhow::Error {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Status { status: 404, .. }) => {
            anyhow::anyhow!("no quarantined reading with id {id}")
        }
        Some(ClientError::Status { message, .. }) => anyhow::anyhow!("{message}"),
        _ => e,
    }
}

/// `vitalsd queue release ID --by NAME --reason TEXT [--patient-id ID --patient-system SYS]`:
/// sends one quarantined reading to every configured sink, audited.
pub fn queue_release(config_path: &Path, a: &ReleaseArgs) -> anyhow::Result<ExitCode> {
    use crate::queue::{Release, ReleaseRequest};
    let id: ReadingId = a.id.parse().context("not a reading id")?;
    let (by, reason) = decision(a.by, a.reason)?;
    let patient = match (a.patient_id, a.patient_system) {
        (Some(id), Some(system)) => {
            let p = crate::reading::PatientRef {
                id: id.trim().to_string(),
                system: system.trim().to_string(),
            };
            crate::context::check_patient(&p).map_err(|e| anyhow::anyhow!("{e}"))?;
            Some(p)
        }
        (None, None) => None,
        _ => bail!("--patient-id and --patient-system go together"),
    };
    let released = || {
        println!(
            "released {id} to every configured sink (still flagged rejected: sent as preliminary)"
        )
    };
    let cfg = load(config_path)?;
    let body = json!({ "by": by, "reason": reason, "patient": patient });
    match call_daemon(&cfg, &format!("/api/quarantine/{id}/release"), Some(&body)) {
        Ok(Some(_)) => {
            released();
            return Ok(ExitCode::SUCCESS);
        }
        Ok(None) => {}
        Err(e) => return Err(quarantine_refusal(e, id)),
    }
    let req = ReleaseRequest {
        by,
        reason,
        patient,
        require_patient: cfg.patient.mode == config::PatientMode::Hold,
    };
    with_queue(config_path, |q| async move {
        match q.quarantine().release(id, req).await? {
            Release::Released(_) => {
                released();
                Ok(ExitCode::SUCCESS)
            }
            Release::NotFound => bail!("no quarantined reading with id {id}"),
            Release::NeedsPatient => bail!(
                "the reading has no patient and [patient] mode = \"hold\": give --patient-id and --patient-system"
            ),
            Release::HasPatient => {
                bail!("the reading already has another patient; it is never re-attributed")
            }
            Release::NoSinks => bail!("no sink is configured: nothing could deliver it"),
        }
    })
}

/// `vitalsd queue discard ID --by NAME --reason TEXT`: removes a quarantined reading, audited.
pub fn queue_discard(
    config_path: &Path,
    id: &str,
    by: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let id: ReadingId = id.parse().context("not a reading id")?;
    let (by, reason) = decision(by, reason)?;
    let cfg = load(config_path)?;
    let body = json!({ "by": by, "reason": reason });
    match call_daemon(&cfg, &format!("/api/quarantine/{id}/discard"), Some(&body)) {
        Ok(Some(_)) => {
            println!("discarded {id}");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(None) => {}
        Err(e) => return Err(quarantine_refusal(e, id)),
    }
    with_queue(config_path, |q| async move {
        if !q.quarantine().discard(id, by, reason).await? {
            bail!("no quarantined reading with id {id}");
        }
        println!("discarded {id}");
        Ok(ExitCode::SUCCESS)
    })
}
