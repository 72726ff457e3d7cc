//! Conformance of everything the FHIR encoder produces: every Observation for a spread of
//! readings (each kind, absent values, missing blood-pressure components, every flag, a
//! released rejected reading, an ECG strip) and the transaction Bundle around them are parsed
//! by an independent R4 implementation (Python `fhir.resources` 6.4.0 on pydantic 1, exactly
//! FHIR 4.0.1; scripts/test installs it) and checked against the vital-signs rules of
//! docs/fhir.md. A missing Python or package fails the test.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value as Json;

use super::test_support::*;
use super::{observation, transaction_bundle};
use crate::model::fixtures;
use crate::reading::{AbsentReason, Flag, Kind, Lead, Reading, Waveform};

/// Parses each JSON document on stdin's array with fhir.resources (R4); prints one line per
/// failure and `checked N` at the end.
const VALIDATOR: &str = r#"
import json, sys
import fhir.resources
assert fhir.resources.__version__ == "6.4.0", fhir.resources.__version__
from fhir.resources.observation import Observation
from fhir.resources.bundle import Bundle
docs = json.load(sys.stdin)
bad = 0
for i, d in enumerate(docs):
    cls = Bundle if d["resourceType"] == "Bundle" else Observation
    try:
        cls.parse_obj(d)
    except Exception as e:
        bad += 1
        print(f"document {i} ({d['resourceType']}): {e}".replace("\n", " | "))
print(f"checked {len(docs)}")
sys.exit(1 if bad else 0)
"#;

fn strip() -> Reading {
    let mut r = reading(
        Kind::Ecg,
        vec![fixtures::value(
            "8634-8",
            147_232,
            "qt_interval",
            "400",
            "ms",
        )],
    );
    r.waveform = Some(Waveform {
        fs_hz: 130.0,
        t0: r.observed_at,
        leads: vec![Lead {
            mdc: 131_329,
            name: "lead_i".into(),
            scale_uv: 0.5,
            samples: vec![-30, 16, 1190, -512],
        }],
        r_peaks: vec![2],
        rr_ms: Vec::new(),
    });
    r.flags = vec![Flag::new("ecg:partial"), Flag::new("ecg:saturated")];
    r
}

/// Readings that exercise every path of the encoder.
fn spread() -> Vec<Reading> {
    let mut out = every_kind();
    // Each kind with its value absent.
    for mut r in every_kind() {
        for v in &mut r.values {
            v.value = None;
            v.absent = Some(AbsentReason::Error);
        }
        out.push(r);
    }
    for missing in ["systolic", "diastolic"] {
        let mut r = bp();
        r.values.retain(|v| v.name != missing);
        out.push(r);
    }
    let mut empty = bp();
    empty.values.clear();
    out.push(empty);
    let mut flagged = bp();
    flagged.values[0].value = Some("260".parse().expect("decimal"));
    flagged.flags = vec![
        Flag::out_of_range("systolic"),
        Flag::new("map_outside_range"),
        Flag::new("patient_ambiguous"),
        Flag::new("pulse_disagrees"),
        Flag::clock_untrusted(),
        Flag::device("artifact"),
        Flag::new("something_new"),
    ];
    out.push(flagged);
    let mut released = one(Kind::Spo2, "59408-5", 150_456, "spo2", "101", "%");
    released.flags = vec![Flag::new("rejected:spo2 101 % > 100")];
    out.push(released);
    let mut low = one(Kind::Spo2, "59408-5", 150_456, "spo2", "70", "%");
    low.flags = vec![Flag::out_of_range("spo2")];
    out.push(low);
    let mut ecg_hr = one(
        Kind::HeartRate,
        "8867-4",
        149_530,
        "heart_rate",
        "61",
        "/min",
    );
    ecg_hr.flags = vec![Flag::new("source:ecg")];
    out.push(ecg_hr);
    out.push(strip());
    out
}

/// The UCUM codes the R4 vital-signs profile allows for each specific profile.
fn allowed_units(profile: &str) -> &'static [&'static str] {
    match profile.rsplit('/').next().unwrap_or("") {
        "bp" => &["mm[Hg]"],
        "heartrate" | "resprate" => &["/min"],
        "oxygensat" => &["%"],
        "bodytemp" => &["Cel", "[degF]"],
        "bodyweight" => &["kg", "g", "[lb_av]"],
        "bodyheight" => &["cm", "[in_i]"],
        "bmi" => &["kg/m2"],
        _ => &[],
    }
}

/// The rules an R4 parser does not know: vital-signs profile, Patient subject, category, UCUM
/// units of the profile, one systolic and one diastolic, every flag in a note.
#[track_caller]
fn check_rules(r: &Reading, o: &Json) {
    let note = o["note"].to_string();
    for f in &r.flags {
        assert!(
            note.contains(&format!("[{f}]")),
            "flag {f} not in the note: {o}"
        );
    }
    assert_eq!(o["subject"]["type"], "Patient");
    if r.kind == Kind::Ecg {
        assert_eq!(o["category"][0]["coding"][0]["code"], "procedure");
        assert!(o.get("meta").is_none(), "an ECG is not a vital sign");
        return;
    }
    assert_vital_signs_rules(o);
    let profile = o["meta"]["profile"][0].as_str().expect("profile");
    let units = allowed_units(profile);
    let quantities = std::iter::once(&o["valueQuantity"]).chain(
        o["component"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["valueQuantity"]),
    );
    for q in quantities.filter(|q| q.is_object()) {
        let code = q["code"].as_str().expect("unit code");
        assert!(units.contains(&code), "{profile}: unit {code} not allowed");
    }
}

#[test]
fn every_observation_and_bundle_is_valid_r4_and_meets_the_vital_signs_rules() {
    let readings = spread();
    let mut docs: Vec<Json> = Vec::new();
    for r in &readings {
        let o = serde_json::to_value(observation(r)).expect("observation");
        check_rules(r, &o);
        docs.push(o);
    }
    docs.push(serde_json::to_value(transaction_bundle(&readings)).expect("bundle"));

    let mut child = Command::new("python3")
        .args(["-c", VALIDATOR])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is required for the FHIR conformance test (scripts/test installs fhir.resources)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&serde_json::to_vec(&docs).expect("json"))
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fhir.resources (R4 4.0.1) refused what vitalsd sends \
         (install: pip install 'fhir.resources==6.4.0' 'pydantic<2'):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("checked {}", docs.len())),
        "{stdout}"
    );
}
