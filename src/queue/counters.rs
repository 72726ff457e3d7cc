//! The store's counters: readings, quarantined readings, pending and dead entries per sink,
//! and live bytes per class, kept exact by every batch the writer applies (`txn.rs`).
//!
//! Receives the store (to load or recount) and the writer's batch (to persist them); promises
//! the same figures a full recount of the store gives (`vitalsd queue verify` compares them).

use std::collections::BTreeMap;

use super::bytes::{StoreBytes, META_BYTES};
use super::keys;
use super::scan::{count_prefix, scan_values};
use super::segment;
use super::store::{Batch, Store};
use super::txn::corrupt;
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
    /// Readings in the quarantine (also counted in `readings`).
    pub quarantined: u64,
    pub sinks: BTreeMap<SinkId, SinkCount>,
    /// Live bytes per class (see `bytes`).
    pub bytes: StoreBytes,
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
        batch.put(
            keys::counter_quarantined(),
            self.quarantined.to_be_bytes().to_vec(),
        );
        for (sink, c) in &self.sinks {
            let mut v = c.pending.to_be_bytes().to_vec();
            v.extend_from_slice(&c.dead.to_be_bytes());
            batch.put(keys::counter_sink(sink), v);
        }
        batch.put(META_BYTES, self.bytes.encode());
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
        // Absent in a store of an earlier version, which had no quarantine.
        if let Some(v) = store.get(&keys::counter_quarantined())? {
            c.quarantined =
                keys::u64_value(&v, 0).ok_or_else(|| corrupt(b"cu", "short counter"))?;
        }
        let prefix = [keys::COUNTER, b's'];
        for (k, v) in store.scan_prefix(&prefix, None, usize::MAX)? {
            let sink = std::str::from_utf8(&k[2..]).map_err(|e| corrupt(&k, &e.to_string()))?;
            let pending = keys::u64_value(&v, 0).ok_or_else(|| corrupt(&k, "short counter"))?;
            let dead = keys::u64_value(&v, 8).ok_or_else(|| corrupt(&k, "short counter"))?;
            c.sinks
                .insert(SinkId::new(sink), SinkCount { pending, dead });
        }
        // Absent in a store of an earlier version: measured once (one scan).
        c.bytes = match store.get(META_BYTES)? {
            Some(v) => StoreBytes::decode(&v).ok_or_else(|| corrupt(META_BYTES, "short value"))?,
            None => StoreBytes::measure(store)?,
        };
        Ok(Some(c))
    }

    /// Counts every entry (at open of a store without counters, and for verify): live bits of
    /// the segments plus held and quarantined readings; fresh bits plus retried entries per
    /// sink; dead entries.
    pub fn recount(store: &dyn Store) -> Result<Counters, QueueError> {
        let mut c = Counters::default();
        scan_values(store, &[keys::LIVE], |_, v| c.readings += segment::count(v))?;
        c.readings += count_prefix(store, &[super::held::HELD], |_| {})?;
        c.readings += count_prefix(store, &[super::review::REVIEW], |_| {})?;
        c.quarantined = count_prefix(store, &[super::quarantine::QUARANTINE], |_| {})?;
        c.readings += c.quarantined;
        scan_values(store, &[keys::PENDING], |k, v| {
            if let Some((s, _)) = keys::parse_pending(k) {
                c.sink(&s).pending += segment::count(v);
            }
        })?;
        count_prefix(store, &[keys::RETRIED], |k| {
            if let Some((s, _)) = keys::parse_sink_entry(k) {
                c.sink(&s).pending += 1;
            }
        })?;
        count_prefix(store, &[keys::DEAD], |k| {
            if let Some((s, _)) = keys::parse_sink_entry(k) {
                c.sink(&s).dead += 1;
            }
        })?;
        c.bytes = StoreBytes::measure(store)?;
        Ok(c)
    }
}
