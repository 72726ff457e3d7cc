//! `vitalsd queue verify`, `queue salvage` and `queue compact`: offline check, repair and
//! compaction of a stopped daemon's store. Verify and salvage Both work on a COPY of `<data_dir>/queue` (sled rewrites the tail of its log
//! when it opens a store, and salvage may remove the copy's snapshot), so the original is only
//! read. Exit codes: verify 0 clean, 1 problems, 2 the store cannot be opened at all; salvage
//! 0 done, 2 nothing could be opened (nothing is invented).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::queue::cipher::{KeySource, SealError, Sealed, StoreKey};
use crate::queue::compact;
use crate::queue::repair::salvage::{self, Opened};
use crate::queue::repair::verify::{self, Report};
use crate::queue::{Ownership, SledStore, Store};

const CACHE: u64 = 16 << 20;
/// Problems printed one per line; the rest are counted.
const SHOW: usize = 100;

/// The data_dir from `--data-dir`, else from the config file.
fn data_dir(config: &Path, data_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    match data_dir {
        Some(d) => Ok(d.to_path_buf()),
        None => Ok(crate::config::load(config)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .daemon
            .data_dir),
    }
}

/// The store key, as the daemon reads it: from the config's `[daemon] store_key_file` (or
/// `VITALSD_STORE_KEY_FILE`); with `--data-dir` and no readable config, from the default path.
fn store_key(config: &Path, data_dir: Option<&Path>) -> anyhow::Result<StoreKey> {
    match crate::config::load(config) {
        Ok(cfg) => crate::app::store_key(&cfg),
        Err(_) if data_dir.is_some() => {
            let default = KeySource::parse(crate::queue::cipher::DEFAULT_KEY_FILE)?;
            let source = KeySource::from_env_or(&default)?;
            StoreKey::load(&source).map_err(|e| anyhow::anyhow!("daemon.store_key_file: {e}"))
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// Reads `store` with `key` for verify and salvage; `None` (after saying why) for another key.
fn reader(
    store: SledStore,
    key: &StoreKey,
    data: &Path,
) -> anyhow::Result<Option<Sealed<SledStore>>> {
    match Sealed::reader(store, key) {
        Ok(s) => match crate::queue::refuse_newer_layout(&s) {
            Ok(()) => Ok(Some(s)),
            Err(e) => {
                eprintln!("vitalsd: the queue store in {}: {e}", data.display());
                Ok(None)
            }
        },
        Err(e @ SealError::WrongKey { .. }) => {
            eprintln!("vitalsd: the queue store in {}: {e}", data.display());
            Ok(None)
        }
        Err(SealError::Store(e)) => Err(e.into()),
    }
}

/// Refuses a store whose layout is newer than this build's before `queue compact` rewrites it.
fn refuse_newer(store_dir: &Path, key: &StoreKey) -> anyhow::Result<()> {
    if !store_dir.exists() {
        return Ok(()); // compact says there is no store
    }
    let snapshots = crate::queue::SledSnapshots::save(store_dir)
        .with_context(|| format!("cannot read the queue in {}", store_dir.display()))?;
    let store = SledStore::open(store_dir, CACHE)
        .with_context(|| format!("cannot open the queue in {}", store_dir.display()))?;
    let Ok(store) = Sealed::reader(store, key) else {
        return Ok(()); // compact reports another key itself
    };
    snapshots
        .refuse_newer(store)
        .with_context(|| format!("cannot compact the queue in {}", store_dir.display()))?;
    Ok(())
}

/// Refuses while a daemon holds the store: sled keeps an exclusive `flock` on `<store>/db`.
fn ensure_stopped(store_dir: &Path) -> anyhow::Result<()> {
    use nix::fcntl::{Flock, FlockArg};
    let db = store_dir.join("db");
    let Ok(file) = std::fs::File::open(&db) else {
        return Ok(()); // reported by the open itself
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_) => Ok(()),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
            "{} is in use (is the vitalsd daemon running?): stop it first",
            store_dir.display()
        ),
        Err((_, e)) => bail!("cannot check the lock of {}: {e}", db.display()),
    }
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_note(how: Opened) -> &'static str {
    match how {
        Opened::AsIs => "opened as it is",
        Opened::Replayed => {
            "sled refuses it as it is; ONLY a replay of its log without the snapshot opens it, \
             which stops at the first damaged segment: what was written after is lost"
        }
    }
}

fn print_report(out: &mut impl Write, rep: &Report) -> std::io::Result<()> {
    writeln!(out, "keys per prefix:")?;
    for (name, n) in &rep.keys {
        writeln!(out, "  {name:<20} {n}")?;
    }
    writeln!(out, "held readings: {}", rep.held)?;
    writeln!(out, "quarantined readings: {}", rep.quarantined)?;
    let show = |c: &verify::Counts| {
        let mut s = format!("{} readings", c.readings);
        if c.quarantined > 0 {
            s.push_str(&format!(" ({} quarantined)", c.quarantined));
        }
        for (sink, (p, d)) in &c.sinks {
            s.push_str(&format!("; {sink}: {p} pending, {d} dead"));
        }
        s
    };
    match &rep.counted {
        Some(c) => writeln!(out, "counters: {}", show(c))?,
        None => writeln!(out, "counters: missing")?,
    }
    writeln!(out, "recount:  {}", show(&rep.found))?;
    writeln!(out, "problems: {}", rep.problems.len())?;
    for p in rep.problems.iter().take(SHOW) {
        let key = if p.key.is_empty() { "-" } else { &p.key };
        writeln!(out, "  {key} {}", p.reason)?;
    }
    if rep.problems.len() > SHOW {
        writeln!(out, "  ... and {} more", rep.problems.len() - SHOW)?;
    }
    Ok(())
}

/// `vitalsd queue verify`.
pub fn queue_verify(config: &Path, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let data = data_dir(config, dir)?;
    let store_dir = crate::app::queue_dir(&data);
    ensure_stopped(&store_dir)?;
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let scratch = Scratch(
        std::env::temp_dir().join(format!("vitalsd-verify-{}-{nanos}", std::process::id())),
    );
    let key = store_key(config, dir)?;
    let (store, how) = match salvage::open_copy(&store_dir, &scratch.0, CACHE) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "vitalsd: the queue store in {} cannot be opened at all, not even from its log \
                 ({e}); salvage has nothing to export",
                data.display()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let Some(store) = reader(store, &key, &data)? else {
        return Ok(ExitCode::from(2));
    };
    let rep = verify::check(&store).context("reading the store")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "store: {} (checked a copy)", store_dir.display())?;
    writeln!(out, "open: {}", open_note(how))?;
    print_report(&mut out, &rep)?;
    if rep.is_clean() && how == Opened::AsIs {
        writeln!(out, "clean")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "damaged: stop here and run `vitalsd queue salvage --to NEW_DIR` to export what is readable"
    )?;
    Ok(ExitCode::from(1))
}

/// `vitalsd queue salvage --to NEW_DIR`.
pub fn queue_salvage(config: &Path, dir: Option<&Path>, to: &Path) -> anyhow::Result<ExitCode> {
    let data = data_dir(config, dir)?;
    let store_dir = crate::app::queue_dir(&data);
    if to.exists() && std::fs::read_dir(to).map_or(true, |mut d| d.next().is_some()) {
        bail!("--to {}: choose a new or empty directory", to.display());
    }
    ensure_stopped(&store_dir)?;
    let key = store_key(config, dir)?;
    let owner = Ownership::of(&store_dir).ok();
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(crate::queue::DIR_MODE);
        std::fs::set_permissions(to, mode)
            .with_context(|| format!("cannot set the mode of {}", to.display()))?;
    }
    let source = Scratch(to.join(".salvage-source"));
    let (src, how) = match salvage::open_copy(&store_dir, &source.0, CACHE) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "vitalsd: the queue store in {} cannot be opened at all, not even from its log \
                 ({e}); nothing was exported",
                data.display()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let Some(src) = reader(src, &key, &data)? else {
        return Ok(ExitCode::from(2));
    };
    let new_store = crate::app::queue_dir(to);
    let dst = Sealed::open(
        SledStore::open(&new_store, CACHE).context("creating the new store")?,
        &key,
    )
    .context("creating the new store")?;
    let now_ms = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp() * 1000)?;
    let done = salvage::salvage(&src, &dst, now_ms).context("salvage")?;
    drop(src);
    let quarantine = to.join("quarantine.jsonl");
    if !done.quarantined.is_empty() {
        write_quarantine(&quarantine, &done.quarantined)?;
    }
    let rep = verify::check(&dst).context("checking the new store")?;
    dst.sync()?;
    drop(dst);
    if let Some(owner) = owner {
        owner.apply(&new_store).with_context(|| {
            format!(
                "cannot give {} the owner and modes of {}",
                new_store.display(),
                store_dir.display()
            )
        })?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "old store: {} ({})",
        store_dir.display(),
        open_note(how)
    )?;
    for u in &done.unreadable {
        writeln!(out, "unreadable: {u}")?;
    }
    for (seq, n) in &done.lost {
        writeln!(
            out,
            "lost: segment {seq} does not parse or is missing: {n} readings (ids unknown)"
        )?;
    }
    writeln!(out, "new store: {}", new_store.display())?;
    for (name, n) in &done.copied {
        writeln!(out, "  copied {name:<20} {n}")?;
    }
    writeln!(
        out,
        "readings exported: {} ({} without any entry, now dead-letters: `vitalsd queue dead`)",
        done.readings, done.orphans
    )?;
    if done.quarantined.is_empty() {
        writeln!(out, "quarantined: 0")?;
    } else {
        writeln!(
            out,
            "quarantined: {} entries, raw, in {} (may hold patient data)",
            done.quarantined.len(),
            quarantine.display()
        )?;
    }
    writeln!(
        out,
        "new store check: {}",
        if rep.is_clean() { "clean" } else { "PROBLEMS" }
    )?;
    if !rep.is_clean() {
        print_report(&mut out, &rep)?;
    }
    writeln!(
        out,
        "next: keep vitalsd stopped, move {} aside (keep it until the readings are delivered) \
         and {} into its place, then start vitalsd",
        data.display(),
        to.display()
    )?;
    Ok(if rep.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_quarantine(path: &Path, items: &[salvage::Quarantined]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for q in items {
        let line = serde_json::json!({
            "key": hex::encode(&q.key),
            "value": hex::encode(&q.value),
            "reason": q.reason,
        });
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    w.get_ref().sync_all()?;
    Ok(())
}

/// `vitalsd queue compact`: rewrites the stopped daemon's store into a fresh one so that the
/// space a drained backlog took goes back to the file system (sled only reuses it).
pub fn queue_compact(config: &Path, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let data = data_dir(config, dir)?;
    let store_dir = crate::app::queue_dir(&data);
    ensure_stopped(&store_dir)?;
    let cache = match dir {
        Some(_) => CACHE,
        None => {
            crate::config::load(config)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .daemon
                .cache_size
        }
    };
    let key = store_key(config, dir)?;
    refuse_newer(&store_dir, &key)?;
    let rep = compact::compact(&store_dir, cache, &key)
        .with_context(|| format!("cannot compact the queue in {}", store_dir.display()))?;
    #[allow(clippy::cast_precision_loss)]
    let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
    println!(
        "compacted {}: {} keys, {:.1} MiB on disk before, {:.1} MiB after, in {:.1} s",
        store_dir.display(),
        rep.keys,
        mib(rep.bytes_before),
        mib(rep.bytes_after),
        rep.took.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
