//! The storage seam of the queue: a small, ordered, atomic key-value store.
//!
//! Receives byte keys and values from [`super::Queue`]; promises ordered prefix scans, atomic
//! batches (all puts and removes of one [`Batch`] become visible together and survive a crash
//! together) and a [`Store::sync`] after which everything applied before it survives a crash and
//! a power cut. [`super::SledStore`] is the production store; [`super::MemoryStore`] is for tests.
//! Both pass the same contract suite (`queue::contract`).

use std::path::PathBuf;

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// Writes applied atomically by [`Store::apply`], in order (a later op on the same key wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(key.into(), value.into()));
    }
    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Remove(key.into()));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// A key and its value, as returned by scans.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Why the store failed. Carries the path or the store's own message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the queue store at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("queue store I/O failed: {0}")]
    Io(String),
    #[error("queue store reports corruption: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether this is the store reporting damage (rather than a lock or a permission): the
    /// daemon then refuses to start and points to `vitalsd queue salvage`.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Open { reason, .. } => reason.contains("corrupted data"),
            StoreError::Corrupt(_) => true,
            StoreError::Io(_) => false,
        }
    }
}

/// A small ordered key-value store. Object safe; shared between the writer thread and readers.
pub trait Store: Send + Sync {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` entries whose key starts with `prefix`, in key order, starting after
    /// `after` (exclusive) when given. Page through a large prefix by passing the last key seen.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;
    /// The keys of [`Store::scan_prefix`] without their values: for lists whose values carry
    /// nothing (the due list), paged through without copying or opening any value.
    fn scan_keys(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .scan_prefix(prefix, after, limit)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }
    /// The last key that starts with `prefix`, if any.
    fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies every op of `batch` atomically: after a crash either all or none are present.
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;
    /// Makes everything applied so far durable (process crash and power cut).
    fn sync(&self) -> Result<(), StoreError>;
    /// Bytes the store occupies on disk (an estimate for in-memory stores).
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// How many durable syncs (fdatasync for sled) this store has made since it was opened.
    fn sync_count(&self) -> u64;
    /// The length of the value [`Store::get`] hands back for `key`. A store that can tell it
    /// without producing the value (an encrypted store: without decrypting it) says so here;
    /// the writer's byte counters need only the size of a value a removal replaces.
    fn value_len(&self, key: &[u8]) -> Result<Option<usize>, StoreError> {
        Ok(self.get(key)?.map(|v| v.len()))
    }
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when `prefix`
/// is all 0xFF (then the range is unbounded above).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_grow() {
        assert_eq!(prefix_end(b"p"), Some(b"q".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
