//! A synthetic ECG for simulators, tests and benchmarks: a PQRST beat shaped from Gaussian
//! waves (after McSharry et al. 2003), at any sample rate and heart rate. Deterministic.

/// One wave of the beat: amplitude (µV), centre and width (s, relative to the R peak).
const WAVES: [(f64, f64, f64); 5] = [
    (150.0, -0.20, 0.025),   // P
    (-120.0, -0.035, 0.010), // Q
    (1200.0, 0.0, 0.011),    // R
    (-250.0, 0.035, 0.010),  // S
    (300.0, 0.28, 0.045),    // T
];

/// The beat's value (µV) at `dt` seconds from its R peak.
pub fn beat_uv(dt: f64) -> f64 {
    WAVES
        .iter()
        .map(|(a, c, w)| {
            let z = (dt - c) / w;
            a * (-0.5 * z * z).exp()
        })
        .sum()
}

/// A stream of samples (µV) with R peaks every `60 / hr` s, the first at `first_r` s.
#[derive(Debug, Clone)]
pub struct Synth {
    fs_hz: f64,
    rr_s: f64,
    first_r: f64,
    n: u64,
    /// Scale of the output (1.0 = the beat as defined; leads differ in amplitude).
    pub gain: f64,
}

impl Synth {
    pub fn new(fs_hz: f64, hr_per_min: f64) -> Self {
        Self {
            fs_hz,
            rr_s: 60.0 / hr_per_min,
            first_r: 0.5,
            n: 0,
            gain: 1.0,
        }
    }

    /// Seconds since the start of the stream of the next sample.
    pub fn time(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let n = self.n as f64;
        n / self.fs_hz
    }

    /// The true R-peak times (s) up to `until`.
    pub fn r_times(&self, until: f64) -> Vec<f64> {
        let mut out = Vec::new();
        let mut t = self.first_r;
        while t <= until {
            out.push(t);
            t += self.rr_s;
        }
        out
    }

    /// The next sample in µV.
    pub fn next_uv(&mut self) -> f64 {
        let t = self.time();
        self.n += 1;
        // The nearest beats on either side contribute (T of the previous, P of the next).
        let k = ((t - self.first_r) / self.rr_s).floor();
        let mut v = 0.0;
        for b in [k - 1.0, k, k + 1.0] {
            if b >= 0.0 {
                v += beat_uv(t - (self.first_r + b * self.rr_s));
            }
        }
        v * self.gain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_beat_peaks_at_r_with_a_smaller_t_wave() {
        assert!((beat_uv(0.0) - 1200.0).abs() < 30.0);
        assert!(beat_uv(0.28) > 250.0 && beat_uv(0.28) < 350.0);
        assert!(beat_uv(0.035) < 0.0);
        assert!(beat_uv(-0.2) > 100.0);
    }

    #[test]
    fn r_peaks_repeat_at_the_heart_rate() {
        let s = Synth::new(250.0, 75.0);
        let r = s.r_times(5.0);
        assert!((r[1] - r[0] - 0.8).abs() < 1e-9);
    }
}
