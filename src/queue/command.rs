//! The requests the group-commit writer takes, and the typed staging primitive.
//!
//! Receives requests from the store handles. Promises: every request is answered at most once,
//! and a request staged into a group is answered only with the outcome of the sync that made
//! its group durable (`syncer`); a request that fails while it is staged is answered at once
//! with its error and its writes are rolled back. The writer never sees a request's answer
//! type: a staged request hands it a type-erased [`Complete`] that owns the typed reply.

use tokio::sync::oneshot;

use super::ops::Ctx;
use super::txn::Txn;
use super::types::{EnqueueOutcome, QueueError, Settle};
use crate::reading::{Reading, ReadingId, SinkId};

pub(super) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// What is left of an answered-after-sync request once its writes are staged: called exactly
/// once with the outcome of the sync that covers its group (or the apply's failure).
pub(super) type Complete = Box<dyn FnOnce(Result<(), QueueError>) + Send>;

/// The completion that answers `reply` with `value` once its group is durable, or with the
/// group's failure.
pub(super) fn complete<T: Send + 'static>(reply: Reply<T>, value: T) -> Complete {
    Box::new(move |synced| {
        let _ = reply.send(synced.map(|()| value));
    })
}

/// The result of running a staging function inside a group.
pub(super) enum Staged {
    /// Its writes are staged; answer through this once the group is synced.
    Ready(Complete),
    /// It failed and was answered with its error: roll back what it staged.
    Failed,
}

/// A staging function the writer runs inside its group commit (see [`stage`]).
pub(super) type StageFn = Box<dyn FnOnce(&mut Txn<'_>, &mut Ctx<'_>) -> Staged + Send>;

/// Wraps a typed staging closure: the writer runs it inside a group, and the returned receiver
/// gets its value only after the sync that holds its writes (or the error that kept them out).
pub(super) fn stage<T, F>(f: F) -> (StageFn, oneshot::Receiver<Result<T, QueueError>>)
where
    T: Send + 'static,
    F: FnOnce(&mut Txn<'_>, &mut Ctx<'_>) -> Result<T, QueueError> + Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    let run: StageFn = Box::new(move |tx, ctx| match f(tx, ctx) {
        Ok(value) => Staged::Ready(complete(reply, value)),
        Err(e) => {
            let _ = reply.send(Err(e));
            Staged::Failed
        }
    });
    (run, rx)
}

pub(super) enum Command {
    Enqueue {
        readings: Vec<Reading>,
        reply: Reply<Vec<EnqueueOutcome>>,
    },
    Settle {
        sink: SinkId,
        results: Vec<(ReadingId, Settle)>,
        reply: Reply<()>,
    },
    RetryDead {
        sink: SinkId,
        id: Option<ReadingId>,
        reply: Reply<usize>,
    },
    PurgeDead {
        sink: Option<SinkId>,
        id: Option<ReadingId>,
        reply: Reply<usize>,
    },
    /// Fire and forget: a pending entry whose reading cannot be read goes to dead-letter.
    DeadUnreadable {
        sink: SinkId,
        id: ReadingId,
        reason: String,
    },
    /// Fire and forget: the sink stops waiting for the fresh entries of a segment that cannot
    /// be read.
    DropFresh {
        sink: SinkId,
        seq: u64,
    },
    Close {
        reply: Reply<()>,
    },
    /// Replaces the configured sinks (a reload): later readings get entries for these.
    SetSinks {
        sinks: Vec<SinkId>,
        reply: Reply<()>,
    },
    /// Any other staging (held readings, audit entries, contexts): runs inside the group commit
    /// like the built-in requests, so its writes share the batch, the counters and the flush.
    Stage(StageFn),
}

impl Command {
    pub(super) fn weight(&self) -> usize {
        match self {
            Command::Enqueue { readings, .. } => readings.len().max(1),
            Command::Settle { results, .. } => results.len().max(1),
            _ => 1,
        }
    }
}
