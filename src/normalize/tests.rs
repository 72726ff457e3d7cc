//! Tests of `normalize`: codes, units, times, flags.

use super::*;
use std::time::Duration;

use crate::model::DeviceValue;
use crate::reading::DeviceId;
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
fn a_device_time_after_its_receipt_is_not_trusted_beyond_the_grace() {
    // RECEIVED + 1 s: whole-second rounding, trusted.
    let t = datetime!(2026-11-27 12:00:01 UTC);
    let r = timed(DeviceTime::Absolute(t));
    assert_eq!(r.observed_at, t);
    assert!(r.flags.is_empty());
    // 30 s ahead, well within the 5 min tolerance: a fast clock all the same.
    let t = datetime!(2026-11-27 12:00:30 UTC);
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

fn zoned(zone: &str, tolerance_s: u64) -> NormalizeContext {
    NormalizeContext {
        zone: LocalZone::named(zone).unwrap(),
        clock_skew_tolerance: Duration::from_secs(tolerance_s),
        ..ctx()
    }
}

fn local_at(
    ctx: &NormalizeContext,
    wall: time::PrimitiveDateTime,
    received: OffsetDateTime,
) -> Reading {
    let mut m = msg(Kind::Spo2, vec![val("spo2", "97", "%")]);
    m.device_time = Some(DeviceTime::Local(wall));
    normalize(m, received, ctx).unwrap()
}

#[test]
fn a_local_time_takes_the_offset_of_its_own_season() {
    // New York moved from EST (-5) to EDT (-4) on 2026-03-08; one zone serves both days.
    let ny = zoned("America/New_York", 300);
    let winter = local_at(
        &ny,
        datetime!(2026-03-07 12:00:00),
        datetime!(2026-03-07 17:00:30 UTC),
    );
    assert_eq!(winter.observed_at, datetime!(2026-03-07 17:00:00 UTC));
    let summer = local_at(
        &ny,
        datetime!(2026-03-09 12:00:00),
        datetime!(2026-03-09 16:00:30 UTC),
    );
    assert_eq!(summer.observed_at, datetime!(2026-03-09 16:00:00 UTC));
    // Berlin: CEST (+2) until 2026-10-25 01:00 UTC, CET (+1) after.
    let berlin = zoned("Europe/Berlin", 300);
    let before = local_at(
        &berlin,
        datetime!(2026-10-25 02:59:00),
        datetime!(2026-10-25 00:59:10 UTC),
    );
    let after = local_at(
        &berlin,
        datetime!(2026-10-25 03:01:00),
        datetime!(2026-10-25 02:01:10 UTC),
    );
    assert_eq!(before.observed_at, datetime!(2026-10-25 00:59:00 UTC));
    assert_eq!(after.observed_at, datetime!(2026-10-25 02:01:00 UTC));
    for r in [winter, summer, before, after] {
        assert!(r.flags.is_empty(), "{:?}", r.flags);
    }
}

#[test]
fn a_repeated_local_time_is_the_occurrence_just_before_receipt() {
    // New York, 2026-11-01: 01:30 showed at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    let ny = zoned("America/New_York", 300);
    let wall = datetime!(2026-11-01 01:30:00);
    let first = local_at(&ny, wall, datetime!(2026-11-01 05:31:00 UTC));
    assert_eq!(first.observed_at, datetime!(2026-11-01 05:30:00 UTC));
    let second = local_at(&ny, wall, datetime!(2026-11-01 06:31:00 UTC));
    assert_eq!(second.observed_at, datetime!(2026-11-01 06:30:00 UTC));
    // A device clock a second ahead (within the future grace) still meets its own occurrence.
    let ahead = local_at(&ny, wall, datetime!(2026-11-01 06:29:59 UTC));
    assert_eq!(ahead.observed_at, datetime!(2026-11-01 06:30:00 UTC));
    for r in [first, second, ahead] {
        assert!(r.flags.is_empty(), "{:?}", r.flags);
    }
    // Lord Howe Island puts its clocks back by half an hour: 01:45 showed at 14:45 and 15:15 UTC.
    let lhi = zoned("Australia/Lord_Howe", 300);
    let r = local_at(
        &lhi,
        datetime!(2026-04-05 01:45:00),
        datetime!(2026-04-04 15:16:00 UTC),
    );
    assert_eq!(r.observed_at, datetime!(2026-04-04 15:15:00 UTC));
}

#[test]
fn a_repeated_local_time_both_within_tolerance_is_the_later_and_flagged() {
    let ny = zoned("America/New_York", 2 * 3600);
    let r = local_at(
        &ny,
        datetime!(2026-11-01 01:30:00),
        datetime!(2026-11-01 06:40:00 UTC),
    );
    assert_eq!(r.observed_at, datetime!(2026-11-01 06:30:00 UTC));
    assert_eq!(r.device_time, Some(r.observed_at));
    assert_eq!(flags(&r), [TIME_AMBIGUOUS]);
    let p = place_device_time(
        DeviceTime::Local(datetime!(2026-11-01 01:30:00)),
        datetime!(2026-11-01 06:40:00 UTC),
        &ny,
    );
    assert_eq!(
        p.unwrap(),
        Some(PlacedTime {
            at: datetime!(2026-11-01 06:30:00 UTC),
            ambiguous: true
        })
    );
}

#[test]
fn a_skipped_local_time_is_read_with_the_offset_before_the_change() {
    // New York, 2026-03-08: clocks went from 02:00 EST to 03:00 EDT; a device still on EST shows
    // 02:30 at 07:30 UTC.
    let ny = zoned("America/New_York", 300);
    let r = local_at(
        &ny,
        datetime!(2026-03-08 02:30:00),
        datetime!(2026-03-08 07:30:20 UTC),
    );
    assert_eq!(r.observed_at, datetime!(2026-03-08 07:30:00 UTC));
    assert!(r.flags.is_empty(), "{:?}", r.flags);
    // Berlin, 2026-03-29: 02:30 never showed; read at CET (+1) it is 01:30 UTC.
    let berlin = zoned("Europe/Berlin", 300);
    let t = resolve_device_time(
        DeviceTime::Local(datetime!(2026-03-29 02:30:00)),
        datetime!(2026-03-29 01:31:00 UTC),
        &berlin,
    );
    assert_eq!(t.unwrap(), Some(datetime!(2026-03-29 01:30:00 UTC)));
}

#[test]
fn a_time_of_day_takes_the_offset_of_its_own_hour_on_a_dst_day() {
    let ny = zoned("America/New_York", 300);
    let tod = |t, received| resolve_device_time(DeviceTime::TimeOfDay(t), received, &ny).unwrap();
    // 01:59 EST, received at 04:00 EDT the same morning: 06:59 UTC, not 05:59.
    assert_eq!(
        tod(time!(01:59:00), datetime!(2026-03-08 08:00:00 UTC)),
        Some(datetime!(2026-03-08 06:59:00 UTC))
    );
    // Across midnight after the 25-hour day: 23:59:58 EST on the 1st, received 00:00:05 on the 2nd.
    assert_eq!(
        tod(time!(23:59:58), datetime!(2026-11-02 05:00:05 UTC)),
        Some(datetime!(2026-11-02 04:59:58 UTC))
    );
    // Across midnight into the 25-hour day: 00:00:02 EDT on the 1st, received 23:59:58 EDT.
    assert_eq!(
        tod(time!(00:00:02), datetime!(2026-11-01 03:59:58 UTC)),
        Some(datetime!(2026-11-01 04:00:02 UTC))
    );
    // Berlin's 23-hour day: 00:00:03 CEST on the 30th, received 23:59:58 CEST on the 29th.
    let berlin = zoned("Europe/Berlin", 300);
    assert_eq!(
        resolve_device_time(
            DeviceTime::TimeOfDay(time!(00:00:03)),
            datetime!(2026-03-29 21:59:58 UTC),
            &berlin
        )
        .unwrap(),
        Some(datetime!(2026-03-29 22:00:03 UTC))
    );
}

#[test]
fn the_zone_gives_one_two_or_skipped_offsets() {
    let ny = LocalZone::named("America/New_York").unwrap();
    assert_eq!(
        ny.offsets_of(datetime!(2026-07-01 12:00:00)),
        Some(WallOffsets::One(offset!(-4)))
    );
    assert_eq!(
        ny.offsets_of(datetime!(2026-11-01 01:00:00)),
        Some(WallOffsets::Repeated {
            before: offset!(-4),
            after: offset!(-5)
        })
    );
    assert_eq!(
        ny.offsets_of(datetime!(2026-03-08 02:00:00)),
        Some(WallOffsets::Skipped {
            before: offset!(-5),
            after: offset!(-4)
        })
    );
    assert_eq!(ny.offset_at(datetime!(2026-01-15 12:00 UTC)), offset!(-5));
    assert_eq!(ny.name(), Some("America/New_York"));
    assert!(LocalZone::named("Mars/Olympus_Mons").is_err());
}
