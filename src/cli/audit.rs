//! `vitalsd audit` and `vitalsd audit verify`: the audit files, read directly.
//!
//! Receives the config path and the filters; promises the entries of `<data_dir>/audit` as
//! JSON lines (newest first, or oldest first with `--oldest`), decrypted with the store key,
//! whether the daemon runs or not (the files need no lock), and a check of the hash chain that
//! names the first broken link (file, line) and exits 1 (docs/audit-log.md).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::load;
use crate::audit::{self, AuditLog, AuditQuery};

/// Entries read per page (the output streams page after page).
const PAGE: usize = 1000;

/// `vitalsd audit [--since T] [--room R] [--limit N] [--oldest]`.
pub fn list(
    config_path: &Path,
    since: Option<&str>,
    room: Option<String>,
    limit: usize,
    newest_first: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = load(config_path)?;
    let now = time::OffsetDateTime::now_utc();
    let since = since
        .map(|s| crate::admin::api::parse_since(s, now))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since {e}"))?;
    let key = crate::app::store_key(&cfg)?;
    let cipher = AuditLog::cipher_for(Some(&key));
    let dir = audit::audit_dir(&cfg.daemon.data_dir);
    let mut q = AuditQuery {
        since,
        room,
        limit: 0,
        newest_first,
        cursor: None,
    };
    let mut left = limit;
    while left > 0 {
        q.limit = left.min(PAGE);
        let page = audit::read_dir(&dir, cipher.as_ref(), &q)
            .with_context(|| format!("cannot read the audit files in {}", dir.display()))?;
        for e in &page.entries {
            println!("{}", serde_json::to_string(e)?);
        }
        left -= page.entries.len();
        match page.next {
            Some(n) if !page.entries.is_empty() => q.cursor = Some(n),
            _ => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vitalsd audit verify`: exit 0 when the chain is whole, 1 at the first broken link.
pub fn verify(config_path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load(config_path)?;
    let key = crate::app::store_key(&cfg)?;
    let cipher = AuditLog::cipher_for(Some(&key));
    let dir = audit::audit_dir(&cfg.daemon.data_dir);
    let rep = audit::verify(&dir, cipher.as_ref())
        .with_context(|| format!("cannot read the audit files in {}", dir.display()))?;
    if let Some(b) = &rep.first_break {
        println!(
            "audit log broken: {} line {}: {}",
            b.file.display(),
            b.line,
            b.reason
        );
        return Ok(ExitCode::from(1));
    }
    let from = match &rep.anchor {
        Some(h) => format!(" (it starts after pruned days, at hash {h})"),
        None => String::new(),
    };
    println!(
        "audit log intact: {} entries in {} files{from}",
        rep.entries, rep.files
    );
    Ok(ExitCode::SUCCESS)
}
