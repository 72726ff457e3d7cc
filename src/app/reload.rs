//! SIGHUP reload (`systemctl reload vitalsd`): the new config is applied in place.
//!
//! The new file is read and validated as a whole; a bad one (or a missing one) is refused
//! with its reasons and the running config keeps going. Then everything new is BUILT before
//! anything running is touched — a sink client or the MQTT connection that cannot be set up
//! refuses the whole reload. Then it is applied:
//! - sinks: removed and changed ones stop (each settles its batch in flight; entries of a
//!   removed sink stay queued), the queue's sink list is replaced, added and changed ones start;
//! - `[mqtt]` and MQTT devices: any change restarts the shared connection (`super::mqtt`);
//! - serial and MLLP devices: added ones start, removed ones stop, changed ones restart.
//!
//! Unchanged devices and sinks keep running untouched. `[daemon]` and `[patient]` cannot
//! change under a running daemon (the store, the admin listener, the hold rules): a change is
//! logged at WARN, listed as `needs_restart` in the audit entry, and what starts now still uses
//! the running values. Every reload, applied or refused, is logged at INFO/ERROR and written to
//! the audit log with the ids it added, removed and changed (never option values).

use std::path::Path;

use crate::config::{self, Config};
use crate::context::audit::{AuditEvent, ReloadChanges};
use crate::decode;
use crate::reading::SinkId;

use super::devices::spawn_device;
use super::running::Plan;
use super::sinks::{self, SinkSettings};
use super::{Running, Stages};

/// The `[daemon]` and `[patient]` keys whose change needs a restart (pure).
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (&old.daemon, &new.daemon);
    let (p, q) = (&old.patient, &new.patient);
    let checks = [
        ("daemon.data_dir", a.data_dir != b.data_dir),
        ("daemon.admin_listen", a.admin_listen != b.admin_listen),
        (
            "daemon.admin_token_file",
            a.admin_token_file != b.admin_token_file,
        ),
        ("daemon.admin_hosts", a.admin_hosts != b.admin_hosts),
        (
            "daemon.queue_max_bytes",
            a.queue_max_bytes != b.queue_max_bytes,
        ),
        (
            "daemon.history_max_bytes",
            a.history_max_bytes != b.history_max_bytes,
        ),
        ("daemon.cache_size", a.cache_size != b.cache_size),
        (
            "daemon.clock_skew_tolerance",
            a.clock_skew_tolerance != b.clock_skew_tolerance,
        ),
        (
            "daemon.shutdown_timeout",
            a.shutdown_timeout != b.shutdown_timeout,
        ),
        (
            "daemon.audit_retention",
            a.audit_retention != b.audit_retention,
        ),
        ("daemon.log_format", a.log_format != b.log_format),
        ("patient.mode", p.mode != q.mode),
        ("patient.context_ttl", p.context_ttl != q.context_ttl),
        ("patient.hold_for", p.hold_for != q.hold_for),
        ("patient.review", p.review != q.review),
        ("patient.lookup", p.lookup != q.lookup),
    ];
    checks
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(k, _)| (*k).to_string())
        .collect()
}

/// The config a reload runs: the new file's devices, sinks and `[mqtt]`, with the running
/// `[daemon]` and `[patient]` (they change only with a restart).
pub fn effective(running: &Config, new: Config) -> Config {
    Config {
        daemon: running.daemon.clone(),
        patient: running.patient.clone(),
        ..new
    }
}

fn strings<I: ToString>(ids: &[I]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// Handles one SIGHUP: applies a good config, refuses a bad one; logs and audits either way.
pub async fn on_hangup(path: Option<&Path>, run: &mut Running, stages: &Stages) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP ignored: this run has no config file to reload");
        return;
    };
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    super::service::reloading();
    let event = match reload(path, run, stages).await {
        Ok(changes) => {
            tracing::info!(
                started = changes.devices_added.len(),
                stopped = changes.devices_removed.len(),
                restarted = changes.devices_changed.len(),
                unchanged = run
                    .cfg
                    .devices
                    .len()
                    .saturating_sub(changes.devices_added.len() + changes.devices_changed.len()),
                devices_added = %changes.devices_added.join(","),
                devices_removed = %changes.devices_removed.join(","),
                devices_changed = %changes.devices_changed.join(","),
                sinks_added = %changes.sinks_added.join(","),
                sinks_removed = %changes.sinks_removed.join(","),
                sinks_changed = %changes.sinks_changed.join(","),
                mqtt_restarted = changes.mqtt_restarted,
                needs_restart = %changes.needs_restart.join(","),
                "config reloaded"
            );
            super::service::ready(&format!(
                "running: {} devices, {} sinks after reload",
                run.cfg.devices.len(),
                run.cfg.sinks.len()
            ));
            AuditEvent::Reload {
                applied: true,
                reason: None,
                changes,
            }
        }
        Err(reason) => {
            tracing::error!(config = %path.display(), %reason, "config reload refused; the running config stays");
            super::service::ready("running; the last reload was refused (see the log)");
            let mut short: String = reason.chars().take(1000).collect();
            if short.len() < reason.len() {
                short.push('…');
            }
            AuditEvent::Reload {
                applied: false,
                reason: Some(short),
                changes: ReloadChanges::default(),
            }
        }
    };
    if let Err(e) = stages.queue.audit().append(vec![event]).await {
        tracing::warn!(error = %e, "the reload could not be written to the audit log");
    }
}

/// Validates, builds, then applies; the error is why nothing was applied.
async fn reload(path: &Path, run: &mut Running, stages: &Stages) -> Result<ReloadChanges, String> {
    let new = load(path)?;
    for w in &new.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    let needs = needs_restart(&run.cfg, &new);
    for key in &needs {
        tracing::warn!(
            key = %key,
            "this change needs a restart (systemctl restart vitalsd); the running value stays"
        );
    }
    let new = effective(&run.cfg, new);

    // Build first: nothing running is touched when a sink or the connection cannot be set up.
    let wanted: Vec<(SinkId, SinkSettings)> = new
        .sinks
        .iter()
        .map(|s| (s.id().clone(), SinkSettings::of(s, new.mqtt.as_ref())))
        .collect();
    let sink_plan = run.sinks.plan(&wanted);
    let mut built = Vec::new();
    for (s, (_, settings)) in new.sinks.iter().zip(wanted) {
        if sink_plan.starts(s.id()) {
            let sink = sinks::build_sink(s, new.mqtt.as_ref(), &stages.tokens)
                .map_err(|e| format!("{e:#}"))?;
            built.push((sink, settings));
        }
    }
    let mut mqtt_next = run
        .mqtt
        .prepare(&new, stages)
        .map_err(|e| format!("{e:#}"))?;

    // Apply. Sinks: stop, then the queue's list, then start (new readings get entries for a
    // sink before its loop runs, never after).
    let within = stages.stop_within;
    // Rooms first: a new MQTT connection's retained patient messages may name new rooms.
    stages
        .link
        .contexts
        .set_known_rooms(new.devices.iter().map(|d| d.room.clone()));
    for id in sink_plan.stop.iter().chain(&sink_plan.restart) {
        run.sinks.stop(id, within).await;
    }
    let ids: Vec<SinkId> = new.sinks.iter().map(|s| s.id().clone()).collect();
    if let Err(e) = stages.queue.set_sinks(ids.clone()).await {
        tracing::error!(error = %e, "the queue's sink list was not replaced");
    }
    for (sink, settings) in built {
        run.sinks.start(stages, sink, settings);
    }
    run.sinks.sort(&ids);
    let mqtt_restarted = mqtt_next.is_some();
    // Unchanged wiring: every MQTT device is kept.
    let mqtt_plan = mqtt_next
        .as_mut()
        .map(|n| std::mem::replace(&mut n.plan, Plan::empty()))
        .unwrap_or_else(Plan::empty);
    if let Some(next) = mqtt_next {
        run.mqtt.replace(next, stages, within).await;
    }
    let device_plan = run.devices.apply(&new, &stages.source_cancel, |d, cancel| {
        spawn_device(d, &new, stages, cancel)
    });
    run.devices.set_fixed(run.mqtt.statuses());
    let mut changes = ReloadChanges {
        devices_added: strings(&device_plan.start),
        devices_removed: strings(&device_plan.stop),
        devices_changed: strings(&device_plan.restart),
        sinks_added: strings(&sink_plan.start),
        sinks_removed: strings(&sink_plan.stop),
        sinks_changed: strings(&sink_plan.restart),
        mqtt_restarted,
        needs_restart: needs,
    };
    changes.devices_added.extend(strings(&mqtt_plan.start));
    changes.devices_removed.extend(strings(&mqtt_plan.stop));
    changes.devices_changed.extend(strings(&mqtt_plan.restart));
    run.cfg = new;
    Ok(changes)
}

/// Reads and validates the file, including every device's driver options; the error lists
/// every reason.
pub fn load(path: &Path) -> Result<Config, String> {
    // One log line: the problems joined.
    let cfg = config::load(path).map_err(|e| {
        let text = e.to_string();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let mut problems = Vec::new();
    for d in &cfg.devices {
        if let Err(errs) = decode::registry::build_for(&d.driver, d.transport.kind(), &d.options) {
            for e in errs {
                problems.push(format!("device {}: {e}", d.id));
            }
        }
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests;
