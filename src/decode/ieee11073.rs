//! IEEE 11073-20601 numbers and the Bluetooth Date Time (docs/devices/ble-gatt.md#sfloat-and-float, docs/devices/ble-gatt.md#date-time, docs/fhir-codes.md#missing-and-special-values).
//!
//! Receives raw little-endian words or byte slices from a characteristic value and returns:
//! - [`sfloat`] (16-bit "medfloat16") and [`float`] (32-bit "medfloat32") as [`Measured`]: a
//!   special raw word (NaN, NRes, ±INFINITY, reserved) is tested on the whole word *before* any
//!   arithmetic and becomes `Measured::Absent` with the PHD IG's `dataAbsentReason`
//!   ([`Special::absent_reason`]); every other word becomes an exact [`Decimal`] whose scale is
//!   the negated exponent (`F178` → 376 × 10⁻¹ → `37.6`), or, for a positive exponent, the
//!   mantissa multiplied out with scale 0 (`1002` → `20`). Nothing goes through a float.
//! - [`date_time`]: the 7-octet Date Time as [`DeviceTime::Local`] (wall clock, no offset). A
//!   year, month or day of 0 means "not known": the device clock is not set, so the result is
//!   [`DeviceTime::ClockNotSet`] (normalize then uses the receipt time and flags
//!   `clock_untrusted`). A field outside its range (month 13, hour 24, 30 February) is a
//!   [`DateTimeError`] naming the field.
//!
//! Encoders ([`encode_sfloat`], [`encode_float`], [`encode_date_time`]) are the exact inverses,
//! used by the simulator and tests. Everything here is pure and total: no panics, no overflow.

use time::{Date, Month, PrimitiveDateTime, Time};

use super::{DeviceTime, Measured};
use crate::reading::{AbsentReason, Decimal, MAX_SCALE};

/// The reserved (non-numeric) values of SFLOAT and FLOAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// Not a number: the device has no valid result.
    NaN,
    /// Not at this resolution: the value cannot be represented.
    NRes,
    PositiveInfinity,
    NegativeInfinity,
    /// Reserved for future use.
    Reserved,
}

impl Special {
    /// The FHIR `dataAbsentReason` of docs/devices/ble-gatt.md#sfloat-and-float / docs/fhir-codes.md#missing-and-special-values.
    pub fn absent_reason(self) -> AbsentReason {
        match self {
            Special::NaN => AbsentReason::NotANumber,
            Special::NRes | Special::Reserved => AbsentReason::Error,
            Special::PositiveInfinity => AbsentReason::PositiveInfinity,
            Special::NegativeInfinity => AbsentReason::NegativeInfinity,
        }
    }

    /// The SFLOAT raw word of this special.
    pub fn sfloat_raw(self) -> u16 {
        match self {
            Special::NaN => 0x07FF,
            Special::NRes => 0x0800,
            Special::PositiveInfinity => 0x07FE,
            Special::NegativeInfinity => 0x0802,
            Special::Reserved => 0x0801,
        }
    }

    /// The FLOAT raw word of this special.
    pub fn float_raw(self) -> u32 {
        match self {
            Special::NaN => 0x007F_FFFF,
            Special::NRes => 0x0080_0000,
            Special::PositiveInfinity => 0x007F_FFFE,
            Special::NegativeInfinity => 0x0080_0002,
            Special::Reserved => 0x0080_0001,
        }
    }

    const ALL: [Special; 5] = [
        Special::NaN,
        Special::NRes,
        Special::PositiveInfinity,
        Special::NegativeInfinity,
        Special::Reserved,
    ];
}

/// A FLOAT whose value does not fit a [`Decimal`] (more than [`MAX_SCALE`] significant
/// fraction digits, or an integer beyond `i64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("FLOAT {mantissa}e{exponent} is out of the representable range")]
pub struct FloatRangeError {
    pub mantissa: i32,
    pub exponent: i8,
}

/// The special meaning of an SFLOAT raw word, if it has one.
pub fn sfloat_special(raw: u16) -> Option<Special> {
    Special::ALL.into_iter().find(|s| s.sfloat_raw() == raw)
}

/// The special meaning of a FLOAT raw word, if it has one.
pub fn float_special(raw: u32) -> Option<Special> {
    Special::ALL.into_iter().find(|s| s.float_raw() == raw)
}

/// Splits an SFLOAT into (mantissa, exponent), both sign-extended. Specials are not checked.
pub fn sfloat_parts(raw: u16) -> (i16, i8) {
    let e = i16::from_ne_bytes(raw.to_ne_bytes()) >> 12; // arithmetic shift sign-extends
    let m = i16::from_ne_bytes((raw << 4).to_ne_bytes()) >> 4;
    // e is in -8..=7, so the conversion cannot fail.
    (m, i8::try_from(e).unwrap_or(0))
}

/// Splits a FLOAT into (mantissa, exponent), both sign-extended. Specials are not checked.
pub fn float_parts(raw: u32) -> (i32, i8) {
    let e = i8::from_ne_bytes([raw.to_be_bytes()[0]]);
    let m = i32::from_ne_bytes((raw << 8).to_ne_bytes()) >> 8;
    (m, e)
}

/// `mantissa × 10^exponent` as an exact decimal, or `None` when it does not fit.
fn to_decimal(mantissa: i64, exponent: i8) -> Option<Decimal> {
    if exponent >= 0 {
        let factor = 10i64.checked_pow(u32::from(exponent.unsigned_abs()))?;
        return Some(Decimal::new(mantissa.checked_mul(factor)?, 0));
    }
    let mut m = mantissa;
    let mut scale = exponent.unsigned_abs();
    // A scale beyond what a Decimal keeps is only acceptable when the extra digits are zeros.
    while scale > MAX_SCALE && m % 10 == 0 {
        m /= 10;
        scale -= 1;
    }
    (scale <= MAX_SCALE).then(|| Decimal::new(m, scale))
}

/// Decodes a 16-bit SFLOAT raw word (already assembled little-endian).
pub fn sfloat(raw: u16) -> Measured {
    if let Some(s) = sfloat_special(raw) {
        return Measured::Absent(s.absent_reason());
    }
    let (m, e) = sfloat_parts(raw);
    // |m| ≤ 2048 and e ∈ -8..=7: always representable.
    match to_decimal(i64::from(m), e) {
        Some(d) => Measured::Value(d),
        None => Measured::Absent(AbsentReason::Error),
    }
}

/// Decodes an SFLOAT from its two wire bytes.
pub fn sfloat_le(bytes: [u8; 2]) -> Measured {
    sfloat(u16::from_le_bytes(bytes))
}

/// Decodes a 32-bit FLOAT raw word (already assembled little-endian).
pub fn float(raw: u32) -> Result<Measured, FloatRangeError> {
    if let Some(s) = float_special(raw) {
        return Ok(Measured::Absent(s.absent_reason()));
    }
    let (m, e) = float_parts(raw);
    to_decimal(i64::from(m), e)
        .map(Measured::Value)
        .ok_or(FloatRangeError {
            mantissa: m,
            exponent: e,
        })
}

/// Decodes a FLOAT from its four wire bytes.
pub fn float_le(bytes: [u8; 4]) -> Result<Measured, FloatRangeError> {
    float(u32::from_le_bytes(bytes))
}

/// Encodes `mantissa × 10^exponent` as an SFLOAT raw word. `None` when the mantissa is outside
/// -2048..=2047, the exponent outside -8..=7, or the result would read back as a special.
pub fn encode_sfloat(mantissa: i16, exponent: i8) -> Option<u16> {
    if !(-2048..=2047).contains(&mantissa) || !(-8..=7).contains(&exponent) {
        return None;
    }
    let m = u16::from_ne_bytes(mantissa.to_ne_bytes()) & 0x0FFF;
    let e = u16::from(u8::from_ne_bytes(exponent.to_ne_bytes()) & 0x0F);
    let raw = (e << 12) | m;
    sfloat_special(raw).is_none().then_some(raw)
}

/// Encodes `mantissa × 10^exponent` as a FLOAT raw word. `None` when the mantissa is outside
/// the signed 24-bit range or the result would read back as a special.
pub fn encode_float(mantissa: i32, exponent: i8) -> Option<u32> {
    if !(-0x80_0000..=0x7F_FFFF).contains(&mantissa) {
        return None;
    }
    let m = u32::from_ne_bytes(mantissa.to_ne_bytes()) & 0x00FF_FFFF;
    let e = u32::from(u8::from_ne_bytes(exponent.to_ne_bytes()));
    let raw = (e << 24) | m;
    float_special(raw).is_none().then_some(raw)
}

/// A Date Time field outside its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time stamp {field} {value} is out of range")]
pub struct DateTimeError {
    pub field: &'static str,
    pub value: u16,
}

/// Decodes the 7-octet Date Time of docs/devices/ble-gatt.md#date-time. See the module docs.
pub fn date_time(b: [u8; 7]) -> Result<DeviceTime, DateTimeError> {
    let year = u16::from_le_bytes([b[0], b[1]]);
    let [_, _, month, day, hour, minute, second] = b;
    let err = |field, value| DateTimeError { field, value };
    let time = Time::from_hms(hour, minute, second).map_err(|_| {
        if hour > 23 {
            err("hours", u16::from(hour))
        } else if minute > 59 {
            err("minutes", u16::from(minute))
        } else {
            err("seconds", u16::from(second))
        }
    })?;
    if year == 0 || month == 0 || day == 0 {
        // "Not known": the device clock was never set.
        return Ok(DeviceTime::ClockNotSet);
    }
    if year > 9999 {
        return Err(err("year", year));
    }
    let m = Month::try_from(month).map_err(|_| err("month", u16::from(month)))?;
    let y = i32::from(year);
    let date = Date::from_calendar_date(y, m, day).map_err(|_| err("day", u16::from(day)))?;
    Ok(DeviceTime::Local(PrimitiveDateTime::new(date, time)))
}

/// Encodes a wall-clock time as the 7-octet Date Time. Years outside 1..=9999 are written as
/// 0 ("not known").
pub fn encode_date_time(t: PrimitiveDateTime) -> [u8; 7] {
    let year = u16::try_from(t.year())
        .ok()
        .filter(|y| (1..=9999).contains(y))
        .unwrap_or(0);
    let y = year.to_le_bytes();
    [
        y[0],
        y[1],
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(m: i64, scale: u8) -> Measured {
        Measured::Value(Decimal::new(m, scale))
    }

    fn absent(r: AbsentReason) -> Measured {
        Measured::Absent(r)
    }

    #[test]
    fn every_sfloat_vector_of_protocols_1_2_decodes_exactly() {
        let cases: [([u8; 2], Measured, &str); 8] = [
            ([0x02, 0x00], value(2, 0), "2"),
            ([0x14, 0xF0], value(20, 1), "2.0"),
            ([0xC8, 0xE0], value(200, 2), "2.00"),
            ([0x02, 0x10], value(20, 0), "20"),
            ([0x2E, 0x0B], value(-1234, 0), "-1234"),
            ([0x78, 0xF1], value(376, 1), "37.6"),
            ([0xA0, 0xF0], value(160, 1), "16.0"),
            ([0xFF, 0xFF], value(-1, 1), "-0.1"),
        ];
        for (bytes, expected, text) in cases {
            let got = sfloat_le(bytes);
            assert_eq!(got, expected, "{bytes:02X?}");
            let Measured::Value(d) = got else {
                unreachable!()
            };
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn every_sfloat_special_is_absent_with_its_reason() {
        assert_eq!(sfloat_le([0xFF, 0x07]), absent(AbsentReason::NotANumber));
        assert_eq!(sfloat_le([0x00, 0x08]), absent(AbsentReason::Error));
        assert_eq!(
            sfloat_le([0xFE, 0x07]),
            absent(AbsentReason::PositiveInfinity)
        );
        assert_eq!(
            sfloat_le([0x02, 0x08]),
            absent(AbsentReason::NegativeInfinity)
        );
        assert_eq!(sfloat_le([0x01, 0x08]), absent(AbsentReason::Error));
        // Neighbours of the specials are ordinary numbers.
        assert_eq!(sfloat_le([0xFD, 0x07]), value(2045, 0));
        assert_eq!(sfloat_le([0x03, 0x08]), value(-2045, 0));
    }

    #[test]
    fn every_float_vector_of_protocols_1_2_decodes_exactly() {
        assert_eq!(float_le([0xB0, 0x0E, 0x00, 0xFE]), Ok(value(3760, 2)));
        assert_eq!(float_le([0xDA, 0x03, 0x00, 0xFF]), Ok(value(986, 1)));
        assert_eq!(float_le([0x14, 0x00, 0x00, 0xFF]), Ok(value(20, 1)));
        let Ok(Measured::Value(d)) = float_le([0xB0, 0x0E, 0x00, 0xFE]) else {
            unreachable!()
        };
        assert_eq!(d.to_string(), "37.60");
    }

    #[test]
    fn every_float_special_is_absent_with_its_reason() {
        let f = |b| float_le(b).unwrap();
        assert_eq!(
            f([0xFF, 0xFF, 0x7F, 0x00]),
            absent(AbsentReason::NotANumber)
        );
        assert_eq!(f([0x00, 0x00, 0x80, 0x00]), absent(AbsentReason::Error));
        assert_eq!(
            f([0xFE, 0xFF, 0x7F, 0x00]),
            absent(AbsentReason::PositiveInfinity)
        );
        assert_eq!(
            f([0x02, 0x00, 0x80, 0x00]),
            absent(AbsentReason::NegativeInfinity)
        );
        assert_eq!(f([0x01, 0x00, 0x80, 0x00]), absent(AbsentReason::Error));
        // The NXP header's wrong NaN constant 0x07FFFFFF is an ordinary number.
        assert_eq!(f([0xFF, 0xFF, 0xFF, 0x07]), value(-10_000_000, 0));
    }

    #[test]
    fn a_float_positive_exponent_multiplies_the_mantissa() {
        assert_eq!(float(0x0300_000C), Ok(value(12_000, 0)));
    }

    #[test]
    fn a_float_beyond_a_decimal_is_a_range_error_not_a_panic() {
        assert!(float(0x7F7F_FFFE).is_err()); // 8388606e127
        assert!(float(0x8000_0001).is_err()); // 1e-128
                                              // Extra fraction digits that are zeros are dropped instead.
        assert_eq!(float(0xF200_03E8), Ok(value(10, 12))); // 1000e-14
    }

    #[test]
    fn encoders_refuse_values_that_would_read_back_as_specials() {
        assert_eq!(encode_sfloat(2047, 0), None);
        assert_eq!(encode_sfloat(2047, -1), Some(0xF7FF));
        assert_eq!(encode_sfloat(2048, 0), None);
        assert_eq!(encode_float(0x7F_FFFF, 0), None);
        assert_eq!(encode_float(3760, -2), Some(0xFE00_0EB0));
    }

    #[test]
    fn the_nordic_date_time_decodes_to_local_wall_clock() {
        let t = date_time([0xDC, 0x07, 0x0C, 0x05, 0x0B, 0x32, 0x1B]).unwrap();
        let expected = time::macros::datetime!(2012-12-05 11:50:27);
        assert_eq!(t, DeviceTime::Local(expected));
        assert_eq!(
            encode_date_time(expected),
            [0xDC, 0x07, 0x0C, 0x05, 0x0B, 0x32, 0x1B]
        );
    }

    #[test]
    fn a_not_known_year_month_or_day_means_the_clock_is_not_set() {
        // Nordic BPM vector: year 0, April 17, 20:41:59.
        let t = date_time([0x00, 0x00, 0x04, 0x11, 0x14, 0x29, 0x3B]);
        assert_eq!(t, Ok(DeviceTime::ClockNotSet));
        assert_eq!(
            date_time([0xE8, 0x07, 0, 15, 10, 0, 0]),
            Ok(DeviceTime::ClockNotSet)
        );
        assert_eq!(
            date_time([0xE8, 0x07, 3, 0, 10, 0, 0]),
            Ok(DeviceTime::ClockNotSet)
        );
    }

    #[test]
    fn out_of_range_date_time_fields_are_named() {
        let field = |b| date_time(b).unwrap_err().field;
        assert_eq!(field([0xE8, 0x07, 13, 1, 0, 0, 0]), "month");
        assert_eq!(field([0xE8, 0x07, 2, 30, 0, 0, 0]), "day");
        assert_eq!(field([0xE8, 0x07, 2, 1, 24, 0, 0]), "hours");
        assert_eq!(field([0xE8, 0x07, 2, 1, 0, 60, 0]), "minutes");
        assert_eq!(field([0xE8, 0x07, 2, 1, 0, 0, 60]), "seconds");
        assert_eq!(field([0x10, 0x27, 1, 1, 0, 0, 0]), "year"); // 10000
    }

    proptest! {
        #[test]
        fn any_sfloat_word_decodes_without_panicking_and_round_trips(raw: u16) {
            match sfloat(raw) {
                Measured::Absent(_) => prop_assert!(sfloat_special(raw).is_some()),
                Measured::Value(_) => {
                    let (m, e) = sfloat_parts(raw);
                    prop_assert_eq!(encode_sfloat(m, e), Some(raw));
                }
            }
        }

        #[test]
        fn any_float_word_decodes_without_panicking_and_round_trips(raw: u32) {
            if let Ok(Measured::Value(d)) = float(raw) {
                let (m, e) = float_parts(raw);
                prop_assert_eq!(encode_float(m, e), Some(raw));
                prop_assert!(d.scale() <= MAX_SCALE);
            }
        }

        #[test]
        fn any_seven_bytes_decode_without_panicking(b: [u8; 7]) {
            if let Ok(DeviceTime::Local(t)) = date_time(b) {
                prop_assert_eq!(encode_date_time(t), b);
            }
        }
    }
}
