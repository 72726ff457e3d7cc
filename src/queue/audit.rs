//! The audit trail's entry point in the queue, and the durable room contexts.
//!
//! Receives [`AuditEvent`]s from the patient context, the held-reading decisions and the
//! delivery loop. Writes go through the group-commit writer (`Command::Stage`), so an audit
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
//! 'x' room                    → the room's context record (JSON owned by `crate::context`)
//! ```
//! One key per event: packing a settled batch's events into one value was measured and raised
//! the peak RSS of draining a large backlog (sled rewrites whole leaf nodes, and nodes of large
//! values cost more than many small keys).

use std::any::Any;
use std::sync::Arc;

use time::OffsetDateTime;

use super::bytes::StoreBytes;
use super::ops::{self, Ctx};
use super::store::{Batch, Store};
use super::txn::Counters;
use super::txn::{corrupt, Txn};
use super::types::{QueueError, Settle};
use super::writer::Command;
use super::Queue;
use crate::audit::{AuditLog, AuditPage, AuditQuery};
use crate::context::audit::{AuditEntry, AuditEvent, DeliveryOutcome};
use crate::reading::{ReadingId, SinkId};

pub const AUDIT: u8 = b'l';
pub const CONTEXT: u8 = b'x';

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

fn context_key(room: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(room.len() + 1);
    k.push(CONTEXT);
    k.extend_from_slice(room.as_bytes());
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

impl Queue {
    /// Runs `f` inside the writer's next group commit; returns its answer once the batch that
    /// holds its writes is flushed.
    pub(super) async fn stage<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>, &mut Ctx<'_>) -> Result<T, QueueError> + Send + 'static,
    {
        let any = self
            .request(|reply| Command::Stage {
                stage: Box::new(move |tx, ctx| {
                    f(tx, ctx).map(|t| Box::new(t) as Box<dyn Any + Send>)
                }),
                reply,
            })
            .await?;
        any.downcast::<T>()
            .map(|b| *b)
            .map_err(|_| corrupt(b"", "writer answered a staged request with the wrong type"))
    }

    /// Appends audit entries durably (returns after the flush that holds them).
    pub async fn audit_append(&self, events: Vec<AuditEvent>) -> Result<(), QueueError> {
        if events.is_empty() {
            return Ok(());
        }
        self.stage(move |tx, ctx| append(tx, ops::from_ms(ctx.now_ms), events))
            .await
    }

    /// Up to `limit` audit entries recorded at or after `since` (all when `None`), oldest first.
    pub fn audit(
        &self,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, QueueError> {
        if let Some(log) = &self.shared()?.audit_log {
            let q = AuditQuery {
                since,
                limit,
                ..AuditQuery::default()
            };
            return Ok(log.read(&q)?.entries);
        }
        let store = &*self.shared()?.store;
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
    pub fn audit_page(&self, q: &AuditQuery) -> Result<AuditPage, QueueError> {
        if let Some(log) = &self.shared()?.audit_log {
            return Ok(log.read(q)?);
        }
        let mut entries = self.audit(q.since, usize::MAX)?;
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
    pub fn audit_log(&self) -> Option<&Arc<AuditLog>> {
        self.inner.shared.audit_log.as_ref()
    }

    /// [`Queue::settle`] plus one audit entry per final answer (delivered, dead), in the same
    /// batch. Retries are not audited: the pending entry keeps the last error.
    pub async fn settle_audited(
        &self,
        sink: &SinkId,
        results: Vec<(ReadingId, Settle)>,
    ) -> Result<(), QueueError> {
        if results.is_empty() {
            return self.shared().map(|_| ());
        }
        let sink = sink.clone();
        self.stage(move |tx, ctx| {
            let mut events = Vec::new();
            for (id, s) in &results {
                if !ops::has_pending(tx, ctx, &sink, *id)? {
                    continue;
                }
                let (outcome, reason) = match s {
                    Settle::Delivered => (DeliveryOutcome::Delivered, None),
                    Settle::Dead { reason } => (DeliveryOutcome::Dead, Some(reason.clone())),
                    Settle::Retry { .. } => continue,
                };
                events.push(AuditEvent::Delivery {
                    reading: *id,
                    sink: sink.clone(),
                    outcome,
                    reason,
                });
            }
            ops::settle(tx, ctx, &sink, &results)?;
            append(tx, ops::from_ms(ctx.now_ms), events)
        })
        .await
    }

    /// Stores (or, with `None`, removes) a room's context record together with its audit
    /// entries, durably.
    pub async fn save_context(
        &self,
        room: &str,
        record: Option<Vec<u8>>,
        events: Vec<AuditEvent>,
    ) -> Result<(), QueueError> {
        let key = context_key(room);
        self.stage(move |tx, ctx| {
            match record {
                Some(v) => tx.put(key, v),
                None => tx.remove(key),
            }
            append(tx, ops::from_ms(ctx.now_ms), events)
        })
        .await
    }

    /// Every stored room context record: `(room, record)`.
    pub fn contexts(&self) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
        let store = &*self.shared()?.store;
        let mut out = Vec::new();
        for (k, v) in store.scan_prefix(&[CONTEXT], None, usize::MAX)? {
            let room =
                String::from_utf8(k[1..].to_vec()).map_err(|e| corrupt(&k, &e.to_string()))?;
            out.push((room, v));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::context::audit::ContextSource;
    use crate::queue::{MemoryStore, QueueOptions};
    use crate::reading::PatientRef;

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
        q.audit_append(vec![cleared("a")]).await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mid = OffsetDateTime::now_utc();
        std::thread::sleep(std::time::Duration::from_millis(5));
        q.audit_append(vec![cleared("b"), cleared("c")])
            .await
            .unwrap();
        let all = q.audit(None, 100).unwrap();
        let rooms: Vec<_> = all
            .iter()
            .map(|e| match &e.event {
                AuditEvent::ContextCleared { room, .. } => room.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(rooms, ["a", "b", "c"]);
        assert_eq!(q.audit(Some(mid), 100).unwrap().len(), 2);
        assert_eq!(q.audit(None, 1).unwrap().len(), 1);
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
        q.save_context("exam-1", Some(b"{}".to_vec()), vec![ev])
            .await
            .unwrap();
        assert_eq!(
            q.contexts().unwrap(),
            [("exam-1".to_string(), b"{}".to_vec())]
        );
        q.save_context("exam-1", None, vec![cleared("exam-1")])
            .await
            .unwrap();
        assert!(q.contexts().unwrap().is_empty());
        assert_eq!(q.audit(None, 10).unwrap().len(), 2);
    }
}
