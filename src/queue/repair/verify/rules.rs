//! The prefix table of `verify`: per key prefix, what a key and its value must look like.
//!
//! [`RULES`] is the ONE place to adjust when the queue's key layout changes. Layout parsing is
//! left to `keys` and `segment`; tags that `keys` does not name (meta, the rejected log) are
//! literal bytes here. Reasons never quote a value: a decode error is named by its kind and
//! position only (serde's own message can quote the offending string).

use crate::queue::keys::{self, DeadValue, PendingValue};
use crate::queue::segment::{self, Segment, Slot};
use crate::reading::{Reading, ReadingId, SinkId};

/// One entry of a segment: its id, and why its JSON is not a reading with that id (`None`: it
/// is one).
pub type Entry = (ReadingId, Option<String>);

/// What one readable key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A segment (`g`): its number and every entry, live or not.
    Segment(u64, Vec<Entry>),
    /// The live bitmap of a segment (`n`; never empty).
    Live(u64, Vec<u8>),
    /// A sink's fresh-pending bitmap over one segment (`p`; never empty).
    Fresh(SinkId, u64, Vec<u8>),
    /// A pending entry with its own time (`q`): it must have a due key `t`.
    Retried(SinkId, ReadingId, Slot, u64),
    Due(SinkId, u64, ReadingId),
    Dead(SinkId, ReadingId, Slot),
    /// A held reading: the reading lives in its held value, not in a segment.
    Held(ReadingId),
    /// A quarantined reading (failed a hard limit): it lives in its value, not in a segment.
    Quarantined(ReadingId),
    /// A reading key (`r`) of the layout before segments.
    OldReading,
    /// A persisted counter (`c`): rebuilt by salvage, compared by verify.
    Counter,
    /// Anything else that stands alone (dedupe keys, audit, contexts, rejected log, meta).
    Other,
}

/// What a key with one tag must look like.
pub struct Rule {
    pub tag: u8,
    pub name: &'static str,
    pub check: fn(&[u8], &[u8]) -> Result<Item, String>,
}

/// Every key prefix of the queue's tree. Adjust HERE when the layout changes.
pub const RULES: &[Rule] = &[
    Rule {
        tag: keys::SEGMENT,
        name: "segments",
        check: segment,
    },
    Rule {
        tag: keys::LIVE,
        name: "live bitmaps",
        check: live,
    },
    Rule {
        tag: keys::PENDING,
        name: "pending bitmaps",
        check: pending,
    },
    Rule {
        tag: keys::RETRIED,
        name: "pending (retried)",
        check: retried,
    },
    Rule {
        tag: keys::DUE,
        name: "due index",
        check: due,
    },
    Rule {
        tag: keys::DEAD,
        name: "dead-letter",
        check: dead,
    },
    Rule {
        tag: keys::OLD_READING,
        name: "readings (old layout)",
        check: old_reading,
    },
    Rule {
        tag: keys::DEDUPE,
        name: "dedupe keys",
        check: dedupe,
    },
    Rule {
        tag: crate::queue::dedupe::BUCKET,
        name: "dedupe buckets",
        check: dedupe_bucket,
    },
    Rule {
        tag: keys::COUNTER,
        name: "counters",
        check: counter,
    },
    Rule {
        tag: META,
        name: "meta",
        check: meta,
    },
    Rule {
        tag: crate::queue::held::HELD,
        name: "held",
        check: held,
    },
    Rule {
        tag: crate::queue::audit::AUDIT,
        name: "audit log",
        check: audit,
    },
    Rule {
        tag: crate::queue::contexts::CONTEXT,
        name: "room contexts",
        check: json_any,
    },
    Rule {
        tag: crate::queue::quarantine::QUARANTINE,
        name: "quarantine",
        check: quarantined,
    },
    Rule {
        tag: REJECTED,
        name: "rejected payloads",
        check: rejected,
    },
    Rule {
        tag: crate::queue::review::REVIEW,
        name: "review list",
        check: held,
    },
];

const META: u8 = b'm';
const REJECTED: u8 = b'j';

fn id_key(key: &[u8]) -> Result<ReadingId, String> {
    if key.len() != 17 {
        return Err(format!("key is {} bytes, expected 17", key.len()));
    }
    keys::id_suffix(key).ok_or_else(|| "no id in the key".into())
}

fn seq_key(key: &[u8]) -> Result<u64, String> {
    if key.len() != 9 {
        return Err(format!(
            "key is {} bytes, expected 9 (tag ++ seq)",
            key.len()
        ));
    }
    keys::seq_suffix(key).ok_or_else(|| "no segment number in the key".into())
}

fn sink_entry(key: &[u8]) -> Result<(SinkId, ReadingId), String> {
    keys::parse_sink_entry(key).ok_or_else(|| "not `tag sink 0x00 id`".into())
}

/// Why a JSON value does not decode, without quoting any of it.
pub fn decode_error(e: &serde_json::Error) -> String {
    crate::queue::segment_entry::json_error(e)
}

fn json<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T, String> {
    serde_json::from_slice(v).map_err(|e| format!("value does not decode: {}", decode_error(&e)))
}

/// Whether one segment entry (either stored form) is a reading stored under `id`.
pub fn entry_reading(id: ReadingId, v: &[u8]) -> Result<(), String> {
    let r = crate::queue::segment_entry::decode(v)
        .map_err(|e| format!("does not decode as a reading: {e}"))?;
    match r.id {
        Some(inner) if inner == id => Ok(()),
        Some(_) => Err("the reading's id differs from its entry's".into()),
        None => Err("the reading has no id".into()),
    }
}

fn segment(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let seq = seq_key(k)?;
    let seg = Segment::parse(v).map_err(|e| format!("segment does not parse: {e}"))?;
    let entries = seg
        .iter()
        .map(|(_, id, json)| (id, entry_reading(id, json).err()))
        .collect();
    Ok(Item::Segment(seq, entries))
}

fn bitmap(v: &[u8], what: &str) -> Result<Vec<u8>, String> {
    if segment::count(v) == 0 {
        return Err(format!(
            "{what} without any bit set (it is deleted when empty)"
        ));
    }
    Ok(v.to_vec())
}

fn live(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let seq = seq_key(k)?;
    Ok(Item::Live(seq, bitmap(v, "live bitmap")?))
}

fn pending(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let (sink, seq) = keys::parse_pending(k).ok_or("not `p sink 0x00 seq`")?;
    if sink.as_str().is_empty() {
        return Err("not `p sink 0x00 seq`: no sink".into());
    }
    Ok(Item::Fresh(sink, seq, bitmap(v, "pending bitmap")?))
}

fn retried(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let (sink, id) = sink_entry(k)?;
    let p: PendingValue = json(v)?;
    Ok(Item::Retried(sink, id, p.slot, p.not_before_ms))
}

/// The sink of a due key: `t sink 0x00 ms id`.
fn due_sink(k: &[u8]) -> Option<SinkId> {
    let nul = k.len().checked_sub(25)?;
    if nul < 1 || k[nul] != 0 {
        return None;
    }
    std::str::from_utf8(&k[1..nul]).ok().map(SinkId::new)
}

fn due(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let (ms, id) = keys::parse_due(k).ok_or("not `t sink 0x00 ms id`")?;
    let sink = due_sink(k).ok_or("not `t sink 0x00 ms id`")?;
    if !v.is_empty() {
        return Err("due index value is not empty".into());
    }
    Ok(Item::Due(sink, ms, id))
}

fn dead(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let (sink, id) = sink_entry(k)?;
    let d: DeadValue = json(v)?;
    Ok(Item::Dead(sink, id, d.slot))
}

fn old_reading(_: &[u8], _: &[u8]) -> Result<Item, String> {
    Ok(Item::OldReading)
}

fn dedupe(k: &[u8], v: &[u8]) -> Result<Item, String> {
    if k.len() < 2 {
        return Err("empty dedupe key".into());
    }
    keys::parse_dedupe_value(v).ok_or("dedupe value shorter than id ++ ms")?;
    Ok(Item::Other)
}

fn dedupe_bucket(k: &[u8], v: &[u8]) -> Result<Item, String> {
    if !crate::queue::dedupe::valid_chunk(k, v) {
        return Err("not `w hour device chunk` with sorted 24-byte entries".into());
    }
    Ok(Item::Other)
}

fn counter(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let ok = match k.get(1) {
        Some(b'r' | b'u') => k.len() == 2 && v.len() == 8,
        Some(b's') => std::str::from_utf8(&k[2..]).is_ok() && v.len() == 16,
        _ => false,
    };
    ok.then_some(Item::Counter)
        .ok_or_else(|| "not a readings, quarantine or sink counter of the right size".into())
}

fn meta(k: &[u8], v: &[u8]) -> Result<Item, String> {
    match k {
        keys::META_COUNTERS if v != b"1" => Err("counters flag is not \"1\"".into()),
        keys::META_LAYOUT if keys::layout_version(v).is_none() => {
            Err("layout marker is not \"segments\" or \"segments vN\"".into())
        }
        b"mrejected" if v.len() != 24 => Err("rejected-log position is not 3 × u64".into()),
        _ => Ok(Item::Other),
    }
}

/// A held value: the reading lives here, not in a segment.
#[derive(serde::Deserialize)]
struct HeldValue {
    #[serde(rename = "at")]
    _at: u64,
    reading: Reading,
}

fn held(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let id = id_key(k)?;
    let h: HeldValue = json(v)?;
    if h.reading.id != Some(id) {
        return Err("the held reading's id differs from its key".into());
    }
    Ok(Item::Held(id))
}

fn quarantined(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let id = id_key(k)?;
    let q: crate::queue::quarantine::QuarantineValue = json(v)?;
    if q.reading.id != Some(id) {
        return Err("the quarantined reading's id differs from its key".into());
    }
    Ok(Item::Quarantined(id))
}

fn audit(_: &[u8], v: &[u8]) -> Result<Item, String> {
    let _: crate::queue::audit::Stored = json(v)?;
    Ok(Item::Other)
}

fn json_any(_: &[u8], v: &[u8]) -> Result<Item, String> {
    let _: serde_json::Value = json(v)?;
    Ok(Item::Other)
}

fn rejected(k: &[u8], v: &[u8]) -> Result<Item, String> {
    if k.len() != 9 {
        return Err("not `j seq`".into());
    }
    let _: crate::queue::RejectedRecord = json(v)?;
    Ok(Item::Other)
}

/// The rule for a key, by its first byte.
pub fn rule_for(key: &[u8]) -> Option<&'static Rule> {
    let tag = *key.first()?;
    RULES.iter().find(|r| r.tag == tag)
}

/// What a key is, or why it is not readable.
pub fn classify(key: &[u8], value: &[u8]) -> Result<Item, String> {
    match rule_for(key) {
        Some(rule) => (rule.check)(key, value),
        None => Err("unknown key prefix".into()),
    }
}

/// How a problem names a key without showing patient data.
pub fn show_key(key: &[u8]) -> String {
    match key.first() {
        Some(&t) if t == keys::DEDUPE => {
            format!(
                "{}:sha256:{}",
                t as char,
                crate::queue::rejected::payload_hash(key)
            )
        }
        _ => hex::encode(key),
    }
}
