//! A live check that the store still takes writes, for the daemon's store watch.
//!
//! sled 0.34 remembers the first I/O error of a write (ENOSPC, EIO) and fails every later
//! flush with it until the store is reopened, even after the cause is gone (see
//! docs/decisions.md#sled-0347). [`Queue::check_store`] asks the store for a sync, which writes nothing when
//! nothing is pending and fails exactly when sled has stopped taking writes.

use super::{Queue, QueueError};

impl Queue {
    /// Ok while the store takes writes; the store's error once it refuses them for good.
    /// Blocks for one flush + fdatasync (call it from `spawn_blocking`).
    pub fn check_store(&self) -> Result<(), QueueError> {
        self.core.shared()?.store.sync()?;
        Ok(())
    }
}
