//! Live counters of devices and sinks, shared by the pipeline (which writes them) and the
//! readers (logs at shutdown, the admin API when it is enabled). Lock-free atomics, except
//! the last-frame time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
        })
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
        }
    }
}
