//! SIGHUP reload of the device list (`systemctl reload vitalsd`).
//!
//! The new file is read and validated as a whole; a bad one is refused with its reasons logged
//! and the running config keeps going. A good one is applied in place: devices added are started,
//! devices removed are stopped (each device has its own cancellation token), devices whose
//! settings changed are restarted, unchanged devices keep running untouched. The queue and the
//! held readings are never touched. Changes a reload cannot apply (sinks, `[daemon]`,
//! `[patient]`, `[mqtt]` and mqtt devices) are logged at WARN as needing a restart.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, DeviceConfig, DeviceTransport};
use crate::decode;
use crate::reading::DeviceId;
use crate::status::{DeviceList, DeviceStatus};

/// What a reload does to the devices, by id (config order within each list).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub start: Vec<DeviceId>,
    pub stop: Vec<DeviceId>,
    pub restart: Vec<DeviceId>,
    pub keep: Vec<DeviceId>,
}

/// Compares `(id, fingerprint)` lists (pure).
pub fn plan(old: &[(DeviceId, String)], new: &[(DeviceId, String)]) -> Plan {
    let mut p = Plan::default();
    for (id, fp) in new {
        match old.iter().find(|(o, _)| o == id) {
            None => p.start.push(id.clone()),
            Some((_, ofp)) if ofp == fp => p.keep.push(id.clone()),
            Some(_) => p.restart.push(id.clone()),
        }
    }
    for (id, _) in old {
        if !new.iter().any(|(n, _)| n == id) {
            p.stop.push(id.clone());
        }
    }
    p
}

/// Everything that makes a device what it is; equal fingerprints mean "unchanged". Compared
/// only, never logged (it may hold option values).
pub fn fingerprint(d: &DeviceConfig) -> String {
    format!("{d:?}")
}

fn is_mqtt(d: &DeviceConfig) -> bool {
    matches!(d.transport, DeviceTransport::Mqtt(_))
}

/// The sections whose change a reload cannot apply (pure).
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mqtt_devices = |c: &Config| -> Vec<String> {
        c.devices
            .iter()
            .filter(|d| is_mqtt(d))
            .map(fingerprint)
            .collect()
    };
    let mut out = Vec::new();
    if format!("{:?}", old.sinks) != format!("{:?}", new.sinks) {
        out.push("sinks");
    }
    if format!("{:?}", old.daemon) != format!("{:?}", new.daemon) {
        out.push("[daemon]");
    }
    if format!("{:?}", old.patient) != format!("{:?}", new.patient) {
        out.push("[patient]");
    }
    if format!("{:?}", old.mqtt) != format!("{:?}", new.mqtt)
        || mqtt_devices(old) != mqtt_devices(new)
    {
        out.push("[mqtt] and mqtt devices");
    }
    out
}

struct Running {
    id: DeviceId,
    fingerprint: String,
    cancel: CancellationToken,
    status: Arc<DeviceStatus>,
}

/// The running serial/MLLP devices, each with its own token, plus statuses started elsewhere
/// (the shared MQTT connection's devices), published through one [`DeviceList`].
#[derive(Default)]
pub struct DeviceSet {
    running: Vec<Running>,
    fixed: Vec<Arc<DeviceStatus>>,
    list: DeviceList,
}

impl DeviceSet {
    /// The list the admin API reads.
    pub fn list(&self) -> DeviceList {
        self.list.clone()
    }

    fn publish(&self) {
        let mut all: Vec<_> = self.running.iter().map(|r| r.status.clone()).collect();
        all.extend(self.fixed.iter().cloned());
        self.list.set(all);
    }

    /// Records a device started with `cancel`.
    pub fn insert(
        &mut self,
        d: &DeviceConfig,
        cancel: CancellationToken,
        status: Arc<DeviceStatus>,
    ) {
        self.running.push(Running {
            id: d.id.clone(),
            fingerprint: fingerprint(d),
            cancel,
            status,
        });
        self.publish();
    }

    /// Statuses of devices a reload does not manage.
    pub fn set_fixed(&mut self, statuses: Vec<Arc<DeviceStatus>>) {
        self.fixed = statuses;
        self.publish();
    }

    fn stop(&mut self, id: &DeviceId) {
        if let Some(i) = self.running.iter().position(|r| &r.id == id) {
            let r = self.running.remove(i);
            r.cancel.cancel();
            r.status.set_connected(false);
        }
    }

    /// Applies a validated config: starts, stops and restarts devices through `spawn`
    /// (`spawn(device, its token)`), leaves unchanged ones running.
    pub fn apply<F>(&mut self, new: &Config, parent: &CancellationToken, mut spawn: F) -> Plan
    where
        F: FnMut(&DeviceConfig, &CancellationToken) -> anyhow::Result<Arc<DeviceStatus>>,
    {
        let old: Vec<_> = self
            .running
            .iter()
            .map(|r| (r.id.clone(), r.fingerprint.clone()))
            .collect();
        let managed: Vec<&DeviceConfig> = new.devices.iter().filter(|d| !is_mqtt(d)).collect();
        let wanted: Vec<_> = managed
            .iter()
            .map(|d| (d.id.clone(), fingerprint(d)))
            .collect();
        let p = plan(&old, &wanted);
        for id in p.stop.iter().chain(&p.restart) {
            self.stop(id);
            tracing::info!(device = %id, "device stopped by reload");
        }
        for d in managed
            .iter()
            .filter(|d| p.start.contains(&d.id) || p.restart.contains(&d.id))
        {
            let cancel = parent.child_token();
            match spawn(d, &cancel) {
                Ok(status) => {
                    tracing::info!(device = %d.id, "device started by reload");
                    self.running.push(Running {
                        id: d.id.clone(),
                        fingerprint: fingerprint(d),
                        cancel,
                        status,
                    });
                }
                Err(e) => {
                    tracing::error!(device = %d.id, error = %e, "device not started by reload")
                }
            }
        }
        // Keep the configuration order.
        let order = |id: &DeviceId| {
            managed
                .iter()
                .position(|d| &d.id == id)
                .unwrap_or(usize::MAX)
        };
        self.running.sort_by_key(|r| order(&r.id));
        self.publish();
        p
    }
}

/// Handles one SIGHUP: validates `path`, refuses a bad file (logged with its reasons), applies
/// the device changes of a good one and warns about what needs a restart (against `started`,
/// the config the daemon started with).
pub fn on_hangup<F>(
    path: Option<&Path>,
    started: &Config,
    devices: &mut DeviceSet,
    parent: &CancellationToken,
    mut spawn: F,
) where
    F: FnMut(&DeviceConfig, &CancellationToken, &Config) -> anyhow::Result<Arc<DeviceStatus>>,
{
    let Some(path) = path else {
        tracing::warn!("SIGHUP ignored: this run has no config file to reload");
        return;
    };
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    super::service::reloading();
    let new = match load(path) {
        Ok(c) => c,
        Err(reason) => {
            tracing::error!(config = %path.display(), %reason, "config reload refused; the running config stays");
            super::service::ready("running; the last reload was refused (see the log)");
            return;
        }
    };
    for w in &new.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    for section in needs_restart(started, &new) {
        tracing::warn!(
            section,
            "this change needs a restart (systemctl restart vitalsd); the running settings stay"
        );
    }
    let p = devices.apply(&new, parent, |d, c| spawn(d, c, &new));
    tracing::info!(
        started = p.start.len(),
        stopped = p.stop.len(),
        restarted = p.restart.len(),
        unchanged = p.keep.len(),
        "config reloaded"
    );
    super::service::ready(&format!(
        "running: {} devices after reload",
        devices.list().all().len()
    ));
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
        if let Err(errs) = decode::build(&d.driver, &d.options) {
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
mod tests {
    use super::*;

    fn ids(list: &[(&str, &str)]) -> Vec<(DeviceId, String)> {
        list.iter()
            .map(|(i, f)| (DeviceId::new(*i), f.to_string()))
            .collect()
    }

    #[test]
    fn a_reload_starts_new_stops_removed_restarts_changed_and_keeps_the_rest() {
        let p = plan(
            &ids(&[("a", "1"), ("b", "1"), ("c", "1")]),
            &ids(&[("a", "1"), ("c", "2"), ("d", "1")]),
        );
        assert_eq!(p.keep, vec![DeviceId::new("a")]);
        assert_eq!(p.restart, vec![DeviceId::new("c")]);
        assert_eq!(p.start, vec![DeviceId::new("d")]);
        assert_eq!(p.stop, vec![DeviceId::new("b")]);
    }

    #[test]
    fn only_sections_that_changed_need_a_restart() {
        let src = "[daemon]\ndata_dir = \"/tmp/x\"\n\n[[sink]]\nid = \"o\"\ntype = \"file\"\ndir = \"/tmp/o\"\n";
        let a = config::parse(src, "a").unwrap();
        let b = config::parse(src, "b").unwrap();
        assert!(needs_restart(&a, &b).is_empty());
        let c = config::parse(&src.replace("/tmp/o", "/tmp/p"), "c").unwrap();
        assert_eq!(needs_restart(&a, &c), vec!["sinks"]);
    }
}
