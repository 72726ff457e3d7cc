//! A [`CompletedStrip`] → readings: the `ecg` reading carrying the waveform (and the median
//! RR interval as its value), plus a `heart_rate` reading (MDC 147842, flag `source:ecg`)
//! when the strip held at least two RR intervals.
//!
//! Time follows the same rules as every other reading ([`crate::model::time`]): the device's time of the first sample is trusted only
//! within the clock-skew tolerance of the receipt-based estimate; otherwise (a Polar H10 back
//! at 2019-01-01 after a power cycle, a clock never set) the receipt-based time is used and
//! both readings are flagged `clock_untrusted`. `observed_at` = the first sample's time.

use time::OffsetDateTime;

use super::strip::CompletedStrip;
use crate::model::codes::{self, MDC_HEART_RATE_ECG};
use crate::model::time::{resolve_device_time, FUTURE_GRACE};
use crate::model::{plausibility, DeviceTime, NormalizeContext};
use crate::reading::{Decimal, DeviceInfo, Flag, Kind, Reading, ReadingId, Ucum, Value, Waveform};

/// The readings of one strip (ids assigned), in order: the ECG, then the heart rate.
pub fn readings(
    strip: CompletedStrip,
    ctx: &NormalizeContext,
    received_at: OffsetDateTime,
) -> Vec<Reading> {
    let mut flags = strip.flags.clone();
    let (observed_at, device_time) = times(&strip, ctx, received_at, &mut flags);
    let median = median(&strip.rr_ms);
    let mut values = Vec::new();
    if let Some(rr) = median.and_then(|m| Decimal::from_f64(m, 0)) {
        if let Some(c) = codes::component(Kind::Ecg, "rr_interval") {
            values.push(value(c, rr));
        }
    }
    let base = |kind, values, flags| Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: ctx.device.clone(),
            driver: ctx.driver.clone(),
            model: None,
            serial: None,
        },
        room: ctx.room.clone(),
        patient: None,
        patient_record: None,
        kind,
        observed_at,
        received_at,
        device_time,
        values,
        flags,
        waveform: None,
    };
    let mut hr_flags = vec![Flag::new("source:ecg")];
    hr_flags.extend(
        flags
            .iter()
            .filter(|f| matches!(f.as_str(), "clock_untrusted" | "ecg:partial"))
            .cloned(),
    );
    let mut ecg = base(Kind::Ecg, values, flags);
    ecg.waveform = Some(Waveform {
        fs_hz: strip.fs_hz,
        t0: observed_at,
        leads: strip.leads,
        r_peaks: strip.r_peaks,
        // RR intervals are positive and below a minute: the cast is exact after rounding.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        rr_ms: strip.rr_ms.iter().map(|v| v.round() as u32).collect(),
    });
    let mut out = vec![ecg];
    let hr = median
        .filter(|_| strip.rr_ms.len() >= 2)
        .filter(|m| *m > 0.0)
        .and_then(|m| Decimal::from_f64(60_000.0 / m, 0));
    if let (Some(hr), Some(c)) = (hr, codes::component(Kind::HeartRate, "heart_rate")) {
        let mut v = value(c, hr);
        v.mdc = Some(MDC_HEART_RATE_ECG);
        let vals = vec![v];
        for f in plausibility::check(Kind::HeartRate, &vals) {
            if !hr_flags.contains(&f) {
                hr_flags.push(f);
            }
        }
        out.push(base(Kind::HeartRate, vals, hr_flags));
    }
    out
}

fn value(c: &codes::ComponentCodes, v: Decimal) -> Value {
    Value {
        code: c.code(),
        mdc: Some(c.mdc.code),
        name: c.name.to_string(),
        value: Some(v),
        unit: Ucum::new(c.ucum),
        site: None,
        absent: None,
    }
}

fn times(
    strip: &CompletedStrip,
    ctx: &NormalizeContext,
    received_at: OffsetDateTime,
    flags: &mut Vec<Flag>,
) -> (OffsetDateTime, Option<OffsetDateTime>) {
    let untrusted = |flags: &mut Vec<Flag>| {
        let f = Flag::clock_untrusted();
        if !flags.contains(&f) {
            flags.push(f);
        }
    };
    let resolved = match strip.device_t0 {
        None => return (strip.receipt_t0, None),
        Some(DeviceTime::ClockNotSet) => None,
        Some(t) => resolve_device_time(t, received_at, ctx).ok().flatten(),
    };
    // The same rule as every other reading: a first sample dated after its receipt proves a
    // fast clock (beyond the whole-second grace); one earlier by more than the tolerance is
    // not trusted either.
    let future = time::Duration::try_from(FUTURE_GRACE).unwrap_or_default();
    match resolved {
        Some(t)
            if t - strip.receipt_t0 <= future
                && (strip.receipt_t0 - t).unsigned_abs() <= ctx.clock_skew_tolerance =>
        {
            (t, Some(t))
        }
        other => {
            untrusted(flags);
            (strip.receipt_t0, other)
        }
    }
}

/// The median of `v` (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len().is_multiple_of(2) {
        (s[mid - 1] + s[mid]) / 2.0
    } else {
        s[mid]
    })
}
