//! The writer's overlay transaction: staged writes over the store, with savepoints.
//!
//! Reads see the staged writes first, so requests combined into one group commit see each
//! other (two identical readings in one flush are still deduped; two sinks settling the same
//! reading in one flush still remove it). [`Txn::rollback`] undoes one failed request without
//! disturbing the others of its group. Also holds the [`Counters`] that are persisted with every
//! batch.

use std::collections::BTreeMap;

use super::keys;
use super::store::{Batch, Store, StoreError};
use super::types::QueueError;
use crate::reading::SinkId;

/// Per-sink entry counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCount {
    pub pending: u64,
    pub dead: u64,
}

/// What stats report, kept exact by every batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub readings: u64,
    pub sinks: BTreeMap<SinkId, SinkCount>,
}

impl Counters {
    pub fn sink(&mut self, sink: &SinkId) -> &mut SinkCount {
        self.sinks.entry(sink.clone()).or_default()
    }

    /// The counter keys and values of this state.
    pub fn write_to(&self, batch: &mut Batch) {
        batch.put(
            keys::counter_readings(),
            self.readings.to_be_bytes().to_vec(),
        );
        for (sink, c) in &self.sinks {
            let mut v = c.pending.to_be_bytes().to_vec();
            v.extend_from_slice(&c.dead.to_be_bytes());
            batch.put(keys::counter_sink(sink), v);
        }
    }

    /// Loads the persisted counters, or `None` when the store has none yet.
    pub fn load(store: &dyn Store) -> Result<Option<Counters>, QueueError> {
        if store.get(keys::META_COUNTERS)?.is_none() {
            return Ok(None);
        }
        let mut c = Counters::default();
        if let Some(v) = store.get(&keys::counter_readings())? {
            c.readings = keys::u64_value(&v, 0).ok_or_else(|| corrupt(b"cr", "short counter"))?;
        }
        let prefix = [keys::COUNTER, b's'];
        for (k, v) in store.scan_prefix(&prefix, None, usize::MAX)? {
            let sink = std::str::from_utf8(&k[2..]).map_err(|e| corrupt(&k, &e.to_string()))?;
            let pending = keys::u64_value(&v, 0).ok_or_else(|| corrupt(&k, "short counter"))?;
            let dead = keys::u64_value(&v, 8).ok_or_else(|| corrupt(&k, "short counter"))?;
            c.sinks
                .insert(SinkId::new(sink), SinkCount { pending, dead });
        }
        Ok(Some(c))
    }

    /// Counts every entry (at open of a store without counters, and for verify).
    pub fn recount(store: &dyn Store) -> Result<Counters, QueueError> {
        let mut c = Counters {
            readings: count_prefix(store, &[keys::READING], |_| {})?,
            ..Counters::default()
        };
        for tag in [keys::PENDING, keys::RETRIED] {
            count_prefix(store, &[tag], |k| {
                if let Some((s, _)) = keys::parse_sink_entry(k) {
                    c.sink(&s).pending += 1;
                }
            })?;
        }
        count_prefix(store, &[keys::DEAD], |k| {
            if let Some((s, _)) = keys::parse_sink_entry(k) {
                c.sink(&s).dead += 1;
            }
        })?;
        Ok(c)
    }
}

/// Counts the keys under `prefix`, a page at a time, calling `each` with every key.
pub(super) fn count_prefix(
    store: &dyn Store,
    prefix: &[u8],
    mut each: impl FnMut(&[u8]),
) -> Result<u64, QueueError> {
    let mut n = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_prefix(prefix, after.as_deref(), 4096)?;
        let Some((last, _)) = page.last() else {
            return Ok(n);
        };
        let last = last.clone();
        for (k, _) in &page {
            each(k);
            n += 1;
        }
        after = Some(last);
    }
}

pub fn corrupt(key: &[u8], reason: &str) -> QueueError {
    QueueError::Corrupt {
        key: hex::encode(key),
        reason: reason.to_string(),
    }
}

type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

/// Staged writes over a store.
pub struct Txn<'s> {
    store: &'s dyn Store,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub counters: Counters,
    undo: Vec<Undo>,
    saved: Option<Counters>,
}

impl<'s> Txn<'s> {
    pub fn new(store: &'s dyn Store, counters: Counters) -> Self {
        Self {
            store,
            writes: BTreeMap::new(),
            counters,
            undo: Vec::new(),
            saved: None,
        }
    }

    pub fn store(&self) -> &'s dyn Store {
        self.store
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Starts a request: [`Txn::rollback`] undoes everything staged after this.
    pub fn savepoint(&mut self) {
        self.undo.clear();
        self.saved = Some(self.counters.clone());
    }

    pub fn rollback(&mut self) {
        for (k, prev) in self.undo.drain(..).rev() {
            match prev {
                None => {
                    self.writes.remove(&k);
                }
                Some(p) => {
                    self.writes.insert(k, p);
                }
            }
        }
        if let Some(c) = self.saved.take() {
            self.counters = c;
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => self.store.get(key),
        }
    }

    pub fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let prev = self.writes.insert(key.clone(), Some(value));
        self.undo.push((key, prev));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        let prev = self.writes.insert(key.clone(), None);
        self.undo.push((key, prev));
    }

    /// Drains the staged writes (and the counters, when `counters_changed`) into one batch.
    pub fn take_batch(&mut self, counters_changed: bool) -> Batch {
        let mut batch = Batch::new();
        for (k, v) in std::mem::take(&mut self.writes) {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.remove(k),
            }
        }
        if counters_changed {
            self.counters.write_to(&mut batch);
        }
        self.undo.clear();
        self.saved = None;
        batch
    }
}
