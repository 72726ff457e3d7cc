//! Salvage of a damaged queue store: every readable reading with its pending, dead or held
//! state goes into a fresh store; what cannot be read is handed back for a quarantine file.
//!
//! Receives the damaged store (opened from a COPY by [`open_copy`], so the original is never
//! written, not even by sled's own recovery) and an empty destination store. Promises:
//! - a segment is copied as it is (same number) when it parses; its live bitmap is copied
//!   without the bits of entries that are not a reading with the entry's id (each of those is
//!   quarantined under `g seq ++ index (u32 BE)` with its raw stored bytes, binary or JSON) or
//!   that lie past its end;
//! - a segment that does not parse, or is missing, loses its live readings with their ids:
//!   they are counted per segment number in [`Outcome::lost`] (the raw value is quarantined);
//! - fresh bits (`p`) are copied where their entry was kept; retried (`q`, with its due key
//!   rebuilt) and dead (`d`) entries where their slot holds their reading, kept; held readings
//!   (`h`, the reading inside) when they decode. A reading is never left both fresh and retried,
//!   nor pending and dead, for one sink: the retried entry wins over a fresh bit, pending over
//!   dead (the loser is quarantined or dropped);
//! - a kept reading that no entry refers to becomes a dead-letter entry of every sink the store
//!   knows (reason [`ORPHAN_REASON`]), so an operator can retry it — never sent on its own,
//!   never lost;
//! - keys of the layout before segments (`r`), an entry whose reading is missing or unreadable,
//!   an undecodable value and a key of an unknown prefix are returned as [`Quarantined`] (raw
//!   bytes and the reason), never copied;
//! - the counters are recounted over the new store and persisted with both `m` markers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::verify::{classify, rule_for, scan_tag, show_key, Item};
use crate::queue::keys::{self, DeadValue};
use crate::queue::segment::{self, Segment, Slot};
use crate::queue::store::{Batch, Store, StoreError};
use crate::queue::txn::Counters;
use crate::queue::types::QueueError;
use crate::reading::{ReadingId, SinkId};

mod open;
pub use open::{open_copy, Opened};

/// The dead-letter reason of a readable reading found without any entry.
pub const ORPHAN_REASON: &str = "salvage: stored without any pending, dead or held entry";

/// A key and value that were not copied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub reason: String,
}

/// What a salvage copied.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Keys copied per prefix name (counters and due keys are rebuilt, not copied).
    pub copied: BTreeMap<&'static str, u64>,
    /// Readings exported: live entries of the copied segments plus held readings.
    pub readings: u64,
    /// Readings without entries, now dead-letters (see [`ORPHAN_REASON`]).
    pub orphans: u64,
    pub quarantined: Vec<Quarantined>,
    /// Parts of the old store that could not be read or exported (prefix, last key, error).
    pub unreadable: Vec<String>,
    /// Segments that do not parse or are missing: segment number → live readings lost (their
    /// ids are unknown).
    pub lost: BTreeMap<u64, u64>,
}

impl Outcome {
    fn quarantine(&mut self, k: &[u8], v: &[u8], reason: impl Into<String>) {
        self.quarantined.push(Quarantined {
            key: k.to_vec(),
            value: v.to_vec(),
            reason: reason.into(),
        });
    }

    /// Quarantines and goes on with the next key.
    fn skip(&mut self, k: &[u8], v: &[u8], reason: impl Into<String>) -> Result<(), StoreError> {
        self.quarantine(k, v, reason);
        Ok(())
    }

    fn copied(&mut self, k: &[u8]) {
        let name = rule_for(k).map_or("unknown", |r| r.name);
        *self.copied.entry(name).or_default() += 1;
    }
}

/// Batched writes into the new store.
struct Writer<'a> {
    dst: &'a dyn Store,
    batch: Batch,
    bytes: usize,
}

impl Writer<'_> {
    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) -> Result<(), StoreError> {
        self.bytes += k.len() + v.len();
        self.batch.put(k, v);
        self.flush_if_full()
    }
    fn remove(&mut self, k: Vec<u8>) -> Result<(), StoreError> {
        self.batch.remove(k);
        self.flush_if_full()
    }
    fn flush_if_full(&mut self) -> Result<(), StoreError> {
        if self.batch.len() >= 1000 || self.bytes >= 16 << 20 {
            self.bytes = 0;
            self.dst.apply(std::mem::take(&mut self.batch))?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), StoreError> {
        if !self.batch.is_empty() {
            self.dst.apply(std::mem::take(&mut self.batch))?;
        }
        self.dst.sync()
    }
}

/// Calls `f` with every key and value of one tag; a read error of the store ends the tag and
/// is noted in [`Outcome::unreadable`], an error of `f` (writing) ends the salvage.
fn scan(
    src: &dyn Store,
    tag: u8,
    out: &mut Outcome,
    mut f: impl FnMut(&mut Outcome, &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut failed = None;
    let r = scan_tag(src, tag, |k, v| {
        if failed.is_none() {
            failed = f(out, k, v).err();
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if let Err((last, e)) = r {
        let at = last.map_or("its start".into(), |k| show_key(&k));
        out.unreadable
            .push(format!("`{}` keys after {at}: {e}", tag as char));
    }
    Ok(())
}

/// The quarantine key of one segment entry: `g seq ++ index`.
fn entry_key(slot: Slot) -> Vec<u8> {
    let mut k = keys::segment(slot.seq());
    k.extend_from_slice(&slot.idx().to_be_bytes());
    k
}

/// The live readings of the copied segments: segment → (entry index → id).
type Kept = BTreeMap<u64, BTreeMap<u32, ReadingId>>;

/// Copies every readable entry of `src` into the empty `dst` (see the module doc).
pub fn salvage(src: &dyn Store, dst: &dyn Store, now_ms: u64) -> Result<Outcome, QueueError> {
    let mut out = Outcome::default();
    let mut w = Writer {
        dst,
        batch: Batch::new(),
        bytes: 0,
    };
    let mut live: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    scan(src, keys::LIVE, &mut out, |out, k, v| {
        match classify(k, v) {
            Ok(Item::Live(seq, bits)) => drop(live.insert(seq, bits)),
            Ok(_) => {}
            Err(reason) => out.quarantine(k, v, reason),
        }
        Ok(())
    })?;
    let kept = segments(src, &mut w, &mut out, &live)?;
    let at = |slot: Slot| {
        kept.get(&slot.seq())
            .and_then(|e| e.get(&slot.idx()))
            .copied()
    };
    let mut sinks: BTreeSet<SinkId> = BTreeSet::new();
    let mut referenced: HashSet<ReadingId> = HashSet::new();
    // Retried, then fresh, then dead: each gives way to the ones before for its sink.
    let mut taken: HashSet<(SinkId, Slot)> = HashSet::new();
    for tag in [keys::RETRIED, keys::PENDING, keys::DEAD] {
        scan(src, tag, &mut out, |out, k, v| {
            let item = match classify(k, v) {
                Ok(item) => item,
                Err(reason) => return out.skip(k, v, reason),
            };
            let (s, id, slot, due) = match item {
                Item::Retried(s, id, slot, ms) => (s, id, slot, Some(ms)),
                Item::Dead(s, id, slot) => (s, id, slot, None),
                Item::Fresh(s, seq, bits) => {
                    let mut copy = Vec::new();
                    for i in segment::ones(&bits) {
                        let slot = Slot(seq, i);
                        if let Some(id) = at(slot).filter(|_| taken.insert((s.clone(), slot))) {
                            referenced.insert(id);
                            segment::set_bit(&mut copy, i);
                        }
                    }
                    sinks.insert(s);
                    if segment::count(&copy) == 0 {
                        return Ok(());
                    }
                    out.copied(k);
                    return w.put(k.to_vec(), copy);
                }
                _ => return Ok(()),
            };
            sinks.insert(s.clone());
            if at(slot) != Some(id) {
                return out.skip(k, v, "its reading is missing or unreadable");
            }
            if !taken.insert((s.clone(), slot)) {
                let why = "also pending for its sink (the pending entry was kept)";
                return out.skip(k, v, why);
            }
            referenced.insert(id);
            if let Some(ms) = due {
                w.put(keys::due(&s, ms, id), Vec::new())?;
            }
            out.copied(k);
            w.put(k.to_vec(), v.to_vec())
        })?;
    }
    others(src, &mut w, &mut out)?;
    if let Ok(Some(c)) = Counters::load(src) {
        sinks.extend(c.sinks.keys().cloned());
    }
    let kept = orphans(src, &mut w, &mut out, kept, &referenced, &sinks, now_ms)?;
    for (seq, entries) in kept {
        let mut bits = Vec::new();
        entries.keys().for_each(|i| segment::set_bit(&mut bits, *i));
        if entries.is_empty() {
            w.remove(keys::segment(seq))?;
            if let Some(n) = out.copied.get_mut("segments") {
                *n = n.saturating_sub(1);
            }
            continue;
        }
        out.readings += entries.len() as u64;
        let k = keys::live(seq);
        out.copied(&k);
        w.put(k, bits)?;
    }
    w.finish()?;
    let counters = Counters::recount(dst)?;
    let mut batch = Batch::new();
    counters.write_to(&mut batch);
    batch.put(keys::META_COUNTERS, b"1".to_vec());
    batch.put(keys::META_LAYOUT, keys::layout_marker());
    dst.apply(batch)?;
    dst.sync()?;
    Ok(out)
}

/// Copies the segments that hold live readable entries; returns those entries. Quarantines
/// live entries that are not readings, and segments that do not parse or have no live bitmap;
/// counts the live readings of segments that do not parse or are missing as lost.
fn segments(
    src: &dyn Store,
    w: &mut Writer,
    out: &mut Outcome,
    live: &BTreeMap<u64, Vec<u8>>,
) -> Result<Kept, StoreError> {
    let mut kept = Kept::new();
    let mut seen = HashSet::new();
    scan(src, keys::SEGMENT, out, |out, k, v| {
        let (seq, entries) = match classify(k, v) {
            Ok(Item::Segment(seq, entries)) => (seq, entries),
            Ok(_) => return Ok(()),
            Err(reason) => return out.skip(k, v, reason),
        };
        seen.insert(seq);
        let Some(bits) = live.get(&seq) else {
            let why = "segment without a live bitmap: its readings were deleted or the bitmap lost";
            return out.skip(k, v, why);
        };
        let seg = Segment::parse(v).ok();
        let mut keep = BTreeMap::new();
        for i in segment::ones(bits) {
            match entries.get(i as usize) {
                Some((id, None)) => drop(keep.insert(i, *id)),
                Some((id, Some(why))) => {
                    let json = seg.as_ref().and_then(|s| s.get(i)).map_or(&[][..], |e| e.1);
                    let why = format!("segment {seq} entry {i} (reading {id}): {why}");
                    out.quarantine(&entry_key(Slot(seq, i)), json, why);
                }
                None => {}
            }
        }
        if keep.is_empty() {
            return Ok(());
        }
        kept.insert(seq, keep);
        out.copied(k);
        w.put(k.to_vec(), v.to_vec())
    })?;
    for (seq, bits) in live {
        if !seen.contains(seq) {
            out.lost.insert(*seq, segment::count(bits));
        }
    }
    Ok(kept)
}

/// Copies held readings and every key that stands alone; quarantines old-layout readings,
/// undecodable values and unknown prefixes. Counters, markers and due keys are rebuilt.
fn others(src: &dyn Store, w: &mut Writer, out: &mut Outcome) -> Result<(), StoreError> {
    let done = [
        keys::SEGMENT,
        keys::LIVE,
        keys::PENDING,
        keys::RETRIED,
        keys::DEAD,
        keys::DUE,
        keys::COUNTER,
    ];
    let mut old = 0u64;
    for tag in (0..=u8::MAX).filter(|t| !done.contains(t)) {
        scan(src, tag, out, |out, k, v| {
            match classify(k, v) {
                Err(reason) => return out.skip(k, v, reason),
                Ok(Item::OldReading) => {
                    old += 1;
                    let why = "a reading of the layout before segments: this vitalsd cannot \
                               export it";
                    return out.skip(k, v, why);
                }
                Ok(Item::Held(_) | Item::Quarantined(_)) => out.readings += 1,
                Ok(_) if k == keys::META_COUNTERS || k == keys::META_LAYOUT => return Ok(()),
                Ok(_) => {}
            }
            out.copied(k);
            w.put(k.to_vec(), v.to_vec())
        })?;
    }
    if old > 0 {
        out.unreadable.push(format!(
            "`r` keys: {old} readings of the layout before segments; this vitalsd cannot \
             export them (quarantined raw: deliver them with the vitalsd that wrote them)"
        ));
    }
    Ok(())
}

/// Dead-letters every kept reading that nothing refers to, for every sink; without any sink
/// quarantines it instead (its bit is left out). Returns the entries that stay live.
fn orphans(
    src: &dyn Store,
    w: &mut Writer,
    out: &mut Outcome,
    mut kept: Kept,
    referenced: &HashSet<ReadingId>,
    sinks: &BTreeSet<SinkId>,
    now_ms: u64,
) -> Result<Kept, QueueError> {
    let mut dropped: HashMap<u64, Vec<u32>> = HashMap::new();
    for (seq, entries) in &kept {
        for (i, id) in entries {
            if referenced.contains(id) {
                continue;
            }
            if sinks.is_empty() {
                dropped.entry(*seq).or_default().push(*i);
                continue;
            }
            let orphan = DeadValue {
                slot: Slot(*seq, *i),
                reason: ORPHAN_REASON.into(),
                at: now_ms,
                attempts: 0,
            };
            let v = serde_json::to_vec(&orphan).map_err(|e| StoreError::Io(e.to_string()))?;
            for s in sinks {
                w.put(keys::dead(s, *id), v.clone())?;
            }
            out.orphans += 1;
        }
    }
    for (seq, ix) in dropped {
        let raw = src.get(&keys::segment(seq))?.unwrap_or_default();
        let seg = Segment::parse(&raw).ok();
        for i in ix {
            let json = seg.as_ref().and_then(|s| s.get(i)).map_or(&[][..], |e| e.1);
            let why = "orphan reading and no sink to dead-letter it for";
            out.quarantine(&entry_key(Slot(seq, i)), json, why);
            if let Some(e) = kept.get_mut(&seq) {
                e.remove(&i);
            }
        }
    }
    Ok(kept)
}

#[cfg(test)]
#[path = "salvage_tests.rs"]
mod tests;
