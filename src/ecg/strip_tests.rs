//! Tests of the strip builder and of strip → readings.

use super::*;
use crate::ecg::readings::readings;
use crate::ecg::synth::Synth;
use crate::model::ChunkLead;
use crate::model::NormalizeContext;
use crate::reading::{DeviceId, Kind};
use time::macros::datetime;

const T: OffsetDateTime = datetime!(2026-03-15 10:00:00 UTC);

fn chunk(s: &mut Synth, n: usize, fs: f64, t0: Option<DeviceTime>) -> SampleChunk {
    SampleChunk {
        fs_hz: fs,
        t0,
        leads: vec![ChunkLead {
            name: "lead_ii",
            mdc: 131_330,
            scale_uv: 0.5,
            #[allow(clippy::cast_possible_truncation)]
            samples: (0..n).map(|_| (s.next_uv() * 2.0).round() as i32).collect(),
        }],
        gap_before: false,
        saturated: false,
        flags: Vec::new(),
    }
}

/// Feeds `seconds` of 250 Hz synthetic ECG in 0.1 s chunks.
fn feed(b: &mut StripBuilder, s: &mut Synth, seconds: u32, gap_first: bool) -> Vec<CompletedStrip> {
    let mut out = Vec::new();
    for i in 0..seconds * 10 {
        let mut c = chunk(s, 25, 250.0, None);
        c.gap_before = gap_first && i == 0;
        out.extend(b.push(&c, T + time::Duration::milliseconds(i64::from(i) * 100)));
    }
    out
}

fn opts(seconds: u32, min: f64, partial: PartialStrips) -> StripOptions {
    StripOptions {
        strip_seconds: seconds,
        min_fraction: min,
        partial,
    }
}

fn hr(strip: &CompletedStrip) -> f64 {
    60_000.0 / crate::ecg::readings::median(&strip.rr_ms).unwrap()
}

#[test]
fn a_25_second_stream_gives_two_full_strips_and_a_flagged_partial_one_on_finish() {
    let mut b = StripBuilder::new(StripOptions::default());
    let mut s = Synth::new(250.0, 75.0);
    let mut strips = feed(&mut b, &mut s, 25, false);
    assert_eq!(
        strips.len(),
        2,
        "the second strip is released 2 s after its end"
    );
    strips.extend(b.finish());
    let lens: Vec<usize> = strips.iter().map(CompletedStrip::len).collect();
    assert_eq!(lens, [2500, 2500, 1250]);
    assert!(strips[0].flags.is_empty() && strips[1].flags.is_empty());
    assert_eq!(strips[2].flags, [Flag::new("ecg:partial")]);
    for st in &strips[..2] {
        assert!((hr(st) - 75.0).abs() <= 2.0, "{}", hr(st));
        assert!(st.r_peaks.len() >= 11, "{:?}", st.r_peaks);
    }
}

#[test]
fn a_gap_ends_the_strip_instead_of_stitching_across_it() {
    let mut b = StripBuilder::new(opts(10, 0.5, PartialStrips::Send));
    let mut s = Synth::new(250.0, 60.0);
    let mut strips = feed(&mut b, &mut s, 7, false);
    strips.extend(feed(&mut b, &mut s, 7, true));
    strips.extend(b.finish());
    let lens: Vec<usize> = strips.iter().map(CompletedStrip::len).collect();
    assert_eq!(lens, [1750, 1750]);
    assert!(strips.iter().all(|s| s.flags.is_empty()));
    assert_eq!(b.stats().gaps, 1);
}

#[test]
fn short_strips_are_dropped_when_partial_strips_is_drop() {
    let mut b = StripBuilder::new(opts(10, 0.8, PartialStrips::Drop));
    let mut s = Synth::new(250.0, 60.0);
    let mut strips = feed(&mut b, &mut s, 3, false);
    strips.extend(b.finish());
    assert!(strips.is_empty());
    assert_eq!(b.stats().dropped, 1);
}

#[test]
fn a_saturated_chunk_flags_its_strip() {
    let mut b = StripBuilder::new(opts(1, 0.8, PartialStrips::Send));
    let mut s = Synth::new(250.0, 60.0);
    let mut c = chunk(&mut s, 100, 250.0, None);
    c.saturated = true;
    let _ = b.push(&c, T);
    let strips = b.finish();
    assert_eq!(
        strips[0].flags,
        [Flag::new("ecg:saturated"), Flag::new("ecg:partial")]
    );
}

fn ctx() -> NormalizeContext {
    NormalizeContext {
        device: DeviceId::new("exam3-ecg"),
        driver: "polar-ecg".into(),
        room: Some("exam-3".into()),
        clock_skew_tolerance: std::time::Duration::from_secs(300),
        zone: crate::model::zone::LocalZone::utc(),
    }
}

fn polar_strip(device_t0: OffsetDateTime) -> Vec<crate::reading::Reading> {
    let mut b = StripBuilder::new(StripOptions::default());
    let mut s = Synth::new(130.0, 64.0);
    let mut strips = Vec::new();
    for i in 0..20 {
        let t0 = device_t0 + time::Duration::seconds_f64(f64::from(i) * 73.0 / 130.0);
        let c = chunk(&mut s, 73, 130.0, Some(DeviceTime::Absolute(t0)));
        let at = T + time::Duration::seconds_f64(f64::from(i + 1) * 73.0 / 130.0);
        strips.extend(b.push(&c, at));
    }
    strips.extend(b.finish());
    readings(strips.remove(0), &ctx(), T + time::Duration::seconds(11))
}

#[test]
fn a_strip_becomes_an_ecg_reading_with_its_waveform_and_a_heart_rate_reading() {
    let rs = polar_strip(T);
    assert_eq!(rs.len(), 2);
    let (ecg, hr) = (&rs[0], &rs[1]);
    assert_eq!(ecg.kind, Kind::Ecg);
    assert_eq!(ecg.observed_at, T);
    let w = ecg.waveform.as_ref().unwrap();
    assert_eq!(w.leads[0].samples.len(), 1300);
    assert_eq!(w.t0, T);
    assert_eq!(ecg.values[0].name, "rr_interval");
    assert_eq!(hr.kind, Kind::HeartRate);
    assert_eq!(hr.values[0].mdc, Some(147_842));
    let bpm = hr.values[0].value.unwrap().to_f64();
    assert!((bpm - 64.0).abs() <= 2.0, "{bpm}");
    assert!(hr.has_flag("source:ecg"));
    assert_eq!(hr.observed_at, T);
    assert!(ecg.flags.is_empty(), "{:?}", ecg.flags);
}

#[test]
fn an_h10_clock_back_at_2019_is_untrusted_and_the_receipt_time_is_used() {
    let rs = polar_strip(datetime!(2019-01-01 00:00:05 UTC));
    for r in &rs {
        assert!(r.has_flag("clock_untrusted"), "{:?}", r.flags);
        assert!(
            (r.observed_at - T).abs() < time::Duration::seconds(1),
            "{}",
            r.observed_at
        );
        assert_eq!(r.device_time, Some(datetime!(2019-01-01 00:00:05 UTC)));
    }
}
