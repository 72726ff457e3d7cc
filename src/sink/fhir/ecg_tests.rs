//! Tests of the ECG strip encoding.

use super::*;
use crate::reading::{Kind, Lead, Reading};
use crate::sink::fhir::observation::observation;
use crate::sink::fhir::test_support::reading;

fn strip() -> Reading {
    let mut r = reading(Kind::Ecg, Vec::new());
    r.waveform = Some(Waveform {
        fs_hz: 130.0,
        t0: r.observed_at,
        leads: vec![Lead {
            mdc: 131_328,
            name: "ecg".into(),
            scale_uv: 1.0,
            samples: vec![-30, 16, 1190, -512],
        }],
        r_peaks: vec![2],
        rr_ms: Vec::new(),
    });
    r.flags = vec![crate::reading::Flag::new("ecg:partial")];
    r
}

#[test]
fn a_strip_is_one_procedure_observation_with_a_sampled_data_component_per_lead() {
    let r = strip();
    let json = serde_json::to_value(observation(&r)).unwrap();
    assert_eq!(json["category"][0]["coding"][0]["code"], "procedure");
    assert_eq!(json["code"]["coding"][0]["code"], "131328");
    let c = &json["component"][0];
    assert_eq!(c["code"]["coding"][0]["code"], "131328");
    assert_eq!(
        c["code"]["coding"][0]["system"],
        "urn:iso:std:iso:11073:10101"
    );
    let sd = &c["valueSampledData"];
    assert_eq!(sd["origin"]["value"], 0);
    assert_eq!(sd["origin"]["code"], "uV");
    assert_eq!(sd["dimensions"], 1);
    assert_eq!(sd["data"], "-30 16 1190 -512");
    assert_eq!(sd["data"].as_str().unwrap().split(' ').count(), 4);
    assert!(json.get("dataAbsentReason").is_none());
    assert!(json["note"][0]["text"]
        .as_str()
        .unwrap()
        .contains("shorter"));
    let text = serde_json::to_string(&observation(&r)).unwrap();
    assert!(text.contains(r#""period":7.692308"#), "{text}");
    assert!(text.contains(r#""factor":1,"#), "{text}");
    assert!(text.contains(&format!(
        r#""effectiveDateTime":"{}""#,
        r.observed_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    )));
}

#[test]
fn periods_keep_six_significant_digits_and_factors_drop_trailing_zeros() {
    assert_eq!(period_ms(130.0).to_string(), "7.692308");
    assert_eq!(period_ms(500.0).to_string(), "2.000000");
    assert_eq!(period_ms(16_000.0).to_string(), "0.0625000");
    assert_eq!(factor(1.0).to_string(), "1");
    assert_eq!(
        factor(crate::decode::openbci::scale_uv(24)).to_string(),
        "0.022351744"
    );
    assert_eq!(data(&[]), "");
}
