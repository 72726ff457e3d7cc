//! The `[daemon]` keys of the store's own files: the audit files' size cap and when the store
//! is rewritten online to give space back.
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
    /// The store is rewritten online when its files exceed twice its live bytes by this.
    pub reclaim_slack: u64,
    /// At most one online rewrite per this interval.
    pub reclaim_every: std::time::Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            audit_max_bytes: super::file::default_audit_max_bytes().0,
            reclaim_slack: super::file::default_store_reclaim_slack().0,
            reclaim_every: super::file::default_store_reclaim_every().0,
        }
    }
}

/// Checks the store keys of `d`, reporting problems to `v`.
pub(super) fn check(v: &mut Validator, d: &DaemonFile) -> StoreConfig {
    if d.audit_max_bytes.0 < MIN_AUDIT_MAX_BYTES {
        v.problem("daemon.audit_max_bytes", "must be at least 1MiB");
    }
    if d.store_reclaim_every.0 < std::time::Duration::from_secs(1) {
        v.problem("daemon.store_reclaim_every", "must be at least 1s");
    }
    StoreConfig {
        audit_max_bytes: d.audit_max_bytes.0,
        reclaim_slack: d.store_reclaim_slack.0,
        reclaim_every: d.store_reclaim_every.0,
    }
}

#[cfg(test)]
mod tests {
    const REST: &str = "[[device]]\nid = \"d\"\ndriver = \"json\"\nroom = \"r\"\n\
        serial = { path = \"/dev/null\" }\n\n\
        [[sink]]\nid = \"out\"\ntype = \"file\"\ndir = \"/tmp/out\"\n";

    fn parse(daemon: &str) -> Result<super::StoreConfig, Vec<String>> {
        let src = format!("[daemon]\ndata_dir = \"/tmp/d\"\n{daemon}\n\n{REST}");
        crate::config::parse(&src, "test.toml")
            .map(|c| c.daemon.store)
            .map_err(|e| e.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_store_keys_have_defaults_and_are_checked() {
        let d = parse("").unwrap();
        assert_eq!(d, super::StoreConfig::default());
        assert_eq!(d.audit_max_bytes, 4 << 30);
        let c = parse("audit_max_bytes = \"2GiB\"\nstore_reclaim_slack = \"8MiB\"\nstore_reclaim_every = \"30s\"").unwrap();
        assert_eq!(c.audit_max_bytes, 2 << 30);
        assert_eq!(c.reclaim_slack, 8 << 20);
        assert_eq!(c.reclaim_every, std::time::Duration::from_secs(30));
        let bad = parse("audit_max_bytes = \"10KiB\"\nstore_reclaim_every = \"0s\"").unwrap_err();
        assert!(
            bad.iter().any(|p| p.contains("daemon.audit_max_bytes")),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|p| p.contains("daemon.store_reclaim_every")),
            "{bad:?}"
        );
    }
}
