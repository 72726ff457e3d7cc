//! The one writer every store handle shares, and how a handle reaches it.
//!
//! Receives requests from the handles ([`super::Queue`], [`super::Held`], [`super::Review`],
//! [`super::Quarantine`], [`super::Audit`], [`super::Contexts`], [`super::Rejected`]).
//! Promises:
//! - one writer thread per open store: every handle's writes share its group commit, its
//!   counters and its flush, so a change that spans handles (confirm a review: take it off the
//!   list, enqueue it, audit it) is staged by one closure and is one batch;
//! - [`Core::stage`] answers only after the sync that holds the staged writes, with the typed
//!   value the closure returned (see `command`);
//! - [`Core::read`] runs a blocking store read on tokio's blocking pool, so async callers
//!   (admin, status page, metrics) never hold a runtime worker while sled reads;
//! - the writer stops (after its current group) once the last handle is dropped.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::command::{self, Command};
use super::ops::Ctx;
use super::rejected;
use super::shared::Shared;
use super::store::StoreError;
use super::txn::Txn;
use super::types::QueueError;
use super::writer::Writer;

/// The writer's channel and thread and the state it shares with readers.
pub(crate) struct Core {
    pub(super) shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    pub(super) rejected: rejected::Log,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Core {
    /// Starts the writer thread over `shared`.
    pub(super) fn start(shared: Arc<Shared>, next_seq: u64) -> Result<Arc<Core>, QueueError> {
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(Arc::clone(&shared), rx, next_seq);
        let thread = std::thread::Builder::new()
            .name("vitalsd-queue".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Io(format!("cannot start the queue writer thread: {e}")))?;
        Ok(Arc::new(Core {
            shared,
            tx: Some(tx),
            thread: Some(thread),
            rejected: rejected::Log::default(),
        }))
    }

    /// The shared state, or `Closed` once the queue was closed.
    pub(super) fn shared(&self) -> Result<&Shared, QueueError> {
        let s = &*self.shared;
        if s.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        Ok(s)
    }

    /// Hands a request to the writer (fire and forget when nobody waits for an answer).
    pub(super) fn send(&self, cmd: Command) -> Result<(), QueueError> {
        let tx = self.tx.as_ref().ok_or(QueueError::Closed)?;
        tx.send(cmd).map_err(|_| QueueError::Closed)
    }

    /// A built-in request with a typed reply.
    pub(super) async fn request<T>(
        &self,
        make: impl FnOnce(command::Reply<T>) -> Command,
    ) -> Result<T, QueueError> {
        self.shared()?;
        let (reply, rx) = oneshot::channel();
        self.send(make(reply))?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Runs `f` inside the writer's next group commit; returns its value once the batch that
    /// holds its writes is synced. An error from `f` rolls back its writes and is returned at
    /// once; a failed apply or sync is returned instead of the value.
    pub(super) async fn stage<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>, &mut Ctx<'_>) -> Result<T, QueueError> + Send + 'static,
    {
        self.shared()?;
        let (run, rx) = command::stage(f);
        self.send(Command::Stage(run))?;
        rx.await.map_err(|_| QueueError::Closed)?
    }
}

/// Runs the blocking store read `f` over `handle` on tokio's blocking pool.
pub(super) async fn read_off_runtime<H, T, F>(handle: H, f: F) -> Result<T, QueueError>
where
    H: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&H) -> Result<T, QueueError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&handle))
        .await
        .map_err(|e| StoreError::Io(format!("a store read stopped: {e}")))?
}

/// Gives a handle `read(|h| h.some_sync_read())`: the blocking read runs off the runtime.
macro_rules! async_reads {
    ($($handle:ty),* $(,)?) => {$(
        impl $handle {
            /// Runs blocking reads of this handle (`|h| h.list(50)`) on tokio's blocking pool
            /// and returns their result: what an async caller (admin, status page, metrics)
            /// uses instead of calling the sync reads on a runtime worker.
            pub async fn read<T, F>(&self, f: F) -> Result<T, QueueError>
            where
                T: Send + 'static,
                F: FnOnce(&Self) -> Result<T, QueueError> + Send + 'static,
            {
                super::handle::read_off_runtime(self.clone(), f).await
            }
        }
    )*};
}
pub(super) use async_reads;
