//! The state the store handles (readers) and the writer thread share.
//!
//! Receives nothing itself: the writer updates it after each applied group, the handles read
//! it. Promises: the counters are replaced whole, so a reader never sees a half-applied group;
//! `sync_failed` stays set until the store is reopened.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::ops;
use super::store::Store;
use super::txn::Counters;
use super::types::QueueError;
use crate::reading::SinkId;

/// State shared by the queue handles (readers) and the writer thread.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub configured: Mutex<Vec<SinkId>>,
    pub max_group: usize,
    pub max_bytes: u64,
    /// Retained history (dedupe, audit, rejected) above this is pruned oldest first.
    pub history_max_bytes: u64,
    pub audit_retention_ms: u64,
    /// The audit file log, when audit entries go to files (see `crate::audit`).
    pub audit_log: Option<Arc<crate::audit::AuditLog>>,
    /// The time the writer stamps and prunes by.
    pub clock: crate::audit::clock::Clock,
    /// The store's online rewrite, when space is given back while running (see `reclaim`).
    pub reclaim: Option<Arc<super::reclaim::Reclaim>>,
    pub dedupe: super::dedupe::Index,
    /// Bytes of the rejected-payload log (written outside the group commit; see `rejected`).
    pub rejected_bytes: AtomicU64,
    /// History keys removed early because history was over its bound, since open.
    pub history_pruned: AtomicU64,
    /// Whether the early pruning was logged (once per open).
    pub history_warned: AtomicBool,
    pub counters: Mutex<Counters>,
    pub disk_bytes: AtomicU64,
    pub notifies: Mutex<HashMap<SinkId, Arc<Notify>>>,
    pub closed: AtomicBool,
    /// Set once a sync failed: what was applied since may be visible to reads (a dedupe
    /// lookup, a pending scan) without being durable, so no later request is answered Ok.
    pub sync_failed: AtomicBool,
    /// Where listed entries are stored, for settling them without a search.
    pub hints: ops::SlotHints,
    /// The segments readers loaded last, indexed (see `segment_cache`).
    pub segments: super::segment_cache::SegmentCache,
}

impl Shared {
    pub fn counters(&self) -> MutexGuard<'_, Counters> {
        // Replaced whole under the lock: never half-updated, so a poisoned value is still valid.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sinks new readings get entries for.
    pub fn configured(&self) -> Vec<SinkId> {
        self.configured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bytes of retained history: dedupe index, audit log, rejected-payload log.
    pub fn history_bytes(&self, b: &super::bytes::StoreBytes) -> u64 {
        b.dedupe
            .saturating_add(b.audit)
            .saturating_add(self.rejected_bytes.load(Ordering::Relaxed))
    }

    /// Err(Full) while the undelivered readings are above the cap (history does not count).
    pub fn check_room(&self) -> Result<(), QueueError> {
        let size = self.counters().bytes.undelivered;
        if size > self.max_bytes {
            return Err(QueueError::Full {
                size,
                max: self.max_bytes,
            });
        }
        Ok(())
    }

    pub fn notify(&self, sink: &SinkId) -> Arc<Notify> {
        let mut map = self.notifies.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(sink.clone()).or_default().clone()
    }
}
