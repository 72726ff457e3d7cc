//! The audit trail's handle in the store: [`Audit`].
//!
//! Receives [`AuditEvent`]s from the patient context, the held-reading decisions and the
//! delivery loop. Writes are staged inside the writer's group commit (`command`), so an audit
//! entry is durable with the SAME batch as the change it describes (a settle, an assignment, a
//! context record). With audit files (`QueueOptions::audit_log`, the daemon) the entries are
//! staged in the transaction and the writer appends them to the day file before it applies the
//! batch; the syncer fdatasyncs the file with the store (see `crate::audit`). Without audit
//! files (tests, library use) each is one store key, removed once older than
//! `audit_retention`. Entries an earlier version left in the store are moved to the files at
//! open (`migrate`).
//!
//! # Layout
//! ```text
//! 'l' uuid7                   → AuditEntry JSON (a JSON array of them is read too); uuid7 =
//!                               16 bytes whose first 6 are unix ms, so keys sort by time and
//!                               `since` is a seek
//! ```
//! One key per event: packing a settled batch's events into one value was measured and raised
//! the peak RSS of draining a large backlog (sled rewrites whole leaf nodes, and nodes of large
//! values cost more than many small keys).

use std::sync::Arc;

use time::OffsetDateTime;

use super::bytes::StoreBytes;
use super::handle::{async_reads, Core};
use super::ops;
use super::store::{Batch, Store};
use super::txn::Counters;
use super::txn::{corrupt, Txn};
use super::types::QueueError;
use crate::audit::{AuditLog, AuditPage, AuditQuery};
use crate::model::audit::{AuditEntry, AuditEvent};

pub const AUDIT: u8 = b'l';

fn audit_key() -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(AUDIT);
    k.extend_from_slice(uuid::Uuid::now_v7().as_bytes());
    k
}

/// The first key at or after `since` (an `'l'` key with only the 6 time bytes sorts first).
fn since_key(since: OffsetDateTime) -> Vec<u8> {
    let ms = ops::to_ms(since);
    let mut k = vec![AUDIT];
    k.extend_from_slice(&ms.to_be_bytes()[2..]);
    k
}

/// Stages the removal of up to `limit` audit entries recorded before `before_ms` (the oldest
/// first: keys sort by time). Returns how many.
pub(super) fn prune(tx: &mut Txn, before_ms: u64, limit: usize) -> Result<usize, QueueError> {
    let mut n = 0;
    for (key, _) in tx.store().scan_prefix(&[AUDIT], None, limit)? {
        let Some(ms) = key_ms(&key) else { continue };
        if ms >= before_ms {
            break;
        }
        tx.remove(key);
        n += 1;
    }
    Ok(n)
}

/// The unix milliseconds in the first 6 bytes of an audit key's UUIDv7.
pub(super) fn key_ms(key: &[u8]) -> Option<u64> {
    let b = key.get(1..7)?;
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(b);
    Some(u64::from_be_bytes(ms))
}

/// Stages audit entries recorded at `now`, one key each.
pub(super) fn append(
    tx: &mut Txn,
    now: OffsetDateTime,
    events: Vec<AuditEvent>,
) -> Result<(), QueueError> {
    if let Some(staged) = tx.audit.as_mut() {
        staged.extend(
            events
                .into_iter()
                .map(|event| (uuid::Uuid::now_v7(), AuditEntry { at: now, event })),
        );
        return Ok(());
    }
    for event in events {
        let key = audit_key();
        let value = ops::json(&key, &AuditEntry { at: now, event })?;
        // A new UUIDv7 (monotonic in this process): no value to replace.
        tx.note_stored(&key, None);
        tx.put(key, value);
    }
    Ok(())
}

/// Audit entries moved per step of [`migrate`].
const MIGRATE_PAGE: usize = 1024;

/// Moves the audit entries an earlier version kept in the store (`l` keys) to the audit
/// files, oldest first, a page at a time: each page is appended and synced to the files
/// before its keys are removed (with the byte counters) in one synced batch. A page the files
/// already hold (a crash between the two) is recognised by its ids and not written again.
pub(super) fn migrate(
    store: &dyn Store,
    log: &AuditLog,
    counters: &mut Counters,
) -> Result<(), QueueError> {
    let mut moved = 0u64;
    loop {
        let page = store.scan_prefix(&[AUDIT], None, MIGRATE_PAGE)?;
        if page.is_empty() {
            break;
        }
        let last = log.last_id();
        let mut entries = Vec::new();
        let mut batch = Batch::new();
        let mut bytes: StoreBytes = counters.bytes;
        for (k, v) in &page {
            batch.remove(k.clone());
            bytes.change(k, Some(v.len()), None);
            let id = k
                .get(1..17)
                .and_then(|b| uuid::Uuid::from_slice(b).ok())
                .ok_or_else(|| corrupt(k, "bad audit key"))?;
            if last.is_some_and(|l| id <= l) {
                continue;
            }
            let stored: Stored = ops::decode(k, v)?;
            entries.extend(stored.into_vec().into_iter().map(|e| (id, e)));
        }
        log.append(&entries)?;
        log.sync()?;
        moved += entries.len() as u64;
        counters.bytes = bytes;
        counters.write_to(&mut batch);
        store.apply(batch)?;
        store.sync()?;
    }
    if moved > 0 {
        tracing::info!(
            entries = moved,
            dir = %log.dir().display(),
            "audit entries moved from the queue store to the audit files"
        );
    }
    Ok(())
}

/// The entries of one `l` value: an array, or a single entry.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum Stored {
    Many(Vec<AuditEntry>),
    One(AuditEntry),
}

impl Stored {
    pub(super) fn into_vec(self) -> Vec<AuditEntry> {
        match self {
            Stored::Many(v) => v,
            Stored::One(e) => vec![e],
        }
    }
}

/// The audit trail: append (inside the store's group commit), read back, page. A cloneable
/// handle over the store's one writer (`queue.audit()`).
#[derive(Clone)]
pub struct Audit {
    core: Arc<Core>,
}

async_reads!(Audit);

impl Audit {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Appends audit entries durably (returns after the flush that holds them).
    pub async fn append(&self, events: Vec<AuditEvent>) -> Result<(), QueueError> {
        if events.is_empty() {
            return Ok(());
        }
        self.core
            .stage(move |tx, ctx| append(tx, ops::from_ms(ctx.now_ms), events))
            .await
    }

    /// Up to `limit` audit entries recorded at or after `since` (all when `None`), oldest first.
    pub fn entries(
        &self,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, QueueError> {
        if let Some(log) = &self.core.shared()?.audit_log {
            let q = AuditQuery {
                since,
                limit,
                ..AuditQuery::default()
            };
            return Ok(log.read(&q)?.entries);
        }
        let store = &*self.core.shared()?.store;
        let mut after = since.map(since_key);
        let mut out = Vec::new();
        while out.len() < limit {
            let page = store.scan_prefix(&[AUDIT], after.as_deref(), limit.clamp(16, 512))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in page {
                let stored: Stored = ops::decode(&k, &v)?;
                out.extend(stored.into_vec());
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// A page of audit entries (either order, by room, with a cursor): from the audit files,
    /// or from the store when the queue has none (then `room` and `cursor` are not supported
    /// and the page is the oldest first).
    pub fn page(&self, q: &AuditQuery) -> Result<AuditPage, QueueError> {
        if let Some(log) = &self.core.shared()?.audit_log {
            return Ok(log.read(q)?);
        }
        let mut entries = self.entries(q.since, usize::MAX)?;
        if q.newest_first {
            entries.reverse();
        }
        entries.truncate(q.limit);
        Ok(AuditPage {
            entries,
            next: None,
        })
    }

    /// The audit file log, when the queue writes one.
    pub fn log(&self) -> Option<&Arc<AuditLog>> {
        self.core.shared.audit_log.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::audit::ContextSource;
    use crate::queue::{MemoryStore, Queue, QueueOptions};
    use crate::reading::PatientRef;
    use crate::reading::SinkId;

    fn queue() -> Queue {
        Queue::with_store(
            Arc::new(MemoryStore::new()),
            QueueOptions::new(vec![SinkId::new("out")]),
        )
        .unwrap()
    }

    fn cleared(room: &str) -> AuditEvent {
        AuditEvent::ContextCleared {
            room: room.into(),
            source: ContextSource::Api,
            by: "ma".into(),
        }
    }

    #[tokio::test]
    async fn audit_entries_come_back_in_order_and_since_filters() {
        let q = queue();
        q.audit().append(vec![cleared("a")]).await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mid = OffsetDateTime::now_utc();
        std::thread::sleep(std::time::Duration::from_millis(5));
        q.audit()
            .append(vec![cleared("b"), cleared("c")])
            .await
            .unwrap();
        let all = q.audit().entries(None, 100).unwrap();
        let rooms: Vec<_> = all
            .iter()
            .map(|e| match &e.event {
                AuditEvent::ContextCleared { room, .. } => room.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(rooms, ["a", "b", "c"]);
        assert_eq!(q.audit().entries(Some(mid), 100).unwrap().len(), 2);
        assert_eq!(q.audit().entries(None, 1).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_context_record_round_trips_and_can_be_removed() {
        let q = queue();
        let p = PatientRef {
            id: "MRN1".into(),
            system: "urn:oid:1".into(),
        };
        let ev = AuditEvent::ContextSet {
            room: "exam-1".into(),
            patient: p,
            source: ContextSource::Scan,
            by: "scanner".into(),
        };
        q.contexts()
            .save("exam-1", Some(b"{}".to_vec()), vec![ev])
            .await
            .unwrap();
        assert_eq!(
            q.contexts().load().unwrap(),
            [("exam-1".to_string(), b"{}".to_vec())]
        );
        q.contexts()
            .save("exam-1", None, vec![cleared("exam-1")])
            .await
            .unwrap();
        assert!(q.contexts().load().unwrap().is_empty());
        assert_eq!(q.audit().entries(None, 10).unwrap().len(), 2);
    }
}
