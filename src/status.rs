//! Live counters of devices and sinks, shared by the pipeline and the delivery loops (which
//! write them) and the readers (logs at shutdown, the admin API, the status page, `/readyz`).
//! Lock-free atomics for the device counters; small mutexes for times and the sinks' health.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use time::OffsetDateTime;

use crate::reading::{DeviceId, SinkId};

/// One device's counters.
#[derive(Debug)]
pub struct DeviceStatus {
    pub id: DeviceId,
    pub driver: String,
    pub room: String,
    connected: AtomicBool,
    frames_ok: AtomicU64,
    frames_bad: AtomicU64,
    readings: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    /// Connections refused by a listener (not allowed, or over a connection limit).
    connections_refused: AtomicU64,
    last_frame_at: Mutex<Option<OffsetDateTime>>,
    kinds: Mutex<BTreeMap<String, u64>>,
    /// The serial port in use or last tried (a `usb` device's resolved path).
    port: Mutex<Option<String>>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A snapshot of [`DeviceStatus`] for JSON output.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceSnapshot {
    pub id: DeviceId,
    pub driver: String,
    pub room: String,
    pub connected: bool,
    pub frames_ok: u64,
    pub frames_bad: u64,
    pub readings: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Connections an MLLP listener refused (shown only when some were).
    #[serde(skip_serializing_if = "is_zero")]
    pub connections_refused: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_frame_at: Option<OffsetDateTime>,
    /// The serial port in use or last tried; for a `usb` device, the path its ids resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

impl DeviceStatus {
    pub fn new(id: DeviceId, driver: &str, room: &str) -> Arc<Self> {
        Arc::new(Self {
            id,
            driver: driver.to_string(),
            room: room.to_string(),
            connected: AtomicBool::new(false),
            frames_ok: AtomicU64::new(0),
            frames_bad: AtomicU64::new(0),
            readings: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            last_frame_at: Mutex::new(None),
            kinds: Mutex::new(BTreeMap::new()),
            port: Mutex::new(None),
        })
    }

    /// Records the serial port in use (a `usb` device's path changes when it is replugged).
    pub fn set_port(&self, port: Option<String>) {
        if let Ok(mut p) = self.port.lock() {
            *p = port;
        }
    }
    pub fn set_connected(&self, c: bool) {
        self.connected.store(c, Ordering::Relaxed);
    }
    pub fn frame_ok(&self, at: OffsetDateTime) {
        self.frames_ok.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.last_frame_at.lock() {
            *t = Some(at);
        }
    }
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub fn frame_bad(&self) {
        self.frames_bad.fetch_add(1, Ordering::Relaxed);
    }
    pub fn stored(&self, readings: u64, duplicates: u64, rejected: u64) {
        self.readings.fetch_add(readings, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.rejected.fetch_add(rejected, Ordering::Relaxed);
    }

    /// Counts one stored reading of `kind` (for `vitalsd_readings_total{device,kind}`).
    pub fn stored_kind(&self, kind: &str) {
        if let Ok(mut k) = self.kinds.lock() {
            *k.entry(kind.to_string()).or_default() += 1;
        }
    }

    /// Stored readings by kind, in kind order.
    pub fn kinds(&self) -> Vec<(String, u64)> {
        self.kinds
            .lock()
            .map(|k| k.iter().map(|(a, b)| (a.clone(), *b)).collect())
            .unwrap_or_default()
    }

    pub fn snapshot(&self) -> DeviceSnapshot {
        DeviceSnapshot {
            id: self.id.clone(),
            driver: self.driver.clone(),
            room: self.room.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            frames_ok: self.frames_ok.load(Ordering::Relaxed),
            frames_bad: self.frames_bad.load(Ordering::Relaxed),
            readings: self.readings.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            connections_refused: self.connections_refused.load(Ordering::Relaxed),
            last_frame_at: self.last_frame_at.lock().ok().and_then(|t| *t),
            port: self.port.lock().ok().and_then(|p| p.clone()),
        }
    }
}

/// The running devices' statuses, shared by the app (which changes the set on reload) and the
/// readers (admin API, metrics, status page). Clones share one list.
#[derive(Debug, Clone, Default)]
pub struct DeviceList {
    inner: Arc<RwLock<Vec<Arc<DeviceStatus>>>>,
}

impl DeviceList {
    pub fn new(list: Vec<Arc<DeviceStatus>>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(list)),
        }
    }

    /// A snapshot of the list, in configuration order.
    pub fn all(&self) -> Vec<Arc<DeviceStatus>> {
        self.inner.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// The statuses, for iteration (a snapshot: later changes do not show).
    pub fn iter(&self) -> std::vec::IntoIter<Arc<DeviceStatus>> {
        self.all().into_iter()
    }

    /// Replaces the whole list.
    pub fn set(&self, list: Vec<Arc<DeviceStatus>>) {
        if let Ok(mut l) = self.inner.write() {
            *l = list;
        }
    }
}

impl IntoIterator for &DeviceList {
    type Item = Arc<DeviceStatus>;
    type IntoIter = std::vec::IntoIter<Arc<DeviceStatus>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The longest error reason kept for display (longer ones are cut, with "…").
pub const MAX_REASON_CHARS: usize = 160;

/// One sink's delivery health, written by its delivery loop on every batch outcome. Keeps only
/// times and a short reason (the receiver's or transport's words): never a payload or value.
#[derive(Debug)]
pub struct SinkStatus {
    pub id: SinkId,
    /// When this loop started (a sink restarted by a reload gets a fresh status).
    pub started_at: OffsetDateTime,
    health: Mutex<SinkSnapshot>,
}

/// A snapshot of [`SinkStatus`] for JSON output and the readiness check.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// The last batch in which at least one reading was delivered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// The last failure's reason: a whole batch to retry, or a reading dead-lettered.
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<OffsetDateTime>,
    /// Since when every batch has failed (none while the receiver answers).
    #[serde(with = "time::serde::rfc3339::option")]
    pub failing_since: Option<OffsetDateTime>,
    /// Batches in a row that failed as a whole.
    pub consecutive_failures: u32,
}

impl SinkStatus {
    pub fn new(id: SinkId, started_at: OffsetDateTime) -> Arc<Self> {
        Arc::new(Self {
            id,
            started_at,
            health: Mutex::new(SinkSnapshot::default()),
        })
    }

    fn with(&self, f: impl FnOnce(&mut SinkSnapshot)) {
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut h);
    }

    /// The receiver answered a batch (delivered, rejected or some retried): not failing.
    /// `delivered` is true when at least one reading of it was delivered.
    pub fn answered(&self, at: OffsetDateTime, delivered: bool) {
        self.with(|h| {
            h.failing_since = None;
            h.consecutive_failures = 0;
            if delivered {
                h.last_success = Some(at);
            }
        });
    }

    /// A whole batch failed and will be retried (the receiver is down or refusing).
    pub fn failed(&self, at: OffsetDateTime, reason: &str) {
        self.with(|h| {
            h.failing_since.get_or_insert(at);
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            h.last_error = Some(short_reason(reason));
            h.last_error_at = Some(at);
        });
    }

    /// A reading was dead-lettered (rejected, or given up on) while the sink otherwise works.
    pub fn dead_lettered(&self, at: OffsetDateTime, reason: &str) {
        self.with(|h| {
            h.last_error = Some(short_reason(reason));
            h.last_error_at = Some(at);
        });
    }

    pub fn snapshot(&self) -> SinkSnapshot {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// `reason` on one line, cut to [`MAX_REASON_CHARS`] characters (pure).
pub fn short_reason(reason: &str) -> String {
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one_line = one_line.trim();
    if one_line.chars().count() <= MAX_REASON_CHARS {
        return one_line.to_string();
    }
    let mut cut: String = one_line.chars().take(MAX_REASON_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The running sinks' statuses by id, shared by the app (which starts the delivery loops, also
/// on reload) and the readers. Clones share one map; a restarted sink's entry is replaced.
#[derive(Debug, Clone, Default)]
pub struct SinkStatusList {
    inner: Arc<RwLock<BTreeMap<SinkId, Arc<SinkStatus>>>>,
}

impl SinkStatusList {
    /// Adds `status`, replacing the one of the same sink.
    pub fn insert(&self, status: Arc<SinkStatus>) {
        if let Ok(mut m) = self.inner.write() {
            m.insert(status.id.clone(), status);
        }
    }

    pub fn get(&self, id: &SinkId) -> Option<Arc<SinkStatus>> {
        self.inner.read().ok().and_then(|m| m.get(id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_sink_keeps_its_first_failure_time_until_it_answers_again() {
        use time::macros::datetime;
        let s = SinkStatus::new(SinkId::new("ehr"), datetime!(2026-11-27 12:00 UTC));
        s.failed(
            datetime!(2026-11-27 12:01 UTC),
            "transport: connection refused",
        );
        s.failed(datetime!(2026-11-27 12:02 UTC), "transport: timed out");
        let snap = s.snapshot();
        assert_eq!(snap.failing_since, Some(datetime!(2026-11-27 12:01 UTC)));
        assert_eq!(snap.consecutive_failures, 2);
        assert_eq!(snap.last_error.as_deref(), Some("transport: timed out"));
        assert_eq!(snap.last_success, None);
        s.answered(datetime!(2026-11-27 12:03 UTC), true);
        let snap = s.snapshot();
        assert_eq!(snap.failing_since, None);
        assert_eq!(snap.consecutive_failures, 0);
        assert_eq!(snap.last_success, Some(datetime!(2026-11-27 12:03 UTC)));
        assert_eq!(snap.last_error_at, Some(datetime!(2026-11-27 12:02 UTC)));
    }

    #[test]
    fn an_answer_without_a_delivery_is_not_a_success() {
        use time::macros::datetime;
        let s = SinkStatus::new(SinkId::new("ehr"), datetime!(2026-11-27 12:00 UTC));
        s.answered(datetime!(2026-11-27 12:01 UTC), false);
        s.dead_lettered(datetime!(2026-11-27 12:01 UTC), "AE: bad PID");
        let snap = s.snapshot();
        assert_eq!(snap.last_success, None);
        assert_eq!(snap.last_error.as_deref(), Some("AE: bad PID"));
        assert_eq!(snap.failing_since, None);
    }

    #[test]
    fn a_long_or_multiline_reason_is_cut_to_one_short_line() {
        assert_eq!(
            short_reason(" 500:\nInternal\terror "),
            "500: Internal error"
        );
        let long = "x".repeat(500);
        let cut = short_reason(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_restarted_sink_replaces_its_status_in_every_clone() {
        use time::macros::datetime;
        let list = SinkStatusList::default();
        let reader = list.clone();
        let old = SinkStatus::new(SinkId::new("ehr"), datetime!(2026-11-27 12:00 UTC));
        old.failed(datetime!(2026-11-27 12:01 UTC), "down");
        list.insert(old);
        list.insert(SinkStatus::new(
            SinkId::new("ehr"),
            datetime!(2026-11-27 13:00 UTC),
        ));
        let now = reader.get(&SinkId::new("ehr")).expect("status");
        assert_eq!(now.started_at, datetime!(2026-11-27 13:00 UTC));
        assert_eq!(now.snapshot(), SinkSnapshot::default());
        assert!(reader.get(&SinkId::new("other")).is_none());
    }

    #[test]
    fn stored_readings_are_counted_by_kind() {
        let s = DeviceStatus::new(DeviceId::new("ox"), "nonin-ascii", "exam-1");
        s.stored_kind("spo2");
        s.stored_kind("pulse_rate");
        s.stored_kind("spo2");
        assert_eq!(
            s.kinds(),
            vec![("pulse_rate".to_string(), 1), ("spo2".to_string(), 2)]
        );
    }

    #[test]
    fn a_device_list_change_shows_in_every_clone() {
        let a = DeviceStatus::new(DeviceId::new("a"), "json", "r1");
        let b = DeviceStatus::new(DeviceId::new("b"), "json", "r2");
        let list = DeviceList::new(vec![a.clone()]);
        let reader = list.clone();
        list.set(vec![a, b]);
        let ids: Vec<String> = reader.iter().map(|d| d.id.to_string()).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
