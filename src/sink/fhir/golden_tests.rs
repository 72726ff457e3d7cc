//! The exact bytes the FHIR encoder writes, pinned: a transaction Bundle of a fixture set that
//! walks every path of the encoder (blood-pressure panel, each one-value kind, an ECG strip,
//! absent values, missing panel components, flags with and without an interpretation code, a
//! released rejected reading, a patient confirmed by lookup, identifier only, a room and no
//! subject at all, no reading id, no device model, a UTC and an offset time, a non-canonical
//! unit, text that needs JSON escaping), and each Observation alone as the file and MQTT sinks
//! write it.
//!
//! The golden files were written by the encoder as it was before the Bundle was made cheaper,
//! so a change that moves a single byte on the wire fails here. To rewrite them on purpose (a
//! deliberate change of the format): `VITALSD_BLESS_GOLDEN=1 cargo test --lib golden`.

use time::macros::datetime;
use uuid::Uuid;

use super::observation::write_transaction_bundle;
use super::test_support::*;
use super::{observation, transaction_bundle};
use crate::model::fixtures;
use crate::reading::{AbsentReason, Flag, Kind, Lead, PatientRecord, Reading, Waveform};

const BUNDLE: &str = "src/sink/fhir/golden/bundle.json";
const OBSERVATIONS: &str = "src/sink/fhir/golden/observations.jsonl";

fn ecg_strip() -> Reading {
    let mut r = reading(
        Kind::Ecg,
        vec![
            fixtures::value("8634-8", 147_232, "qt_interval", "400", "ms"),
            fixtures::value("8867-4", 147_842, "heart_rate", "61", "/min"),
        ],
    );
    r.waveform = Some(Waveform {
        fs_hz: 130.0,
        t0: r.observed_at,
        leads: vec![
            Lead {
                mdc: 131_329,
                name: "lead_i".into(),
                scale_uv: 0.5,
                samples: vec![-30, 16, 1190, -512, 0],
            },
            Lead {
                mdc: 131_330,
                name: "lead_ii".into(),
                scale_uv: 0.022_351_744,
                samples: vec![7, -7],
            },
        ],
        r_peaks: vec![2],
        rr_ms: Vec::new(),
    });
    r.flags = vec![Flag::new("ecg:partial"), Flag::new("ecg:saturated")];
    r
}

/// Readings that walk every path of the encoder, in a fixed order.
pub(super) fn fixtures() -> Vec<Reading> {
    let mut out = every_kind();
    // Each kind with its values absent, each for another reason.
    let reasons = [
        AbsentReason::Error,
        AbsentReason::Unknown,
        AbsentReason::NotANumber,
        AbsentReason::PositiveInfinity,
        AbsentReason::NegativeInfinity,
    ];
    for (i, mut r) in every_kind().into_iter().enumerate() {
        for v in &mut r.values {
            v.value = None;
            v.absent = Some(reasons[i % reasons.len()]);
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
    let mut no_values = one(
        Kind::HeartRate,
        "8867-4",
        149_546,
        "heart_rate",
        "1",
        "/min",
    );
    no_values.values.clear();
    out.push(no_values);
    let mut flagged = bp();
    flagged.values[0].value = Some("260".parse().expect("decimal"));
    flagged.flags = vec![
        Flag::out_of_range("systolic"),
        Flag::new("map_outside_range"),
        Flag::new("patient_ambiguous"),
        Flag::new("patient_unknown"),
        Flag::new("pulse_disagrees"),
        Flag::clock_untrusted(),
        Flag::device("artifact \"motion\"\n\tcuff\\loose"),
        Flag::new("something_new"),
    ];
    out.push(flagged);
    let mut released = one(Kind::Spo2, "59408-5", 150_456, "spo2", "101", "%");
    released.flags = vec![Flag::new("rejected:spo2 101 % > 100")];
    out.push(released);
    let mut low = one(Kind::Spo2, "59408-5", 150_456, "spo2", "70", "%");
    low.flags = vec![Flag::out_of_range("spo2")];
    out.push(low);
    let mut unknown_side = one(Kind::BodyWeight, "29463-7", 188_736, "weight", "72.5", "kg");
    unknown_side.flags = vec![Flag::out_of_range("not_a_value")];
    out.push(unknown_side);
    let mut ecg_hr = one(
        Kind::HeartRate,
        "8867-4",
        149_530,
        "heart_rate",
        "61",
        "/min",
    );
    ecg_hr.flags = vec![Flag::new("source:ecg"), Flag::new("patient_unverified")];
    out.push(ecg_hr);
    out.push(ecg_strip());
    // A patient confirmed by the record system: `Patient/<id>` next to the identifier.
    let mut looked_up = bp();
    looked_up.patient_record = Some(PatientRecord {
        id: "pat-17".into(),
        family: Some("Doe".into()),
        given: vec!["Jane".into()],
        birth_date: Some("1970-01-02".into()),
    });
    out.push(looked_up);
    // No patient: the room as a Location (with text to escape); no room either: no subject.
    let mut in_room = one(Kind::Spo2, "59408-5", 150_456, "spo2", "96", "%");
    in_room.patient = None;
    in_room.room = Some("Zimmer \"3\" – Süd/Nord".into());
    out.push(in_room);
    let mut nowhere = bp();
    nowhere.patient = None;
    nowhere.room = None;
    nowhere.device.model = None;
    out.push(nowhere);
    // No id (no identifier, fullUrl or ifNoneExist); a UTC time; negative and small numbers.
    let mut anonymous = one(
        Kind::BodyTemperature,
        "8310-5",
        150_364,
        "temperature",
        "98.60",
        "[degF]",
    );
    anonymous.id = None;
    anonymous.observed_at = datetime!(2026-11-27 23:59:59 UTC);
    out.push(anonymous);
    let mut tympanic = one(
        Kind::BodyTemperature,
        "8310-5",
        150_364,
        "temperature",
        "-0.05",
        "Cel",
    );
    tympanic.values[0].site = Some("tympanic".into());
    tympanic.observed_at = datetime!(2026-01-01 00:00:00 -05:30);
    out.push(tympanic);
    let mut pounds = one(
        Kind::BodyWeight,
        "29463-7",
        188_736,
        "weight",
        "160.0",
        "[lb_av]",
    );
    pounds.id = Some(crate::reading::ReadingId::from_uuid(Uuid::from_u128(
        0xffff_ffff_ffff_ffff_ffff_ffff_ffff_ffff,
    )));
    out.push(pounds);
    // Two values of a one-value kind: the second becomes a component.
    let mut two = one(Kind::Bmi, "39156-5", 188_752, "bmi", "23.7", "kg/m2");
    two.values
        .push(fixtures::value("39156-5", 188_752, "bmi", "23.70", "kg/m2"));
    out.push(two);
    out
}

/// The Bundle and the Observations as the sinks write them (the FHIR sink: `to_vec` of the
/// Bundle; the file sink: `to_string` of each Observation; the MQTT sink: `to_vec`).
fn encoded() -> (Vec<u8>, Vec<u8>) {
    let readings = fixtures();
    let bundle = serde_json::to_vec(&transaction_bundle(&readings)).expect("bundle");
    let mut lines = Vec::new();
    for r in &readings {
        lines.extend(serde_json::to_vec(&observation(r)).expect("observation"));
        lines.push(b'\n');
    }
    (bundle, lines)
}

#[track_caller]
fn assert_golden(path: &str, got: &[u8]) {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("VITALSD_BLESS_GOLDEN").is_some() {
        std::fs::create_dir_all(full.parent().expect("parent")).expect("golden dir");
        std::fs::write(&full, got).expect("write golden");
    }
    let want = std::fs::read(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
    if want != got {
        let at = want
            .iter()
            .zip(got)
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(got.len()));
        let lo = at.saturating_sub(80);
        panic!(
            "{path}: the encoder's bytes changed at byte {at} ({} bytes pinned, {} now)\n\
             pinned: {}\nnow:    {}",
            want.len(),
            got.len(),
            String::from_utf8_lossy(&want[lo..(at + 80).min(want.len())]),
            String::from_utf8_lossy(&got[lo..(at + 80).min(got.len())]),
        );
    }
}

#[test]
fn the_bundle_bytes_are_exactly_the_pinned_ones() {
    let (bundle, _) = encoded();
    assert_golden(BUNDLE, &bundle);
}

#[test]
fn the_bundle_the_sink_writes_is_exactly_the_pinned_bytes() {
    let mut body = Vec::new();
    write_transaction_bundle(&fixtures(), &mut body);
    assert_golden(BUNDLE, &body);
}

#[test]
fn each_observation_alone_is_exactly_the_pinned_bytes() {
    let (_, lines) = encoded();
    assert_golden(OBSERVATIONS, &lines);
}

#[test]
fn the_fixtures_reach_every_path_they_claim() {
    let (bundle, _) = encoded();
    let text = String::from_utf8(bundle).expect("utf-8");
    for needle in [
        "\"reference\":\"Patient/pat-17\"",
        "\"type\":\"Location\"",
        "\"valueSampledData\"",
        "\"bodySite\"",
        "\"preliminary\"",
        "\"code\":\"H\"",
        "\"code\":\"L\"",
        "\"code\":\"A\"",
        "\"code\":\"not-a-number\"",
        "\"code\":\"positive-infinity\"",
        "\"code\":\"negative-infinity\"",
        "23:59:59Z",
        "-05:30",
        "\\\"motion\\\"\\n\\tcuff\\\\loose",
        "Süd",
        "\"value\":-0.05",
        "\"value\":23.70",
    ] {
        assert!(text.contains(needle), "no {needle} in the fixture Bundle");
    }
    let entries: serde_json::Value = serde_json::from_str(&text).expect("json");
    let entries = entries["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), fixtures().len());
    assert!(entries.iter().any(|e| e.get("fullUrl").is_none()));
    assert!(entries
        .iter()
        .any(|e| e["resource"].get("subject").is_none()));
}
