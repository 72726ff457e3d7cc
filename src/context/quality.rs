//! Data-quality checks that need more than one reading (issue 6): per-device clock drift and
//! pulse agreement between devices measuring the same patient.
//!
//! Receives readings (after the patient is attached, before they are stored); records each
//! device's clock drift (`device_time − received_at`, when the device reports a time) for
//! `/api/status`, and flags `pulse_disagrees` on a reading whose pulse differs by more than
//! [`PULSE_TOLERANCE`] /min from another device's pulse for the same patient measured within
//! [`PULSE_WINDOW`] (a cuff and an oximeter should agree within about 10 /min).
//! State is small and bounded: one drift record per device, a few recent pulses per patient.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

use crate::reading::{DeviceId, Flag, PatientRef, Reading};

/// Pulses from two devices closer in time than this are compared.
pub const PULSE_WINDOW: time::Duration = time::Duration::minutes(1);
/// Largest pulse difference (/min) that still counts as agreement.
pub const PULSE_TOLERANCE: f64 = 10.0;
/// LOINC heart rate: the code of every pulse value, whatever the reading kind.
const PULSE_CODE: &str = "8867-4";
/// Recent pulses kept per patient, and patients kept.
const PULSES_PER_PATIENT: usize = 8;
const PATIENTS: usize = 1024;

/// One device's clock against the host's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// `device_time − received_at` of the last reading that had a device time, in seconds.
    pub last_seconds: f64,
    pub min_seconds: f64,
    pub max_seconds: f64,
    pub samples: u64,
}

#[derive(Default)]
struct State {
    drift: BTreeMap<DeviceId, Drift>,
    pulses: HashMap<PatientRef, VecDeque<(OffsetDateTime, DeviceId, f64)>>,
}

/// Shared by every device pipeline.
#[derive(Default)]
pub struct Quality {
    state: Mutex<State>,
}

/// The pulse of a reading, if it carries one.
fn pulse(r: &Reading) -> Option<f64> {
    r.values
        .iter()
        .find(|v| v.code == PULSE_CODE)
        .and_then(|v| v.value)
        .map(|d| d.to_f64())
}

impl Quality {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the reading's clock drift and checks its pulse; may add a flag.
    pub fn check(&self, r: &mut Reading) {
        let mut st = self.state();
        if let Some(dt) = r.device_time {
            let s = (dt - r.received_at).as_seconds_f64();
            let d = st.drift.entry(r.device.id.clone()).or_insert(Drift {
                last_seconds: s,
                min_seconds: s,
                max_seconds: s,
                samples: 0,
            });
            d.last_seconds = s;
            d.min_seconds = d.min_seconds.min(s);
            d.max_seconds = d.max_seconds.max(s);
            d.samples += 1;
        }
        let (Some(patient), Some(bpm)) = (r.patient.clone(), pulse(r)) else {
            return;
        };
        if !st.pulses.contains_key(&patient) && st.pulses.len() >= PATIENTS {
            st.pulses.clear();
        }
        let recent = st.pulses.entry(patient).or_default();
        let t = r.observed_at;
        let disagrees = recent.iter().any(|(at, dev, other)| {
            *dev != r.device.id
                && (*at - t).abs() <= PULSE_WINDOW
                && (other - bpm).abs() > PULSE_TOLERANCE
        });
        recent.push_back((t, r.device.id.clone(), bpm));
        while recent.len() > PULSES_PER_PATIENT {
            recent.pop_front();
        }
        if disagrees && !r.has_flag("pulse_disagrees") {
            r.flags.push(Flag::new("pulse_disagrees"));
        }
    }

    /// The clock drift of one device, if it reported a time.
    pub fn drift(&self, device: &DeviceId) -> Option<Drift> {
        self.state().drift.get(device).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{Decimal, DeviceInfo, Kind, Ucum, Value};
    use time::macros::datetime;

    fn hr(device: &str, bpm: i64, secs: i64, patient: &str) -> Reading {
        let t = datetime!(2026-11-27 12:00 UTC) + time::Duration::seconds(secs);
        Reading {
            id: None,
            device: DeviceInfo {
                id: DeviceId::new(device),
                driver: "t".into(),
                model: None,
                serial: None,
            },
            room: Some("exam-1".into()),
            patient: Some(PatientRef {
                id: patient.into(),
                system: "urn:oid:1".into(),
            }),
            patient_record: None,
            kind: Kind::HeartRate,
            observed_at: t,
            received_at: t,
            device_time: Some(t - time::Duration::seconds(30)),
            values: vec![Value {
                code: PULSE_CODE.into(),
                mdc: None,
                name: "heart_rate".into(),
                value: Some(Decimal::from_int(bpm)),
                unit: Ucum::new("/min"),
                site: None,
                absent: None,
            }],
            flags: vec![],
            waveform: None,
        }
    }

    #[test]
    fn pulses_of_two_devices_within_a_minute_must_agree_within_ten() {
        let q = Quality::new();
        let mut cuff = hr("cuff", 72, 0, "A");
        q.check(&mut cuff);
        let mut ox = hr("ox", 80, 30, "A");
        q.check(&mut ox);
        assert!(ox.flags.is_empty());
        let mut ox2 = hr("ox", 95, 40, "A");
        q.check(&mut ox2);
        assert_eq!(ox2.flags, [Flag::new("pulse_disagrees")]);
    }

    #[test]
    fn other_patients_later_readings_and_the_same_device_are_not_compared() {
        let q = Quality::new();
        q.check(&mut hr("cuff", 60, 0, "A"));
        let mut other = hr("ox", 100, 10, "B");
        q.check(&mut other);
        let mut late = hr("ox", 100, 120, "A");
        q.check(&mut late);
        let mut same = hr("cuff", 100, 5, "A");
        q.check(&mut same);
        assert!(other.flags.is_empty() && late.flags.is_empty() && same.flags.is_empty());
    }

    #[test]
    fn clock_drift_is_tracked_per_device() {
        let q = Quality::new();
        q.check(&mut hr("cuff", 60, 0, "A"));
        let d = q.drift(&DeviceId::new("cuff")).unwrap();
        assert!((d.last_seconds + 30.0).abs() < 1e-9);
        assert_eq!(d.samples, 1);
        assert!(q.drift(&DeviceId::new("ox")).is_none());
    }
}
