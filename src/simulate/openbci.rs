//! A simulated OpenBCI Cyton streaming a synthetic ECG as 33-byte packets: leads I, II and III
//! on channels 1–3 (amplitudes 0.6 : 1.0 : 0.4), channels 4–8 near zero, footer `C0`.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Simulator, Step};
use crate::decode::openbci::{scale_uv, HEADER, PACKET};
use crate::ecg::synth::Synth;

/// Packets per step (100 ms at 250 Hz).
const PER_STEP: usize = 25;

pub struct OpenBciSim {
    fs_hz: f64,
    synth: Synth,
    scale: f64,
    sample: u8,
    seconds: f64,
}

impl OpenBciSim {
    /// 250 Hz, gain 24, a heart rate between 58 and 92 /min chosen by `seed`.
    pub fn new(seed: u64) -> Self {
        let hr = f64::from(fastrand::Rng::with_seed(seed).u32(58..=92));
        Self::with_rate(250.0, hr, 24)
    }

    pub fn with_rate(fs_hz: f64, hr_per_min: f64, gain: u32) -> Self {
        Self {
            fs_hz,
            synth: Synth::new(fs_hz, hr_per_min),
            scale: scale_uv(gain),
            sample: 0,
            seconds: 12.0,
        }
    }

    /// The next packet; returns it with the lead II value in µV.
    pub fn packet(&mut self) -> ([u8; PACKET], f64) {
        let uv = self.synth.next_uv();
        let mut p = [0u8; PACKET];
        p[0] = HEADER;
        p[1] = self.sample;
        self.sample = self.sample.wrapping_add(1);
        for (ch, gain) in [0.6, 1.0, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0].iter().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            let counts = ((uv * gain) / self.scale).round() as i32;
            let c = counts.clamp(-0x80_0000, 0x7F_FFFF).to_be_bytes();
            p[2 + 3 * ch..5 + 3 * ch].copy_from_slice(&c[1..4]);
        }
        p[32] = 0xC0;
        (p, uv)
    }

    /// `n` packets back to back.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n * PACKET);
        for _ in 0..n {
            out.extend_from_slice(&self.packet().0);
        }
        out
    }
}

impl Simulator for OpenBciSim {
    fn measurement(&mut self, _now: OffsetDateTime) -> Vec<Step> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let steps = (self.seconds * self.fs_hz / PER_STEP as f64).ceil() as usize;
        #[allow(clippy::cast_precision_loss)]
        let every = Duration::from_secs_f64(PER_STEP as f64 / self.fs_hz);
        (0..steps)
            .map(|_| Step {
                after: every,
                bytes: self.bytes(PER_STEP),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::openbci::{parse_channels, OpenBci};
    use crate::decode::{DecodeEvent, Decoder};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn simulated_packets_decode_back_to_the_simulated_microvolts(
            hr in 40u32..180, split in 1usize..200,
        ) {
            let mut sim = OpenBciSim::with_rate(250.0, f64::from(hr), 24);
            let mut want = Vec::new();
            let mut bytes = Vec::new();
            for _ in 0..300 {
                let (p, uv) = sim.packet();
                bytes.extend_from_slice(&p);
                want.push(uv);
            }
            let chans = parse_channels("2:II").unwrap();
            let mut dec = OpenBci::new(250.0, 24, chans);
            let mut out = Vec::new();
            for c in bytes.chunks(split) {
                dec.feed(c, &mut out);
            }
            dec.finish(&mut out);
            let mut got = Vec::new();
            for ev in &out {
                let DecodeEvent::Samples(c) = ev else { panic!("{ev:?}") };
                prop_assert!(!c.gap_before);
                got.extend(c.leads[0].samples.iter().map(|s| f64::from(*s) * c.leads[0].scale_uv));
            }
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() < 0.05, "{} vs {}", g, w);
            }
        }
    }
}
