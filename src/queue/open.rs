//! Opening the store: checks and migrations before the writer starts, then every handle.
//!
//! Receives a directory (or any [`Store`]) and [`QueueOptions`]. Promises: a store of the
//! layout before segments, or of a layout version newer than this build's, is refused before
//! anything is written; an older layout version's marker is brought to this build's; counters
//! are loaded (or counted once) and earlier versions' dead-lettered rejected readings and
//! stored audit entries are moved where this version keeps them, each in synced batches,
//! before the one writer starts.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::handle::Core;
use super::shared::Shared;
use super::sled_store::SledStore;
use super::store::{Batch, Store};
use super::txn::{self, Counters};
use super::types::{QueueError, QueueOptions};
use super::{dedupe, held, keys, ops, quarantine, reclaim, rejected, Queue};
use crate::reading::SinkId;

impl Queue {
    /// Opens (creating) the sled store in `dir`; the error names the path when it is not
    /// writable or locked by another process (sled allows one process per store). Works with
    /// or without a tokio runtime.
    pub fn open(dir: &Path, opts: QueueOptions) -> Result<Queue, QueueError> {
        let store = SledStore::open(dir, opts.cache_capacity)?;
        Self::with_store(Arc::new(store), opts)
    }

    /// A queue over any [`Store`] (tests use [`MemoryStore`]).
    pub fn with_store(store: Arc<dyn Store>, opts: QueueOptions) -> Result<Queue, QueueError> {
        let configured = sink_list(opts.sinks)?;
        let (store, reclaim): (Arc<dyn Store>, _) = match opts.reclaim {
            Some(r) => {
                let r = Arc::new(reclaim::Reclaim::new(store, r));
                (r.clone(), Some(r))
            }
            None => (store, None),
        };
        check_layout(&*store)?;
        if let Some(Err(e)) = reclaim.as_ref().map(|r| r.remove_leftover()) {
            tracing::warn!(error = %e, "the copy an interrupted rewrite of the queue store left behind could not be removed; the next rewrite removes it");
        }
        let mut counters = match Counters::load(&*store)? {
            Some(c) => c,
            None => {
                let c = Counters::recount(&*store)?;
                let mut batch = Batch::new();
                c.write_to(&mut batch);
                batch.put(keys::META_COUNTERS, b"1".to_vec());
                batch.put(keys::META_LAYOUT, keys::layout_marker());
                store.apply(batch)?;
                store.sync()?;
                c
            }
        };
        let mut next_seq = txn::next_seq(&*store)?;
        for s in &configured {
            counters.sink(s);
        }
        let dedupe = dedupe::Index::open(&*store)?;
        migrate_rejected(&*store, &mut counters, &mut next_seq, &configured, &dedupe)?;
        let rejected_bytes = rejected::measure(&*store)?;
        let audit_log = opts.audit_log.map(|a| a.0);
        if let Some(log) = &audit_log {
            super::audit::migrate(&*store, log, &mut counters)?;
        }
        let shared = Arc::new(Shared {
            disk_bytes: AtomicU64::new(store.size_on_disk()?),
            store,
            configured: Mutex::new(configured),
            max_group: opts.max_group.max(1),
            counters: Mutex::new(counters),
            notifies: Mutex::default(),
            closed: AtomicBool::new(false),
            sync_failed: AtomicBool::new(false),
            max_bytes: opts.max_bytes,
            history_max_bytes: opts.history_max_bytes,
            dedupe,
            rejected_bytes: AtomicU64::new(rejected_bytes),
            history_pruned: AtomicU64::new(0),
            history_warned: AtomicBool::new(false),
            audit_retention_ms: u64::try_from(opts.audit_retention.as_millis()).unwrap_or(u64::MAX),
            audit_log,
            clock: opts.clock.0,
            reclaim,
            hints: ops::SlotHints::default(),
            segments: Default::default(),
        });
        Ok(Queue::from_core(Core::start(shared, next_seq)?))
    }
}

/// Why the counters marker matters: [`Queue`] writes `m counters` in its first sync, and
/// nothing removes it, so a store that existed before this open and lacks it lost its log
/// (sled replays a log that is truncated, zeroed or damaged in its first segment as EMPTY).
pub const NO_MARKER: &str = "the counters marker written at the store's first open is missing: \
     sled recovered an empty or cut log";

/// At open of a store that existed: [`NO_MARKER`] when the marker the queue writes at its first
/// open is missing (sled recovered an empty or cut log). Reads one key, so a start with a large
/// backlog stays fast; the full recount of the counters is `queue verify`'s.
pub fn marker_missing(store: &dyn Store) -> Result<Option<String>, QueueError> {
    Ok(Counters::load(store)?
        .is_none()
        .then(|| NO_MARKER.to_string()))
}

/// sled's snapshot files (`snap.*`) of a store directory, saved before a command opens it:
/// sled writes a new snapshot at every open whose log went past the last one, so a command
/// that then refuses the store ([`refuse_newer_layout`]) puts them back with
/// [`SledSnapshots::restore`] and leaves the directory byte for byte as it found it.
#[derive(Debug)]
pub struct SledSnapshots {
    dir: std::path::PathBuf,
    files: Vec<(std::ffi::OsString, Vec<u8>)>,
}

impl SledSnapshots {
    /// Reads the snapshot files of `dir` (none when it does not exist yet).
    pub fn save(dir: &Path) -> std::io::Result<Self> {
        let mut files = Vec::new();
        if dir.is_dir() {
            for e in std::fs::read_dir(dir)? {
                let e = e?;
                let name = e.file_name();
                if name.to_string_lossy().starts_with("snap.") && e.file_type()?.is_file() {
                    files.push((name, std::fs::read(e.path())?));
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
        })
    }

    /// Puts the saved snapshot files back and removes the ones written since (the store must
    /// be closed).
    pub fn restore(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            if name.to_string_lossy().starts_with("snap.")
                && !self.files.iter().any(|(n, _)| *n == name)
            {
                std::fs::remove_file(e.path())?;
            }
        }
        for (name, bytes) in &self.files {
            let path = self.dir.join(name);
            if std::fs::read(&path).ok().as_ref() != Some(bytes) {
                std::fs::write(&path, bytes)?;
            }
        }
        Ok(())
    }

    /// `store` (opened after [`SledSnapshots::save`]) when its layout is one this build
    /// reads; else [`refuse_newer_layout`]'s error, with `store` closed and the snapshot files
    /// put back, so the directory is left as it was found.
    pub fn refuse_newer<S: Store>(&self, store: S) -> Result<S, QueueError> {
        let Err(refused) = refuse_newer_layout(&store) else {
            return Ok(store);
        };
        drop(store);
        self.restore().map_err(|e| {
            QueueError::Store(super::store::StoreError::Io(format!(
                "cannot put back sled's snapshot in {}: {e}",
                self.dir.display()
            )))
        })?;
        Err(refused)
    }
}

/// Refuses a store whose layout marker names a version newer than [`keys::LAYOUT_VERSION`] (or
/// has a shape this build cannot read) with [`QueueError::NewerLayout`]. Reads one key and
/// writes nothing: every command that opens a store calls it before it changes anything.
pub fn refuse_newer_layout(store: &dyn Store) -> Result<(), QueueError> {
    let Some(marker) = store.get(keys::META_LAYOUT)? else {
        return Ok(());
    };
    let found = match keys::layout_version(&marker) {
        Some(v) if v <= keys::LAYOUT_VERSION => return Ok(()),
        Some(v) => keys::StoreLayout::Version(v),
        None => keys::StoreLayout::Unrecognised,
    };
    Err(QueueError::NewerLayout {
        found,
        known: keys::LAYOUT_VERSION,
    })
}

/// Refuses a store of a newer layout version ([`refuse_newer_layout`]) and one written before
/// segments that still holds readings or entries; marks a drained one of the layout before
/// segments (only dedupe keys, audit, contexts and counters left), and one of an older layout
/// version, as this layout version.
pub(super) fn check_layout(store: &dyn Store) -> Result<(), QueueError> {
    refuse_newer_layout(store)?;
    if !store.scan_prefix(&[keys::OLD_READING], None, 1)?.is_empty() {
        return Err(QueueError::OldLayout);
    }
    let marker = store.get(keys::META_LAYOUT)?;
    if marker.as_deref() == Some(keys::layout_marker().as_slice())
        || (marker.is_none() && store.get(keys::META_COUNTERS)?.is_none())
    {
        return Ok(());
    }
    if marker.is_none() {
        let entry_tags = [
            keys::PENDING,
            keys::RETRIED,
            keys::DUE,
            keys::DEAD,
            held::HELD,
        ];
        for tag in entry_tags {
            if !store.scan_prefix(&[tag], None, 1)?.is_empty() {
                return Err(QueueError::OldLayout);
            }
        }
    }
    let mut batch = Batch::new();
    batch.put(keys::META_LAYOUT, keys::layout_marker());
    store.apply(batch)?;
    store.sync()?;
    Ok(())
}

/// Moves rejected readings that an earlier version left in dead-letters into the quarantine
/// (see `quarantine::migrate`), in one synced batch, before the writer starts.
fn migrate_rejected(
    store: &dyn Store,
    counters: &mut Counters,
    next_seq: &mut u64,
    configured: &[SinkId],
    dedupe: &dedupe::Index,
) -> Result<(), QueueError> {
    let hints = ops::SlotHints::default();
    let mut woken = std::collections::BTreeSet::new();
    let mut tx = txn::Txn::with_seq(store, counters.clone(), *next_seq);
    let mut ctx = ops::Ctx {
        now_ms: ops::to_ms(OffsetDateTime::now_utc()),
        configured,
        woken: &mut woken,
        hints: &hints,
        dedupe,
    };
    let moved = quarantine::migrate(&mut tx, &mut ctx)?;
    if moved == 0 {
        return Ok(());
    }
    let batch = tx.take_batch(true);
    dedupe.apply(store, batch)?;
    store.sync()?;
    *counters = tx.counters.clone();
    *next_seq = (*next_seq).max(tx.next_seq());
    tracing::warn!(
        readings = moved,
        "readings that failed a hard plausibility limit were in the dead-letter (stored by an earlier version); moved to the quarantine: `vitalsd queue quarantine`"
    );
    Ok(())
}

/// The sinks of `sinks` in order, without repeats; an empty or NUL-bearing id is refused.
pub(super) fn sink_list(sinks: Vec<SinkId>) -> Result<Vec<SinkId>, QueueError> {
    let mut out: Vec<SinkId> = Vec::new();
    for s in sinks {
        if s.as_str().is_empty() || s.as_str().contains('\0') {
            return Err(QueueError::BadSinkId(s.to_string()));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::MemoryStore;

    fn everything(store: &dyn Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        store.scan_prefix(&[], None, usize::MAX).unwrap()
    }

    /// A store a queue was opened on once (counters and marker written), holding one reading,
    /// whose marker is then set to `marker`.
    async fn store_marked(marker: &[u8]) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::new());
        let q =
            Queue::with_store(store.clone(), QueueOptions::new(vec![SinkId::new("ehr")])).unwrap();
        q.enqueue(vec![crate::queue::tests::reading("cuff", 1)])
            .await
            .unwrap();
        q.close().await.unwrap();
        let mut b = Batch::new();
        b.put(keys::META_LAYOUT, marker.to_vec());
        store.apply(b).unwrap();
        store
    }

    #[tokio::test]
    async fn a_store_of_a_newer_layout_version_is_refused_and_left_as_it_was() {
        for (marker, found) in [
            (&b"segments v3"[..], keys::StoreLayout::Version(3)),
            (b"segments v40", keys::StoreLayout::Version(40)),
            (b"layout=3", keys::StoreLayout::Unrecognised),
        ] {
            let store = store_marked(marker).await;
            let before = everything(&*store);
            let err = check_layout(&*store).unwrap_err();
            assert!(
                matches!(err, QueueError::NewerLayout { found: f, known } if f == found && known == keys::LAYOUT_VERSION),
                "{err}"
            );
            let err = Queue::with_store(store.clone(), QueueOptions::new(vec![SinkId::new("ehr")]))
                .err()
                .expect("refused");
            let text = err.to_string();
            assert!(text.contains(&found.to_string()), "{text}");
            assert!(
                text.contains(&format!("layout version {}", keys::LAYOUT_VERSION)),
                "{text}"
            );
            assert!(text.contains("run the newer vitalsd"), "{text}");
            assert_eq!(everything(&*store), before, "nothing written");
        }
    }

    #[tokio::test]
    async fn a_store_of_this_or_an_older_layout_version_opens_and_is_marked_this_version() {
        for marker in [keys::LAYOUT_V1.to_vec(), keys::layout_marker()] {
            let store = store_marked(&marker).await;
            check_layout(&*store).unwrap();
            assert_eq!(
                store.get(keys::META_LAYOUT).unwrap(),
                Some(keys::layout_marker())
            );
            let q = Queue::with_store(store.clone(), QueueOptions::new(vec![SinkId::new("ehr")]))
                .unwrap();
            assert_eq!(q.stats().unwrap().readings, 1);
        }
    }

    #[tokio::test]
    async fn a_marker_of_this_version_is_not_written_again() {
        let store = store_marked(&keys::layout_marker()).await;
        let before = everything(&*store);
        check_layout(&*store).unwrap();
        assert_eq!(everything(&*store), before);
    }

    #[tokio::test]
    async fn a_store_without_a_marker_is_marked_when_drained_and_refused_with_entries() {
        let fresh = MemoryStore::new();
        check_layout(&fresh).unwrap();
        assert!(
            everything(&fresh).is_empty(),
            "a new store is marked by the open"
        );
        let drained = MemoryStore::new();
        let mut b = Batch::new();
        b.put(keys::META_COUNTERS, b"1".to_vec());
        drained.apply(b).unwrap();
        check_layout(&drained).unwrap();
        assert_eq!(
            drained.get(keys::META_LAYOUT).unwrap(),
            Some(keys::layout_marker())
        );
        let with_entries = store_marked(b"segments").await;
        let mut b = Batch::new();
        b.remove(keys::META_LAYOUT.to_vec());
        with_entries.apply(b).unwrap();
        let err = check_layout(&*with_entries).unwrap_err();
        assert!(matches!(err, QueueError::OldLayout), "{err}");
    }

    #[tokio::test]
    async fn an_entry_of_an_unknown_stored_form_is_dead_lettered_and_the_rest_delivered() {
        use crate::queue::{segment, tests::far_future, tests::reading, Settle};
        let store = Arc::new(MemoryStore::new());
        let ehr = SinkId::new("ehr");
        let opts = || QueueOptions::new(vec![SinkId::new("ehr")]);
        let rs: Vec<_> = (0..3).map(|n| reading("cuff", n)).collect();
        let newer = rs[1].id.unwrap();
        {
            let q = Queue::with_store(store.clone(), opts()).unwrap();
            q.enqueue(rs.clone()).await.unwrap();
            q.close().await.unwrap();
        }
        // A later build's entry form (format byte 2) inside a segment of this layout.
        for (k, raw) in store
            .scan_prefix(&[keys::SEGMENT], None, usize::MAX)
            .unwrap()
        {
            let seg = segment::Segment::parse(&raw).unwrap();
            let mut w = segment::Writer::default();
            for (_, id, stored) in seg.iter() {
                let mut e = stored.to_vec();
                if id == newer {
                    e[0] = 2;
                }
                w.push(id, &e);
            }
            let mut b = Batch::new();
            b.put(k, w.into_bytes());
            store.apply(b).unwrap();
        }
        let q = Queue::with_store(store.clone(), opts()).unwrap();
        let p = q.pending(&ehr, 10, far_future()).unwrap();
        let ids: Vec<_> = p.iter().map(|p| p.reading.id).collect();
        assert_eq!(ids, [rs[0].id, rs[2].id]);
        let done = ids
            .iter()
            .map(|id| (id.unwrap(), Settle::Delivered))
            .collect();
        q.settle(&ehr, done).await.unwrap();
        let s = q.stats().unwrap();
        assert_eq!((s.sinks[0].pending, s.sinks[0].dead, s.readings), (0, 1, 1));
        let dead = store.get(&keys::dead(&ehr, newer)).unwrap().expect("dead");
        let dead: keys::DeadValue = serde_json::from_slice(&dead).unwrap();
        assert!(
            dead.reason.contains("format 2 is not known"),
            "{}",
            dead.reason
        );
    }
}
