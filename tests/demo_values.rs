//! `vitalsd demo` through the real binary: what a medical assistant sees must look right. Normal
//! demo readings carry no data-quality flag (a flag on every reading teaches people to ignore
//! flags), and one patient's height and weight stay put between weighings.

use std::collections::HashMap;
use std::process::Command;

/// One printed reading: (patient, kind, first number, flags).
fn parse(line: &str) -> Option<(String, String, f64, Option<String>)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    // HH:MM:SS room #patient kind value unit ... device [flags]
    if w.len() < 6 || w[0].len() != 8 || w[0].as_bytes()[2] != b':' {
        return None;
    }
    let patient = w[2].strip_prefix('#')?.to_string();
    let value: f64 = w[4].split('/').next()?.parse().ok()?;
    let flags = line
        .rsplit_once("  [")
        .map(|(_, f)| f.trim_end_matches(']').to_string());
    Some((patient, w[3].to_string(), value, flags))
}

#[test]
fn demo_readings_carry_no_flags_and_a_patient_keeps_their_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    // Long enough for two weighings (the scale measures every 45 s).
    let out = Command::new(env!("CARGO_BIN_EXE_vitalsd"))
        .args(["demo", "--for", "55s", "--dir", dir.to_str().unwrap()])
        .output()
        .expect("run vitalsd demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Idle spot-check devices between measurements are normal: no WARN or ERROR in between.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "the demo logged warnings:\n{stderr}"
    );
    let readings: Vec<_> = stdout.lines().filter_map(parse).collect();
    assert!(readings.len() >= 12, "{stdout}");
    for (_, kind, _, flags) in &readings {
        assert_eq!(flags, &None, "a {kind} reading is flagged:\n{stdout}");
    }
    // Both pulse sources of exam 1 reported (so their agreement was checked).
    for device in ["exam1-cuff", "exam1-oximeter"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("heart_rate") && l.contains(device)),
            "no pulse from {device}:\n{stdout}"
        );
    }
    let mut sizes: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for (patient, kind, value, _) in readings {
        if kind == "body_weight" || kind == "body_height" || kind == "bmi" {
            sizes.entry((patient, kind)).or_default().push(value);
        }
    }
    let weights: Vec<_> = sizes
        .iter()
        .filter(|((_, k), _)| k == "body_weight")
        .collect();
    assert!(
        weights.iter().any(|(_, v)| v.len() >= 2),
        "two weighings of one patient expected:\n{stdout}"
    );
    for ((_, kind), v) in &sizes {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(f64::MIN, f64::max);
        // kg, cm, kg/m2: a few hundred grams, a few millimetres, a few tenths of BMI.
        assert!(
            hi - lo <= 0.6,
            "one patient's {kind} moved: {v:?}\n{stdout}"
        );
    }
    every_outbox_line_is_a_valid_r4_vital_signs_observation(&dir.join("outbox"));
}

/// Parses every Observation of the demo's FHIR outbox with an independent R4 implementation
/// (Python `fhir.resources` 6.4.0 on pydantic 1: FHIR 4.0.1; scripts/test installs it) and
/// checks the vital-signs profile's rules the parser does not: profile, category, a Patient
/// subject, one systolic and one diastolic component in a blood pressure, UCUM quantities.
fn every_outbox_line_is_a_valid_r4_vital_signs_observation(outbox: &std::path::Path) {
    const CHECK: &str = r#"
import json, sys
import fhir.resources
assert fhir.resources.__version__ == "6.4.0", fhir.resources.__version__
from fhir.resources.observation import Observation
bad, n = 0, 0
for path in sys.argv[1:]:
    for line in open(path):
        if not line.strip():
            continue
        n += 1
        d = json.loads(line)
        problems = []
        try:
            Observation.parse_obj(d)
        except Exception as e:
            problems.append(str(e).replace("\n", " | "))
        if not any(p.startswith("http://hl7.org/fhir/StructureDefinition/") for p in d.get("meta", {}).get("profile", [])):
            problems.append("no vital-signs profile")
        cats = [c.get("code") for cat in d.get("category", []) for c in cat.get("coding", [])]
        if "vital-signs" not in cats:
            problems.append("category is not vital-signs")
        subj = d.get("subject", {})
        if not (subj.get("reference", "").startswith("Patient/") or subj.get("type") == "Patient" or "identifier" in subj):
            problems.append(f"subject is not a Patient: {subj.get('type') or subj.get('reference')}")
        if d["code"]["coding"][0]["code"] == "85354-9":
            comps = [c["code"]["coding"][0]["code"] for c in d.get("component", [])]
            if comps.count("8480-6") != 1 or comps.count("8462-4") != 1:
                problems.append(f"blood pressure components {comps}")
        for q in [d.get("valueQuantity")] + [c.get("valueQuantity") for c in d.get("component", [])]:
            if q and q.get("system") != "http://unitsofmeasure.org":
                problems.append(f"quantity not in UCUM: {q}")
        if problems:
            bad += 1
            print(f"{path}: {d['code']['coding'][0]['code']}: {'; '.join(problems)}")
print(f"checked {n}")
sys.exit(1 if bad or n == 0 else 0)
"#;
    let mut files: Vec<_> = std::fs::read_dir(outbox)
        .expect("the demo's outbox")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    let out = Command::new("python3")
        .arg("-c")
        .arg(CHECK)
        .args(&files)
        .output()
        .expect("python3 is needed to validate FHIR (scripts/test installs fhir.resources)");
    assert!(
        out.status.success(),
        "the demo's FHIR outbox does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
