//! An ECG strip as HL7 v2 waveform OBX rows (`docs/hl7.md`: value type `NA`, samples
//! separated by `^`, as Mindray and the IHE PCD Waveform Content Module do), sent only when the
//! sink's `waveform = true` (the receiver has agreed to them).
//!
//! Per lead `k` (in the strip's order), after the reading's value rows:
//! ```text
//! OBX|n|NA|<lead mdc>^<MDC ref>^MDC|1.1.2.k|v1^v2^…|266419^MDC_DIM_MICRO_VOLT^MDC^uV^uV^UCUM|||||<F or P>|||<t0>||||<device>
//! OBX|n+1|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.1.2.k.1|<fs>|264608^MDC_DIM_PER_SEC^MDC^/s^/s^UCUM|||||F|||<t0>||||<device>
//! ```
//! - Values are µV (count × the lead's µV/count), at most 3 decimals, trailing zeros dropped;
//!   numbers need no escaping. The sample-rate row follows its lead (sub-id `<lead>.1`); its
//!   code is `0` with the reference id, as in the WCM examples, since the attribute has no
//!   observation code of its own.
//! - OBX-14 is the time of the first sample (the reading's `observed_at`).
//! - Size bound: the waveform rows of one message hold at most [`MAX_WAVEFORM_BYTES`] (512 KiB),
//!   so a message stays well under the 1 MiB frame limit receivers commonly enforce (and that
//!   vitalsd's own MLLP listener enforces). Leads that would pass the bound are left out whole
//!   (never cut), each named in an NTE (`waveform lead <mdc> left out: message size bound`).
//!   A 10 s strip at 500 Hz takes about 40 KiB per lead, so 12 leads fit; 60 s strips of many
//!   leads are where leads are left out.

use std::fmt::Write;

use crate::normalize::codes;
use crate::reading::Waveform;

/// Most bytes of waveform OBX rows in one message.
pub const MAX_WAVEFORM_BYTES: usize = 512 * 1024;

/// µV as OBX-5 text: at most 3 decimals, no trailing zeros, no `-0`.
pub fn microvolts(count: i32, scale_uv: f64) -> String {
    let v = f64::from(count) * scale_uv;
    if (scale_uv - 1.0).abs() < f64::EPSILON {
        return count.to_string();
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// The sample rate as text: whole rates without decimals, others to 6 significant places.
fn rate(fs: f64) -> String {
    if fs.fract() == 0.0 {
        format!("{fs:.0}")
    } else {
        let s = format!("{fs:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Appends the waveform rows (numbered from `first`) to `m`, and an NTE per left-out lead.
/// `observed` and `device` are the already formatted OBX-14 and OBX-18, `status` the OBX-11
/// of the reading's values (`F`, or `P` for a reading released after review). Returns the
/// next OBX number.
pub fn append(
    m: &mut String,
    w: &Waveform,
    first: usize,
    observed: &str,
    device: &str,
    status: &str,
) -> usize {
    let mut n = first;
    let mut used = 0usize;
    let (unit, unit_ref) = codes::mdc_unit("uV").unwrap_or((266_419, "MDC_DIM_MICRO_VOLT"));
    let mut left_out = Vec::new();
    for (k, lead) in w.leads.iter().enumerate() {
        let mut rows = String::with_capacity(lead.samples.len() * 6 + 256);
        let reference = codes::mdc_reference(lead.mdc).unwrap_or("");
        let _ = write!(
            rows,
            "OBX|{n}|NA|{}^{reference}^MDC|1.1.2.{}|",
            lead.mdc,
            k + 1
        );
        for (i, s) in lead.samples.iter().enumerate() {
            if i > 0 {
                rows.push('^');
            }
            rows.push_str(&microvolts(*s, lead.scale_uv));
        }
        let _ = write!(
            rows,
            "|{unit}^{unit_ref}^MDC^uV^uV^UCUM|||||{status}|||{observed}||||{device}\r"
        );
        let _ = write!(
            rows,
            "OBX|{}|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.1.2.{}.1|{}|264608^MDC_DIM_PER_SEC^MDC^/s^/s^UCUM|||||{status}|||{observed}||||{device}\r",
            n + 1,
            k + 1,
            rate(w.fs_hz),
        );
        if used + rows.len() > MAX_WAVEFORM_BYTES {
            left_out.push(lead.mdc);
            continue;
        }
        used += rows.len();
        m.push_str(&rows);
        n += 2;
    }
    for (i, mdc) in left_out.iter().enumerate() {
        let _ = write!(
            m,
            "NTE|{}||waveform lead {mdc} left out: message size bound\r",
            i + 1
        );
    }
    n
}

#[cfg(test)]
#[path = "waveform_tests.rs"]
mod tests;
