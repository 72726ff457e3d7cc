//! The ECG part of the Observation encoder: one component per lead with
//! `valueSampledData` (raw counts in `data`, µV/count in `factor`, origin 0 uV, `period` in ms
//! with at least 6 significant digits, `dimensions` 1). The `ecg:` quality flags reach the
//! flags note written by [`super::observation`].
//! The Observation's code (131328), category (`procedure`) and the derived components (median
//! RR) come from the general panel path; `effectiveDateTime` is the first sample's time.

use std::fmt::Write;

use super::model::{CodeableConcept, Coding, Component, Observation, Quantity, SampledData};
use super::observation::UCUM_SYSTEM;
use super::table::{self, MDC};
use crate::reading::{Decimal, Waveform};

/// Inserts the lead components (in lead order, first).
pub fn add_leads(w: &Waveform, obs: &mut Observation<'_>) {
    let period = period_ms(w.fs_hz);
    let leads: Vec<Component> = w
        .leads
        .iter()
        .map(|l| Component {
            code: CodeableConcept::of(Coding::new(
                MDC,
                l.mdc.to_string(),
                table::mdc_display(l.mdc),
            )),
            value_quantity: None,
            value_sampled_data: Some(SampledData {
                origin: Quantity {
                    value: Decimal::from_int(0),
                    unit: "uV",
                    system: UCUM_SYSTEM,
                    code: "uV",
                },
                period,
                factor: factor(l.scale_uv),
                dimensions: 1,
                data: data(&l.samples),
            }),
            data_absent_reason: None,
            interpretation: Vec::new(),
        })
        .collect();
    if !leads.is_empty() {
        obs.data_absent_reason = None;
    }
    obs.component.splice(0..0, leads);
}

/// `1000 / fs` ms with at least 6 significant digits (130 Hz → `7.692308`).
pub fn period_ms(fs_hz: f64) -> Decimal {
    let p = 1000.0 / fs_hz;
    #[allow(clippy::cast_possible_truncation)]
    let mag = p.abs().log10().floor() as i32;
    let scale = u8::try_from((5 - mag).clamp(6, 12)).unwrap_or(6);
    Decimal::from_f64(p, scale).unwrap_or(Decimal::from_int(0))
}

/// µV per count, 9 fraction digits, trailing zeros dropped (`1`, `0.022351744`).
pub fn factor(scale_uv: f64) -> Decimal {
    let d = Decimal::from_f64(scale_uv, 9).unwrap_or(Decimal::from_int(1));
    let (mut m, mut s) = (d.mantissa(), d.scale());
    while s > 0 && m % 10 == 0 {
        m /= 10;
        s -= 1;
    }
    Decimal::new(m, s)
}

/// The samples as decimal integers separated by single spaces.
pub fn data(samples: &[i32]) -> String {
    let mut out = String::with_capacity(samples.len() * 6);
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{s}");
    }
    out
}

#[cfg(test)]
#[path = "ecg_tests.rs"]
mod tests;
