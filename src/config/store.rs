//! The `[daemon]` keys of the store's own files: the audit files' size cap.
//!
//! Receives the parsed `[daemon]` table from the validator; promises a [`StoreConfig`] whose
//! values are in range, each problem reported under its key (docs/audit-log.md).

use super::file::DaemonFile;
use super::validate::Validator;

/// The smallest `audit_max_bytes`: a day of a busy clinic's audit entries.
const MIN_AUDIT_MAX_BYTES: u64 = 1024 * 1024;

/// Settings of the audit files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Above this the audit files' oldest days are removed (a WARN first).
    pub audit_max_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            audit_max_bytes: super::file::default_audit_max_bytes().0,
        }
    }
}

/// Checks the store keys of `d`, reporting problems to `v`.
pub(super) fn check(v: &mut Validator, d: &DaemonFile) -> StoreConfig {
    if d.audit_max_bytes.0 < MIN_AUDIT_MAX_BYTES {
        v.problem("daemon.audit_max_bytes", "must be at least 1MiB");
    }
    StoreConfig {
        audit_max_bytes: d.audit_max_bytes.0,
    }
}
