//! Tests of the Pan–Tompkins detector: the docs/ecg.md#pantompkins-as-implemented recipe literally, then missed and
//! premature beats, mains noise, baseline wander and other input rates.

use super::*;
use crate::ecg::synth::Synth;

/// docs/ecg.md#pantompkins-as-implemented test recipe: 2300 samples at 200 Hz, beats at 100 + 200·b.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]
fn recipe(skip_beat: Option<usize>) -> Vec<f64> {
    let mut x = vec![0.0f64; 2300];
    for b in 0..10usize {
        if Some(b) == skip_beat {
            continue;
        }
        let c = 100 + 200 * b;
        for k in -6i32..=6 {
            let i = (c as i32 + k) as usize;
            x[i] += 1000.0 * (1.0 - f64::from(k.abs()) / 6.5);
        }
        for k in -20i32..=20 {
            let i = (c as i32 + 60 + k) as usize;
            let v = (std::f64::consts::PI * f64::from(k) / 40.0).cos();
            x[i] += 300.0 * v * v;
        }
    }
    x
}

fn detect(fs: f64, x: &[f64]) -> Vec<Beat> {
    let mut d = Detector::new(fs);
    let mut beats = Vec::new();
    for v in x {
        d.push(*v, &mut beats);
    }
    d.finish(&mut beats);
    beats
}

#[test]
fn the_recipe_signal_gives_r_peaks_at_exactly_100_300_to_1900_and_no_t_waves() {
    let beats = detect(200.0, &recipe(None));
    let r: Vec<u64> = beats.iter().map(|b| b.r_index_200).collect();
    let want: Vec<u64> = (0..10).map(|b| 100 + 200 * b).collect();
    assert_eq!(r, want);
    assert!(beats.iter().all(|b| !b.searchback));
    assert!(beats.iter().skip(1).all(|b| b.rr_ms == Some(1000.0)));
}

#[test]
fn a_deleted_beat_is_not_replaced_by_a_spurious_search_back_detection() {
    let beats = detect(200.0, &recipe(Some(5)));
    let r: Vec<u64> = beats.iter().map(|b| b.r_index_200).collect();
    let want: Vec<u64> = (0..10).filter(|b| *b != 5).map(|b| 100 + 200 * b).collect();
    assert_eq!(r, want);
}

/// `seconds` of the synthetic ECG at `fs`, with `extra` added per sample time (s).
fn synth(fs: f64, hr: f64, seconds: f64, extra: impl Fn(f64) -> f64) -> (Vec<f64>, Synth) {
    let mut s = Synth::new(fs, hr);
    let start = s.clone();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (fs * seconds) as usize;
    let x = (0..n)
        .map(|_| {
            let t = s.time();
            s.next_uv() + extra(t)
        })
        .collect();
    (x, start)
}

fn median_hr(beats: &[Beat]) -> f64 {
    let mut rr: Vec<f64> = beats.iter().filter_map(|b| b.rr_ms).collect();
    rr.sort_by(f64::total_cmp);
    60_000.0 / rr[rr.len() / 2]
}

#[track_caller]
fn assert_all_beats_found(fs: f64, hr: f64, beats: &[Beat], s: &Synth, seconds: f64) {
    let truth = s.r_times(seconds - 0.5);
    let found: Vec<f64> = beats
        .iter()
        .map(|b| {
            #[allow(clippy::cast_precision_loss)]
            let i = b.r_index as f64;
            i / fs
        })
        .collect();
    for t in &truth {
        assert!(
            found.iter().any(|f| (f - t).abs() < 0.03),
            "beat at {t:.3}s not found at {fs} Hz: {found:?}"
        );
    }
    assert!(
        found.len() <= truth.len() + 1,
        "extra detections: {found:?}"
    );
    let hr_found = median_hr(beats);
    assert!((hr_found - hr).abs() <= 2.0, "HR {hr_found} vs {hr}");
}

#[test]
fn synthetic_ecg_at_130_250_and_500_hz_gives_the_heart_rate_within_2_per_min() {
    for (fs, hr) in [(130.0, 72.0), (250.0, 60.0), (500.0, 95.0), (250.0, 140.0)] {
        let (x, s) = synth(fs, hr, 20.0, |_| 0.0);
        let beats = detect(fs, &x);
        assert_all_beats_found(fs, hr, &beats, &s, 20.0);
    }
}

#[test]
fn mains_noise_at_50_and_60_hz_does_not_disturb_detection() {
    for mains in [50.0, 60.0] {
        let (x, s) = synth(500.0, 75.0, 20.0, |t| {
            150.0 * (2.0 * std::f64::consts::PI * mains * t).sin()
        });
        let beats = detect(500.0, &x);
        assert_all_beats_found(500.0, 75.0, &beats, &s, 20.0);
    }
}

#[test]
fn baseline_wander_does_not_disturb_detection() {
    let (x, s) = synth(250.0, 66.0, 20.0, |t| {
        800.0 * (2.0 * std::f64::consts::PI * 0.3 * t).sin() + 2000.0
    });
    let beats = detect(250.0, &x);
    assert_all_beats_found(250.0, 66.0, &beats, &s, 20.0);
}

#[test]
fn a_premature_beat_260_ms_after_the_last_is_detected_not_taken_for_a_t_wave() {
    let fs = 250.0;
    let (mut x, s) = synth(fs, 60.0, 12.0, |_| 0.0);
    // An extra full-size QRS 260 ms after the R at 6.5 s.
    let at = 6.5 + 0.26;
    for (i, v) in x.iter_mut().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let t = i as f64 / fs;
        let dt = t - at;
        if dt.abs() < 0.06 {
            *v += crate::ecg::synth::beat_uv(dt)
                - 300.0 * (-0.5 * ((dt - 0.28) / 0.045).powi(2)).exp();
        }
    }
    let beats = detect(fs, &x);
    #[allow(clippy::cast_precision_loss)]
    let found: Vec<f64> = beats.iter().map(|b| b.r_index as f64 / fs).collect();
    assert!(
        found.iter().any(|f| (f - at).abs() < 0.03),
        "premature beat not found: {found:?}"
    );
    for t in s.r_times(11.5) {
        assert!(found.iter().any(|f| (f - t).abs() < 0.03), "{t}: {found:?}");
    }
}

#[test]
fn silence_and_a_flat_line_give_no_beats() {
    assert!(detect(250.0, &vec![0.0; 5000]).is_empty());
    assert!(detect(250.0, &vec![1234.0; 5000]).is_empty());
}

#[test]
fn a_strong_tone_above_100_hz_at_500_hz_does_not_alias_into_the_detection() {
    // 190 Hz would fold onto 10 Hz (the middle of the QRS band) without the anti-alias filter;
    // it is larger than the R wave itself.
    let (x, s) = synth(500.0, 72.0, 20.0, |t| {
        1500.0 * (2.0 * std::f64::consts::PI * 190.0 * t).sin()
    });
    let beats = detect(500.0, &x);
    assert_all_beats_found(500.0, 72.0, &beats, &s, 20.0);
}

#[test]
fn r_peaks_at_500_hz_are_placed_within_10_ms_despite_the_filter_delay() {
    let (x, s) = synth(500.0, 80.0, 12.0, |_| 0.0);
    let beats = detect(500.0, &x);
    let truth = s.r_times(11.5);
    for b in &beats {
        #[allow(clippy::cast_precision_loss)]
        let t = b.r_index as f64 / 500.0;
        let err = truth.iter().map(|r| (r - t).abs()).fold(f64::MAX, f64::min);
        assert!(
            err < 0.010,
            "beat at {t:.3}s is {err:.3}s from the nearest R"
        );
        #[allow(clippy::cast_precision_loss)]
        let t200 = b.r_index_200 as f64 / 200.0;
        assert!((t200 - t).abs() < 0.006, "{t200} vs {t}");
    }
    assert!(beats.len() + 1 >= truth.len());
}
