//! Opening the store: checks and migrations before the writer starts, then every handle.
//!
//! Receives a directory (or any [`Store`]) and [`QueueOptions`]. Promises: a store of an older
//! layout is refused before anything is written; counters are loaded (or counted once) and
//! earlier versions' dead-lettered rejected readings and stored audit entries are moved where
//! this version keeps them, each in synced batches, before the one writer starts.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::handle::Core;
use super::shared::Shared;
use super::sled_store::SledStore;
use super::store::{Batch, Store};
use super::txn::{self, Counters};
use super::types::{QueueError, QueueOptions};
use super::{dedupe, held, keys, ops, quarantine, reclaim, rejected, Queue};
use crate::reading::SinkId;

impl Queue {
    /// Opens (creating) the sled store in `dir`; the error names the path when it is not
    /// writable or locked by another process (sled allows one process per store). Works with
    /// or without a tokio runtime.
    pub fn open(dir: &Path, opts: QueueOptions) -> Result<Queue, QueueError> {
        let store = SledStore::open(dir, opts.cache_capacity)?;
        Self::with_store(Arc::new(store), opts)
    }

    /// A queue over any [`Store`] (tests use [`MemoryStore`]).
    pub fn with_store(store: Arc<dyn Store>, opts: QueueOptions) -> Result<Queue, QueueError> {
        let configured = sink_list(opts.sinks)?;
        let (store, reclaim): (Arc<dyn Store>, _) = match opts.reclaim {
            Some(r) => {
                let r = Arc::new(reclaim::Reclaim::new(store, r));
                (r.clone(), Some(r))
            }
            None => (store, None),
        };
        check_layout(&*store)?;
        let mut counters = match Counters::load(&*store)? {
            Some(c) => c,
            None => {
                let c = Counters::recount(&*store)?;
                let mut batch = Batch::new();
                c.write_to(&mut batch);
                batch.put(keys::META_COUNTERS, b"1".to_vec());
                batch.put(keys::META_LAYOUT, keys::LAYOUT.to_vec());
                store.apply(batch)?;
                store.sync()?;
                c
            }
        };
        let mut next_seq = txn::next_seq(&*store)?;
        for s in &configured {
            counters.sink(s);
        }
        let dedupe = dedupe::Index::open(&*store)?;
        migrate_rejected(&*store, &mut counters, &mut next_seq, &configured, &dedupe)?;
        let rejected_bytes = rejected::measure(&*store)?;
        let audit_log = opts.audit_log.map(|a| a.0);
        if let Some(log) = &audit_log {
            super::audit::migrate(&*store, log, &mut counters)?;
        }
        let shared = Arc::new(Shared {
            disk_bytes: AtomicU64::new(store.size_on_disk()?),
            store,
            configured: Mutex::new(configured),
            max_group: opts.max_group.max(1),
            counters: Mutex::new(counters),
            notifies: Mutex::default(),
            closed: AtomicBool::new(false),
            sync_failed: AtomicBool::new(false),
            max_bytes: opts.max_bytes,
            history_max_bytes: opts.history_max_bytes,
            dedupe,
            rejected_bytes: AtomicU64::new(rejected_bytes),
            history_pruned: AtomicU64::new(0),
            history_warned: AtomicBool::new(false),
            audit_retention_ms: u64::try_from(opts.audit_retention.as_millis()).unwrap_or(u64::MAX),
            audit_log,
            clock: opts.clock.0,
            reclaim,
            hints: ops::SlotHints::default(),
            segments: Default::default(),
        });
        Ok(Queue::from_core(Core::start(shared, next_seq)?))
    }
}

/// Why the counters marker matters: [`Queue`] writes `m counters` in its first sync, and
/// nothing removes it, so a store that existed before this open and lacks it lost its log
/// (sled replays a log that is truncated, zeroed or damaged in its first segment as EMPTY).
pub const NO_MARKER: &str = "the counters marker written at the store's first open is missing: \
     sled recovered an empty or cut log";

/// At open of a store that existed: [`NO_MARKER`] when the marker the queue writes at its first
/// open is missing (sled recovered an empty or cut log). Reads one key, so a start with a large
/// backlog stays fast; the full recount of the counters is `queue verify`'s.
pub fn marker_missing(store: &dyn Store) -> Result<Option<String>, QueueError> {
    Ok(Counters::load(store)?
        .is_none()
        .then(|| NO_MARKER.to_string()))
}

/// Refuses a store written before segments that still holds readings or entries; marks a
/// drained one (only dedupe keys, audit, contexts and counters left) as this layout.
fn check_layout(store: &dyn Store) -> Result<(), QueueError> {
    if !store.scan_prefix(&[keys::OLD_READING], None, 1)?.is_empty() {
        return Err(QueueError::OldLayout);
    }
    if store.get(keys::META_LAYOUT)?.is_some() || store.get(keys::META_COUNTERS)?.is_none() {
        return Ok(());
    }
    let entry_tags = [
        keys::PENDING,
        keys::RETRIED,
        keys::DUE,
        keys::DEAD,
        held::HELD,
    ];
    for tag in entry_tags {
        if !store.scan_prefix(&[tag], None, 1)?.is_empty() {
            return Err(QueueError::OldLayout);
        }
    }
    let mut batch = Batch::new();
    batch.put(keys::META_LAYOUT, keys::LAYOUT.to_vec());
    store.apply(batch)?;
    store.sync()?;
    Ok(())
}

/// Moves rejected readings that an earlier version left in dead-letters into the quarantine
/// (see `quarantine::migrate`), in one synced batch, before the writer starts.
fn migrate_rejected(
    store: &dyn Store,
    counters: &mut Counters,
    next_seq: &mut u64,
    configured: &[SinkId],
    dedupe: &dedupe::Index,
) -> Result<(), QueueError> {
    let hints = ops::SlotHints::default();
    let mut woken = std::collections::BTreeSet::new();
    let mut tx = txn::Txn::with_seq(store, counters.clone(), *next_seq);
    let mut ctx = ops::Ctx {
        now_ms: ops::to_ms(OffsetDateTime::now_utc()),
        configured,
        woken: &mut woken,
        hints: &hints,
        dedupe,
    };
    let moved = quarantine::migrate(&mut tx, &mut ctx)?;
    if moved == 0 {
        return Ok(());
    }
    let batch = tx.take_batch(true);
    dedupe.apply(store, batch)?;
    store.sync()?;
    *counters = tx.counters.clone();
    *next_seq = (*next_seq).max(tx.next_seq());
    tracing::warn!(
        readings = moved,
        "readings that failed a hard plausibility limit were in the dead-letter (stored by an earlier version); moved to the quarantine: `vitalsd queue quarantine`"
    );
    Ok(())
}

/// The sinks of `sinks` in order, without repeats; an empty or NUL-bearing id is refused.
pub(super) fn sink_list(sinks: Vec<SinkId>) -> Result<Vec<SinkId>, QueueError> {
    let mut out: Vec<SinkId> = Vec::new();
    for s in sinks {
        if s.as_str().is_empty() || s.as_str().contains('\0') {
            return Err(QueueError::BadSinkId(s.to_string()));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}
