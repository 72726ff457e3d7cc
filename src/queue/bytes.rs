//! The live bytes of the store by class: what the cap protects (undelivered readings) apart
//! from retained history (dedupe index, audit log).
//!
//! Receives the writes of each group commit (at [`super::txn::Txn::take_batch`]); promises
//! exact live byte counts (key + value lengths, sled's own overhead not included) per class,
//! persisted in the same batch as the change (`m` "bytes": 3 × u64 big-endian: undelivered,
//! dedupe, audit), and recounted by one scan of the store when a store has none yet (a store of
//! an earlier version). The rejected-payload log is written outside the group commit and is
//! bounded by count; its bytes are kept in memory by the queue (see `rejected`).
//!
//! Classes by key tag:
//! - undelivered: segments and their bitmaps, pending, due, dead-letter, held, quarantined
//!   (`g n p q t d h u`): what `queue_max_bytes` caps;
//! - dedupe: the dedupe buckets (`w`, see `dedupe`) and per-reading keys of an earlier
//!   version (`k`);
//! - audit: the audit log (`l`);
//! - anything else (counters, markers, room contexts) is small and fixed and is not counted.

use serde::Serialize;

use super::keys;
use super::store::{Store, StoreError};

pub const META_BYTES: &[u8] = b"mbytes";

/// What a key is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Undelivered,
    Dedupe,
    Audit,
    Other,
}

/// The class of a key, by its tag.
pub fn class(key: &[u8]) -> Class {
    match key.first() {
        Some(&t)
            if [
                keys::SEGMENT,
                keys::LIVE,
                keys::PENDING,
                keys::RETRIED,
                keys::DUE,
                keys::DEAD,
                super::held::HELD,
                super::review::REVIEW,
                super::quarantine::QUARANTINE,
                keys::OLD_READING,
            ]
            .contains(&t) =>
        {
            Class::Undelivered
        }
        Some(&t) if t == keys::DEDUPE || t == super::dedupe::BUCKET => Class::Dedupe,
        Some(&t) if t == super::audit::AUDIT => Class::Audit,
        _ => Class::Other,
    }
}

/// Live bytes (keys + values) per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreBytes {
    pub undelivered: u64,
    pub dedupe: u64,
    pub audit: u64,
}

impl StoreBytes {
    fn slot(&mut self, c: Class) -> Option<&mut u64> {
        match c {
            Class::Undelivered => Some(&mut self.undelivered),
            Class::Dedupe => Some(&mut self.dedupe),
            Class::Audit => Some(&mut self.audit),
            Class::Other => None,
        }
    }

    /// Accounts one write: `old` bytes of the value it replaces (None: a new key), `new` of
    /// the value written (None: a removal).
    pub fn change(&mut self, key: &[u8], old: Option<usize>, new: Option<usize>) {
        let Some(n) = self.slot(class(key)) else {
            return;
        };
        let k = key.len() as u64;
        if let Some(o) = old {
            *n = n.saturating_sub(k + o as u64);
        }
        if let Some(v) = new {
            *n = n.saturating_add(k + v as u64);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        for n in [self.undelivered, self.dedupe, self.audit] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    pub fn decode(v: &[u8]) -> Option<StoreBytes> {
        Some(StoreBytes {
            undelivered: keys::u64_value(v, 0)?,
            dedupe: keys::u64_value(v, 8)?,
            audit: keys::u64_value(v, 16)?,
        })
    }

    /// Counts every key of `store` (one scan, a page at a time).
    pub fn measure(store: &dyn Store) -> Result<StoreBytes, StoreError> {
        let mut b = StoreBytes::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_prefix(&[], after.as_deref(), 1024)?;
            let Some((last, _)) = page.last() else {
                return Ok(b);
            };
            let last = last.clone();
            for (k, v) in &page {
                b.change(k, None, Some(v.len()));
            }
            after = Some(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_counted_by_class_and_removals_give_back() {
        let mut b = StoreBytes::default();
        b.change(&keys::segment(1), None, Some(100));
        b.change(b"l0123456789abcdef", None, Some(50));
        b.change(&keys::counter_readings(), None, Some(8));
        assert_eq!(b.undelivered, 109);
        assert_eq!(b.audit, 67);
        b.change(&keys::segment(1), Some(100), Some(10));
        assert_eq!(b.undelivered, 19);
        b.change(&keys::segment(1), Some(10), None);
        assert_eq!(
            b,
            StoreBytes {
                audit: 67,
                ..StoreBytes::default()
            }
        );
        assert_eq!(StoreBytes::decode(&b.encode()), Some(b));
    }
}
