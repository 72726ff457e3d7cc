//! The prefix table of `verify`: per key prefix, what a key and its value must look like.
//!
//! [`RULES`] is the ONE place to adjust when the queue's key layout changes. Layout parsing is
//! left to `keys`; tags that `keys` does not name (meta, the rejected log) are literal bytes
//! here.

use super::super::keys::{self, DeadValue, PendingValue};
use crate::context::audit::AuditEntry;
use crate::reading::{Reading, ReadingId, SinkId};

/// What one readable key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Reading(ReadingId),
    /// A pending entry that is due at once, in id order (no due key of its own).
    Fresh(SinkId, ReadingId),
    /// A pending entry with its own time: it must have a due key `t`.
    Retried(SinkId, ReadingId, u64),
    Due(SinkId, u64, ReadingId),
    Dead(SinkId, ReadingId),
    Held(ReadingId),
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
        tag: keys::READING,
        name: "readings",
        check: reading,
    },
    Rule {
        tag: keys::PENDING,
        name: "pending",
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
        tag: keys::DEDUPE,
        name: "dedupe keys",
        check: dedupe,
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
        tag: super::super::held::HELD,
        name: "held",
        check: held,
    },
    Rule {
        tag: super::super::audit::AUDIT,
        name: "audit log",
        check: audit,
    },
    Rule {
        tag: super::super::audit::CONTEXT,
        name: "room contexts",
        check: json_any,
    },
    Rule {
        tag: REJECTED,
        name: "rejected payloads",
        check: rejected,
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

fn sink_entry(key: &[u8]) -> Result<(SinkId, ReadingId), String> {
    keys::parse_sink_entry(key).ok_or_else(|| "not `tag sink 0x00 id`".into())
}

fn json<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T, String> {
    serde_json::from_slice(v).map_err(|e| format!("value does not decode: {e}"))
}

fn reading(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let id = id_key(k)?;
    let r: Reading = json(v)?;
    match r.id {
        Some(inner) if inner != id => Err("the reading's id differs from its key".into()),
        _ => Ok(Item::Reading(id)),
    }
}

fn pending(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let (sink, id) = sink_entry(k)?;
    if !v.is_empty() {
        return Err("a fresh pending entry has a value (its state belongs under `q`)".into());
    }
    Ok(Item::Fresh(sink, id))
}

fn retried(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let (sink, id) = sink_entry(k)?;
    let p: PendingValue = json(v)?;
    Ok(Item::Retried(sink, id, p.not_before_ms))
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
    let _: DeadValue = json(v)?;
    Ok(Item::Dead(sink, id))
}

fn dedupe(k: &[u8], v: &[u8]) -> Result<Item, String> {
    if k.len() < 2 {
        return Err("empty dedupe key".into());
    }
    keys::parse_dedupe_value(v).ok_or("dedupe value shorter than id ++ ms")?;
    Ok(Item::Other)
}

fn counter(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let ok = match k.get(1) {
        Some(b'r') => k.len() == 2 && v.len() == 8,
        Some(b's') => std::str::from_utf8(&k[2..]).is_ok() && v.len() == 16,
        _ => false,
    };
    ok.then_some(Item::Counter)
        .ok_or_else(|| "not a readings or sink counter of the right size".into())
}

fn meta(k: &[u8], v: &[u8]) -> Result<Item, String> {
    match k {
        keys::META_COUNTERS if v != b"1" => Err("counters flag is not \"1\"".into()),
        b"mrejected" if v.len() != 24 => Err("rejected-log position is not 3 × u64".into()),
        _ => Ok(Item::Other),
    }
}

fn held(k: &[u8], v: &[u8]) -> Result<Item, String> {
    let id = id_key(k)?;
    let h: serde_json::Value = json(v)?;
    if !h.get("at").is_some_and(serde_json::Value::is_u64) {
        return Err("held value has no `at` time".into());
    }
    Ok(Item::Held(id))
}

fn audit(_: &[u8], v: &[u8]) -> Result<Item, String> {
    let _: AuditEntry = json(v)?;
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
    let _: super::super::RejectedRecord = json(v)?;
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
                super::super::rejected::payload_hash(key)
            )
        }
        _ => hex::encode(key),
    }
}
