//! A reading's flags in its Observation: the words of the flags note and the
//! v3-ObservationInterpretation codes (`H`, `L`, `A`) set on the matching component.

use super::super::model::{Annotation, CodeableConcept, Coding, Observation};
use super::super::table;
use super::{CLOCK_NOTE, FLAGS_NOTE, INTERPRETATION_SYSTEM, REJECTED_NOTE};
use crate::normalize::plausibility;
use crate::reading::{Reading, Value};

fn interpretation(code: &'static str) -> CodeableConcept<'static> {
    let display = match code {
        "H" => "High",
        "L" => "Low",
        _ => "Abnormal",
    };
    CodeableConcept::of(Coding::new(INTERPRETATION_SYSTEM, code, Some(display)))
}

/// Adds `code` to an interpretation list unless an interpretation is already there.
fn interpret(list: &mut Vec<CodeableConcept<'_>>, code: &'static str) {
    if list.is_empty() {
        list.push(interpretation(code));
    }
}

/// `H` or `L` when a value in its canonical unit lies above or below its soft range, else `A`.
fn side(v: Option<&Value>) -> &'static str {
    let Some(v) = v else { return "A" };
    let (Some(x), Some(l)) = (v.value, plausibility::limits(&v.name)) else {
        return "A";
    };
    match l.soft {
        Some((lo, hi)) if l.unit == v.unit.as_str() => {
            let x = x.to_f64();
            if x > hi {
                "H"
            } else if x < lo {
                "L"
            } else {
                "A"
            }
        }
        _ => "A",
    }
}

/// The words for one flag in the flags note.
pub fn flag_text(flag: &str) -> String {
    if let Some(name) = flag.strip_prefix("out_of_range:") {
        return format!("{name} outside the plausible range");
    }
    if let Some(why) = flag.strip_prefix("rejected:") {
        return format!("failed a hard plausibility limit ({why})");
    }
    if let Some(what) = flag.strip_prefix("device:") {
        return format!("device reported: {what}");
    }
    let known = match flag {
        "clock_untrusted" => CLOCK_NOTE,
        "patient_ambiguous" => {
            "the room's patient when it was measured differs from the one when it arrived: \
             the attribution was ambiguous"
        }
        "patient_unverified" => {
            "patient attached by identifier only: the record system could not be asked to \
             confirm it"
        }
        "patient_unknown" => "the room's patient scan was not confirmed by the record system",
        "pulse_disagrees" => "pulse rate disagrees with another device in the room",
        "map_outside_range" => "mean pressure outside the systolic-diastolic range",
        "ecg:partial" => "ECG strip shorter than configured: data missing",
        "ecg:saturated" => "ECG amplifier saturated (clipped samples)",
        "ecg:duplicate_frame" => "duplicate ECG frames were dropped",
        "ecg:out_of_order_frame" => "out-of-order ECG frames were dropped",
        "source:ecg" => "derived from an ECG strip",
        _ => return format!("flag {flag}"),
    };
    known.to_string()
}

/// The component that carries value `name`: the one coded with the value's code, else (a code
/// the components do not show) its position among the values that became components.
pub(super) fn component_of(reading: &Reading, obs: &Observation<'_>, name: &str) -> Option<usize> {
    // Components are all values of a panel, or the values after the first otherwise.
    let skip = usize::from(table::panel(reading.kind).is_none());
    let (i, v) = reading
        .values
        .iter()
        .skip(skip)
        .enumerate()
        .find(|(_, v)| v.name == name)?;
    let by_code = obs
        .component
        .iter()
        .position(|c| !v.code.is_empty() && c.code.coding.iter().any(|k| k.code == v.code));
    // ECG lead components come before the values.
    let leads = reading.waveform.as_ref().map_or(0, |w| w.leads.len());
    by_code.or(Some(i + leads))
}

pub(super) fn apply_flags(reading: &Reading, obs: &mut Observation<'_>) {
    for flag in &reading.flags {
        let f = flag.as_str();
        if let Some(name) = f.strip_prefix("out_of_range:") {
            let value = reading.values.iter().find(|v| v.name == name);
            let code = side(value);
            match component_of(reading, obs, name).and_then(|i| obs.component.get_mut(i)) {
                Some(c) => interpret(&mut c.interpretation, code),
                None => interpret(&mut obs.interpretation, code),
            }
        } else if f == "map_outside_range" {
            match component_of(reading, obs, "mean").and_then(|i| obs.component.get_mut(i)) {
                Some(c) => interpret(&mut c.interpretation, "A"),
                None => interpret(&mut obs.interpretation, "A"),
            }
        }
    }
    if let Some(why) = reading.rejection() {
        if !obs
            .interpretation
            .iter()
            .any(|i| i.coding.iter().any(|c| c.code == "A"))
        {
            obs.interpretation.push(interpretation("A"));
        }
        obs.note.push(Annotation {
            text: format!("{REJECTED_NOTE} ({why}); released from quarantine after review"),
        });
    }
    if !reading.flags.is_empty() {
        let list: Vec<String> = reading
            .flags
            .iter()
            .map(|f| format!("{} [{f}]", flag_text(f.as_str())))
            .collect();
        obs.note.push(Annotation {
            text: format!("{FLAGS_NOTE}: {}", list.join("; ")),
        });
    }
}
