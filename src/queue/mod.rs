//! The durable queue: readings stored in sled before anything upstream is acknowledged, with a
//! pending entry per sink, a retry schedule and a dead-letter per sink.
//!
//! Receives canonical [`Reading`]s (with ids) from normalize; hands [`Pending`] entries to the
//! sink delivery loop and records their [`Settle`] results. Promises (docs/ARCHITECTURE.md#where-the-guarantees-are-enforced):
//! - [`Queue::enqueue`] returns only after the flush + fdatasync that holds the readings.
//! - A reading and all of its per-sink entries are written in one atomic batch.
//! - The same measurement enqueued twice (same dedupe key within the dedupe window, see
//!   `dedupe`) is stored once.
//! - Enqueue fails with [`QueueError::Full`] while undelivered readings take more than
//!   `max_bytes`; what is kept after delivery (dedupe index, audit log, rejected payloads) never
//!   counts against it and is bounded by `history_max_bytes` instead (docs/store-bounds.md).
//!
//! The store sits behind the [`Store`] trait (sled in production, a map in tests).
//!
//! # Handles
//! One writer thread (`writer`, `syncer`) and separate cloneable handles over it (`handle`),
//! each in its own file: [`Queue`] (`readings`, `reads`: enqueue, due entries, settle,
//! dead-letter, counters), [`Held`] (`held`), [`Review`] (`review`), [`Quarantine`]
//! (`quarantine`), [`Audit`] (`audit`), [`Contexts`] (`contexts`) and [`Rejected`]
//! (`rejected`). Opening the store (`open`) returns a [`Queue`], which carries the others
//! (`queue.held()`, …). Every write is staged by a typed closure inside the writer's group
//! commit (`command`), so a change that spans handles is one batch. Sync reads block on the
//! store; async callers run them with `read(|h| …)` on tokio's blocking pool. The offline
//! repair tools (`vitalsd queue salvage|verify`) are in `repair`, used by the CLI only;
//! `compact` (the store's rewrite) is shared by `queue compact`, `reclaim` and start-up.
//!
//! # Design
//! - **Keys**: all in one store tree; the byte layout is documented in `keys`. The readings of
//!   one group commit are stored once, packed in one segment (`g`, see `segment`) with a live
//!   bitmap (`n`); each configured sink gets one bitmap of its fresh entries per segment (`p`).
//!   A reading normalize rejected (hard limit) goes to the quarantine (`u`, see `quarantine`)
//!   instead, in no sink's lists; a store of an earlier version, which dead-lettered them, has
//!   them moved there at open. An entry with a retry
//!   scheduled moves to `q` with a due-index key (`t`) ordered by (not_before, id). The dedupe
//!   index (`w`, see `dedupe`) keeps a 24-byte entry (hash of `Reading::dedupe_key`, first id)
//!   per reading in chunks per (hour of device time, device). sled's cost is per key: a group
//!   writes its segment, its bitmaps and one dedupe chunk per device-hour it touches.
//! - **Group commit**: one writer thread (`writer`) takes every write request from a channel,
//!   drains all that are waiting (up to `max_group` readings), applies one atomic batch and makes
//!   one `sync` (sled `flush` + `fdatasync` of `<dir>/db`) before replying to all of them.
//!   Settle, retry and purge go through the same writer, so they are durable when they return.
//! - **History pruning**: at most once a minute by the queue's clock (`QueueOptions::clock`),
//!   inside the next group's batch, the writer closes and prunes the audit files (see
//!   `crate::audit`) and drops dedupe chunks older than the window, audit entries older than
//!   `audit_retention` (a store without audit files), and
//!   per-reading dedupe keys (`k`) that an earlier version stored more than 7 days ago (a
//!   cursor walks them). While history is above `history_max_bytes`, each group also drops its
//!   oldest keys (audit and dedupe together, oldest first): ingest is never refused for it.
//! - **Counters** (readings, pending and dead per sink, live bytes per class: see `bytes`) are
//!   kept in memory, persisted in the same batch as the change (`c` keys, `m` "bytes"), and
//!   loaded at open, so `stats` never scans and restarting with a large backlog does not count
//!   it. A store without them is counted once at open.
//! - **Size cap**: `enqueue` and `hold` fail with [`QueueError::Full`] while the live bytes of
//!   undelivered readings (segments, bitmaps, pending, due, dead, held, quarantined) are above
//!   `max_bytes`. Settling is never refused, so a full queue drains. The size on disk (refreshed
//!   at most every 250 ms) is reported, not enforced: sled keeps freed space for reuse.
//! - **Reads** (`pending`, `next_due`, `dead`, see `reads`) go straight to the store; each batch
//!   is atomic so they see whole requests. Fresh entries are listed in segment order (the order they were
//!   stored in); the last segment read is kept parsed, so a sink paging through a backlog reads
//!   each segment once. They block briefly on sled: call them from `spawn_blocking` or a
//!   delivery task that tolerates it. A pending entry whose reading is missing or unreadable is
//!   moved to that sink's dead-letter (reason `unreadable: ...`) instead of blocking the sink.
//! - **Held and quarantined readings, room contexts** (`held`, `quarantine`, `audit`): own key
//!   prefixes (`h`, `u`, `x`) in the same tree, written through the same writer (typed
//!   staging, `command`). Audit entries go to the audit files, appended before their batch is
//!   applied and synced with it (`l` keys only without audit files).
//! - **Space back online** (`reclaim`): when the store's files exceed twice the live bytes plus
//!   a slack, the writer starts a rewrite on a thread of its own: the copy runs beside ingest,
//!   and readers and the writer wait only for short pauses and the swap (docs/store-bounds.md).
//! - **Layout**: a store written before segments (one `r` key per reading) is refused at open
//!   with [`QueueError::OldLayout`]; it must be drained by the build that wrote it. A store whose
//!   layout marker names a version newer than [`LAYOUT_VERSION`] is refused with
//!   [`QueueError::NewerLayout`] before anything is written (docs/store-format.md).
//! - **Unknown sinks**: entries of a sink that is no longer configured stay, and show in stats
//!   and dead-letter listings (`configured: false`).

mod audit;
mod bytes;
mod chunk_cache;
pub mod cipher;
mod command;
pub mod compact;
mod contexts;
mod counters;
mod dedupe;
mod handle;
mod health;
mod held;
mod keys;
mod memory;
mod open;
mod ops;
mod prune;
mod quarantine;
mod readings;
mod reads;
pub mod reclaim;
mod rejected;
pub mod repair;
mod review;
mod scan;
pub mod segment;
mod segment_cache;
pub mod segment_entry;
mod shared;
mod sled_store;
mod store;
mod store_key;
mod syncer;
mod txn;
mod types;
mod values;
mod writer;

#[cfg(test)]
mod audit_files_tests;
#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod contract;
#[cfg(test)]
mod due_cursor_tests;
#[cfg(test)]
mod handle_tests;
#[cfg(test)]
mod reclaim_tests;
#[cfg(test)]
mod reopen_tests;
#[cfg(test)]
mod segment_cache_tests;
#[cfg(test)]
mod segment_tests;
#[cfg(test)]
mod settle_reads_tests;
#[cfg(test)]
pub(crate) mod test_store;
#[cfg(test)]
pub(crate) mod tests;

pub use audit::Audit;
pub use contexts::Contexts;
pub use held::{Held, HeldEntry};
pub use keys::{StoreLayout, LAYOUT_VERSION};
pub use memory::MemoryStore;
pub use open::{marker_missing, refuse_newer_layout, SledSnapshots, NO_MARKER};
pub use quarantine::{Quarantine, QuarantineEntry, QuarantineSummary, Release, ReleaseRequest};
pub use readings::Queue;
pub use rejected::{Rejected, RejectedRecord};
pub use review::{Decision, Review, ReviewEntry};
pub use sled_store::{restrict_umask, set_modes, Ownership, SledStore, DIR_MODE, FILE_MODE};
pub use store::{Batch, Entry, Op, Store, StoreError};
pub use types::{
    AuditFiles, DeadEntry, DueCursor, EnqueueOutcome, HistoryStats, Pending, QueueClock,
    QueueError, QueueOptions, QueueStats, Settle, SinkStats,
};
