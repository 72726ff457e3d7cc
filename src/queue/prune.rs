//! History pruning the writer stages into its groups: the dedupe keys of an earlier version
//! past the window, and the oldest history while it is over its bound.
//!
//! Receives the group's [`Txn`]. Promises: only removals are staged, oldest first, at most
//! `limit` keys per call, so one group's prune stays bounded; a failure leaves the caller to
//! roll back to its savepoint.

use super::txn::Txn;
use super::types::QueueError;
use super::{audit, dedupe, keys};

/// Looks at up to `limit` per-reading dedupe keys of an earlier version after `after` (from the
/// start when `None`) and forgets those stored before `now - DEDUPE_WINDOW`. Returns how many it removed and where to go on
/// next time (`None` once it reached the end, to start over).
pub fn prune_dedupe(
    tx: &mut Txn,
    now_ms: u64,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(usize, Option<Vec<u8>>), QueueError> {
    let cutoff = now_ms.saturating_sub(keys::DEDUPE_WINDOW_MS);
    let page = tx.store().scan_prefix(&[keys::DEDUPE], after, limit)?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|(k, _)| k.clone()))
        .flatten();
    let mut n = 0;
    for (kkey, v) in page {
        // An unreadable value is kept: verify reports it, and it can only prevent duplicates.
        if keys::parse_dedupe_value(&v).is_some_and(|(_, stored)| stored < cutoff) {
            tx.remove(kkey);
            n += 1;
        }
    }
    Ok((n, next))
}

/// What [`prune_history`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub keys: u64,
    pub bytes: u64,
}

/// Stages the removal of the oldest history (audit entries and dedupe buckets, oldest first
/// whichever class it is in) until about `excess` bytes are freed or `limit` keys removed.
pub fn prune_history(tx: &mut Txn, excess: u64, limit: usize) -> Result<Pruned, QueueError> {
    // Audit entries are small, dedupe chunks up to 4 KiB: pages of similar bytes.
    let audits = tx
        .store()
        .scan_prefix(&[audit::AUDIT], None, limit.clamp(1, 1024))?;
    let buckets = tx
        .store()
        .scan_prefix(&[dedupe::BUCKET], None, limit.clamp(1, 64))?;
    // Oldest first: an audit entry by its time, a dedupe chunk by the time it is kept from.
    let mut all: Vec<(u64, &super::store::Entry)> = audits
        .iter()
        .map(|e| (audit::key_ms(&e.0).unwrap_or(0), e))
        .chain(
            buckets
                .iter()
                .map(|e| (dedupe::kept_from_ms(&e.0, &e.1), e)),
        )
        .collect();
    all.sort_by_key(|(when, _)| *when);
    let mut out = Pruned::default();
    for (_, (k, v)) in all {
        if out.bytes >= excess || out.keys >= limit as u64 {
            break;
        }
        out.bytes += (k.len() + v.len()) as u64;
        out.keys += 1;
        tx.remove(k.clone());
    }
    Ok(out)
}
