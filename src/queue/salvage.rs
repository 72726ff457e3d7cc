//! Salvage of a damaged queue store: every readable reading with its pending, dead or held
//! state goes into a fresh store; what cannot be read is handed back for a quarantine file.
//!
//! Receives the damaged store (opened from a COPY by [`open_copy`], so the original is never
//! written, not even by sled's own recovery) and an empty destination store. Promises:
//! - a reading is copied when its value decodes; its pending (fresh or retried), dead and held
//!   entries are copied when they decode too; the due keys of retried entries are rebuilt;
//! - a readable reading that no entry refers to becomes a dead-letter entry of every sink
//!   the store knows (reason [`ORPHAN_REASON`]), so an operator can retry it — never sent
//!   on its own, never lost;
//! - an entry whose reading is missing or unreadable, an undecodable value and a key of an
//!   unknown prefix are returned as [`Quarantined`] (raw bytes and the reason), never copied;
//! - the counters are recounted over the new store and persisted with it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::keys::{self, DeadValue};
use super::store::{Batch, Store, StoreError};
use super::txn::Counters;
use super::types::QueueError;
use super::verify::{classify, rule_for, scan_tag, Item};
use super::SledStore;
use crate::reading::{ReadingId, SinkId};

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
    /// Keys copied per prefix name (counters are rebuilt, not copied).
    pub copied: BTreeMap<&'static str, u64>,
    pub readings: u64,
    /// Readings without entries, now dead-letters (see [`ORPHAN_REASON`]).
    pub orphans: u64,
    pub quarantined: Vec<Quarantined>,
    /// Parts of the old store sled could not read at all (prefix, last key read, error).
    pub unreadable: Vec<String>,
}

struct Writer<'a> {
    dst: &'a dyn Store,
    batch: Batch,
}

impl Writer<'_> {
    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) -> Result<(), StoreError> {
        self.batch.put(k, v);
        if self.batch.len() >= 1000 {
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

/// Copies every readable entry of `src` into the empty `dst` (see the module doc).
pub fn salvage(src: &dyn Store, dst: &dyn Store, now_ms: u64) -> Result<Outcome, QueueError> {
    let mut out = Outcome::default();
    let mut w = Writer {
        dst,
        batch: Batch::new(),
    };
    let quarantine = |out: &mut Outcome, k: &[u8], v: &[u8], reason: String| {
        out.quarantined.push(Quarantined {
            key: k.to_vec(),
            value: v.to_vec(),
            reason,
        });
    };
    let unreadable = |out: &mut Outcome, tag: u8, e: (Option<Vec<u8>>, String)| {
        let at =
            e.0.map_or("its start".into(), |k| super::verify::show_key(&k));
        out.unreadable
            .push(format!("`{}` keys after {at}: {}", tag as char, e.1));
    };
    // Pass 1: which readings decode.
    let mut readable: HashSet<ReadingId> = HashSet::new();
    let mut bad = Vec::new();
    let r = scan_tag(src, keys::READING, |k, v| match classify(k, v) {
        Ok(Item::Reading(id)) => drop(readable.insert(id)),
        Ok(_) => {}
        Err(reason) => bad.push((k.to_vec(), v.to_vec(), reason)),
    });
    for (k, v, reason) in bad {
        quarantine(&mut out, &k, &v, reason);
    }
    if let Err(e) = r {
        unreadable(&mut out, keys::READING, e);
    }
    // Pass 2: every other entry, checked against the readable readings.
    let mut referenced: HashSet<ReadingId> = HashSet::new();
    let mut sinks: BTreeSet<SinkId> = BTreeSet::new();
    for tag in (0..=u8::MAX).filter(|t| *t != keys::READING) {
        let mut entries = Vec::new();
        let r = scan_tag(src, tag, |k, v| entries.push((k.to_vec(), v.to_vec())));
        if let Err(e) = r {
            unreadable(&mut out, tag, e);
        }
        for (k, v) in entries {
            let name = rule_for(&k).map_or("unknown", |r| r.name);
            let item = match classify(&k, &v) {
                Ok(item) => item,
                Err(reason) => {
                    quarantine(&mut out, &k, &v, reason);
                    continue;
                }
            };
            match &item {
                // Rebuilt: counters below, due keys from their retried entries.
                Item::Counter | Item::Due(..) => continue,
                _ if k == keys::META_COUNTERS => continue,
                Item::Fresh(s, id) | Item::Retried(s, id, _) | Item::Dead(s, id) => {
                    sinks.insert(s.clone());
                    if !readable.contains(id) {
                        let why = "its reading is missing or unreadable".to_string();
                        quarantine(&mut out, &k, &v, why);
                        continue;
                    }
                    referenced.insert(*id);
                }
                Item::Held(id) => {
                    if !readable.contains(id) {
                        let why = "held entry whose reading is missing or unreadable".into();
                        quarantine(&mut out, &k, &v, why);
                        continue;
                    }
                    referenced.insert(*id);
                }
                Item::Reading(_) | Item::Other => {}
            }
            if let Item::Retried(s, id, ms) = &item {
                w.put(keys::due(s, *ms, *id), Vec::new())?;
            }
            w.put(k, v)?;
            *out.copied.entry(name).or_default() += 1;
        }
    }
    if let Ok(Some(c)) = Counters::load(src) {
        sinks.extend(c.sinks.keys().cloned());
    }
    // Pass 3: the readable readings; those without entries become dead-letters.
    let mut readings = Vec::new();
    let r = scan_tag(src, keys::READING, |k, v| {
        if matches!(classify(k, v), Ok(Item::Reading(_))) {
            readings.push((k.to_vec(), v.to_vec()));
        }
    });
    if let Err(e) = r {
        unreadable(&mut out, keys::READING, e);
    }
    let orphan = DeadValue {
        reason: ORPHAN_REASON.into(),
        at: now_ms,
        attempts: 0,
    };
    let orphan = serde_json::to_vec(&orphan).map_err(|e| StoreError::Io(e.to_string()))?;
    for (k, v) in readings {
        let Some(id) = keys::id_suffix(&k) else {
            continue;
        };
        if !referenced.contains(&id) {
            if sinks.is_empty() {
                let why = "orphan reading and no sink to dead-letter it for".into();
                quarantine(&mut out, &k, &v, why);
                continue;
            }
            for s in &sinks {
                w.put(keys::dead(s, id), orphan.clone())?;
            }
            out.orphans += 1;
        }
        w.put(k, v)?;
        out.readings += 1;
        *out.copied.entry("readings").or_default() += 1;
    }
    w.finish()?;
    let counters = Counters::recount(dst)?;
    let mut batch = Batch::new();
    counters.write_to(&mut batch);
    batch.put(keys::META_COUNTERS, b"1".to_vec());
    dst.apply(batch)?;
    dst.sync()?;
    Ok(out)
}

/// How a damaged store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// sled opened it as it is.
    AsIs,
    /// sled refused it; with its snapshot removed (in the copy) sled replayed the log up to
    /// the first damaged segment: the state of an EARLIER moment, without what came after.
    Replayed,
}

/// Whether an open error is sled reporting damage (rather than a lock or a permission).
pub fn is_damage(e: &StoreError) -> bool {
    match e {
        StoreError::Open { reason, .. } => reason.contains("corrupted data"),
        StoreError::Corrupt(_) => true,
        StoreError::Io(_) => false,
    }
}

/// Copies the store directory `store_dir` to `copy_dir` (which must not exist) and opens the
/// copy; when sled refuses it as damaged, removes the copy's snapshot files and tries once
/// more (see [`Opened::Replayed`]). The original is only read.
pub fn open_copy(
    store_dir: &Path,
    copy_dir: &Path,
    cache: u64,
) -> Result<(SledStore, Opened), StoreError> {
    let io = |what: &str, p: &Path, e: std::io::Error| StoreError::Open {
        path: p.to_path_buf(),
        reason: format!("{what}: {e}"),
    };
    if !store_dir.join("db").is_file() {
        return Err(StoreError::Open {
            path: store_dir.to_path_buf(),
            reason: "no sled store here (no `db` file)".into(),
        });
    }
    copy_tree(store_dir, copy_dir).map_err(|e| io("cannot copy the store", copy_dir, e))?;
    match SledStore::open(copy_dir, cache) {
        Ok(s) => Ok((s, Opened::AsIs)),
        Err(e) if is_damage(&e) => {
            for snap in snapshots(copy_dir).map_err(|e| io("listing", copy_dir, e))? {
                std::fs::remove_file(&snap).map_err(|e| io("removing", &snap, e))?;
            }
            let s = SledStore::open(copy_dir, cache).map_err(|_| e)?;
            Ok((s, Opened::Replayed))
        }
        Err(e) => Err(e),
    }
}

fn snapshots(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap."))
        {
            out.push(p);
        }
    }
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
