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
}
