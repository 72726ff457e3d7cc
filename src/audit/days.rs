//! The days of the audit log after they close: handed to the compressor thread (gzip off the
//! store writer's path), compressed one at a time, and pruned by age and by size.
//!
//! Receives the open day from [`AuditLog`] when the clock passes it; promises what the module
//! doc of `audit` says about closed days (docs/audit-log.md): the plain file stays readable
//! until its `.gz` replaces it, the open day is never removed, and a WARN and a counter come
//! before each file the size cap removes.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use time::Date;

use super::{files, AuditError, AuditLog, Shared, State};

/// A closed day's plain file, for the compressor thread.
pub(super) struct Job {
    pub(super) day: Date,
    pub(super) path: PathBuf,
    pub(super) plain_bytes: u64,
}

/// The compressor thread: compresses closed days one at a time, in the order they closed.
pub(super) fn compressor(shared: &Shared, jobs: &mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        {
            let mut held = shared.held.lock().unwrap_or_else(|e| e.into_inner());
            while *held && !shared.stop.load(Ordering::Relaxed) {
                held = shared.release.wait(held).unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let result = files::compress(&job.path, &shared.stop);
        let mut st = shared.state();
        st.compressing.remove(&job.day);
        match result {
            Ok(Some(gz_bytes)) => {
                st.closed_bytes = st.closed_bytes.saturating_sub(job.plain_bytes) + gz_bytes;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "compressing a closed audit day failed: it stays uncompressed (readable, verifiable) until the next start compresses it"
            ),
        }
        drop(st);
        shared.compressed.notify_all();
    }
}

impl AuditLog {
    /// Hands a closed day to the compressor thread.
    pub(super) fn queue_compression(&self, st: &mut State, job: Job) {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = jobs.as_ref() {
            let day = job.day;
            if tx.send(job).is_ok() {
                st.compressing.insert(day);
            }
        }
    }

    /// Closes the open day: synced, counted as closed, handed to the compressor thread.
    pub(super) fn close_open_day(&self, st: &mut State) -> Result<(), AuditError> {
        if let Some(o) = st.open.as_mut() {
            o.cut_torn()?;
        }
        if let Some(o) = st.open.take() {
            o.file.sync_data().map_err(|e| AuditError::io(&o.path, e))?;
            drop(o.file);
            st.closed_bytes += o.len;
            st.closed_files += 1;
            self.queue_compression(
                st,
                Job {
                    day: o.day,
                    path: o.path,
                    plain_bytes: o.len,
                },
            );
        }
        Ok(())
    }

    /// Waits until every closed day handed to the compressor so far is compressed (or failed).
    pub fn wait_compressed(&self) {
        let mut st = self.state();
        while !st.compressing.is_empty() && !self.shared.stop.load(Ordering::Relaxed) {
            st = self
                .shared
                .compressed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Holds (`true`) or lets go (`false`) the compressor before its next day.
    #[cfg(test)]
    pub(crate) fn hold_compression(&self, hold: bool) {
        *self.shared.held.lock().unwrap() = hold;
        self.shared.release.notify_all();
    }

    /// Closes the open day once the clock has passed it, removes days older than the
    /// retention, then the oldest days while the files are over the size cap (WARN first).
    pub fn maintain(&self) -> Result<(), AuditError> {
        let now = self.now();
        let mut st = self.state();
        if let Some(o) = &st.open {
            if now.date() > o.day {
                self.close_open_day(&mut st)?;
            }
        }
        let cutoff = (now - self.retention).date();
        let open_day = st.open.as_ref().map(|o| o.day);
        let days = files::list(&self.dir)?;
        let mut total: u64 = days.iter().map(|d| d.bytes).sum();
        let mut removed_bytes = 0u64;
        let mut removed_files = 0u64;
        for d in &days {
            if Some(d.day) == open_day || st.compressing.contains(&d.day) {
                continue;
            }
            let by_age = d.day < cutoff;
            let by_size = !by_age && total > self.max_bytes;
            if !(by_age || by_size) {
                continue;
            }
            if by_size {
                self.pruned_size.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    file = %d.path.display(),
                    file_bytes = d.bytes,
                    audit_bytes = total,
                    audit_max_bytes = self.max_bytes,
                    "the audit log is over daemon.audit_max_bytes: removing its oldest day before its retention ends (counted in vitalsd_audit_pruned_files_total)"
                );
            } else {
                self.pruned_age.fetch_add(1, Ordering::Relaxed);
                tracing::info!(file = %d.path.display(), "audit day past daemon.audit_retention removed");
            }
            std::fs::remove_file(&d.path).map_err(|e| AuditError::io(&d.path, e))?;
            total = total.saturating_sub(d.bytes);
            removed_bytes += d.bytes;
            removed_files += 1;
        }
        if removed_files > 0 {
            files::sync_dir(&self.dir)?;
            st.closed_bytes = st.closed_bytes.saturating_sub(removed_bytes);
            st.closed_files = st.closed_files.saturating_sub(removed_files);
        }
        Ok(())
    }
}
