//! Tests of the code table.

use super::*;

#[test]
fn every_kind_has_its_own_entry_in_order() {
    for (i, k) in Kind::ALL.into_iter().enumerate() {
        assert_eq!(KINDS[i].kind, k);
        assert_eq!(kind_codes(k).kind, k);
        assert!(!kind_codes(k).components.is_empty());
    }
}

#[test]
fn blood_pressure_has_the_design_codes() {
    let bp = kind_codes(Kind::BloodPressure);
    assert_eq!((bp.loinc, bp.mdc.code), (Some("85354-9"), 150_020));
    let sys = component(Kind::BloodPressure, "systolic").unwrap();
    assert_eq!(
        (sys.loinc, sys.mdc.code, sys.ucum),
        (Some("8480-6"), 150_021, "mm[Hg]")
    );
    assert_eq!(
        component(Kind::BloodPressure, "diastolic")
            .unwrap()
            .mdc
            .code,
        150_022
    );
    let mean = component(Kind::BloodPressure, "mean").unwrap();
    assert_eq!((mean.loinc, mean.mdc.code), (Some("8478-0"), 150_023));
    assert_eq!(sys.mdc_unit.code, 266_016);
    assert!(component(Kind::BloodPressure, "pulse").is_none());
}

#[test]
fn simple_kinds_have_their_loinc_and_unit() {
    let expect = [
        (Kind::HeartRate, "heart_rate", "8867-4", "/min"),
        (Kind::BodyTemperature, "temperature", "8310-5", "Cel"),
        (Kind::Spo2, "spo2", "59408-5", "%"),
        (Kind::RespiratoryRate, "respiratory_rate", "9279-1", "/min"),
        (Kind::BodyWeight, "weight", "29463-7", "kg"),
        (Kind::BodyHeight, "height", "8302-2", "cm"),
        (Kind::Bmi, "bmi", "39156-5", "kg/m2"),
    ];
    for (kind, name, loinc, ucum) in expect {
        let c = component(kind, name).unwrap();
        assert_eq!((c.loinc, c.ucum), (Some(loinc), ucum), "{kind}");
        assert_eq!(kind_codes(kind).loinc, Some(loinc));
    }
    assert_eq!(kind_codes(Kind::Spo2).extra_loinc[0].0, "2708-6");
}

#[test]
fn heart_rate_sources_are_known_variants() {
    let hr = component(Kind::HeartRate, "heart_rate").unwrap();
    for code in [149_546, 149_530, 147_842, 149_514] {
        assert!(mdc_allowed(Kind::HeartRate, hr, code), "{code}");
    }
    assert_eq!(mdc_reference(149_530), Some("MDC_PULS_OXIM_PULS_RATE"));
    assert!(!mdc_allowed(Kind::HeartRate, hr, 150_456));
}

#[test]
fn respiratory_rate_counts_breaths_not_beats() {
    let rr = component(Kind::RespiratoryRate, "respiratory_rate").unwrap();
    assert_eq!(rr.mdc_unit.code, 264_928);
    assert_eq!(mdc_unit("/min"), Some((264_864, "MDC_DIM_BEAT_PER_MIN")));
}

#[test]
fn temperature_sites_carry_loinc_mdc_and_snomed() {
    let oral = site("Oral").unwrap();
    assert_eq!(oral.loinc.unwrap().0, "8331-1");
    assert_eq!(oral.mdc.unwrap().code, 188_424);
    assert_eq!(oral.body_site.unwrap().0, "123851003");
    assert_eq!(site("axilla").unwrap().mdc.unwrap().code, 188_452);
    assert_eq!(site("tympanic").unwrap().loinc.unwrap().0, "8333-7");
    assert!(site("ear").unwrap().loinc.is_none());
    assert_eq!(site_for_ble_type(7).unwrap().name, "rectal");
    assert!(site("forehead").is_none());
}

#[test]
fn mdc_units_follow_the_table() {
    assert_eq!(mdc_unit("mm[Hg]").unwrap().0, 266_016);
    assert_eq!(mdc_unit("%").unwrap().0, 262_688);
    assert_eq!(mdc_unit("kg/m2").unwrap().0, 264_096);
    assert_eq!(mdc_unit("[degF]").unwrap().0, 266_560);
    assert!(mdc_unit("furlong").is_none());
}

#[test]
fn components_without_loinc_use_the_mdc_code() {
    let rr = component(Kind::Ecg, "rr_interval").unwrap();
    assert_eq!(rr.code(), "147240");
    assert_eq!(component(Kind::Spo2, "spo2").unwrap().code(), "59408-5");
}
