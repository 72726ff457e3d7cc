//! Opening a damaged store for `verify` and `salvage`: always a COPY of its directory, and
//! when sled refuses it as damaged, once more from its log alone (see [`Opened::Replayed`]).

use std::path::{Path, PathBuf};

use crate::queue::{SledStore, StoreError};

/// How a damaged store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// sled opened it as it is.
    AsIs,
    /// sled refused it; with its snapshot removed (in the copy) sled replayed the log up to
    /// the first damaged segment: the state of an EARLIER moment, without what came after.
    Replayed,
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
        Err(e) if e.is_damage() => {
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
