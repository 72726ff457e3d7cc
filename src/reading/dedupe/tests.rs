//! What the dedupe key must merge (a resend of one measurement) and must keep apart (any two
//! measurements that differ in what the device reported).

use proptest::prelude::*;
use time::macros::datetime;

use crate::model::fixtures;
use crate::reading::{
    AbsentReason, Decimal, DeviceId, Flag, Kind, PatientRef, Reading, ReadingId, Ucum, Value,
};

fn value(name: &str, code: &str, mdc: u32, v: i64, unit: &str) -> Value {
    Value {
        code: code.into(),
        mdc: Some(mdc),
        name: name.into(),
        value: Some(Decimal::new(v, 0)),
        unit: Ucum::new(unit),
        site: None,
        absent: None,
    }
}

fn pulse(mdc: u32, v: i64) -> Reading {
    fixtures::reading(Kind::HeartRate)
        .device("exam3-gateway", "ble-gatt")
        .observed(datetime!(2026-12-06 10:00:00 UTC))
        .received(datetime!(2026-12-06 10:00:01 UTC))
        .device_time(Some(datetime!(2026-12-06 10:00:00 UTC)))
        .value(value("heart_rate", "8867-4", mdc, v, "/min"))
        .build()
}

#[test]
fn a_cuff_pulse_and_an_oximeter_pulse_of_the_same_second_and_value_are_two_readings() {
    let cuff = pulse(149_546, 72);
    let oximeter = pulse(149_530, 72);
    assert_ne!(cuff.dedupe_key(), oximeter.dedupe_key());
}

#[test]
fn a_resend_is_the_same_measurement_whatever_vitalsd_decided_about_it() {
    let first = pulse(149_530, 72);
    let mut resend = first.clone();
    resend.id = Some(ReadingId::new());
    resend.received_at = datetime!(2026-12-06 10:05:00 UTC);
    resend.observed_at = resend.received_at;
    resend.room = Some("exam-4".into());
    resend.patient = Some(PatientRef {
        id: "MRN1".into(),
        system: "urn:oid:1.2".into(),
    });
    resend.flags = vec![Flag::clock_untrusted(), Flag::new("patient_ambiguous")];
    assert_eq!(first.dedupe_key(), resend.dedupe_key());
}

#[test]
fn two_users_of_one_scale_in_one_second_are_two_readings() {
    let mut a = pulse(149_530, 72);
    a.flags = vec![Flag::device("user:1")];
    let mut b = a.clone();
    b.flags = vec![Flag::device("user:2")];
    assert_ne!(a.dedupe_key(), b.dedupe_key());
}

#[test]
fn a_reading_without_a_device_time_is_keyed_by_its_id() {
    let mut a = pulse(149_530, 72);
    a.device_time = None;
    let mut b = a.clone();
    assert_eq!(a.dedupe_key(), b.dedupe_key(), "the same reading resent");
    b.id = Some(ReadingId::new());
    assert_ne!(a.dedupe_key(), b.dedupe_key());
}

#[test]
fn separators_inside_fields_cannot_make_two_field_lists_equal() {
    let mut a = pulse(149_530, 72);
    a.device.serial = Some("A|B".into());
    let mut b = pulse(149_530, 72);
    b.device.serial = Some("A".into());
    b.flags = vec![Flag::device("user:B")];
    assert_ne!(a.dedupe_key(), b.dedupe_key());
}

/// One change to a measurement that makes it a different measurement.
#[derive(Debug, Clone)]
enum Change {
    Device(String),
    Kind,
    Serial(String),
    User(u8),
    TimeNanos(i64),
    Mdc(u32),
    Code(String),
    Unit(String),
    Site(String),
    Value(i64),
    Scale(u8),
    Absent,
    ExtraValue,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        "[a-z0-9|\\\\=;-]{1,12}".prop_map(Change::Device),
        Just(Change::Kind),
        "[A-Z0-9|]{1,8}".prop_map(Change::Serial),
        (0u8..0xFF).prop_map(Change::User),
        (1i64..10_000_000_000).prop_map(Change::TimeNanos),
        (1u32..200_000).prop_map(Change::Mdc),
        "[0-9]{1,5}-[0-9]".prop_map(Change::Code),
        "[a-z/\\[\\]]{1,6}".prop_map(Change::Unit),
        "[a-z|]{1,8}".prop_map(Change::Site),
        (-1000i64..1000).prop_map(Change::Value),
        (1u8..4).prop_map(Change::Scale),
        Just(Change::Absent),
        Just(Change::ExtraValue),
    ]
}

fn apply(r: &mut Reading, c: &Change) -> bool {
    let v = &mut r.values[0];
    match c {
        Change::Device(d) if d != r.device.id.as_str() => r.device.id = DeviceId::new(d.clone()),
        Change::Kind => r.kind = Kind::Spo2,
        Change::Serial(s) => r.device.serial = Some(s.clone()),
        Change::User(u) => r.flags.push(Flag::device(&format!("user:{u}"))),
        Change::TimeNanos(n) => {
            r.device_time = r.device_time.map(|t| t + time::Duration::nanoseconds(*n));
        }
        Change::Mdc(m) if Some(*m) != v.mdc => v.mdc = Some(*m),
        Change::Code(c) if *c != v.code => v.code = c.clone(),
        Change::Unit(u) if u != v.unit.as_str() => v.unit = Ucum::new(u.clone()),
        Change::Site(s) => v.site = Some(s.clone()),
        Change::Value(x) if Some(Decimal::new(*x, 0)) != v.value => {
            v.value = Some(Decimal::new(*x, 0));
        }
        // 72 and 72.0 are different reports (a device that changed its resolution).
        Change::Scale(s) => {
            v.value = v
                .value
                .map(|d| Decimal::new(d.mantissa() * 10_i64.pow(u32::from(*s)), *s))
        }
        Change::Absent => {
            v.value = None;
            v.absent = Some(AbsentReason::Error);
        }
        Change::ExtraValue => r.values.push(value("spo2", "59408-5", 150_456, 97, "%")),
        _ => return false,
    }
    true
}

proptest! {
    #[test]
    fn any_difference_in_what_the_device_reported_keeps_two_readings_apart(
        hr in 30i64..200, mdc in prop_oneof![Just(149_530u32), Just(149_546u32)], c in change()
    ) {
        let a = pulse(mdc, hr);
        let mut b = a.clone();
        b.id = Some(ReadingId::new());
        prop_assume!(apply(&mut b, &c));
        prop_assert_ne!(a.dedupe_key(), b.dedupe_key(), "{:?}", c);
    }

    #[test]
    fn a_resend_under_another_id_receipt_time_and_flags_is_merged(
        hr in 30i64..200, delay_ms in 0i64..600_000, flag in "[a-z_]{1,16}"
    ) {
        let a = pulse(149_530, hr);
        let mut b = a.clone();
        b.id = Some(ReadingId::new());
        b.received_at += time::Duration::milliseconds(delay_ms);
        b.flags.push(Flag::new(flag));
        prop_assert_eq!(a.dedupe_key(), b.dedupe_key());
    }
}
