//! The writer's overlay transaction: staged writes over the store, with savepoints.
//!
//! Reads see the staged writes first, so requests combined into one group commit see each
//! other (two identical readings in one flush are still deduped; two sinks settling the same
//! reading in one flush still remove it). [`Txn::rollback`] undoes one failed request without
//! disturbing the others of its group. The [`Counters`] persisted with every batch are in
//! `counters.rs`.
//!
//! The store's values read during a group are remembered until its batch is taken (at most
//! [`MEMO_BYTES`], segments never): a key looked at again (the bitmap of a segment whose
//! readings are settled one after the other, a retried entry checked and then taken, the value
//! a write replaces, whose size the byte counters need) costs no second store read. Only the
//! writer writes queue keys, so what the store held when read stays true until the batch is
//! applied.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

pub use super::counters::{Counters, SinkCount};
use super::keys;
use super::segment::{self, Slot};
use super::store::{Batch, Store, StoreError};
use super::types::QueueError;
use crate::reading::SinkId;

pub fn corrupt(key: &[u8], reason: &str) -> QueueError {
    QueueError::Corrupt {
        key: hex::encode(key),
        reason: reason.to_string(),
    }
}

type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

/// The segment a group is building: its entries, which are still live, and which are fresh
/// for which sink.
#[derive(Debug, Default)]
struct Building {
    seq: u64,
    seg: segment::Writer,
    live: Vec<u8>,
    fresh: BTreeMap<SinkId, Vec<u8>>,
}

impl Building {
    fn new(seq: u64) -> Self {
        Self {
            seq,
            ..Self::default()
        }
    }

    /// Forgets the entries from `len` on.
    fn truncate(&mut self, len: u32) {
        self.seg.truncate(len);
        let cut = |bits: &mut Vec<u8>| {
            let end = u32::try_from(bits.len().saturating_mul(8)).unwrap_or(u32::MAX);
            for i in len..end {
                segment::clear_bit(bits, i);
            }
        };
        cut(&mut self.live);
        self.fresh.values_mut().for_each(cut);
    }
}

/// Staged writes over a store.
pub struct Txn<'s> {
    store: &'s dyn Store,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub counters: Counters,
    undo: Vec<Undo>,
    saved: Option<Counters>,
    /// The group's segments, numbered one after the other; the last one takes new readings.
    building: Vec<Building>,
    /// At the savepoint: how many segments the group had, and the last one's length.
    saved_at: (usize, u32),
    /// Audit entries for the audit file log (`None`: they are stored as `l` keys instead);
    /// the writer appends them before it applies the batch.
    pub audit: Option<Vec<(uuid::Uuid, crate::model::audit::AuditEntry)>>,
    audit_saved: usize,
    /// What the store holds under keys read during this group (see the module doc).
    memo: RefCell<Memo>,
}

/// Values of the store read during one group, up to [`MEMO_BYTES`].
#[derive(Debug, Default)]
struct Memo {
    values: HashMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
}

/// The most bytes (keys and values) a group remembers of what it read.
pub const MEMO_BYTES: usize = 1 << 20;

impl Memo {
    fn note(&mut self, key: &[u8], value: Option<&[u8]>) {
        // Segments are large and never change: the segment cache is the place for them.
        if key.first() == Some(&keys::SEGMENT) {
            return;
        }
        let size = key.len() + value.map_or(0, <[u8]>::len);
        if self.bytes + size > MEMO_BYTES || self.values.contains_key(key) {
            return;
        }
        self.bytes += size;
        self.values.insert(key.to_vec(), value.map(<[u8]>::to_vec));
    }
}

/// The number the next segment gets: one past the last segment (or live bitmap) in `store`.
pub fn next_seq(store: &dyn Store) -> Result<u64, StoreError> {
    let mut next = 0;
    for tag in [keys::SEGMENT, keys::LIVE] {
        if let Some(k) = store.last_key(&[tag])? {
            next = next.max(keys::seq_suffix(&k).map_or(0, |s| s.saturating_add(1)));
        }
    }
    Ok(next)
}

impl<'s> Txn<'s> {
    /// A transaction whose first segment is numbered after the store's last one.
    #[cfg(test)]
    pub fn new(store: &'s dyn Store, counters: Counters) -> Self {
        let seq = next_seq(store).unwrap_or(0);
        Self::with_seq(store, counters, seq)
    }

    /// A transaction whose first segment is numbered `seq` (the writer tracks it).
    pub fn with_seq(store: &'s dyn Store, counters: Counters, seq: u64) -> Self {
        Self {
            store,
            writes: BTreeMap::new(),
            counters,
            undo: Vec::new(),
            saved: None,
            building: vec![Building::new(seq)],
            saved_at: (1, 0),
            audit: None,
            audit_saved: 0,
            memo: RefCell::default(),
        }
    }

    /// Takes the audit entries staged for the file log.
    pub fn take_audit(&mut self) -> Vec<(uuid::Uuid, crate::model::audit::AuditEntry)> {
        self.audit_saved = 0;
        self.audit.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn current(&mut self) -> &mut Building {
        if self.building.is_empty() {
            self.building.push(Building::new(0));
        }
        let last = self.building.len() - 1;
        &mut self.building[last]
    }

    /// The group's own segment `seq`, if it is one.
    fn own(&self, seq: u64) -> Option<&Building> {
        let first = self.building.first()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.building.get(i)
    }

    fn own_mut(&mut self, seq: u64) -> Option<&mut Building> {
        let first = self.building.first()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.building.get_mut(i)
    }

    /// The number the next segment written will get.
    pub fn next_seq(&self) -> u64 {
        self.building.last().map_or(0, |b| b.seq)
    }

    /// Appends a reading to the group's segment (live, pending for no sink yet), starting a new
    /// segment when the current one is full.
    pub fn append(&mut self, id: crate::reading::ReadingId, json: &[u8]) -> Slot {
        let full = {
            let b = self.current();
            b.seg.len() >= segment::MAX_ENTRIES || b.seg.size() >= segment::MAX_BYTES
        };
        if full {
            let next = self.current().seq.saturating_add(1);
            self.building.push(Building::new(next));
        }
        let b = self.current();
        let idx = b.seg.push(id, json);
        segment::set_bit(&mut b.live, idx);
        Slot(b.seq, idx)
    }

    /// Marks an entry of the group's own segments fresh-pending for `sink`; false (and nothing
    /// changed) for a slot of an earlier segment.
    pub fn set_fresh(&mut self, sink: &SinkId, slot: Slot) -> bool {
        let Some(b) = self.own_mut(slot.seq()) else {
            return false;
        };
        let bits = b.fresh.entry(sink.clone()).or_default();
        segment::set_bit(bits, slot.idx());
        true
    }

    /// Whether the entry at `slot` is fresh-pending for `sink`.
    pub fn is_fresh(&self, sink: &SinkId, slot: Slot) -> Result<bool, StoreError> {
        if let Some(b) = self.own(slot.seq()) {
            return Ok(b
                .fresh
                .get(sink)
                .is_some_and(|b| segment::bit(b, slot.idx())));
        }
        Ok(self
            .get(&keys::pending(sink, slot.seq()))?
            .is_some_and(|b| segment::bit(&b, slot.idx())))
    }

    /// Clears the fresh bit of `slot` for `sink`; true when it was set.
    pub fn clear_fresh(&mut self, sink: &SinkId, slot: Slot) -> Result<bool, StoreError> {
        if let Some(b) = self.own_mut(slot.seq()) {
            return Ok(b
                .fresh
                .get_mut(sink)
                .is_some_and(|b| segment::clear_bit(b, slot.idx())));
        }
        let key = keys::pending(sink, slot.seq());
        let Some(mut bits) = self.get(&key)? else {
            return Ok(false);
        };
        if !segment::clear_bit(&mut bits, slot.idx()) {
            return Ok(false);
        }
        if segment::count(&bits) == 0 {
            self.remove(key);
        } else {
            self.put(key, bits);
        }
        Ok(true)
    }

    /// Clears the live bit of `slot`, removing the segment with its last live entry; true when
    /// the entry was live.
    pub fn clear_live(&mut self, slot: Slot) -> Result<bool, StoreError> {
        if let Some(b) = self.own_mut(slot.seq()) {
            return Ok(segment::clear_bit(&mut b.live, slot.idx()));
        }
        let key = keys::live(slot.seq());
        let Some(mut bits) = self.get(&key)? else {
            return Ok(false);
        };
        if !segment::clear_bit(&mut bits, slot.idx()) {
            return Ok(false);
        }
        if segment::count(&bits) == 0 {
            self.remove(key);
            self.remove(keys::segment(slot.seq()));
        } else {
            self.put(key, bits);
        }
        Ok(true)
    }

    pub fn store(&self) -> &'s dyn Store {
        self.store
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.building.iter().all(|b| b.seg.is_empty())
            && self.audit.as_ref().is_none_or(Vec::is_empty)
    }

    /// Starts a request: [`Txn::rollback`] undoes everything staged after this.
    pub fn savepoint(&mut self) {
        self.undo.clear();
        self.saved = Some(self.counters.clone());
        self.audit_saved = self.audit.as_ref().map_or(0, Vec::len);
        let len = self.current().seg.len();
        self.saved_at = (self.building.len(), len);
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
        let keep = self.audit_saved;
        if let Some(a) = self.audit.as_mut() {
            a.truncate(keep);
        }
        let (segments, len) = self.saved_at;
        self.building.truncate(segments.max(1));
        self.current().truncate(len);
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => self.stored(key),
        }
    }

    /// What the store holds under `key` (the staged writes not looked at), read once a group.
    fn stored(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.memo.borrow().values.get(key) {
            return Ok(v.clone());
        }
        let v = self.store.get(key)?;
        self.memo.borrow_mut().note(key, v.as_deref());
        Ok(v)
    }

    /// The length of what the store holds under `key`: from what the group read, else asked of
    /// the store without reading the value (a segment removed with its last live reading is
    /// never decrypted just for its size).
    fn stored_len(&self, key: &[u8]) -> Result<Option<usize>, StoreError> {
        if let Some(v) = self.memo.borrow().values.get(key) {
            return Ok(v.as_ref().map(Vec::len));
        }
        self.store.value_len(key)
    }

    /// Records what the store holds under `key` (`None`: nothing), known without reading it:
    /// the due key of a retried entry that was just read (the two are written and removed
    /// together, see `ops::add_pending` and `ops::take_pending`), or a key made unique (a new
    /// UUIDv7). Spares the byte counters a read.
    pub fn note_stored(&self, key: &[u8], value: Option<&[u8]>) {
        self.memo.borrow_mut().note(key, value);
    }

    /// The staged writes under `prefix` in key order (a removal is `None`).
    pub fn staged<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        self.writes
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
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
            if super::bytes::class(&k) != super::bytes::Class::Other {
                // The size of the value it replaces: an unreadable one counts as absent.
                let old = self.stored_len(&k).ok().flatten();
                self.counters
                    .bytes
                    .change(&k, old, v.as_ref().map(Vec::len));
            }
            match v {
                Some(v) => batch.put(k, v),
                None => batch.remove(k),
            }
        }
        let next = match self.building.last() {
            Some(b) if b.seg.is_empty() => b.seq,
            Some(b) => b.seq.saturating_add(1),
            None => 0,
        };
        for b in std::mem::replace(&mut self.building, vec![Building::new(next)]) {
            if segment::count(&b.live) == 0 {
                continue;
            }
            let (seg_key, seg) = (keys::segment(b.seq), b.seg.into_bytes());
            let live_key = keys::live(b.seq);
            self.counters.bytes.change(&seg_key, None, Some(seg.len()));
            self.counters
                .bytes
                .change(&live_key, None, Some(b.live.len()));
            batch.put(seg_key, seg);
            batch.put(live_key, b.live);
            for (sink, bits) in b.fresh {
                if segment::count(&bits) > 0 {
                    let key = keys::pending(&sink, b.seq);
                    self.counters.bytes.change(&key, None, Some(bits.len()));
                    batch.put(key, bits);
                }
            }
        }
        self.saved_at = (1, 0);
        if counters_changed {
            self.counters.write_to(&mut batch);
        }
        self.undo.clear();
        self.saved = None;
        // The batch is about to change the store: what was read of it is stale.
        *self.memo.get_mut() = Memo::default();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::cipher::{Sealed, StoreKey};
    use crate::queue::MemoryStore;

    #[test]
    fn a_sealed_store_tells_the_length_of_a_value_without_opening_it() {
        let key = StoreKey::from_bytes([3; 32], "test");
        let s = Sealed::open(MemoryStore::new(), &key).unwrap();
        let mut b = Batch::new();
        b.put(keys::segment(1), vec![7u8; 100_000]);
        b.put(b"mempty".to_vec(), Vec::new());
        b.put(keys::dedupe("cuff|spo2|97"), vec![1u8; 24]);
        s.apply(b).unwrap();
        for k in [
            keys::segment(1),
            b"mempty".to_vec(),
            keys::dedupe("cuff|spo2|97"),
            keys::segment(2),
        ] {
            let len = s.get(&k).unwrap().map(|v| v.len());
            assert_eq!(s.value_len(&k).unwrap(), len, "{k:?}");
        }
        assert_eq!(s.value_len(&keys::segment(1)).unwrap(), Some(100_000));
        // A segment removed by a group is counted with the size it had, read without `get`.
        let tx = Txn::with_seq(&s, Counters::default(), 5);
        assert_eq!(tx.stored_len(&keys::segment(1)).unwrap(), Some(100_000));
    }
}
