//! Offline checks of a queue store: what every key is, whether its value decodes, whether the
//! entries refer to each other as they must, and whether the persisted counters match a recount.
//!
//! Receives a [`Store`] (a stopped daemon's sled store, or a [`super::MemoryStore`] in tests);
//! returns a [`Report`] and never writes. Used by `vitalsd queue verify`, by `queue salvage`
//! (through [`classify`]) and at daemon start ([`counts_lost`]).
//!
//! # The prefix table
//! [`RULES`] is the ONE place that knows, per key prefix, what a key and its value must look
//! like; everything else here goes through it. Layout parsing is left to `keys` and the
//! counting to [`Counters::recount`]. Tags that `keys` does not name (meta, the rejected log)
//! are literal bytes next to the table.
//!
//! Problems name a key by its hex, except dedupe keys (`k`), which hold a device's
//! measurement values: those are shown as their tag plus a SHA-256 prefix. Values are never
//! shown.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::keys::{self, DeadValue, PendingValue};
use super::store::Store;
use super::txn::Counters;
use super::types::QueueError;
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
        tag: super::held::HELD,
        name: "held",
        check: held,
    },
    Rule {
        tag: super::audit::AUDIT,
        name: "audit log",
        check: audit,
    },
    Rule {
        tag: super::audit::CONTEXT,
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
    let _: super::RejectedRecord = json(v)?;
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
                super::rejected::payload_hash(key)
            )
        }
        _ => hex::encode(key),
    }
}

/// One thing wrong with the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The key, as [`show_key`] shows it (empty for store-wide problems).
    pub key: String,
    pub reason: String,
}

/// Readings, and pending and dead entries per sink (persisted or recounted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub readings: u64,
    /// sink → (pending, dead); sinks whose counts are both 0 are left out.
    pub sinks: BTreeMap<String, (u64, u64)>,
}

impl From<&Counters> for Counts {
    fn from(c: &Counters) -> Self {
        let sinks = c
            .sinks
            .iter()
            .filter(|(_, n)| n.pending + n.dead > 0)
            .map(|(s, n)| (s.as_str().to_string(), (n.pending, n.dead)))
            .collect();
        Counts {
            readings: c.readings,
            sinks,
        }
    }
}

impl Counts {
    /// Where `self` (the persisted counters) claims more than `found` (a recount) holds.
    pub fn shortfalls(&self, found: &Counts) -> Vec<String> {
        let mut out = Vec::new();
        if found.readings < self.readings {
            out.push(format!(
                "{} readings counted, {} found",
                self.readings, found.readings
            ));
        }
        for (sink, &(p, d)) in &self.sinks {
            let (fp, fd) = found.sinks.get(sink).copied().unwrap_or_default();
            if fp < p || fd < d {
                out.push(format!(
                    "sink {sink}: {p} pending and {d} dead counted, {fp} and {fd} found"
                ));
            }
        }
        out
    }
}

/// What `vitalsd queue verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Keys per prefix name (readable or not).
    pub keys: BTreeMap<&'static str, u64>,
    pub held: u64,
    /// Persisted counters (`None` when the store never persisted them) and the recount.
    pub counted: Option<Counts>,
    pub found: Counts,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, key: &[u8], reason: impl Into<String>) {
        self.problems.push(Problem {
            key: show_key(key),
            reason: reason.into(),
        });
    }
}

/// Every entry with the given first byte, page by page; a read error ends that prefix and is
/// returned with the last key read before it.
pub fn scan_tag(
    store: &dyn Store,
    tag: u8,
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<(), (Option<Vec<u8>>, String)> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan_prefix(&[tag], after.as_deref(), 1024)
            .map_err(|e| (after.clone(), e.to_string()))?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        let last = last.clone();
        for (k, v) in &page {
            each(k, v);
        }
        after = Some(last);
    }
}

/// Checks every key of `store` (see the module doc). Reads only.
pub fn check(store: &dyn Store) -> Result<Report, QueueError> {
    let mut rep = Report::default();
    let mut readable: HashSet<ReadingId> = HashSet::new();
    let mut items: Vec<(Vec<u8>, Item)> = Vec::new();
    for tag in 0..=u8::MAX {
        let name = rule_for(&[tag]).map_or("unknown", |r| r.name);
        let mut found = Vec::new();
        let scanned = scan_tag(store, tag, |k, v| found.push((k.to_vec(), classify(k, v))));
        for (k, item) in found {
            *rep.keys.entry(name).or_default() += 1;
            match item {
                Ok(Item::Reading(id)) => {
                    readable.insert(id);
                }
                Ok(Item::Counter | Item::Other) => {}
                Ok(other) => items.push((k, other)),
                Err(reason) => rep.problem(&k, reason),
            }
        }
        if let Err((last, e)) = scanned {
            let at = last.map_or("its start".into(), |k| show_key(&k));
            rep.problem(
                &[tag],
                format!("cannot read `{}` keys after {at}: {e}", tag as char),
            );
        }
    }
    let mut referenced: HashSet<ReadingId> = HashSet::new();
    for (k, item) in &items {
        match item {
            Item::Fresh(_, id) | Item::Dead(_, id) | Item::Held(id) | Item::Retried(_, id, _) => {
                referenced.insert(*id);
                if !readable.contains(id) {
                    rep.problem(k, "entry without a readable reading");
                }
                if let Item::Retried(sink, id, ms) = item {
                    if store.get(&keys::due(sink, *ms, *id))?.is_none() {
                        rep.problem(k, "retried pending entry without its due key");
                    }
                }
                if matches!(item, Item::Held(_)) {
                    rep.held += 1;
                }
            }
            Item::Due(sink, ms, id) => {
                let qk = keys::retried(sink, *id);
                let at_ms = match store.get(&qk)? {
                    Some(v) => matches!(classify(&qk, &v), Ok(Item::Retried(_, _, t)) if t == *ms),
                    None => false,
                };
                if !at_ms {
                    rep.problem(k, "due key without a retried entry at that time");
                }
            }
            _ => {}
        }
    }
    let mut orphans: Vec<_> = readable.difference(&referenced).copied().collect();
    orphans.sort();
    for id in orphans {
        rep.problem(
            &keys::reading(id),
            "orphan: no pending, dead or held entry refers to this reading",
        );
    }
    rep.found = Counts::from(&Counters::recount(store)?);
    match Counters::load(store) {
        Ok(c) => rep.counted = c.as_ref().map(Counts::from),
        Err(e) => rep.problem(&[keys::COUNTER], format!("counters unreadable: {e}")),
    }
    if let Some(counted) = rep.counted.clone() {
        if counted != rep.found {
            let mut why = counted.shortfalls(&rep.found);
            if why.is_empty() {
                why.push("the recount finds more than the counters say".into());
            }
            rep.problem(
                &[keys::COUNTER],
                format!("counters differ from a recount: {}", why.join("; ")),
            );
        }
    }
    Ok(rep)
}

/// At daemon start: what the persisted counters claim that a recount cannot find (readings or
/// entries that sled's recovery lost while keeping the counters). Empty when all is there or
/// the store has no persisted counters.
pub fn counts_lost(store: &dyn Store) -> Result<Vec<String>, QueueError> {
    let Some(counted) = Counters::load(store)? else {
        return Ok(Vec::new());
    };
    let found = Counters::recount(store)?;
    Ok(Counts::from(&counted).shortfalls(&Counts::from(&found)))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
