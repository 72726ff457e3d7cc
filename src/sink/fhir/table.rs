//! The FHIR-side view of the code table ([`crate::normalize::codes`]): profiles, panel codes,
//! extra LOINC codings, displays, temperature sites and unit display text.
//!
//! A reading already carries each value's LOINC (or MDC-only) code, MDC code and UCUM unit;
//! this adapter adds the panel-level and display facts so the encoder does not depend on the
//! table's layout.

use crate::normalize::codes::{self, SiteCodes};
use crate::reading::Kind;

pub use codes::{LOINC_SYSTEM as LOINC, MDC_SYSTEM as MDC, SNOMED_SYSTEM as SNOMED};

/// The id of the R4 specific profile of a kind (`bp`; the URL is
/// [`super::model::PROFILE_BASE`] + id; `None` for ECG, not a vital sign).
pub fn profile(kind: Kind) -> Option<&'static str> {
    codes::kind_codes(kind).fhir_profile
}

/// The Observation category code (`vital-signs`, `procedure` for ECG) and its display.
pub fn category(kind: Kind) -> (&'static str, &'static str) {
    match codes::kind_codes(kind).category {
        "procedure" => ("procedure", "Procedure"),
        other => (other, "Vital Signs"),
    }
}

/// A panel's own code: `Observation.code` when the values go in components.
pub struct PanelCode {
    pub loinc: Option<&'static str>,
    pub mdc: u32,
}

/// The panel code of a kind whose values travel as components (blood pressure, ECG).
pub fn panel(kind: Kind) -> Option<PanelCode> {
    let k = codes::kind_codes(kind);
    k.panel.then_some(PanelCode {
        loinc: k.loinc,
        mdc: k.mdc.code,
    })
}

/// The LOINC codes a one-value kind sends before the value's own code: the extra codings
/// (SpO2: 2708-6) then the kind's primary code (8310-5 stays even next to a site code).
pub fn leading_loinc(kind: Kind) -> impl Iterator<Item = &'static str> {
    let k = codes::kind_codes(kind);
    k.extra_loinc.iter().map(|(code, _)| *code).chain(k.loinc)
}

/// True for a LOINC code (`8480-6`): digits, a dash, one check digit. ECG leads carry their
/// MDC code in `Value.code` instead.
pub fn is_loinc(code: &str) -> bool {
    match code.split_once('-') {
        Some((num, check)) => {
            !num.is_empty()
                && check.len() == 1
                && num.bytes().chain(check.bytes()).all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Display of a LOINC code known to the table (optional in FHIR; never keyed on).
pub fn loinc_display(code: &str) -> Option<&'static str> {
    Kind::ALL.into_iter().find_map(|kind| {
        let k = codes::kind_codes(kind);
        if k.loinc == Some(code) {
            return Some(k.display);
        }
        k.extra_loinc
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| *d)
            .or_else(|| {
                k.components
                    .iter()
                    .find(|c| c.loinc == Some(code))
                    .map(|c| c.display)
            })
    })
}

/// Reference id of an MDC code known to the table.
pub fn mdc_display(code: u32) -> Option<&'static str> {
    codes::mdc_reference(code)
}

/// A temperature site's codes.
pub fn site(name: &str) -> Option<&'static SiteCodes> {
    codes::site(name)
}

/// `valueQuantity.unit` display text: the table's display when `ucum` is the component's
/// canonical unit, else a short form, else the UCUM code itself.
pub fn unit_display<'a>(kind: Kind, name: &str, ucum: &'a str) -> &'a str {
    if let Some(c) = codes::component(kind, name).filter(|c| c.ucum == ucum) {
        return c.unit_display;
    }
    match ucum {
        "mm[Hg]" => "mmHg",
        "Cel" => "C",
        "[degF]" => "F",
        "[lb_av]" => "lb",
        "[in_i]" => "in",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loinc_codes_are_told_apart_from_mdc_codes() {
        assert!(is_loinc("8480-6"));
        assert!(is_loinc("59408-5"));
        assert!(!is_loinc("131329"));
        assert!(!is_loinc("-5"));
        assert!(!is_loinc("8480-66"));
    }

    #[test]
    fn displays_come_from_the_code_table() {
        assert_eq!(loinc_display("8480-6"), Some("Systolic blood pressure"));
        assert_eq!(
            loinc_display("2708-6"),
            Some("Oxygen saturation in Arterial blood")
        );
        assert_eq!(mdc_display(150_020), Some("MDC_PRESS_BLD_NONINV"));
        assert_eq!(
            unit_display(Kind::HeartRate, "heart_rate", "/min"),
            "beats/minute"
        );
        assert_eq!(unit_display(Kind::Bmi, "other", "[lb_av]"), "lb");
    }
}
