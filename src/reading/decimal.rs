//! [`Decimal`]: the exact numbers of a reading, `mantissa × 10^-scale`, so the device's
//! precision survives from decode to the forwarded value; parsed from and written as a bare
//! JSON number with exactly `scale` fraction digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An exact decimal number `mantissa × 10^-scale` that keeps the device's precision.
/// Serialised as a bare JSON number with exactly `scale` fraction digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: i64,
    scale: u8,
}

/// The largest scale a [`Decimal`] keeps; more fraction digits than this are a parse error.
pub const MAX_SCALE: u8 = 12;

impl Decimal {
    pub const fn new(mantissa: i64, scale: u8) -> Self {
        Self { mantissa, scale }
    }
    pub const fn from_int(v: i64) -> Self {
        Self::new(v, 0)
    }
    pub fn mantissa(&self) -> i64 {
        self.mantissa
    }
    pub fn scale(&self) -> u8 {
        self.scale
    }
    pub fn to_f64(&self) -> f64 {
        // Precision loss is accepted: f64 is only used for range checks and conversions.
        #[allow(clippy::cast_precision_loss)]
        let m = self.mantissa as f64;
        m / 10f64.powi(i32::from(self.scale))
    }
    /// Rounds `v` half away from zero to `scale` fraction digits. `None` when not finite or
    /// out of range.
    pub fn from_f64(v: f64, scale: u8) -> Option<Self> {
        if !v.is_finite() || scale > MAX_SCALE {
            return None;
        }
        let scaled = (v * 10f64.powi(i32::from(scale))).round();
        #[allow(clippy::cast_precision_loss)]
        if scaled.abs() >= i64::MAX as f64 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)]
        Some(Self::new(scaled as i64, scale))
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.mantissa);
        }
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let abs = self.mantissa.unsigned_abs();
        let div = 10u64.pow(u32::from(self.scale));
        write!(
            f,
            "{sign}{}.{:0width$}",
            abs / div,
            abs % div,
            width = usize::from(self.scale)
        )
    }
}

/// Why a string is not a [`Decimal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a decimal number")]
pub struct DecimalError(pub String);

impl FromStr for Decimal {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DecimalError(s.chars().take(40).collect());
        let t = s.trim();
        let (neg, body) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(err());
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let scale = u8::try_from(frac.len()).map_err(|_| err())?;
        if scale > MAX_SCALE {
            return Err(err());
        }
        // The digits of both parts as one integer, without building a string (this runs for
        // every value of every stored reading handed to a sink).
        let m = int
            .bytes()
            .chain(frac.bytes())
            .try_fold(0i64, |m, d| {
                m.checked_mul(10)?.checked_add(i64::from(d - b'0'))
            })
            .ok_or_else(err)?;
        Ok(Self::new(if neg { -m } else { m }, scale))
    }
}

impl Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(self.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Box<serde_json::value::RawValue> = Deserialize::deserialize(d)?;
        raw.get().parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Decimal;

    #[test]
    fn digits_parse_exactly_and_too_many_are_an_error() {
        let d: Decimal = ".5".parse().unwrap();
        assert_eq!((d.mantissa(), d.scale()), (5, 1));
        let d: Decimal = "-007.250".parse().unwrap();
        assert_eq!(
            (d.mantissa(), d.scale(), d.to_string().as_str()),
            (-7250, 3, "-7.250")
        );
        let max: Decimal = "9223372036854775807".parse().unwrap();
        assert_eq!(max.mantissa(), i64::MAX);
        assert!("9223372036854775808".parse::<Decimal>().is_err());
        assert!("92233720368547758.080".parse::<Decimal>().is_err());
        assert!("1.2.3".parse::<Decimal>().is_err());
        let v: Decimal = serde_json::from_slice(b"98.60").unwrap();
        assert_eq!(v.to_string(), "98.60");
    }
}
