//! Validation of `[daemon]` and `[patient]`: paths, admin listener and token, files read
//! at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::super::file::{DaemonFile, PatientFile};
use super::super::*;
use super::Validator;

impl Validator {
    pub(super) fn daemon(&mut self, d: DaemonFile) -> Option<DaemonConfig> {
        let admin_listen = if d.admin_listen.is_empty() {
            None
        } else {
            match d.admin_listen.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.problem(
                        "daemon.admin_listen",
                        format!("`{}` is not an address like \"127.0.0.1:9750\" (\"\" disables the admin API)", d.admin_listen),
                    );
                    return None;
                }
            }
        };
        let log_format = match d.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.problem(
                    "daemon.log_format",
                    format!("unknown log format `{other}`, expected text or json"),
                );
                return None;
            }
        };
        if d.data_dir.as_os_str().is_empty() {
            self.problem("daemon.data_dir", "must not be empty");
        }
        if d.cache_size.0 < 1024 * 1024 {
            self.problem("daemon.cache_size", "must be at least 1MiB");
        }
        if d.history_max_bytes.0 < 16 * 1024 * 1024 {
            self.problem("daemon.history_max_bytes", "must be at least 16MiB");
        }
        if d.audit_retention.0 < std::time::Duration::from_secs(24 * 3600) {
            self.problem("daemon.audit_retention", "must be at least 1d");
        }
        let store_key_file = match crate::queue::cipher::KeySource::parse(&d.store_key_file) {
            Ok(k) => k,
            Err(e) => {
                self.problem("daemon.store_key_file", e.to_string());
                return None;
            }
        };
        if let crate::queue::cipher::KeySource::File(p) = &store_key_file {
            if p.starts_with(&d.data_dir) {
                self.problem(
                    "daemon.store_key_file",
                    "must be outside data_dir (a copy of data_dir must not carry its key)",
                );
            }
        }
        let admin_token_file = self.admin_token_file(&d.admin_token_file);
        if let Some(listen) = admin_listen {
            if !listen.ip().is_loopback() && admin_token_file.is_none() {
                self.problem(
                    "daemon.admin_listen",
                    format!("`{listen}` is not a loopback address: set daemon.admin_token_file (the API then needs its token) or listen on 127.0.0.1"),
                );
            }
        }
        for (i, h) in d.admin_hosts.iter().enumerate() {
            if let Err(why) = check_admin_host(h) {
                self.problem(format!("daemon.admin_hosts[{i}]"), why);
            }
        }
        Some(DaemonConfig {
            store: crate::config::store::check(self, &d),
            data_dir: d.data_dir,
            admin_listen,
            admin_token_file,
            admin_hosts: d.admin_hosts,
            queue_max_bytes: d.queue_max_bytes.0,
            history_max_bytes: d.history_max_bytes.0,
            cache_size: d.cache_size.0,
            clock_skew_tolerance: d.clock_skew_tolerance.0,
            shutdown_timeout: d.shutdown_timeout.0,
            audit_retention: d.audit_retention.0,
            log_format,
            store_key_file,
        })
    }

    pub(super) fn patient(&mut self, p: PatientFile) -> Option<PatientConfig> {
        let mode = match p.mode.as_str() {
            "location" => PatientMode::Location,
            "hold" => PatientMode::Hold,
            other => {
                self.problem(
                    "patient.mode",
                    format!("unknown mode `{other}`, expected hold or location"),
                );
                return None;
            }
        };
        Some(PatientConfig {
            mode,
            context_ttl: p.context_ttl.0,
            hold_for: p.hold_for.0,
            review: p.review,
            lookup: self.patient_lookup(&p),
        })
    }

    /// The admin token file: it must exist, and group or others may at most read it (0640).
    pub(super) fn admin_token_file(&mut self, path: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let key = "daemon.admin_token_file";
        let p = self.readable_file(key, path)?;
        if let Ok(meta) = std::fs::metadata(&p) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o037 != 0 {
                self.problem(
                    key,
                    format!("{path} has mode {mode:04o}: only its owner may write it and only its group read it (chmod 640, or 600)"),
                );
            }
        }
        Some(p)
    }

    /// A file the daemon must read: it must exist. `""` means not set.
    pub(in crate::config) fn readable_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        if path.is_empty() {
            return None;
        }
        let p = PathBuf::from(path);
        if let Err(e) = std::fs::metadata(&p) {
            self.problem(key, format!("cannot read {path}: {e}"));
        }
        Some(p)
    }

    /// A secret file: it must exist, and one readable by others is a warning.
    pub(in crate::config) fn secret_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.readable_file(key, path)?;
        if let Ok(meta) = std::fs::metadata(&p) {
            if meta.permissions().mode() & 0o004 != 0 {
                let line = self.loc.line(key);
                self.warnings.push(Problem {
                    path: key.to_string(),
                    line,
                    message: format!("{path} is readable by every user: chmod o-r it"),
                });
            }
        }
        Some(p)
    }
}

/// An `admin_hosts` entry: a host name or an IP address, without scheme, port or path.
fn check_admin_host(h: &str) -> Result<(), String> {
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if name_ok {
        Ok(())
    } else {
        Err(format!(
            "`{h}` is not a host name or address (no scheme, port or path: e.g. \"vitals-box.clinic.local\")"
        ))
    }
}
