//! A simulated Polar H10 streaming ECG as PMD data frames (the bytes of one BLE notification
//! per MQTT payload), with a synthetic PQRST signal at a chosen rate and heart rate.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Simulator, Step};
use crate::decode::polar_ecg::EPOCH_2000_NS;
use crate::ecg::synth::Synth;

/// Samples per frame (what an H10 sends at 130 Hz with a 232-byte MTU).
pub const FRAME_SAMPLES: usize = 73;

pub struct PolarEcgSim {
    fs_hz: f64,
    synth: Synth,
    seconds: f64,
    /// Sensor time (ns since 2000-01-01) of the next sample; `None` until the first frame.
    next_ns: Option<i128>,
}

impl PolarEcgSim {
    /// 130 Hz, a heart rate between 58 and 92 /min chosen by `seed`.
    pub fn new(seed: u64) -> Self {
        let hr = f64::from(fastrand::Rng::with_seed(seed).u32(58..=92));
        Self::with_rate(130.0, hr)
    }

    pub fn with_rate(fs_hz: f64, hr_per_min: f64) -> Self {
        Self {
            fs_hz,
            synth: Synth::new(fs_hz, hr_per_min),
            seconds: 12.0,
            next_ns: None,
        }
    }

    /// One PMD ECG frame of `n` samples whose first sample is at sensor time `first_ns`.
    pub fn frame(&mut self, first_ns: i128, n: usize) -> Vec<u8> {
        let period = 1e9 / self.fs_hz;
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let last = first_ns + ((n.saturating_sub(1)) as f64 * period).round() as i128;
        let mut b = Vec::with_capacity(10 + 3 * n);
        b.push(0x00);
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        b.extend_from_slice(&(last.max(0) as u64).to_le_bytes());
        b.push(0x00);
        for _ in 0..n {
            #[allow(clippy::cast_possible_truncation)]
            let v = self.synth.next_uv().round() as i32;
            b.extend_from_slice(&v.to_le_bytes()[..3]);
        }
        b
    }

    /// Frames of the next measurement with the sensor clock at `now`.
    pub fn frames(&mut self, now: OffsetDateTime) -> Vec<Vec<u8>> {
        let period = 1e9 / self.fs_hz;
        let mut first = self
            .next_ns
            .unwrap_or(now.unix_timestamp_nanos() - EPOCH_2000_NS);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let frames = (self.seconds * self.fs_hz / FRAME_SAMPLES as f64).ceil() as usize;
        let mut out = Vec::with_capacity(frames);
        for _ in 0..frames {
            out.push(self.frame(first, FRAME_SAMPLES));
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let step = (FRAME_SAMPLES as f64 * period).round() as i128;
            first += step;
        }
        self.next_ns = Some(first);
        out
    }
}

impl Simulator for PolarEcgSim {
    fn measurement(&mut self, now: OffsetDateTime) -> Vec<Step> {
        #[allow(clippy::cast_precision_loss)]
        let every = Duration::from_secs_f64(FRAME_SAMPLES as f64 / self.fs_hz);
        self.frames(now)
            .into_iter()
            .map(|bytes| Step {
                after: every,
                bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::polar_ecg::{Payload, PolarEcg};
    use crate::decode::{DecodeEvent, Decoder};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn simulated_frames_decode_back_to_contiguous_ecg_samples(seed: u64, hr in 40u32..180) {
            let mut sim = PolarEcgSim::with_rate(130.0, f64::from(hr));
            let mut check = Synth::new(130.0, f64::from(hr));
            let _ = seed;
            let mut dec = PolarEcg::new(Payload::Binary, 130.0, ("ecg", 131_328));
            let mut out = Vec::new();
            for f in sim.frames(OffsetDateTime::now_utc()) {
                dec.feed(&f, &mut out);
            }
            prop_assert!(!out.is_empty());
            for (i, ev) in out.iter().enumerate() {
                let DecodeEvent::Samples(c) = ev else { panic!("{ev:?}") };
                prop_assert_eq!(c.gap_before, false, "frame {}", i);
                for s in &c.leads[0].samples {
                    #[allow(clippy::cast_possible_truncation)]
                    let want = check.next_uv().round() as i32;
                    prop_assert_eq!(*s, want);
                }
            }
        }
    }
}
