//! Offline checks of a queue store: what every key is, whether its value decodes, whether the
//! entries refer to each other as they must, and whether the persisted counters match a recount.
//!
//! Receives a [`Store`] (a stopped daemon's sled store, or a `MemoryStore` in tests);
//! returns a [`Report`] and never writes. Used by `vitalsd queue verify`, by `queue salvage`
//! (through [`classify`]); the daemon's own start-up check is `crate::queue::marker_missing`.
//!
//! # The prefix table
//! [`RULES`] is the ONE place that knows, per key prefix, what a key and its value must look
//! like; everything else here goes through it. Layout parsing is left to `keys` and `segment`,
//! the counting to [`Counters::recount`]. Tags that `keys` does not name (meta, the rejected
//! log) are literal bytes next to the table (in `verify/rules.rs`).
//!
//! # References (`verify/refs.rs`)
//! Every live bit (`n`) is inside its segment and its entry is a reading with the entry's id;
//! every fresh bit (`p`) is live; every retried (`q`) or dead (`d`) entry's slot holds its
//! reading, live; a reading is not both fresh and retried, nor pending and dead, for one sink;
//! every live reading has a fresh bit, a retried or a dead entry (else: orphan); `q` and `t`
//! come in pairs. A store with `r` keys is from the layout before segments: one problem.
//!
//! Problems name a key by its hex, except dedupe keys (`k`), which hold a device's
//! measurement values: those are shown as their tag plus a SHA-256 prefix. Values are never
//! shown.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::queue::keys;
use crate::queue::store::Store;
use crate::queue::txn::Counters;
use crate::queue::types::QueueError;
use crate::queue::NO_MARKER;

mod refs;
mod rules;
pub use rules::{
    classify, decode_error, entry_reading, rule_for, show_key, Entry, Item, Rule, RULES,
};

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
    /// Of the readings, those in the quarantine.
    pub quarantined: u64,
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
            quarantined: c.quarantined,
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
        if found.quarantined < self.quarantined {
            out.push(format!(
                "{} quarantined counted, {} found",
                self.quarantined, found.quarantined
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
    pub quarantined: u64,
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
    let mut items: Vec<(Vec<u8>, Item)> = Vec::new();
    let mut old = 0u64;
    for tag in 0..=u8::MAX {
        let name = rule_for(&[tag]).map_or("unknown", |r| r.name);
        let mut found = Vec::new();
        let scanned = scan_tag(store, tag, |k, v| found.push((k.to_vec(), classify(k, v))));
        for (k, item) in found {
            *rep.keys.entry(name).or_default() += 1;
            match item {
                Ok(Item::Counter | Item::Other) => {}
                Ok(Item::OldReading) => old += 1,
                Ok(Item::Held(_)) => rep.held += 1,
                Ok(Item::Quarantined(_)) => rep.quarantined += 1,
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
    if old > 0 {
        rep.problem(&[keys::OLD_READING], old_layout(old));
    }
    refs::check(&mut rep, store, items)?;
    rep.found = Counts::from(&Counters::recount(store)?);
    match Counters::load(store) {
        Ok(Some(c)) => rep.counted = Some(Counts::from(&c)),
        Ok(None) => rep.problem(keys::META_COUNTERS, NO_MARKER),
        Err(e) => rep.problem(&[keys::COUNTER], format!("counters unreadable: {e}")),
    }
    if rep.counted.is_some() && old == 0 && store.get(keys::META_LAYOUT)?.is_none() {
        rep.problem(
            keys::META_LAYOUT,
            "the layout marker (`m layout` = \"segments\") is missing",
        );
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

/// The one problem of a store written in the layout before segments (`r` keys).
pub fn old_layout(keys: u64) -> String {
    format!(
        "{keys} reading keys (`r`) of the layout before segments: this store was written by an \
         older vitalsd, which must deliver or export it; this version cannot read or salvage \
         those readings"
    )
}

#[cfg(test)]
#[path = "verify_tests.rs"]
pub(crate) mod tests;
