//! The queue's public value types: enqueue outcomes, pending entries, settle results, stats,
//! dead-letter entries, options and errors.

use serde::Serialize;
use time::OffsetDateTime;

use super::store::StoreError;
use crate::reading::{Reading, ReadingId, SinkId};

/// How the queue is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Bytes of sled page cache (sled's default of 1 GB would dominate RSS).
    pub cache_capacity: u64,
    /// Enqueue fails with [`QueueError::Full`] while the undelivered readings (pending, retry,
    /// dead-letter, held, quarantined) take more than this; retained history does not count.
    pub max_bytes: u64,
    /// Retained history (dedupe index, audit log, rejected payloads) above this is pruned,
    /// oldest first, before its age limit.
    pub history_max_bytes: u64,
    /// The configured sinks: every new reading gets a pending entry for each.
    pub sinks: Vec<SinkId>,
    /// Most readings combined into one flush by the group-commit writer.
    pub max_group: usize,
    /// Audit entries older than this are pruned (a minute's worth of pruning at a time).
    pub audit_retention: std::time::Duration,
    /// Where audit entries go: the audit file log, or (without one: tests, tools) the store.
    /// With a log, audit entries left in the store by an earlier version are moved to it at
    /// open.
    pub audit_log: Option<AuditFiles>,
    /// The time retention and pruning read (the system clock unless a test injects one).
    pub clock: QueueClock,
    /// Rewrite the store online when its files are much larger than its live data (see
    /// `reclaim`); `None` (tests over memory, tools): never.
    pub reclaim: Option<super::reclaim::ReclaimOptions>,
}

/// The clock of [`QueueOptions`] (see `crate::audit::clock`); equal when it is the same clock.
#[derive(Clone)]
pub struct QueueClock(pub crate::audit::clock::Clock);

impl Default for QueueClock {
    fn default() -> Self {
        QueueClock(crate::audit::clock::system())
    }
}

impl std::fmt::Debug for QueueClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueClock")
    }
}

impl PartialEq for QueueClock {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for QueueClock {}

/// The audit file log of [`QueueOptions`]; equal when it is the same log.
#[derive(Debug, Clone)]
pub struct AuditFiles(pub std::sync::Arc<crate::audit::AuditLog>);

impl PartialEq for AuditFiles {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for AuditFiles {}

impl QueueOptions {
    /// Cache 16 MiB, cap 2 GiB, history 192 MiB, 1000 readings per flush, audit kept 90 days.
    pub fn new(sinks: Vec<SinkId>) -> Self {
        Self {
            cache_capacity: 16 << 20,
            max_bytes: 2 << 30,
            history_max_bytes: 192 << 20,
            sinks,
            max_group: 1000,
            audit_retention: std::time::Duration::from_secs(90 * 24 * 3600),
            audit_log: None,
            clock: QueueClock::default(),
            reclaim: None,
        }
    }
}

/// What happened to one enqueued reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Stored with a pending entry for every configured sink.
    Stored,
    /// The same measurement (same `Reading::dedupe_key`, or the same id) was already stored under
    /// this id; nothing new was written.
    Duplicate(ReadingId),
    /// Stored in the quarantine, in no sink's lists, with this reason (a hard limit): only a
    /// person's release sends it (see `queue::quarantine`).
    Rejected(String),
}

/// A place in a sink's list of retried entries (ordered by retry time, then id): where the
/// delivery loop's next read may begin when every entry up to it is in flight. A read that
/// finds fewer than it may return past the cursor also looks before it, so an entry left there
/// (a batch let go unsent, a retry time set behind the cursor by a clock stepped back) is
/// still read, only later. See [`super::Queue::pending_after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueCursor {
    pub(super) not_before_ms: u64,
    pub(super) id: ReadingId,
}

/// One reading due for delivery to a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub reading: Reading,
    /// Delivery attempts that ended in a retry so far.
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The result of one delivery attempt, recorded by [`super::Queue::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    Retry { at: OffsetDateTime, reason: String },
    Dead { reason: String },
}

/// Queue counters, kept in memory and persisted with every batch (no scan per call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Readings stored (referenced by at least one pending, dead, held or quarantine entry).
    pub readings: u64,
    /// Readings in the quarantine (failed a hard limit; released only by a person).
    pub quarantined: u64,
    /// Bytes the store's files take on disk (sled keeps freed space until it is rewritten).
    pub disk_bytes: u64,
    /// Live bytes of the store (undelivered + history in the store): what a rewrite keeps.
    pub live_bytes: u64,
    /// Times the store was rewritten online to give space back, since open.
    pub reclaims: u64,
    /// The cap on `undelivered_bytes` (`queue_max_bytes`).
    pub max_bytes: u64,
    /// Live bytes (keys and values) of undelivered readings and their entries.
    pub undelivered_bytes: u64,
    /// Room left under the cap for undelivered readings.
    pub free_bytes: u64,
    /// Retained history, bounded apart from the cap.
    pub history: HistoryStats,
    /// Every sink that has entries or is configured, configured or not, by id.
    pub sinks: Vec<SinkStats>,
}

/// Live bytes of what is kept after delivery, and its bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryStats {
    /// The dedupe index (7 days by device time).
    pub dedupe_bytes: u64,
    /// The audit entries still in the store (an earlier version's, or a queue without audit
    /// files); the audit files are counted in `audit_file_bytes`, apart from history.
    pub audit_bytes: u64,
    /// The rejected-payload log (the newest 10,000 records).
    pub rejected_bytes: u64,
    pub total_bytes: u64,
    /// `history_max_bytes`: above it the oldest history is pruned early.
    pub max_bytes: u64,
    /// History keys pruned early (over the bound) since the queue was opened.
    pub pruned: u64,
    /// The audit files (`<data_dir>/audit`): bytes on disk, bounded by `audit_max_bytes`
    /// and `audit_retention`, not by `history_max_bytes`.
    pub audit_file_bytes: u64,
    pub audit_files: u64,
    pub audit_max_bytes: u64,
    /// Audit day files removed since start: past their retention, and over the size cap.
    pub audit_pruned_age_files: u64,
    pub audit_pruned_size_files: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    pub sink: SinkId,
    pub pending: u64,
    pub dead: u64,
    /// False for a sink that has entries in the store but is no longer configured.
    pub configured: bool,
}

/// A reading in a sink's dead-letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadEntry {
    pub sink: SinkId,
    pub id: ReadingId,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub attempts: u32,
    pub reading: Reading,
}

/// Why a queue call failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue is full: {size} bytes of undelivered readings, the cap is {max} bytes")]
    Full { size: u64, max: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("queue is closed")]
    Closed,
    #[error("queue entry {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("reading #{index} has no id; ids are assigned at capture, before enqueue")]
    MissingId { index: usize },
    #[error("sink id `{0}` cannot be used as a queue key (it contains a NUL byte or is empty)")]
    BadSinkId(String),
    #[error(
        "the queue store was written by an earlier development build (one key per reading); \
         drain it with that build, or move the data directory aside"
    )]
    OldLayout,
    #[error(
        "the queue store has {found}, newer than this vitalsd's layout version {known}: a newer \
         vitalsd wrote it, and this one cannot read it. Nothing was written to the store or \
         moved; run the newer vitalsd again, or restore the data directory from a backup taken \
         before the upgrade (docs/store-format.md)"
    )]
    NewerLayout {
        found: super::keys::StoreLayout,
        known: u32,
    },
}
