//! Live counters of devices and sinks, shared by the pipeline (which writes them) and the
//! readers (logs at shutdown, the admin API when it is enabled). Lock-free atomics, except
//! the last-frame time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use time::OffsetDateTime;

use crate::reading::DeviceId;

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
    last_frame_at: Mutex<Option<OffsetDateTime>>,
    kinds: Mutex<BTreeMap<String, u64>>,
    /// The serial port in use or last tried (a `usb` device's resolved path).
    port: Mutex<Option<String>>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
