//! Unit conversion to the canonical UCUM unit of each component.
//!
//! Receives a [`Decimal`] in the device's unit and the canonical unit from the code table;
//! returns the value in the canonical unit with a precision that reflects the input:
//!
//! | from → to | rule | output scale |
//! |---|---|---|
//! | same unit | untouched (same mantissa and scale) | input |
//! | `kPa` → `mm[Hg]` | × 7.50062 | 0 |
//! | `[degF]` → `Cel` | (x − 32) / 1.8 | input scale clamped to 1..=2 (98.6 → 37.0, 98.60 → 37.00, 98 → 36.7) |
//! | `[lb_av]` → `kg` | × 0.45359237 | input scale + 1, at most 2 |
//! | `[in_i]` → `cm` | × 2.54 | 1 |
//! | `m` → `cm` | × 100, exact | input scale − 2, at least 0 |
//! | `g` → `kg` | ÷ 1000, exact | input scale + 3 |
//!
//! Exact conversions shift the decimal point; the others go through `f64` and round half away
//! from zero. Nothing else converts: an unknown pair is a [`UnitError`].

use crate::reading::{Decimal, MAX_SCALE};

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("no conversion from `{from}` to `{to}`")]
    NotConvertible { from: String, to: String },
    #[error("value out of range converting `{from}` to `{to}`")]
    OutOfRange { from: String, to: String },
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    /// value × factor, rounded to the scale chosen by the function.
    Scale(f64, fn(u8) -> u8),
    DegFToCel,
    /// Exact decimal shift: × 10^n for positive n, ÷ 10^-n for negative.
    Shift(i8),
}

const RULES: [(&str, &str, Rule); 6] = [
    ("kPa", "mm[Hg]", Rule::Scale(7.500_62, |_| 0)),
    ("[degF]", "Cel", Rule::DegFToCel),
    (
        "[lb_av]",
        "kg",
        Rule::Scale(0.453_592_37, |s| (s + 1).min(2)),
    ),
    ("[in_i]", "cm", Rule::Scale(2.54, |_| 1)),
    ("m", "cm", Rule::Shift(2)),
    ("g", "kg", Rule::Shift(-3)),
];

fn rule(from: &str, to: &str) -> Option<Rule> {
    RULES
        .iter()
        .find(|(f, t, _)| *f == from && *t == to)
        .map(|(_, _, r)| *r)
}

/// True when `from` can be converted to `to` (including `from == to`).
pub fn can_convert(from: &str, to: &str) -> bool {
    from == to || rule(from, to).is_some()
}

/// The units that convert to `to` (besides `to` itself), for error messages and docs.
pub fn convertible_to(to: &str) -> Vec<&'static str> {
    RULES
        .iter()
        .filter(|(_, t, _)| *t == to)
        .map(|(f, _, _)| *f)
        .collect()
}

/// Converts `value` from unit `from` to unit `to`. See the module docs for the precision rules.
pub fn convert(value: Decimal, from: &str, to: &str) -> Result<Decimal, UnitError> {
    if from == to {
        return Ok(value);
    }
    let err_range = || UnitError::OutOfRange {
        from: from.to_string(),
        to: to.to_string(),
    };
    let rule = rule(from, to).ok_or_else(|| UnitError::NotConvertible {
        from: from.to_string(),
        to: to.to_string(),
    })?;
    match rule {
        Rule::Scale(factor, scale) => {
            Decimal::from_f64(value.to_f64() * factor, scale(value.scale())).ok_or_else(err_range)
        }
        Rule::DegFToCel => {
            let scale = value.scale().clamp(1, 2);
            Decimal::from_f64((value.to_f64() - 32.0) / 1.8, scale).ok_or_else(err_range)
        }
        Rule::Shift(n) => shift(value, n).ok_or_else(err_range),
    }
}

/// Multiplies by 10^n exactly, lowering (n > 0) or raising (n < 0) the scale.
fn shift(value: Decimal, n: i8) -> Option<Decimal> {
    let scale = i16::from(value.scale()) - i16::from(n);
    if scale >= 0 {
        let scale = u8::try_from(scale).ok().filter(|s| *s <= MAX_SCALE)?;
        return Some(Decimal::new(value.mantissa(), scale));
    }
    let factor = 10i64.checked_pow(u32::from(scale.unsigned_abs()))?;
    Some(Decimal::new(value.mantissa().checked_mul(factor)?, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(v: &str, from: &str, to: &str) -> String {
        convert(v.parse().unwrap(), from, to).unwrap().to_string()
    }

    #[test]
    fn canonical_values_pass_through_with_their_precision() {
        let d: Decimal = "37.60".parse().unwrap();
        assert_eq!(convert(d, "Cel", "Cel").unwrap(), d);
        assert_eq!(conv("37.60", "Cel", "Cel"), "37.60");
    }

    #[test]
    fn kilopascal_becomes_whole_millimetres_of_mercury() {
        assert_eq!(conv("16.0", "kPa", "mm[Hg]"), "120");
        assert_eq!(conv("10.7", "kPa", "mm[Hg]"), "80");
    }

    #[test]
    fn fahrenheit_keeps_its_precision_up_to_two_places() {
        assert_eq!(conv("98.6", "[degF]", "Cel"), "37.0");
        assert_eq!(conv("98.60", "[degF]", "Cel"), "37.00");
        assert_eq!(conv("98", "[degF]", "Cel"), "36.7");
        assert_eq!(conv("100.375", "[degF]", "Cel"), "37.99");
    }

    #[test]
    fn pounds_gain_one_place_up_to_two() {
        assert_eq!(conv("150", "[lb_av]", "kg"), "68.0");
        assert_eq!(conv("150.4", "[lb_av]", "kg"), "68.22");
        assert_eq!(conv("150.44", "[lb_av]", "kg"), "68.24");
    }

    #[test]
    fn inches_become_centimetres_with_one_place() {
        assert_eq!(conv("70", "[in_i]", "cm"), "177.8");
        assert_eq!(conv("65.5", "[in_i]", "cm"), "166.4");
    }

    #[test]
    fn metres_and_grams_shift_exactly() {
        assert_eq!(conv("1.75", "m", "cm"), "175");
        assert_eq!(conv("1.753", "m", "cm"), "175.3");
        assert_eq!(conv("2", "m", "cm"), "200");
        assert_eq!(conv("70500", "g", "kg"), "70.500");
    }

    #[test]
    fn unknown_pairs_are_errors_naming_both_units() {
        let e = convert(Decimal::from_int(1), "kg", "mm[Hg]").unwrap_err();
        assert_eq!(e.to_string(), "no conversion from `kg` to `mm[Hg]`");
        assert!(!can_convert("Cel", "[degF]"));
        assert!(can_convert("[degF]", "Cel"));
        assert_eq!(convertible_to("cm"), vec!["[in_i]", "m"]);
    }

    #[test]
    fn huge_values_overflow_into_an_error_not_a_panic() {
        let big = Decimal::new(i64::MAX, 0);
        assert!(convert(big, "m", "cm").is_err());
        assert!(convert(big, "kPa", "mm[Hg]").is_err());
    }
}
