//! The syncer thread of the group-commit writer: makes applied groups durable, then answers.
//!
//! Receives [`SyncJob`]s from the writer in apply order. It takes every job waiting, makes ONE
//! sync (flush + fdatasync) for all of them, and only then answers their callers and wakes the
//! sinks that gained entries. Once a sync has failed, nothing is answered Ok again: what was
//! applied since may be visible to reads (a dedupe lookup) without being durable.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::command::Complete;
use super::shared::Shared;
use super::store::StoreError;
use super::types::QueueError;
use crate::reading::SinkId;

/// One applied group waiting for its sync.
pub(super) struct SyncJob {
    pub(super) applied: Result<(), StoreError>,
    /// Whether the group applied any write. A group that wrote nothing and has nobody to
    /// answer (the Close barrier) needs no sync.
    pub(super) wrote: bool,
    /// Whether the group appended audit entries to the audit file (synced with the store).
    pub(super) audited: bool,
    pub(super) done: Vec<Complete>,
    pub(super) woken: BTreeSet<SinkId>,
    /// Answered once every earlier job was answered (used by Close).
    pub(super) barrier: Option<mpsc::Sender<()>>,
}

/// The syncer thread: takes every applied group waiting, syncs once for all of them, then
/// answers their callers and wakes their sinks.
pub(super) fn syncer(shared: &Shared, rx: &mpsc::Receiver<SyncJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        // Sync even for a group that wrote nothing but has callers: its answer (say, a
        // duplicate of a reading applied just before) may rest on writes not yet durable.
        let needs_sync = jobs
            .iter()
            .any(|j| j.applied.is_ok() && (j.wrote || !j.done.is_empty()));
        let synced = if shared.sync_failed.load(Ordering::SeqCst) {
            Err(StoreError::Io(
                "an earlier sync failed: nothing applied since is durable until the store is reopened"
                    .into(),
            ))
        } else if needs_sync {
            let audited = jobs.iter().any(|j| j.audited);
            let began = std::time::Instant::now();
            let synced = shared.store.sync().and_then(|()| {
                if audited {
                    super::writer::sync_audit(shared)
                } else {
                    Ok(())
                }
            });
            // Where a drain's time goes (docs/throughput.md): one sync for these groups.
            tracing::debug!(
                groups = jobs.len(),
                sync_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
                "groups synced"
            );
            synced
        } else {
            Ok(())
        };
        if let Err(e) = &synced {
            shared.sync_failed.store(true, Ordering::SeqCst);
            tracing::error!(error = %e, "queue sync failed; the callers are told and must not acknowledge");
        }
        for job in jobs {
            let result = match (&job.applied, &synced) {
                (Err(e), _) | (Ok(()), Err(e)) => Err(copy(e)),
                (Ok(()), Ok(())) => Ok(()),
            };
            answer(shared, job.done, job.woken, &result);
            if let Some(b) = job.barrier {
                let _ = b.send(());
            }
        }
    }
}

/// Answers every caller of a group with `result` and wakes the sinks that gained entries.
pub(super) fn answer(
    shared: &Shared,
    done: Vec<Complete>,
    woken: BTreeSet<SinkId>,
    result: &Result<(), StoreError>,
) {
    for then in done {
        then(result.as_ref().copied().map_err(again));
    }
    if result.is_ok() {
        for sink in woken {
            shared.notify(&sink).notify_one();
        }
    }
}

/// The same failure for every caller of a group (store errors are not `Clone`).
pub(super) fn again(e: &StoreError) -> QueueError {
    QueueError::Store(copy(e))
}

fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Open { path, reason } => StoreError::Open {
            path: path.clone(),
            reason: reason.clone(),
        },
        StoreError::Io(m) => StoreError::Io(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
    }
}
