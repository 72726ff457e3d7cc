//! Plausibility limits (`docs/plausibility.md`), as data, applied to values in canonical units.
//!
//! Receives a reading's kind and coded values (after unit conversion) and returns flags:
//! - a hard-limit violation → `rejected:<name> <value> <unit> <op> <limit>` (for example
//!   `rejected:systolic 410 mm[Hg] >= 400`); a `Cel` temperature between 90 and 110 adds
//!   ` (probable degF)` to its reason instead of being converted silently;
//! - outside the soft range → `out_of_range:<name>`;
//! - cross-field: systolic ≤ diastolic → `rejected:systolic <= diastolic`; a mean pressure
//!   outside [diastolic, systolic] → `map_outside_range` (a flag, not a reject: oscillometric
//!   cuffs measure MAP).
//!
//! Absent values are not checked (sentinels never reach this stage as numbers). Rules that span
//! readings (cuff vs oximeter pulse rate, BMI recomputed from weight and height) need state
//! across readings and are not applied here.

use crate::reading::{Decimal, Flag, Kind, Value};

/// One side of a hard limit: reject when the value compares this way to the bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reject {
    /// Reject if value ≤ bound.
    AtOrBelow(f64),
    /// Reject if value < bound.
    Below(f64),
    /// Reject if value ≥ bound.
    AtOrAbove(f64),
    /// Reject if value > bound.
    Above(f64),
}

impl Reject {
    fn violated(&self, v: f64) -> Option<(&'static str, f64)> {
        match *self {
            Reject::AtOrBelow(b) if v <= b => Some(("<=", b)),
            Reject::Below(b) if v < b => Some(("<", b)),
            Reject::AtOrAbove(b) if v >= b => Some((">=", b)),
            Reject::Above(b) if v > b => Some((">", b)),
            _ => None,
        }
    }
}

/// The limits of one component (canonical unit).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Component name (`systolic`, `heart_rate`, ...).
    pub name: &'static str,
    pub unit: &'static str,
    pub low: Reject,
    pub high: Reject,
    /// Inclusive range outside which the value is flagged `out_of_range:<name>`.
    pub soft: Option<(f64, f64)>,
}

/// The default policy. Every bound and its source is listed in `docs/plausibility.md`:
/// hard limits from published data-quality rule sets (a value past them is a device or
/// transcription error); soft ranges from NEWS2's single-parameter red thresholds (Royal
/// College of Physicians, 2017) and the ACC/AHA 2017 hypertensive-crisis bounds, so a flag
/// means "a value to look at again", not "a normal adult outside the textbook range".
pub const LIMITS: [Limits; 10] = [
    Limits {
        name: "systolic",
        unit: "mm[Hg]",
        low: Reject::AtOrBelow(0.0),
        high: Reject::AtOrAbove(400.0),
        // NEWS2 scores 3 at <= 90; ACC/AHA 2017: > 180 is a hypertensive crisis.
        soft: Some((91.0, 180.0)),
    },
    Limits {
        name: "diastolic",
        unit: "mm[Hg]",
        low: Reject::AtOrBelow(0.0),
        high: Reject::AtOrAbove(300.0),
        // Low: the data-quality bound; high: ACC/AHA 2017 crisis (> 120).
        soft: Some((30.0, 120.0)),
    },
    Limits {
        name: "mean",
        unit: "mm[Hg]",
        low: Reject::AtOrBelow(0.0),
        high: Reject::AtOrAbove(300.0),
        // Low: the usual perfusion target of 65; high: the arterial-line artefact bound.
        soft: Some((65.0, 200.0)),
    },
    Limits {
        name: "heart_rate",
        unit: "/min",
        low: Reject::AtOrBelow(0.0),
        high: Reject::AtOrAbove(300.0),
        // NEWS2 scores 3 at <= 40 and >= 131.
        soft: Some((41.0, 130.0)),
    },
    Limits {
        name: "respiratory_rate",
        unit: "/min",
        low: Reject::AtOrBelow(0.0),
        high: Reject::AtOrAbove(70.0),
        // NEWS2 scores 3 at <= 8 and >= 25.
        soft: Some((9.0, 24.0)),
    },
    Limits {
        name: "temperature",
        unit: "Cel",
        low: Reject::AtOrBelow(10.0),
        high: Reject::AtOrAbove(50.0),
        // NEWS2 scores 3 at <= 35.0 and 2 at >= 39.1.
        soft: Some((35.1, 39.0)),
    },
    Limits {
        name: "spo2",
        unit: "%",
        low: Reject::AtOrBelow(0.0),
        high: Reject::Above(100.0),
        // NEWS2 (scale 1) scores 3 at <= 91.
        soft: Some((92.0, 100.0)),
    },
    Limits {
        name: "weight",
        unit: "kg",
        low: Reject::Below(1.0),
        high: Reject::Above(635.0),
        soft: Some((2.0, 500.0)),
    },
    Limits {
        name: "height",
        unit: "cm",
        low: Reject::Below(1.0),
        high: Reject::Above(272.0),
        soft: Some((20.0, 250.0)),
    },
    Limits {
        name: "bmi",
        unit: "kg/m2",
        low: Reject::Below(10.0),
        high: Reject::Above(100.0),
        soft: Some((16.0, 80.0)),
    },
];

/// The limits for a component name, if it has any.
pub fn limits(name: &str) -> Option<&'static Limits> {
    LIMITS.iter().find(|l| l.name == name)
}

/// Checks the values of one reading (canonical units) and returns the flags to append.
pub fn check(kind: Kind, values: &[Value]) -> Vec<Flag> {
    let mut flags = Vec::new();
    for v in values {
        let (Some(d), Some(l)) = (v.value, limits(&v.name)) else {
            continue;
        };
        if v.unit.as_str() != l.unit {
            // Normalize converts first; a value in another unit has no limits to apply.
            continue;
        }
        flags.extend(check_one(l, d));
    }
    if kind == Kind::BloodPressure {
        flags.extend(cross_check_bp(values));
    }
    flags
}

fn check_one(l: &Limits, d: Decimal) -> Option<Flag> {
    let x = d.to_f64();
    if let Some((op, bound)) = l.low.violated(x).or_else(|| l.high.violated(x)) {
        let hint = if l.name == "temperature" && (90.0..=110.0).contains(&x) {
            " (probable degF)"
        } else {
            ""
        };
        return Some(Flag::new(format!(
            "rejected:{} {d} {} {op} {bound}{hint}",
            l.name, l.unit
        )));
    }
    match l.soft {
        Some((lo, hi)) if x < lo || x > hi => Some(Flag::out_of_range(l.name)),
        _ => None,
    }
}

fn cross_check_bp(values: &[Value]) -> Vec<Flag> {
    let get = |name: &str| {
        values
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value)
            .map(|d| d.to_f64())
    };
    let (sys, dia, map) = (get("systolic"), get("diastolic"), get("mean"));
    let mut flags = Vec::new();
    if let (Some(s), Some(d)) = (sys, dia) {
        if s <= d {
            flags.push(Flag::new("rejected:systolic <= diastolic"));
        } else if map.is_some_and(|m| m < d || m > s) {
            flags.push(Flag::new("map_outside_range"));
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Ucum;

    fn v(name: &str, value: &str, unit: &str) -> Value {
        Value {
            code: String::new(),
            mdc: None,
            name: name.into(),
            value: Some(value.parse().unwrap()),
            unit: Ucum::new(unit),
            site: None,
            absent: None,
        }
    }

    fn bp(sys: &str, dia: &str, map: Option<&str>) -> Vec<Flag> {
        let mut vals = vec![v("systolic", sys, "mm[Hg]"), v("diastolic", dia, "mm[Hg]")];
        if let Some(m) = map {
            vals.push(v("mean", m, "mm[Hg]"));
        }
        check(Kind::BloodPressure, &vals)
    }

    fn one(kind: Kind, name: &str, value: &str, unit: &str) -> Vec<Flag> {
        check(kind, &[v(name, value, unit)])
    }

    fn names(flags: &[Flag]) -> Vec<&str> {
        flags.iter().map(Flag::as_str).collect()
    }

    #[test]
    fn a_normal_blood_pressure_passes() {
        assert!(bp("120", "80", Some("93")).is_empty());
    }

    #[test]
    fn systolic_not_above_diastolic_is_rejected() {
        assert_eq!(
            names(&bp("80", "120", None)),
            ["out_of_range:systolic", "rejected:systolic <= diastolic"]
        );
    }

    #[test]
    fn systolic_410_is_rejected_at_the_hard_limit() {
        assert_eq!(
            names(&one(Kind::BloodPressure, "systolic", "410", "mm[Hg]")),
            ["rejected:systolic 410 mm[Hg] >= 400"]
        );
    }

    #[test]
    fn systolic_270_is_forwarded_with_a_flag() {
        assert_eq!(names(&bp("270", "110", None)), ["out_of_range:systolic"]);
    }

    #[test]
    fn a_fahrenheit_number_in_celsius_is_rejected_with_a_hint() {
        assert_eq!(
            names(&one(Kind::BodyTemperature, "temperature", "98.6", "Cel")),
            ["rejected:temperature 98.6 Cel >= 50 (probable degF)"]
        );
    }

    #[test]
    fn a_cold_temperature_is_flagged() {
        assert_eq!(
            names(&one(Kind::BodyTemperature, "temperature", "33.5", "Cel")),
            ["out_of_range:temperature"]
        );
    }

    #[test]
    fn every_soft_range_lies_strictly_inside_its_hard_limits_so_it_can_fire() {
        for l in &LIMITS {
            let (lo, hi) = l
                .soft
                .unwrap_or_else(|| panic!("{} has no soft range", l.name));
            assert!(lo < hi, "{}", l.name);
            // Just past each soft bound, the value is flagged and not rejected; SpO2's top is
            // the physical maximum (100 %), where the hard limit takes over.
            let physical_max = l.high == Reject::Above(hi);
            let past = if physical_max {
                vec![lo - 0.1]
            } else {
                vec![lo - 0.1, hi + 0.1]
            };
            for x in past {
                let d = Decimal::from_f64(x, 1).unwrap();
                assert_eq!(
                    check_one(l, d),
                    Some(Flag::out_of_range(l.name)),
                    "{} {x}",
                    l.name
                );
            }
            for x in [lo, hi] {
                assert_eq!(
                    check_one(l, Decimal::from_f64(x, 1).unwrap()),
                    None,
                    "{} {x}",
                    l.name
                );
            }
        }
    }

    #[test]
    fn ordinary_clinic_vitals_raise_no_flag() {
        let ordinary = [
            (Kind::HeartRate, "heart_rate", "58", "/min"),
            (Kind::HeartRate, "heart_rate", "112", "/min"),
            (Kind::RespiratoryRate, "respiratory_rate", "16", "/min"),
            (Kind::BodyTemperature, "temperature", "36.2", "Cel"),
            (Kind::BodyTemperature, "temperature", "38.4", "Cel"),
            (Kind::Spo2, "spo2", "95", "%"),
            (Kind::BodyWeight, "weight", "81.3", "kg"),
            (Kind::Bmi, "bmi", "31.2", "kg/m2"),
        ];
        for (kind, name, value, unit) in ordinary {
            assert!(one(kind, name, value, unit).is_empty(), "{name} {value}");
        }
        assert!(bp("148", "94", Some("112")).is_empty());
        assert!(bp("104", "62", Some("76")).is_empty());
    }

    #[test]
    fn alarming_but_possible_values_are_flagged_not_rejected() {
        let cases = [
            (Kind::HeartRate, "heart_rate", "38", "/min"),
            (Kind::HeartRate, "heart_rate", "145", "/min"),
            (Kind::RespiratoryRate, "respiratory_rate", "28", "/min"),
            (Kind::RespiratoryRate, "respiratory_rate", "6", "/min"),
            (Kind::BodyTemperature, "temperature", "39.6", "Cel"),
            (Kind::BodyTemperature, "temperature", "34.9", "Cel"),
            (Kind::Spo2, "spo2", "89", "%"),
        ];
        for (kind, name, value, unit) in cases {
            assert_eq!(
                names(&one(kind, name, value, unit)),
                [format!("out_of_range:{name}")],
                "{name} {value}"
            );
        }
        assert_eq!(names(&bp("192", "100", None)), ["out_of_range:systolic"]);
        assert_eq!(names(&bp("86", "50", None)), ["out_of_range:systolic"]);
    }

    #[test]
    fn spo2_above_100_is_rejected_and_45_is_flagged() {
        assert_eq!(
            names(&one(Kind::Spo2, "spo2", "101", "%")),
            ["rejected:spo2 101 % > 100"]
        );
        assert_eq!(
            names(&one(Kind::Spo2, "spo2", "45", "%")),
            ["out_of_range:spo2"]
        );
        assert!(one(Kind::Spo2, "spo2", "100", "%").is_empty());
    }

    #[test]
    fn a_heart_rate_of_zero_is_rejected() {
        assert_eq!(
            names(&one(Kind::HeartRate, "heart_rate", "0", "/min")),
            ["rejected:heart_rate 0 /min <= 0"]
        );
    }

    #[test]
    fn half_a_kilogram_is_rejected() {
        assert_eq!(
            names(&one(Kind::BodyWeight, "weight", "0.5", "kg")),
            ["rejected:weight 0.5 kg < 1"]
        );
    }

    #[test]
    fn a_mean_pressure_outside_the_pair_is_flagged_not_rejected() {
        assert_eq!(names(&bp("120", "80", Some("130"))), ["map_outside_range"]);
    }

    #[test]
    fn absent_values_are_not_checked() {
        let mut a = v("spo2", "0", "%");
        a.value = None;
        assert!(check(Kind::Spo2, &[a]).is_empty());
    }
}
