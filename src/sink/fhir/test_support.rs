//! Test helpers for the FHIR encoder: readings of every kind, JSON accessors and a checker of
//! the R4 vital-signs rules vs-1..vs-3.

use serde_json::Value as Json;
use time::macros::datetime;
use uuid::Uuid;

use super::observation;
use crate::model::fixtures;
use crate::reading::{Kind, Reading, ReadingId, Value};

pub fn reading(kind: Kind, values: Vec<Value>) -> Reading {
    let t = datetime!(2024-03-15 10:29:30 +01:00);
    // A fixed id per kind (blood pressure: ...9e77), distinct across kinds.
    let id = ReadingId::from_uuid(Uuid::from_u128(
        0x0193_8f4e_7b2a_7c4d_9a51_3f0c_2b1d_9e77
            + Kind::ALL
                .iter()
                .position(|k| *k == kind)
                .map_or(0, |i| i as u128),
    ));
    fixtures::reading(kind)
        .id(id)
        .device("exam3-cuff", "ble-gatt")
        .model("UA-651BLE")
        .patient("MRN123456", "urn:oid:2.16.840.1.113883.3.9999")
        .at(t)
        .device_time(Some(t))
        .values(values)
        .build()
}

pub fn bp() -> Reading {
    let values = fixtures::blood_pressure("120", "80", "93").build().values;
    reading(Kind::BloodPressure, values)
}

pub fn one(kind: Kind, code: &str, mdc: u32, name: &str, v: &str, unit: &str) -> Reading {
    reading(kind, vec![fixtures::value(code, mdc, name, v, unit)])
}

pub fn every_kind() -> Vec<Reading> {
    let mut temp = one(
        Kind::BodyTemperature,
        "8310-5",
        150_364,
        "temperature",
        "37.60",
        "Cel",
    );
    temp.values[0].site = Some("oral".into());
    vec![
        bp(),
        one(
            Kind::HeartRate,
            "8867-4",
            149_546,
            "heart_rate",
            "72",
            "/min",
        ),
        one(Kind::Spo2, "59408-5", 150_456, "spo2", "97", "%"),
        temp,
        one(
            Kind::RespiratoryRate,
            "9279-1",
            151_562,
            "respiratory_rate",
            "16",
            "/min",
        ),
        one(Kind::BodyWeight, "29463-7", 188_736, "weight", "72.5", "kg"),
        one(Kind::BodyHeight, "8302-2", 188_740, "height", "175.0", "cm"),
        one(Kind::Bmi, "39156-5", 188_752, "bmi", "23.7", "kg/m2"),
    ]
}

pub fn json(r: &Reading) -> Json {
    serde_json::to_value(observation(r)).expect("observation serialises")
}

/// (system, code) pairs of a CodeableConcept.
pub fn codes(cc: &Json) -> Vec<(String, String)> {
    cc["coding"]
        .as_array()
        .expect("coding array")
        .iter()
        .map(|c| {
            let s = c["system"].as_str().expect("system").to_string();
            (s, c["code"].as_str().expect("code").to_string())
        })
        .collect()
}

pub fn loinc(c: &str) -> (String, String) {
    ("http://loinc.org".into(), c.into())
}

pub fn mdc(c: &str) -> (String, String) {
    ("urn:iso:std:iso:11073:10101".into(), c.into())
}

/// The R4 vital-signs profile rules that an encoder can break (docs/fhir.md): the profile is
/// named, the subject is a Patient, the category is vital-signs, quantities are UCUM, a blood
/// pressure has exactly one systolic and one diastolic component, vs-1..vs-3.
#[track_caller]
pub fn assert_vital_signs_rules(o: &Json) {
    assert_eq!(o["resourceType"], "Observation");
    let status = o["status"].as_str().expect("status");
    if o["note"].to_string().contains("[rejected:") {
        assert_eq!(status, "preliminary", "a released rejected reading");
    } else {
        assert_eq!(status, "final");
    }
    let profile = o["meta"]["profile"][0].as_str().expect("meta.profile");
    assert!(
        profile.starts_with("http://hl7.org/fhir/StructureDefinition/"),
        "{profile}"
    );
    assert_eq!(
        o["subject"]["type"], "Patient",
        "vital signs are about a Patient"
    );
    if profile.ends_with("/bp") {
        let comps = o["component"].as_array().expect("bp components");
        for code in ["8480-6", "8462-4"] {
            let n = comps
                .iter()
                .filter(|c| codes(&c["code"]).contains(&loinc(code)))
                .count();
            assert_eq!(n, 1, "bp profile: exactly one {code} component");
        }
    }
    let cat = &o["category"][0]["coding"][0];
    assert_eq!(
        cat["system"],
        "http://terminology.hl7.org/CodeSystem/observation-category"
    );
    assert_eq!(cat["code"], "vital-signs");
    assert!(codes(&o["code"])
        .iter()
        .any(|(s, _)| s == "http://loinc.org"));
    assert!(o["subject"].is_object(), "subject 1..1");
    // vs-1: a dateTime precise to the day at least; we always send seconds and an offset.
    let eff = o["effectiveDateTime"].as_str().expect("effectiveDateTime");
    assert!(eff.len() >= 8, "vs-1: {eff}");
    assert!(
        time::OffsetDateTime::parse(eff, &time::format_description::well_known::Rfc3339).is_ok(),
        "{eff}"
    );
    // vs-2: without component/hasMember, a value or a dataAbsentReason.
    let components = o["component"].as_array();
    if components.is_none_or(|c| c.is_empty()) {
        assert!(
            o["valueQuantity"].is_object() || o["dataAbsentReason"].is_object(),
            "vs-2: {o}"
        );
    }
    // vs-3: every component has a code and a value or a dataAbsentReason.
    for c in components.into_iter().flatten() {
        assert!(!codes(&c["code"]).is_empty());
        assert!(
            c["valueQuantity"].is_object() || c["dataAbsentReason"].is_object(),
            "vs-3: {c}"
        );
    }
    // valueQuantity: value, unit, UCUM system and code.
    let quantities = std::iter::once(&o["valueQuantity"]).chain(
        components
            .into_iter()
            .flatten()
            .map(|c| &c["valueQuantity"]),
    );
    for q in quantities.filter(|q| q.is_object()) {
        assert!(q["value"].is_number(), "{q}");
        assert!(q["unit"].is_string(), "{q}");
        assert_eq!(q["system"], "http://unitsofmeasure.org");
        assert!(q["code"].is_string(), "{q}");
    }
    // A value and a dataAbsentReason never together.
    assert!(!(o["valueQuantity"].is_object() && o["dataAbsentReason"].is_object()));
}
