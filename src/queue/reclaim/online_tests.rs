//! The rewrite beside ingest, held or failed at each of its phases: writes made while it
//! copies are all in the rewritten store, and a failure or a crash anywhere leaves a whole
//! store that opens with everything written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::{Phase, Reclaim, ReclaimOptions};
use crate::queue::cipher::{Sealed, StoreKey, KEY_CHECK};
use crate::queue::compact::sibling;
use crate::queue::sled_store::SledStore;
use crate::queue::store::{Batch, Store, StoreError};
use crate::queue::test_store::Gate;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn key() -> StoreKey {
    StoreKey::from_bytes([7; 32], "test")
}

fn value(i: usize, v: u8) -> Vec<u8> {
    let mut out = format!("{i:05}").into_bytes();
    out.resize(1024, v);
    out
}

fn k(i: usize) -> Vec<u8> {
    format!("d{i:05}").into_bytes()
}

/// A store at `dir` holding `n` keys of 1 KiB (and as many written and removed beside them).
fn filled(dir: &Path, n: usize) -> Model {
    let s = Sealed::open(SledStore::open(dir, 1 << 20).unwrap(), &key()).unwrap();
    let mut model = Model::new();
    for part in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut b = Batch::new();
        for &i in part {
            b.put(k(i), value(i, 1));
            b.put(format!("g{i:05}").into_bytes(), value(i, 2));
            model.insert(k(i), value(i, 1));
        }
        s.apply(b).unwrap();
    }
    let mut b = Batch::new();
    for i in 0..n {
        b.remove(format!("g{i:05}").into_bytes());
    }
    s.apply(b).unwrap();
    s.sync().unwrap();
    model
}

/// Every key and value of `s` but the key marker.
fn contents(s: &dyn Store) -> Model {
    let mut out = Model::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = s.scan_prefix(&[], after.as_deref(), 500).unwrap();
        let Some((last, _)) = page.last() else {
            return out;
        };
        after = Some(last.clone());
        out.extend(page.into_iter().filter(|(k, _)| k != KEY_CHECK));
    }
}

fn reopened(dir: &Path) -> Model {
    contents(&Sealed::open(SledStore::open(dir, 1 << 20).unwrap(), &key()).unwrap())
}

/// A reclaim over the store at `dir`, copying windows of 128 KiB, calling `hook` at each phase.
fn reclaim(
    dir: &Path,
    hook: impl Fn(Phase) -> Result<(), StoreError> + Send + Sync + 'static,
) -> Arc<Reclaim> {
    let store = Sealed::open(SledStore::open(dir, 1 << 20).unwrap(), &key()).unwrap();
    let mut o = ReclaimOptions::new(dir.to_path_buf(), 1 << 20, key());
    o.window_bytes = 128 << 10;
    o.hook = Some(Arc::new(hook));
    Arc::new(Reclaim::new(Arc::new(store), o))
}

/// Applies `puts` and `removes` through `r` in one batch, and to `model`.
fn write(r: &Reclaim, model: &mut Model, puts: &[(Vec<u8>, Vec<u8>)], removes: &[Vec<u8>]) {
    let mut b = Batch::new();
    for (k, v) in puts {
        b.put(k.clone(), v.clone());
        model.insert(k.clone(), v.clone());
    }
    for k in removes {
        b.remove(k.clone());
        model.remove(k);
    }
    r.apply(b).unwrap();
}

#[test]
fn writes_made_while_the_copy_runs_are_all_in_the_rewritten_store() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("queue");
    let mut model = filled(&dir, 1000);
    let gate = Arc::new(Gate::default());
    for p in [Phase::Window(0), Phase::Window(3), Phase::Copied] {
        gate.hold(p);
    }
    let g = Arc::clone(&gate);
    let r = reclaim(&dir, move |p| {
        g.pass(p);
        Ok(())
    });
    let syncs_before = r.sync_count();
    let running = {
        let r = Arc::clone(&r);
        std::thread::spawn(move || r.run())
    };
    // After the first window: keys already copied and keys not yet copied are changed and
    // removed, and keys are added before and after the copy's position.
    assert!(gate.wait_reached(&Phase::Window(0)));
    let before_pause = r.sync_count();
    write(
        &r,
        &mut model,
        &[
            (k(0), value(0, 9)),
            (k(999), value(999, 9)),
            (b"a-new".to_vec(), value(1, 3)),
            (b"e-new".to_vec(), value(2, 3)),
            (k(600), value(600, 9)),
        ],
        &[k(1), k(998)],
    );
    gate.release(&Phase::Window(0));
    // Later: what was added is removed again (it must not come back), a key removed is put
    // back, more of both kinds.
    assert!(gate.wait_reached(&Phase::Window(3)));
    write(
        &r,
        &mut model,
        &[(k(1), value(1, 7)), (b"c-new".to_vec(), value(3, 3))],
        &[b"a-new".to_vec(), b"e-new".to_vec(), k(2), k(700), k(600)],
    );
    gate.release(&Phase::Window(3));
    // After the read-back: enough keys written that a catch-up runs outside the lock first.
    assert!(gate.wait_reached(&Phase::Copied));
    for part in 0..30 {
        let puts: Vec<_> = (0..100)
            .map(|i| (format!("f{:05}", part * 100 + i).into_bytes(), value(i, 5)))
            .collect();
        write(&r, &mut model, &puts, &[k(3 + part)]);
    }
    gate.release(&Phase::Copied);
    let done = running.join().unwrap().unwrap();
    assert!(
        done.pauses >= 5,
        "a pause after every window but the last, one at the swap: {done:?}"
    );
    assert!(done.caught_up >= 3000, "{done:?}");
    assert!(before_pause >= syncs_before);
    assert!(
        r.sync_count() > before_pause,
        "sync_count counts across the reopenings"
    );
    assert_eq!(r.runs.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(!sibling(&dir).exists());
    assert_eq!(contents(&*r), model);
    drop(r);
    assert_eq!(reopened(&dir), model);
}

/// Copies the files of `from` (a directory tree) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_failure_or_a_crash_at_each_phase_leaves_a_whole_store_that_opens() {
    let phases = [
        Phase::Window(0),
        Phase::Window(2),
        Phase::Copied,
        Phase::Fixed,
        Phase::Swapped,
    ];
    for phase in phases {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("queue");
        let mut model = filled(&dir, 500);
        // At the phase, the files are copied as a crash would leave them, then it fails.
        let image: PathBuf = parent.path().join("crash");
        let gate = Arc::new(Gate::default());
        gate.hold(Phase::Window(0));
        let (g, d, img) = (Arc::clone(&gate), dir.clone(), image.clone());
        let r = reclaim(&dir, move |p| {
            g.pass(p);
            if p != phase {
                return Ok(());
            }
            copy_tree(&d, &img.join("queue"));
            copy_tree(&sibling(&d), &img.join("queue.compact"));
            Err(StoreError::Io("injected".into()))
        });
        let running = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || r.run())
        };
        assert!(gate.wait_reached(&Phase::Window(0)));
        write(
            &r,
            &mut model,
            &[(k(0), value(0, 9)), (k(499), value(499, 9))],
            &[k(1), k(498)],
        );
        r.sync().unwrap();
        let at_crash = model.clone();
        gate.release(&Phase::Window(0));
        let ran = running.join().unwrap();
        if phase == Phase::Swapped {
            // Swapped: only the old files' removal is left; they stay for the next run.
            ran.unwrap();
            assert!(sibling(&dir).exists());
        } else {
            assert!(ran.is_err(), "{phase:?}");
            assert!(!sibling(&dir).exists(), "{phase:?}: the copy is removed");
        }
        // The queue's store goes on: reads and writes reach the current store.
        assert_eq!(contents(&*r), model, "{phase:?}");
        write(&r, &mut model, &[(b"after".to_vec(), value(5, 5))], &[k(2)]);
        r.sync().unwrap();
        drop(r);
        assert_eq!(reopened(&dir), model, "{phase:?}");
        // The crash image opens with everything synced before the crash, and the next
        // rewrite removes the leftover copy (or the old store) beside it.
        let crashed = image.join("queue");
        assert_eq!(reopened(&crashed), at_crash, "{phase:?}: crash image");
        let again = reclaim(&crashed, |_| Ok(()));
        again.run().unwrap();
        assert!(!sibling(&crashed).exists());
        assert_eq!(
            contents(&*again),
            at_crash,
            "{phase:?}: crash image rewritten"
        );
    }
}
