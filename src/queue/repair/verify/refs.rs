//! The reference checks of `verify`: how segments, bitmaps and per-sink entries point at each
//! other (the list is in the module doc of `verify`).
//!
//! Receives the classified items of one scan (never counters, `Other`, held or old-layout
//! keys) and adds [`Problem`](super::Problem)s to the report; reads the store only to look up
//! a retried entry's due key and a due key's retried entry.

use std::collections::{BTreeMap, HashSet};

use super::rules::{classify, Entry, Item};
use super::Report;
use crate::queue::keys;
use crate::queue::segment::{self, Slot};
use crate::queue::store::Store;
use crate::queue::types::QueueError;
use crate::reading::{ReadingId, SinkId};

/// Indexes shown in one problem; the rest are counted.
const LIST: usize = 8;

/// `1, 4, 9` or `1, 4, … (+12 more)`.
pub fn list(ix: &[u32]) -> String {
    let mut s: Vec<String> = ix.iter().take(LIST).map(u32::to_string).collect();
    if ix.len() > LIST {
        s.push(format!("… (+{} more)", ix.len() - LIST));
    }
    s.join(", ")
}

/// The readable segments and their live bitmaps.
struct Segments {
    entries: BTreeMap<u64, Vec<Entry>>,
    live: BTreeMap<u64, Vec<u8>>,
}

impl Segments {
    /// The id of the live, readable entry at `slot`, or why there is none.
    fn resolve(&self, slot: Slot) -> Result<ReadingId, &'static str> {
        let entries = self
            .entries
            .get(&slot.seq())
            .ok_or("its segment is missing or unreadable")?;
        let live = self.live.get(&slot.seq()).map_or(&[][..], Vec::as_slice);
        if !segment::bit(live, slot.idx()) {
            return Err("its entry is not live");
        }
        match entries.get(slot.idx() as usize) {
            None => Err("its entry is beyond the segment's end"),
            Some((_, Some(_))) => Err("its reading is not readable"),
            Some((id, None)) => Ok(*id),
        }
    }
}

/// Adds the reference problems of `items` to `rep`.
pub fn check(
    rep: &mut Report,
    store: &dyn Store,
    items: Vec<(Vec<u8>, Item)>,
) -> Result<(), QueueError> {
    let mut segs = Segments {
        entries: BTreeMap::new(),
        live: BTreeMap::new(),
    };
    let mut live_keys = Vec::new();
    let mut rest = Vec::new();
    for (k, item) in items {
        match item {
            Item::Segment(seq, entries) => drop(segs.entries.insert(seq, entries)),
            Item::Live(seq, bits) => {
                segs.live.insert(seq, bits);
                live_keys.push((k, seq));
            }
            other => rest.push((k, other)),
        }
    }
    check_live(rep, &segs, &live_keys);
    // Fresh bits first, then retried, then dead: each checks against the ones before.
    rest.sort_by_key(|(_, item)| match item {
        Item::Fresh(..) => 0,
        Item::Retried(..) => 1,
        Item::Dead(..) => 2,
        _ => 3,
    });
    let mut referenced: HashSet<ReadingId> = HashSet::new();
    let mut fresh: HashSet<(SinkId, Slot)> = HashSet::new();
    let mut retried: HashSet<(SinkId, ReadingId)> = HashSet::new();
    for (k, item) in &rest {
        match item {
            Item::Fresh(sink, seq, bits) => {
                let mut bad: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
                for i in segment::ones(bits) {
                    let slot = Slot(*seq, i);
                    match segs.resolve(slot) {
                        Ok(id) => {
                            referenced.insert(id);
                            fresh.insert((sink.clone(), slot));
                        }
                        Err(why) => bad.entry(why).or_default().push(i),
                    }
                }
                for (why, ix) in bad {
                    rep.problem(k, format!("pending bits {}: {why}", list(&ix)));
                }
            }
            Item::Retried(sink, id, slot, ms) => {
                if slot_of(rep, &segs, k, *id, *slot, "retried") {
                    referenced.insert(*id);
                    if fresh.contains(&(sink.clone(), *slot)) {
                        rep.problem(k, "pending twice for its sink: retried and a fresh bit");
                    }
                }
                retried.insert((sink.clone(), *id));
                if store.get(&keys::due(sink, *ms, *id))?.is_none() {
                    rep.problem(k, "retried pending entry without its due key");
                }
            }
            Item::Dead(sink, id, slot) => {
                let holds = slot_of(rep, &segs, k, *id, *slot, "dead-letter");
                if holds {
                    referenced.insert(*id);
                    if fresh.contains(&(sink.clone(), *slot))
                        || retried.contains(&(sink.clone(), *id))
                    {
                        rep.problem(k, "dead-letter and pending for the same sink");
                    }
                }
            }
            Item::Due(sink, ms, id) => {
                let qk = keys::retried(sink, *id);
                let at_ms = match store.get(&qk)? {
                    Some(v) => {
                        matches!(classify(&qk, &v), Ok(Item::Retried(_, _, _, t)) if t == *ms)
                    }
                    None => false,
                };
                if !at_ms {
                    rep.problem(k, "due key without a retried entry at that time");
                }
            }
            _ => {}
        }
    }
    check_orphans(rep, &segs, &referenced);
    Ok(())
}

/// Whether the slot of a retried or dead entry holds its reading, live and readable; adds the
/// problem when not.
fn slot_of(
    rep: &mut Report,
    segs: &Segments,
    k: &[u8],
    id: ReadingId,
    slot: Slot,
    what: &str,
) -> bool {
    match segs.resolve(slot) {
        Ok(at) if at == id => true,
        Ok(_) => {
            rep.problem(k, format!("{what} entry's slot holds another reading"));
            false
        }
        Err(why) => {
            rep.problem(k, format!("{what} entry without a readable reading: {why}"));
            false
        }
    }
}

/// Every live bit inside its segment and naming a readable reading; every segment with a live
/// bitmap.
fn check_live(rep: &mut Report, segs: &Segments, live_keys: &[(Vec<u8>, u64)]) {
    for (k, seq) in live_keys {
        let bits = segs.live.get(seq).map_or(&[][..], Vec::as_slice);
        let Some(entries) = segs.entries.get(seq) else {
            let n = segment::count(bits);
            rep.problem(
                k,
                format!("live bitmap of a missing or unreadable segment: {n} readings lost"),
            );
            continue;
        };
        let beyond: Vec<u32> = segment::ones(bits)
            .filter(|i| *i as usize >= entries.len())
            .collect();
        if !beyond.is_empty() {
            rep.problem(
                k,
                format!(
                    "live bits {} beyond the segment's {} entries",
                    list(&beyond),
                    entries.len()
                ),
            );
        }
        for i in segment::ones(bits) {
            if let Some((_, Some(why))) = entries.get(i as usize) {
                rep.problem(&keys::segment(*seq), format!("live entry {i}: {why}"));
            }
        }
    }
    for seq in segs.entries.keys() {
        if !segs.live.contains_key(seq) {
            rep.problem(
                &keys::segment(*seq),
                "segment without a live bitmap (it is deleted with its last live entry)",
            );
        }
    }
}

/// Every live, readable entry referenced by a fresh bit, a retried or a dead entry.
fn check_orphans(rep: &mut Report, segs: &Segments, referenced: &HashSet<ReadingId>) {
    for (seq, entries) in &segs.entries {
        let bits = segs.live.get(seq).map_or(&[][..], Vec::as_slice);
        let orphans: Vec<u32> = segment::ones(bits)
            .filter(|i| {
                matches!(entries.get(*i as usize), Some((id, None)) if !referenced.contains(id))
            })
            .collect();
        if !orphans.is_empty() {
            rep.problem(
                &keys::segment(*seq),
                format!(
                    "orphan: live entries {} have no pending or dead entry for any sink",
                    list(&orphans)
                ),
            );
        }
    }
}
