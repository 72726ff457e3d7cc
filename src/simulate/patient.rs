//! Simulated patients: one baseline per patient (height, weight, pulse, SpO2, temperature and
//! where it is taken, blood pressure) and small measurement-to-measurement jitter around it.
//!
//! Receives a seeded generator; promises values a medical assistant would believe: a patient's
//! height moves by millimetres and weight by a few hundred grams between weighings, and two
//! devices measuring one patient's pulse within [`PULSE_JITTER`] of the same baseline agree
//! well inside the daemon's 10 /min agreement check, so no data-quality flag fires on a normal
//! reading.
//!
//! A [`RoomPatient`] is the patient currently in a room, shared by the room's simulated devices:
//! the wristband scanner moves it on to the next patient at each scan after the first.

use std::sync::{Arc, Mutex};

/// Largest difference of a measured pulse from the patient's baseline (/min).
pub const PULSE_JITTER: i32 = 2;

/// Where a temperature is taken, with its BLE Temperature Type code (0x2A1D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemperatureSite {
    Armpit,
    Ear,
    Mouth,
}

impl TemperatureSite {
    /// The BLE Temperature Type code: armpit 1, ear (tympanum) 9, mouth 6.
    #[must_use]
    pub fn ble_code(self) -> u8 {
        match self {
            Self::Armpit => 1,
            Self::Ear => 9,
            Self::Mouth => 6,
        }
    }

    /// The usual difference of this site from an oral reading, in hundredths of °C.
    fn offset_centi(self) -> i32 {
        match self {
            Self::Armpit => -40,
            Self::Ear => 10,
            Self::Mouth => 0,
        }
    }
}

/// One patient's resting values.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub height_mm: u16,
    /// Weight in grams.
    pub weight_g: u32,
    /// Pulse (/min).
    pub pulse: i32,
    /// SpO2 (%).
    pub spo2: i32,
    /// Oral temperature in hundredths of °C.
    pub temperature_centi: i32,
    /// Where this patient's temperature is taken (a clinic uses one method per patient).
    pub temperature_site: TemperatureSite,
    /// Blood pressure (mmHg).
    pub systolic: i16,
    pub diastolic: i16,
}

impl Baseline {
    /// A plausible adult, drawn from `rng`: height 1.52–1.92 m, BMI 19–31, pulse 60–88,
    /// SpO2 96–99 %, oral temperature 36.5–37.1 °C, blood pressure 108–136 / 66–84 mmHg.
    pub fn draw(rng: &mut fastrand::Rng) -> Self {
        let height_mm = rng.u16(1_520..=1_920);
        let bmi_tenths = rng.u32(190..=310);
        let h = u64::from(height_mm);
        // weight = BMI × height², in grams: tenths × mm² / 10 000.
        let weight_g = u32::try_from(u64::from(bmi_tenths) * h * h / 10_000).unwrap_or(70_000);
        let systolic = rng.i16(108..=136);
        let diastolic = rng.i16(66..=84).min(systolic - 30);
        let sites = [
            TemperatureSite::Mouth,
            TemperatureSite::Ear,
            TemperatureSite::Armpit,
        ];
        Self {
            height_mm,
            weight_g,
            pulse: rng.i32(60..=88),
            spo2: rng.i32(96..=99),
            temperature_centi: rng.i32(3650..=3710),
            temperature_site: sites[rng.usize(..sites.len())],
            systolic,
            diastolic,
        }
    }

    /// A measured height (mm): within 3 mm of the baseline.
    pub fn height(&self, rng: &mut fastrand::Rng) -> u16 {
        self.height_mm
            .saturating_add(rng.u16(0..=6))
            .saturating_sub(3)
    }

    /// A measured weight (g): within 200 g of the baseline.
    pub fn weight(&self, rng: &mut fastrand::Rng) -> u32 {
        self.weight_g
            .saturating_add(rng.u32(0..=400))
            .saturating_sub(200)
    }

    /// A measured pulse: within [`PULSE_JITTER`] of the baseline.
    pub fn pulse(&self, rng: &mut fastrand::Rng) -> i32 {
        self.pulse + rng.i32(-PULSE_JITTER..=PULSE_JITTER)
    }

    /// A measured SpO2: the baseline or one below it.
    pub fn spo2(&self, rng: &mut fastrand::Rng) -> i32 {
        self.spo2 - rng.i32(0..=1)
    }

    /// A measured temperature at the patient's site, in hundredths of °C: within 0.1 °C.
    pub fn temperature(&self, rng: &mut fastrand::Rng) -> i32 {
        self.temperature_centi + self.temperature_site.offset_centi() + rng.i32(-10..=10)
    }

    /// A measured blood pressure (systolic, diastolic, mean): within 4 / 3 mmHg.
    pub fn blood_pressure(&self, rng: &mut fastrand::Rng) -> (i16, i16, i16) {
        let sys = self.systolic + rng.i16(-4..=4);
        let dia = self.diastolic + rng.i16(-3..=3);
        (sys, dia, dia + (sys - dia) / 3)
    }
}

/// The patient currently in a room, shared by the room's simulated devices.
#[derive(Debug, Clone)]
pub struct RoomPatient {
    current: Arc<Mutex<Baseline>>,
}

impl RoomPatient {
    /// A room whose first patient is drawn from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        Self {
            current: Arc::new(Mutex::new(Baseline::draw(&mut rng))),
        }
    }

    /// The patient in the room now.
    #[must_use]
    pub fn get(&self) -> Baseline {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The next patient comes in.
    pub fn next(&self, rng: &mut fastrand::Rng) {
        let b = Baseline::draw(rng);
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_stay_close_to_the_baseline() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..200 {
            let b = Baseline::draw(&mut rng);
            let bmi = f64::from(b.weight_g) / 1000.0 / (f64::from(b.height_mm) / 1000.0).powi(2);
            assert!((18.9..=31.1).contains(&bmi), "{b:?}");
            assert!(b.systolic - b.diastolic >= 30, "{b:?}");
            for _ in 0..20 {
                assert!(b.height(&mut rng).abs_diff(b.height_mm) <= 3);
                assert!(b.weight(&mut rng).abs_diff(b.weight_g) <= 200);
                let (p1, p2) = (b.pulse(&mut rng), b.pulse(&mut rng));
                assert!((p1 - p2).abs() <= 2 * PULSE_JITTER, "{p1} {p2}");
                let t = b.temperature(&mut rng);
                assert!((3600..=3730).contains(&t), "{t}");
                let (s, d, m) = b.blood_pressure(&mut rng);
                assert!(s > m && m > d && s - d >= 23, "{s}/{d} ({m})");
            }
        }
    }

    #[test]
    fn a_room_keeps_its_patient_until_the_next_comes_in() {
        let room = RoomPatient::new(9);
        let other_device_view = room.clone();
        let first = room.get();
        assert_eq!(other_device_view.get(), first);
        room.next(&mut fastrand::Rng::with_seed(1));
        assert_ne!(other_device_view.get(), first);
    }
}
