//! Readings for the unit tests: one place that builds a [`Reading`], so the tests of each
//! stage say only what differs from the usual one.
//!
//! Receives: a kind (or a preset: blood pressure, SpO2, body temperature, heart rate) and
//! builder-style changes: device, room, patient, times, values, flags, id.
//! Promises: [`reading`] starts from a fixed reading: a fresh id, device `exam3-dev` (driver
//! `json`) in room `exam-3`, no patient, observed and received at 2026-11-27 12:00 UTC, no
//! device time, no values, no flags, no waveform; the presets add the values with their LOINC,
//! MDC and UCUM codes (docs/fhir-codes.md) and a device of that kind. [`ReadingFixture::build`]
//! hands the [`Reading`] out.

use time::macros::datetime;
use time::OffsetDateTime;

use crate::reading::{
    Decimal, DeviceId, DeviceInfo, Flag, Kind, PatientRef, Reading, ReadingId, Ucum, Value,
    Waveform,
};

/// A value with a LOINC `code`, an MDC code, a `name`, a decimal `v` and a UCUM `unit`.
pub(crate) fn value(code: &str, mdc: u32, name: &str, v: &str, unit: &str) -> Value {
    Value {
        code: code.into(),
        mdc: Some(mdc),
        name: name.into(),
        value: Some(v.parse::<Decimal>().expect("test decimal")),
        unit: Ucum::new(unit),
        site: None,
        absent: None,
    }
}

/// A reading of `kind` with no values (see the module docs for the rest).
pub(crate) fn reading(kind: Kind) -> ReadingFixture {
    let t = datetime!(2026-11-27 12:00 UTC);
    ReadingFixture(Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: DeviceId::new("exam3-dev"),
            driver: "json".into(),
            model: None,
            serial: None,
        },
        room: Some("exam-3".into()),
        patient: None,
        patient_record: None,
        kind,
        observed_at: t,
        received_at: t,
        device_time: None,
        values: Vec::new(),
        flags: Vec::new(),
        waveform: None,
    })
}

/// A blood pressure from cuff `exam3-cuff` (`ble-gatt`): systolic, diastolic and mean in mm[Hg].
pub(crate) fn blood_pressure(systolic: &str, diastolic: &str, mean: &str) -> ReadingFixture {
    reading(Kind::BloodPressure)
        .device("exam3-cuff", "ble-gatt")
        .value(value("8480-6", 150_021, "systolic", systolic, "mm[Hg]"))
        .value(value("8462-4", 150_022, "diastolic", diastolic, "mm[Hg]"))
        .value(value("8478-0", 150_023, "mean", mean, "mm[Hg]"))
}

/// An SpO2 in % from oximeter `exam3-ox` (`nonin-8`).
pub(crate) fn spo2(percent: i64) -> ReadingFixture {
    reading(Kind::Spo2)
        .device("exam3-ox", "nonin-8")
        .value(Value {
            value: Some(Decimal::from_int(percent)),
            ..value("59408-5", 150_456, "spo2", "0", "%")
        })
}

/// A body temperature in Cel (`v` as written, e.g. `37.60`) from `exam3-thermo` (`suretemp`).
pub(crate) fn temperature(v: &str) -> ReadingFixture {
    reading(Kind::BodyTemperature)
        .device("exam3-thermo", "suretemp")
        .value(value("8310-5", 150_364, "temperature", v, "Cel"))
}

/// A heart rate in /min (MDC_ECG_HEART_RATE) from monitor `exam3-monitor` (`hl7v2`).
pub(crate) fn heart_rate(per_min: i64) -> ReadingFixture {
    reading(Kind::HeartRate)
        .device("exam3-monitor", "hl7v2")
        .value(Value {
            value: Some(Decimal::from_int(per_min)),
            ..value("8867-4", 147_842, "heart_rate", "0", "/min")
        })
}

/// A [`Reading`] under construction.
#[derive(Debug, Clone)]
pub(crate) struct ReadingFixture(Reading);

impl ReadingFixture {
    pub(crate) fn build(self) -> Reading {
        self.0
    }

    pub(crate) fn id(mut self, id: ReadingId) -> Self {
        self.0.id = Some(id);
        self
    }

    /// No id (as `vitalsd decode` prints readings).
    pub(crate) fn no_id(mut self) -> Self {
        self.0.id = None;
        self
    }

    /// The device's id and driver.
    pub(crate) fn device(mut self, id: &str, driver: &str) -> Self {
        self.0.device.id = DeviceId::new(id);
        self.0.device.driver = driver.into();
        self
    }

    pub(crate) fn model(mut self, model: &str) -> Self {
        self.0.device.model = Some(model.into());
        self
    }

    /// The room (`None`: a device in no room).
    pub(crate) fn room(mut self, room: Option<&str>) -> Self {
        self.0.room = room.map(Into::into);
        self
    }

    /// The patient the reading is for.
    pub(crate) fn patient(mut self, id: &str, system: &str) -> Self {
        self.0.patient = Some(PatientRef {
            id: id.into(),
            system: system.into(),
        });
        self
    }

    /// Observed and received at `t`.
    pub(crate) fn at(mut self, t: OffsetDateTime) -> Self {
        self.0.observed_at = t;
        self.0.received_at = t;
        self
    }

    pub(crate) fn observed(mut self, t: OffsetDateTime) -> Self {
        self.0.observed_at = t;
        self
    }

    pub(crate) fn received(mut self, t: OffsetDateTime) -> Self {
        self.0.received_at = t;
        self
    }

    /// The time the device reported.
    pub(crate) fn device_time(mut self, t: Option<OffsetDateTime>) -> Self {
        self.0.device_time = t;
        self
    }

    /// One more value.
    pub(crate) fn value(mut self, v: Value) -> Self {
        self.0.values.push(v);
        self
    }

    /// These values instead of the ones there are.
    pub(crate) fn values(mut self, values: Vec<Value>) -> Self {
        self.0.values = values;
        self
    }

    pub(crate) fn flag(mut self, flag: Flag) -> Self {
        self.0.flags.push(flag);
        self
    }

    /// These flags instead of the ones there are.
    pub(crate) fn flags(mut self, flags: Vec<Flag>) -> Self {
        self.0.flags = flags;
        self
    }

    /// An ECG strip.
    pub(crate) fn waveform(mut self, w: Waveform) -> Self {
        self.0.waveform = Some(w);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_carry_their_codes_and_the_setters_change_only_what_they_name() {
        let bp = blood_pressure("120", "80", "93").build();
        let codes: Vec<&str> = bp.values.iter().map(|v| v.code.as_str()).collect();
        assert_eq!(codes, ["8480-6", "8462-4", "8478-0"]);
        assert_eq!(bp.values[0].value.as_ref().unwrap().to_string(), "120");
        assert_eq!(bp.device.id.as_str(), "exam3-cuff");

        let t = datetime!(2024-03-15 10:29:30 +01:00);
        let r = spo2(97)
            .patient("MRN1", "urn:oid:1.2.3")
            .at(t)
            .device_time(Some(t))
            .room(None)
            .flag(Flag::clock_untrusted())
            .build();
        assert_eq!(r.kind, Kind::Spo2);
        assert_eq!(r.values[0].value.as_ref().unwrap().to_string(), "97");
        assert_eq!(r.values[0].unit.as_str(), "%");
        assert_eq!(r.patient.as_ref().unwrap().id, "MRN1");
        assert_eq!(
            (r.observed_at, r.received_at, r.device_time),
            (t, t, Some(t))
        );
        assert_eq!(r.room, None);
        assert!(r.has_flag("clock_untrusted"));
        assert_eq!(
            temperature("37.60").build().values[0]
                .value
                .as_ref()
                .unwrap()
                .to_string(),
            "37.60"
        );
        let hr = heart_rate(72).build();
        assert_eq!(
            (hr.kind, hr.values[0].mdc),
            (Kind::HeartRate, Some(147_842))
        );
        assert_eq!(hr.values[0].value, Some(Decimal::from_int(72)));
        assert_ne!(
            reading(Kind::Spo2).build().id,
            reading(Kind::Spo2).build().id
        );
    }
}
