//! Tests of the spot-check reduction, with explicit instants.

use super::*;
use crate::model::{DeviceTime, DeviceValue};
use crate::reading::{AbsentReason, Flag};

fn msg(kind: Kind, name: &str, v: i64) -> DecodeEvent {
    let unit = if kind == Kind::Spo2 { "%" } else { "/min" };
    let value = DeviceValue::new(name, Measured::Value(Decimal::from_int(v)), unit);
    DecodeEvent::Message(DeviceMessage::new(kind, vec![value]))
}

fn spo2(v: i64) -> DecodeEvent {
    msg(Kind::Spo2, "spo2", v)
}

fn hr(v: i64) -> DecodeEvent {
    msg(Kind::HeartRate, "heart_rate", v)
}

fn value(m: &DeviceMessage) -> Measured {
    m.values[0].value.clone()
}

/// Feeds spo2 and hr once a second from `from` to `to` seconds (inclusive), collecting output.
fn stream(
    s: &mut SpotCheck,
    t0: Instant,
    secs: std::ops::RangeInclusive<u64>,
    spo2_at: impl Fn(u64) -> i64,
) -> Vec<(u64, DeviceMessage)> {
    let mut out = Vec::new();
    for sec in secs {
        let at = t0 + Duration::from_secs(sec);
        for ev in [
            spo2(spo2_at(sec)),
            hr(70 + i64::try_from(sec % 3).unwrap_or(0)),
        ] {
            out.extend(s.feed(&ev, at).into_iter().map(|m| (sec, m)));
        }
    }
    out
}

#[test]
fn one_message_per_kind_is_emitted_once_settle_has_elapsed() {
    let t0 = Instant::now();
    let mut s = SpotCheck::new(Duration::from_secs(10));
    let out = stream(&mut s, t0, 0..=30, |sec| {
        90 + i64::try_from(sec).unwrap_or(0) % 7
    });
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().all(|(sec, _)| *sec == 10));
    assert_eq!(out[0].1.kind, Kind::Spo2);
    assert_eq!(out[1].1.kind, Kind::HeartRate);
    assert_eq!(s.reported(), 1);
}

#[test]
fn the_report_is_the_median_of_the_last_five_seconds() {
    let t0 = Instant::now();
    let mut s = SpotCheck::new(Duration::from_secs(10));
    // Seconds 5..=10 are in the window: 91 99 93 97 95 94 → sorted 91 93 94 95 97 99,
    // lower median 94. The early 50s must not count.
    let values = [50, 50, 50, 50, 50, 91, 99, 93, 97, 95, 94];
    let out = stream(&mut s, t0, 0..=10, |sec| {
        values[usize::try_from(sec).unwrap_or(0)]
    });
    assert_eq!(value(&out[0].1), Measured::Value(Decimal::from_int(94)));
    // hr: 70 + sec % 3 over seconds 5..=10 → 72 70 71 72 70 71 → lower median 71.
    assert_eq!(value(&out[1].1), Measured::Value(Decimal::from_int(71)));
}

#[test]
fn the_median_keeps_the_device_scale() {
    let t0 = Instant::now();
    let mut s = SpotCheck::new(Duration::ZERO);
    let v = DeviceValue::new("temperature", Measured::Value(Decimal::new(3760, 2)), "Cel");
    let ev = DecodeEvent::Message(DeviceMessage::new(Kind::BodyTemperature, vec![v]));
    let out = s.feed(&ev, t0);
    assert_eq!(
        value(&out[0]).clone(),
        Measured::Value(Decimal::new(3760, 2))
    );
    assert_eq!(
        match value(&out[0]) {
            Measured::Value(d) => d.to_string(),
            Measured::Absent(_) => String::new(),
        },
        "37.60"
    );
}

#[test]
fn a_finger_out_before_settle_emits_nothing_and_counts_too_short() {
    let t0 = Instant::now();
    let mut s = SpotCheck::new(Duration::from_secs(10));
    assert!(stream(&mut s, t0, 0..=5, |_| 97).is_empty());
    let end = DecodeEvent::Idle { episode_end: true };
    assert!(s.feed(&end, t0 + Duration::from_secs(6)).is_empty());
    assert_eq!((s.too_short(), s.reported()), (1, 0));
    assert!(!s.in_episode());
}

#[test]
fn silence_ends_the_episode_on_tick_and_a_new_one_reports_again() {
    let t0 = Instant::now();
    let mut s = SpotCheck::new(Duration::from_secs(2));
    assert_eq!(stream(&mut s, t0, 0..=4, |_| 97).len(), 2);
    assert!(s.tick(t0 + Duration::from_secs(6)).is_empty());
    assert!(s.in_episode(), "2 s of silence is not yet the end");
    assert!(s.tick(t0 + Duration::from_secs(7)).is_empty());
    assert!(!s.in_episode());
    let out = stream(&mut s, t0, 20..=22, |_| 96);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(sec, _)| *sec == 22));
    assert_eq!((s.reported(), s.too_short()), (2, 0));
}

#[test]
fn a_gap_between_messages_starts_a_new_episode() {
    let t0 = Instant::now();
    let mut s = SpotCheck::new(Duration::from_secs(5));
    assert!(stream(&mut s, t0, 0..=3, |_| 97).is_empty());
    // 10 s later, without a tick in between: the old episode ended too short.
    let out = stream(&mut s, t0, 13..=18, |_| 95);
    assert_eq!(s.too_short(), 1);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(sec, _)| *sec == 18));
}

#[test]
fn all_absent_messages_neither_start_nor_extend_an_episode() {
    let t0 = Instant::now();
    let mut s = SpotCheck::new(Duration::from_secs(1));
    let absent = DeviceValue::new("spo2", Measured::Absent(AbsentReason::Unknown), "%");
    let ev = DecodeEvent::Message(DeviceMessage::new(Kind::Spo2, vec![absent]));
    for sec in 0..5 {
        assert!(s.feed(&ev, t0 + Duration::from_secs(sec)).is_empty());
    }
    assert!(!s.in_episode());
}

#[test]
fn flags_of_the_window_are_united_and_the_newest_time_is_kept() {
    let t0 = Instant::now();
    let mut s = SpotCheck::new(Duration::from_secs(2));
    let mut out = Vec::new();
    for sec in 0..=2u8 {
        let v = DeviceValue::new("spo2", Measured::Value(Decimal::from_int(97)), "%");
        let mut m = DeviceMessage::new(Kind::Spo2, vec![v]);
        m.device_time = Some(DeviceTime::TimeOfDay(
            time::Time::from_hms(9, 0, sec).unwrap(),
        ));
        if sec == 1 {
            m.flags.push(Flag::device("event_mark"));
        }
        let at = t0 + Duration::from_secs(u64::from(sec));
        out.extend(s.feed(&DecodeEvent::Message(m), at));
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, vec![Flag::device("event_mark")]);
    assert_eq!(
        out[0].device_time,
        Some(DeviceTime::TimeOfDay(
            time::Time::from_hms(9, 0, 2).unwrap()
        ))
    );
}

#[test]
fn report_every_passes_each_message_through() {
    let t0 = Instant::now();
    let mut r = Reporter::new(Report::Every, Duration::from_secs(10));
    assert_eq!(r.feed(&spo2(97), t0).len(), 1);
    assert_eq!(r.feed(&spo2(98), t0).len(), 1);
    assert!(r
        .feed(&DecodeEvent::Idle { episode_end: true }, t0)
        .is_empty());
    let mut spot = Reporter::new(Report::Spot, Duration::from_secs(10));
    assert!(spot.feed(&spo2(97), t0).is_empty());
}
