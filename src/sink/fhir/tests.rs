//! Encoder tests: the worked blood-pressure example, precision, absent values, flags, subject,
//! the Bundle, and the vital-signs constraints vs-1..vs-3 for every kind.

use time::macros::datetime;

use super::observation::entry_full_url;
use super::test_support::*;
use super::{observation, transaction_bundle};
use crate::model::fixtures;
use crate::reading::{AbsentReason, Flag, Kind};

#[test]
fn every_kind_meets_the_vital_signs_rules_vs1_to_vs3() {
    for r in every_kind() {
        assert_vital_signs_rules(&json(&r));
    }
}

#[test]
fn every_kind_names_its_specific_r4_profile() {
    let ids: Vec<String> = every_kind()
        .iter()
        .map(|r| {
            json(r)["meta"]["profile"][0]
                .as_str()
                .expect("profile")
                .to_string()
        })
        .collect();
    let base = "http://hl7.org/fhir/StructureDefinition/";
    let want = [
        "bp",
        "heartrate",
        "oxygensat",
        "bodytemp",
        "resprate",
        "bodyweight",
        "bodyheight",
        "bmi",
    ];
    assert_eq!(ids, want.map(|w| format!("{base}{w}")));
}

#[test]
fn the_worked_example_blood_pressure_is_a_panel_with_three_coded_components() {
    let o = json(&bp());
    assert_eq!(codes(&o["code"]), vec![loinc("85354-9"), mdc("150020")]);
    assert!(o.get("valueQuantity").is_none());
    assert_eq!(o["effectiveDateTime"], "2024-03-15T10:29:30+01:00");
    let comps = o["component"].as_array().expect("components");
    let got: Vec<_> = comps
        .iter()
        .map(|c| (codes(&c["code"]), c["valueQuantity"]["value"].as_i64()))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec![loinc("8480-6"), mdc("150021")], Some(120)),
            (vec![loinc("8462-4"), mdc("150022")], Some(80)),
            (vec![loinc("8478-0"), mdc("150023")], Some(93)),
        ]
    );
    for c in comps {
        assert_eq!(c["valueQuantity"]["code"], "mm[Hg]");
        assert_eq!(c["valueQuantity"]["unit"], "mmHg");
    }
}

#[test]
fn the_worked_example_heart_rate_has_loinc_and_cuff_mdc() {
    let o = json(&one(
        Kind::HeartRate,
        "8867-4",
        149_546,
        "heart_rate",
        "72",
        "/min",
    ));
    assert_eq!(codes(&o["code"]), vec![loinc("8867-4"), mdc("149546")]);
    assert_eq!(o["valueQuantity"]["value"], 72);
    assert_eq!(o["valueQuantity"]["code"], "/min");
    assert_eq!(o["effectiveDateTime"], "2024-03-15T10:29:30+01:00");
}

#[test]
fn spo2_carries_both_loinc_codes_and_the_mdc_code() {
    let o = json(&one(Kind::Spo2, "59408-5", 150_456, "spo2", "97", "%"));
    assert_eq!(
        codes(&o["code"]),
        vec![loinc("2708-6"), loinc("59408-5"), mdc("150456")]
    );
}

#[test]
fn a_temperature_keeps_its_precision_in_the_json_text() {
    let r = &every_kind()[3];
    let text = serde_json::to_string(&observation(r)).expect("serialises");
    assert!(text.contains(r#""value":37.60"#), "{text}");
}

#[test]
fn an_oral_temperature_adds_the_site_codes_and_body_site() {
    let o = json(&every_kind()[3]);
    assert_eq!(
        codes(&o["code"]),
        vec![loinc("8310-5"), loinc("8331-1"), mdc("188424")]
    );
    assert_eq!(o["code"]["coding"][1]["display"], "Oral temperature");
    assert_eq!(
        codes(&o["bodySite"]),
        vec![(
            "http://snomed.info/sct".to_string(),
            "123851003".to_string()
        )]
    );
    assert_eq!(o["valueQuantity"]["unit"], "C");
}

#[test]
fn a_temperature_without_site_has_no_body_site() {
    let o = json(&one(
        Kind::BodyTemperature,
        "8310-5",
        150_364,
        "temperature",
        "36.9",
        "Cel",
    ));
    assert_eq!(codes(&o["code"]), vec![loinc("8310-5"), mdc("150364")]);
    assert!(o.get("bodySite").is_none());
}

#[test]
fn an_absent_value_yields_a_data_absent_reason_and_no_quantity() {
    let mut r = one(Kind::Spo2, "59408-5", 150_456, "spo2", "0", "%");
    r.values[0].value = None;
    r.values[0].absent = Some(AbsentReason::NotANumber);
    let o = json(&r);
    assert!(o.get("valueQuantity").is_none());
    let reason = &o["dataAbsentReason"]["coding"][0];
    assert_eq!(
        reason["system"],
        "http://terminology.hl7.org/CodeSystem/data-absent-reason"
    );
    assert_eq!(reason["code"], "not-a-number");
    assert_vital_signs_rules(&o);
}

#[test]
fn an_absent_blood_pressure_component_gets_its_own_reason() {
    let mut r = bp();
    r.values[2].value = None;
    let o = json(&r);
    let c = &o["component"][2];
    assert!(c.get("valueQuantity").is_none());
    assert_eq!(c["dataAbsentReason"]["coding"][0]["code"], "unknown");
    assert_vital_signs_rules(&o);
}

#[test]
fn identifier_subject_and_device_follow_the_contract() {
    let o = json(&bp());
    let id = "urn:uuid:01938f4e-7b2a-7c4d-9a51-3f0c2b1d9e77";
    assert_eq!(
        o["identifier"],
        serde_json::json!([{"system": "urn:ietf:rfc:3986", "value": id}])
    );
    assert_eq!(
        o["subject"],
        serde_json::json!({"type": "Patient", "identifier":
            {"system": "urn:oid:2.16.840.1.113883.3.9999", "value": "MRN123456"}})
    );
    assert_eq!(
        o["device"],
        serde_json::json!({"identifier": {"system": "urn:vitalsd:device", "value": "exam3-cuff"},
            "display": "UA-651BLE"})
    );
}

#[test]
fn without_a_patient_the_subject_is_the_room_as_location() {
    let mut r = bp();
    r.patient = None;
    assert_eq!(
        json(&r)["subject"],
        serde_json::json!({"type": "Location",
            "identifier": {"system": "urn:vitalsd:room", "value": "exam-3"}, "display": "exam-3"})
    );
}

#[test]
fn flags_become_interpretation_and_notes() {
    let mut r = bp();
    r.values[0].value = Some("270".parse().unwrap());
    r.flags = vec![
        Flag::out_of_range("systolic"),
        Flag::clock_untrusted(),
        Flag::device("artifact"),
        Flag::new("duplicate_suppressed"),
    ];
    let o = json(&r);
    let a = &o["component"][0]["interpretation"][0]["coding"][0];
    assert_eq!(
        a["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    );
    assert_eq!(a["code"], "H", "270 mmHg is above the soft range");
    assert!(o["component"][1].get("interpretation").is_none());
    assert_eq!(o["status"], "final");
    assert_eq!(notes(&o), [
        "vitalsd flags: systolic outside the plausible range [out_of_range:systolic]; \
         device clock not trusted; time of receipt used [clock_untrusted]; \
         device reported: artifact [device:artifact]; flag duplicate_suppressed [duplicate_suppressed]"
    ]);
}

fn notes(o: &serde_json::Value) -> Vec<&str> {
    o["note"]
        .as_array()
        .map(|n| {
            n.iter()
                .map(|n| n["text"].as_str().expect("text"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_flag_reaches_the_note_and_known_ones_an_interpretation() {
    let mut r = bp();
    r.values[1].value = Some("20".parse().unwrap());
    r.flags = vec![
        Flag::new("patient_ambiguous"),
        Flag::new("pulse_disagrees"),
        Flag::new("map_outside_range"),
        Flag::out_of_range("diastolic"),
        Flag::new("ecg:partial"),
        Flag::new("something_new"),
    ];
    let o = json(&r);
    let note = notes(&o).join("\n");
    for f in &r.flags {
        assert!(note.contains(&format!("[{f}]")), "{f} missing from {note}");
    }
    assert!(note.contains("the attribution was ambiguous"), "{note}");
    assert!(note.contains("ECG strip shorter"), "{note}");
    let interp = |i: usize| o["component"][i]["interpretation"][0]["coding"][0]["code"].clone();
    assert_eq!(interp(1), "L", "diastolic 20 is below the soft range");
    assert_eq!(interp(2), "A", "mean outside systolic-diastolic");
    assert_vital_signs_rules(&o);
}

#[test]
fn a_reading_released_from_quarantine_is_preliminary_abnormal_and_says_why() {
    let mut r = one(
        Kind::HeartRate,
        "8867-4",
        149_546,
        "heart_rate",
        "410",
        "/min",
    );
    r.flags = vec![Flag::new("rejected:heart_rate 410 /min >= 400")];
    let o = json(&r);
    assert_eq!(o["status"], "preliminary");
    assert_eq!(o["interpretation"][0]["coding"][0]["code"], "A");
    let n = notes(&o);
    assert_eq!(
        n[0],
        "failed a hard plausibility limit (heart_rate 410 /min >= 400); \
         released from quarantine after review"
    );
    assert!(n[1].contains("[rejected:heart_rate 410 /min >= 400]"));
    assert_vital_signs_rules(&o);
}

#[test]
fn a_blood_pressure_panel_missing_a_component_still_has_one_systolic_and_one_diastolic() {
    for missing in ["systolic", "diastolic"] {
        let mut r = bp();
        r.values.retain(|v| v.name != missing);
        let o = json(&r);
        let comps = o["component"].as_array().expect("components");
        for code in ["8480-6", "8462-4"] {
            let found: Vec<_> = comps
                .iter()
                .filter(|c| codes(&c["code"]).contains(&loinc(code)))
                .collect();
            assert_eq!(found.len(), 1, "{missing} missing: one {code}");
        }
        let added = comps
            .iter()
            .find(|c| c.get("valueQuantity").is_none())
            .expect("the added component");
        assert_eq!(added["dataAbsentReason"]["coding"][0]["code"], "unknown");
        assert_eq!(comps.len(), 3);
        assert!(o.get("dataAbsentReason").is_none());
        assert_vital_signs_rules(&o);
    }
    let mut empty = bp();
    empty.values.clear();
    let o = json(&empty);
    assert_eq!(o["component"].as_array().map(Vec::len), Some(2));
    assert_vital_signs_rules(&o);
}

#[test]
fn an_out_of_range_single_value_is_interpreted_on_the_observation() {
    let mut r = one(
        Kind::HeartRate,
        "8867-4",
        149_530,
        "heart_rate",
        "250",
        "/min",
    );
    r.flags = vec![Flag::out_of_range("heart_rate")];
    // 250 /min is above the soft range's top (130): high.
    assert_eq!(json(&r)["interpretation"][0]["coding"][0]["code"], "H");
}

#[test]
fn a_utc_time_is_written_with_an_offset() {
    let mut r = bp();
    r.observed_at = datetime!(2026-11-27 12:00:00.5 UTC);
    assert_eq!(json(&r)["effectiveDateTime"], "2026-11-27T12:00:00.5Z");
}

#[test]
fn the_bundle_posts_each_reading_with_a_conditional_create() {
    let readings = every_kind();
    let b = serde_json::to_value(transaction_bundle(&readings)).expect("bundle");
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "transaction");
    let entries = b["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), readings.len());
    let urls: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e["fullUrl"].as_str())
        .collect();
    assert_eq!(urls.len(), readings.len(), "fullUrls are unique");
    for (e, r) in entries.iter().zip(&readings) {
        let id = e["resource"]["identifier"][0]["value"]
            .as_str()
            .expect("id");
        assert_eq!(id, format!("urn:uuid:{}", r.id.expect("id")));
        let full = e["fullUrl"].as_str().expect("fullUrl");
        assert!(full.starts_with("urn:uuid:"), "{full}");
        assert_ne!(
            full, id,
            "a server rewriting fullUrl strings must not touch the identifier"
        );
        assert!(!serde_json::to_string(&e["resource"])
            .unwrap()
            .contains(full));
        assert!(full[9..].parse::<uuid::Uuid>().is_ok(), "{full}");
        assert_eq!(e["request"]["method"], "POST");
        assert_eq!(e["request"]["url"], "Observation");
        assert_eq!(
            e["request"]["ifNoneExist"],
            format!("identifier=urn:ietf:rfc:3986|{id}")
        );
    }
    // A resend is byte-identical: same fullUrl, same identifier, same condition.
    let again = serde_json::to_value(transaction_bundle(&readings)).expect("bundle");
    assert_eq!(again, b);
}

#[test]
fn the_full_url_is_derived_from_the_id_and_differs_from_it() {
    let a = crate::reading::ReadingId::from_uuid(uuid::Uuid::from_u128(1));
    let b = crate::reading::ReadingId::from_uuid(uuid::Uuid::from_u128(2));
    assert_eq!(entry_full_url(a), entry_full_url(a));
    assert_ne!(entry_full_url(a), entry_full_url(b));
    assert_ne!(entry_full_url(a), format!("urn:uuid:{a}"));
    // The worked example of docs/fhir.md.
    let r = bp().id.expect("id");
    assert_eq!(
        entry_full_url(r),
        "urn:uuid:77fafb2f-1759-8860-bc24-53607e6ff256"
    );
}

#[test]
fn an_ecg_reading_is_a_procedure_panel_coded_by_mdc_only() {
    let r = reading(
        Kind::Ecg,
        vec![
            fixtures::value("131329", 131_329, "lead_i", "512", "uV"),
            fixtures::value("8634-8", 147_232, "qt_interval", "400", "ms"),
        ],
    );
    let o = json(&r);
    assert_eq!(o["category"][0]["coding"][0]["code"], "procedure");
    assert!(o.get("meta").is_none(), "ECG has no vital-signs profile");
    assert_eq!(codes(&o["code"]), vec![mdc("131328")]);
    assert_eq!(codes(&o["component"][0]["code"]), vec![mdc("131329")]);
    assert_eq!(
        codes(&o["component"][1]["code"]),
        vec![loinc("8634-8"), mdc("147232")]
    );
}

#[test]
fn a_reading_without_id_has_no_identifier_and_no_conditional_create() {
    let mut r = bp();
    r.id = None;
    let b = serde_json::to_value(transaction_bundle(&[r])).expect("bundle");
    let e = &b["entry"][0];
    assert!(e["resource"].get("identifier").is_none());
    assert!(e.get("fullUrl").is_none());
    assert!(e["request"].get("ifNoneExist").is_none());
}
