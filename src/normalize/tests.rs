//! Tests of `normalize`: codes, units, times, flags.

use super::*;
use crate::decode::DeviceValue;
use crate::reading::{AbsentReason, Decimal};
use time::macros::{datetime, offset, time};

fn ctx() -> NormalizeContext {
    NormalizeContext {
        device: DeviceId::new("exam3-oximeter"),
        driver: "nonin-ascii".into(),
        room: Some("exam-3".into()),
        clock_skew_tolerance: Duration::from_secs(300),
        zone: LocalZone::fixed(offset!(+1)),
    }
}

fn val(name: &str, v: &str, unit: &str) -> DeviceValue {
    DeviceValue::new(name, Measured::Value(v.parse().unwrap()), unit)
}

fn msg(kind: Kind, values: Vec<DeviceValue>) -> DeviceMessage {
    DeviceMessage::new(kind, values)
}

const RECEIVED: OffsetDateTime = datetime!(2026-11-27 12:00:00 UTC);

fn flags(r: &Reading) -> Vec<&str> {
    r.flags.iter().map(Flag::as_str).collect()
}

#[test]
fn a_blood_pressure_message_gets_codes_units_and_context() {
    let m = msg(
        Kind::BloodPressure,
        vec![
            val("systolic", "16.0", "kPa"),
            val("diastolic", "80", "mm[Hg]"),
            val("mean", "93", "mm[Hg]"),
        ],
    );
    let r = normalize(m, RECEIVED, &ctx()).unwrap();
    assert_eq!((r.id, r.patient.as_ref()), (None, None));
    assert_eq!(r.room.as_deref(), Some("exam-3"));
    assert_eq!(r.device.id.as_str(), "exam3-oximeter");
    assert_eq!(r.device.driver, "nonin-ascii");
    let sys = &r.values[0];
    assert_eq!(
        (sys.code.as_str(), sys.mdc, sys.unit.as_str()),
        ("8480-6", Some(150_021), "mm[Hg]")
    );
    assert_eq!(sys.value.unwrap().to_string(), "120");
    assert_eq!(r.values[2].code, "8478-0");
    assert_eq!(r.observed_at, RECEIVED);
    assert_eq!(r.device_time, None);
    assert!(r.flags.is_empty(), "{:?}", r.flags);
}

#[test]
fn precision_survives_normalize() {
    let m = msg(
        Kind::BodyTemperature,
        vec![val("temperature", "37.60", "Cel")],
    );
    let r = normalize(m, RECEIVED, &ctx()).unwrap();
    assert_eq!(r.values[0].value.unwrap().to_string(), "37.60");
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""value":37.60"#), "{json}");
}

#[test]
fn fahrenheit_is_converted_and_the_site_kept() {
    let mut v = val("temperature", "98.6", "[degF]");
    v.site = Some("oral".into());
    let r = normalize(msg(Kind::BodyTemperature, vec![v]), RECEIVED, &ctx()).unwrap();
    assert_eq!(r.values[0].value.unwrap().to_string(), "37.0");
    assert_eq!(r.values[0].unit.as_str(), "Cel");
    assert_eq!(r.values[0].site.as_deref(), Some("oral"));
}

#[test]
fn the_device_mdc_overrides_the_table_default() {
    let mut v = val("heart_rate", "72", "/min");
    v.mdc = Some(149_530);
    let r = normalize(msg(Kind::HeartRate, vec![v]), RECEIVED, &ctx()).unwrap();
    assert_eq!(
        (r.values[0].code.as_str(), r.values[0].mdc),
        ("8867-4", Some(149_530))
    );
    let plain = normalize(
        msg(Kind::HeartRate, vec![val("heart_rate", "72", "/min")]),
        RECEIVED,
        &ctx(),
    )
    .unwrap();
    assert_eq!(plain.values[0].mdc, Some(149_514));
}

#[test]
fn an_absent_value_keeps_its_reason_and_the_canonical_unit() {
    let v = DeviceValue::new("spo2", Measured::Absent(AbsentReason::Unknown), "%");
    let r = normalize(msg(Kind::Spo2, vec![v]), RECEIVED, &ctx()).unwrap();
    assert_eq!(
        (r.values[0].value, r.values[0].absent),
        (None, Some(AbsentReason::Unknown))
    );
}

#[test]
fn unknown_components_and_units_are_errors_naming_them() {
    let e = normalize(
        msg(Kind::Spo2, vec![val("sat", "97", "%")]),
        RECEIVED,
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "unknown component `sat` for kind spo2");
    let e = normalize(
        msg(Kind::BodyWeight, vec![val("weight", "11", "stone")]),
        RECEIVED,
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "component `weight`: no conversion from `stone` to `kg`"
    );
    let e = normalize(msg(Kind::Spo2, vec![]), RECEIVED, &ctx()).unwrap_err();
    assert_eq!(e, NormalizeError::NoValues { kind: Kind::Spo2 });
    let twice = vec![val("spo2", "97", "%"), val("spo2", "98", "%")];
    assert!(matches!(
        normalize(msg(Kind::Spo2, twice), RECEIVED, &ctx()),
        Err(NormalizeError::DuplicateComponent { .. })
    ));
}

fn timed(t: DeviceTime) -> Reading {
    let mut m = msg(Kind::Spo2, vec![val("spo2", "97", "%")]);
    m.device_time = Some(t);
    normalize(m, RECEIVED, &ctx()).unwrap()
}

#[test]
fn a_device_time_within_tolerance_is_the_observed_time() {
    let t = datetime!(2026-11-27 11:58:00 UTC);
    let r = timed(DeviceTime::Absolute(t));
    assert_eq!((r.observed_at, r.device_time), (t, Some(t)));
    assert!(r.flags.is_empty());
}

#[test]
fn a_device_time_beyond_tolerance_is_kept_but_not_trusted() {
    let t = datetime!(2026-11-27 11:50:00 UTC);
    let r = timed(DeviceTime::Absolute(t));
    assert_eq!((r.observed_at, r.device_time), (RECEIVED, Some(t)));
    assert_eq!(flags(&r), ["clock_untrusted"]);
}

#[test]
fn a_local_time_gets_the_host_offset() {
    let r = timed(DeviceTime::Local(datetime!(2026-11-27 12:59:30)));
    assert_eq!(r.observed_at, datetime!(2026-11-27 11:59:30 UTC));
}

#[test]
fn a_time_of_day_takes_the_local_date_of_receipt() {
    // 12:00 UTC is 13:00 at +01:00.
    let r = timed(DeviceTime::TimeOfDay(time!(12:59:50)));
    assert_eq!(r.observed_at, datetime!(2026-11-27 11:59:50 UTC));
}

#[test]
fn a_time_of_day_far_in_the_future_belongs_to_the_previous_day() {
    let received = datetime!(2026-11-27 23:00:05 UTC); // 00:00:05 on the 28th at +01:00
    let t = resolve_device_time(DeviceTime::TimeOfDay(time!(23:59:58)), received, &ctx());
    assert_eq!(t.unwrap(), Some(datetime!(2026-11-27 23:59:58 +1)));
    let received = datetime!(2026-11-27 22:59:58 UTC); // 23:59:58 at +01:00
    let t = resolve_device_time(DeviceTime::TimeOfDay(time!(00:00:02)), received, &ctx());
    assert_eq!(t.unwrap(), Some(datetime!(2026-11-28 00:00:02 +1)));
}

#[test]
fn a_clock_that_is_not_set_is_flagged_and_ignored() {
    let r = timed(DeviceTime::ClockNotSet);
    assert_eq!((r.observed_at, r.device_time), (RECEIVED, None));
    assert_eq!(flags(&r), ["clock_untrusted"]);
}

#[test]
fn device_flags_come_first_then_plausibility_without_duplicates() {
    let mut m = msg(Kind::Spo2, vec![val("spo2", "45", "%")]);
    m.flags = vec![Flag::device("event_mark"), Flag::out_of_range("spo2")];
    let r = normalize(m, RECEIVED, &ctx()).unwrap();
    assert_eq!(flags(&r), ["device:event_mark", "out_of_range:spo2"]);
}

#[test]
fn implausible_values_are_flagged_as_rejected_after_conversion() {
    let m = msg(
        Kind::BloodPressure,
        vec![
            val("systolic", "80", "mm[Hg]"),
            val("diastolic", "120", "mm[Hg]"),
        ],
    );
    let r = normalize(m, RECEIVED, &ctx()).unwrap();
    assert_eq!(r.rejection(), Some("systolic <= diastolic"));
    let r = normalize(
        msg(
            Kind::BodyTemperature,
            vec![val("temperature", "98.6", "Cel")],
        ),
        RECEIVED,
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        r.rejection(),
        Some("temperature 98.6 Cel >= 50 (probable degF)")
    );
    let d: Decimal = "98.6".parse().unwrap();
    assert_eq!(r.values[0].value, Some(d), "never converted silently");
}
