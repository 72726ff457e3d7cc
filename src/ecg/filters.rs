//! The Pan–Tompkins filter stages at 200 Hz (docs/ecg.md#pantompkins-as-implemented), as exact FIR forms with fixed
//! ring buffers (no recursion, so no float drift however long a stream runs), the linear
//! resampler that brings any input rate to 200 Hz, and the [`AntiAlias`] low-pass that runs
//! before the resampler when the input rate is above 200 Hz.

/// A fixed-size history of the last `N` values (newest at `back(0)`).
#[derive(Debug, Clone)]
pub struct Ring<const N: usize> {
    buf: [f64; N],
    head: usize,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self {
            buf: [0.0; N],
            head: 0,
        }
    }
}

impl<const N: usize> Ring<N> {
    pub fn push(&mut self, v: f64) {
        self.head = (self.head + 1) % N;
        self.buf[self.head] = v;
    }

    /// The value `k` steps back (0 = newest); 0.0 beyond the history.
    pub fn back(&self, k: usize) -> f64 {
        if k >= N {
            return 0.0;
        }
        self.buf[(self.head + N - k) % N]
    }

    pub fn sum(&self) -> f64 {
        self.buf.iter().sum()
    }
}

/// Stage 1: `(1 − z⁻⁶)² / (1 − z⁻¹)²` = FIR `[1 2 3 4 5 6 5 4 3 2 1]`, gain 36, delay 5.
#[derive(Debug, Clone, Default)]
pub struct LowPass {
    x: Ring<11>,
}

const LP_TAPS: [f64; 11] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0];

impl LowPass {
    pub fn step(&mut self, x: f64) -> f64 {
        self.x.push(x);
        LP_TAPS
            .iter()
            .enumerate()
            .map(|(k, t)| t * self.x.back(k))
            .sum()
    }
}

/// Stage 2: `p[n] = x[n−16] − Σ x[n−31..n] / 32` (all-pass delayed by 16 minus a 32-point
/// mean): DC gain 0, delay 16.
#[derive(Debug, Clone, Default)]
pub struct HighPass {
    x: Ring<32>,
}

impl HighPass {
    pub fn step(&mut self, x: f64) -> f64 {
        self.x.push(x);
        self.x.back(16) - self.x.sum() / 32.0
    }
}

/// Stage 3: `d[n] = (2x[n] + x[n−1] − x[n−3] − 2x[n−4]) / 8`, delay 2.
#[derive(Debug, Clone, Default)]
pub struct Derivative {
    x: Ring<5>,
}

impl Derivative {
    pub fn step(&mut self, x: f64) -> f64 {
        self.x.push(x);
        (2.0 * self.x.back(0) + self.x.back(1) - self.x.back(3) - 2.0 * self.x.back(4)) / 8.0
    }
}

/// Stage 5: moving-window integration over N = 30 samples (150 ms).
#[derive(Debug, Clone, Default)]
pub struct Integrator {
    x: Ring<30>,
}

impl Integrator {
    pub fn step(&mut self, x: f64) -> f64 {
        self.x.push(x);
        self.x.sum() / 30.0
    }
}

/// Cutoff (−6 dB) of the anti-alias low-pass: 80 Hz, below the 100 Hz Nyquist rate of 200 Hz
/// and well above the QRS band (5–15 Hz) the detector looks at.
pub const AA_CUTOFF_HZ: f64 = 80.0;
/// Width of the anti-alias transition band (80 → 100 Hz).
pub const AA_TRANSITION_HZ: f64 = 20.0;
/// Most anti-alias taps: bounds the work per sample and the memory of one stream (8 KiB each
/// for taps and history). Enough for the full 20 Hz transition up to ~6.2 kHz input; above
/// that the transition band widens in proportion.
pub const AA_MAX_TAPS: usize = 1023;

/// The anti-alias low-pass applied before downsampling to 200 Hz: a linear-phase FIR,
/// windowed sinc with a Hamming window (stopband ≥ 53 dB from 100 Hz on), cutoff
/// [`AA_CUTOFF_HZ`], unity gain at DC, `N = ⌈3.3 · fs_in / 20 Hz⌉` taps made odd (83 at
/// 500 Hz, 43 at 250 Hz), at most [`AA_MAX_TAPS`]. Its delay is `(N − 1) / 2` input samples
/// ([`AntiAlias::delay`]), which the detector subtracts from the R-peak positions. Without it a
/// tone at 190 Hz in a 500 Hz stream (mains harmonics, EMG, a pacemaker's telemetry) would fold
/// onto 10 Hz, inside the QRS band.
#[derive(Debug, Clone)]
pub struct AntiAlias {
    taps: Vec<f64>,
    history: Vec<f64>,
    head: usize,
}

impl AntiAlias {
    /// The filter for input at `fs_in` Hz; `None` when `fs_in` is not above 200 Hz (nothing
    /// to remove: resampling then keeps or raises the rate).
    pub fn new(fs_in: f64) -> Option<Self> {
        if !fs_in.is_finite() || fs_in <= super::detector::FS {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let wanted = (3.3 * fs_in / AA_TRANSITION_HZ).ceil() as usize;
        let n = (wanted.min(AA_MAX_TAPS) | 1).max(3);
        let fc = AA_CUTOFF_HZ / fs_in; // cycles per sample
        #[allow(clippy::cast_precision_loss)]
        let mid = (n - 1) as f64 / 2.0;
        let mut taps: Vec<f64> = (0..n)
            .map(|i| {
                #[allow(clippy::cast_precision_loss)]
                let k = i as f64 - mid;
                let sinc = if k == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * k).sin() / (std::f64::consts::PI * k)
                };
                #[allow(clippy::cast_precision_loss)]
                let w =
                    0.54 - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
                sinc * w
            })
            .collect();
        let sum: f64 = taps.iter().sum();
        for t in &mut taps {
            *t /= sum;
        }
        Some(Self {
            history: vec![0.0; n],
            taps,
            head: 0,
        })
    }

    /// Number of taps.
    pub fn len(&self) -> usize {
        self.taps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    /// Group delay in input samples.
    pub fn delay(&self) -> usize {
        (self.taps.len() - 1) / 2
    }

    /// Filters one sample.
    pub fn step(&mut self, x: f64) -> f64 {
        let n = self.history.len();
        self.head = (self.head + 1) % n;
        self.history[self.head] = x;
        // taps[k] · x[n−k]; the taps are symmetric, so the order does not matter.
        let (newer, older) = self.history.split_at(self.head + 1);
        newer
            .iter()
            .rev()
            .chain(older.iter().rev())
            .zip(&self.taps)
            .map(|(v, t)| t * v)
            .sum()
    }
}

/// Linear-interpolation resampler from `fs_in` to 200 Hz (identity at 200 Hz). Output `k` sits
/// at input position `k · fs_in / 200`. It does not low-pass: above 200 Hz the detector runs
/// [`AntiAlias`] first.
#[derive(Debug, Clone)]
pub struct Resampler {
    step: f64,
    prev: f64,
    inputs: u64,
    outputs: u64,
}

impl Resampler {
    pub fn new(fs_in: f64) -> Self {
        Self {
            step: fs_in / super::detector::FS,
            prev: 0.0,
            inputs: 0,
            outputs: 0,
        }
    }

    /// Input samples per output sample.
    pub fn step_size(&self) -> f64 {
        self.step
    }

    /// Feeds one input sample; calls `emit` for each 200 Hz sample it completes.
    pub fn push(&mut self, x: f64, mut emit: impl FnMut(f64)) {
        #[allow(clippy::cast_precision_loss)]
        let i = self.inputs as f64;
        if self.inputs == 0 {
            self.prev = x;
        }
        loop {
            #[allow(clippy::cast_precision_loss)]
            let pos = self.outputs as f64 * self.step;
            if pos > i {
                break;
            }
            let frac = pos - (i - 1.0);
            emit(self.prev + (x - self.prev) * frac.clamp(0.0, 1.0));
            self.outputs += 1;
        }
        self.prev = x;
        self.inputs += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impulse<F: FnMut(f64) -> f64>(mut f: F, n: usize) -> Vec<f64> {
        (0..n).map(|i| f(if i == 0 { 1.0 } else { 0.0 })).collect()
    }

    #[test]
    fn the_low_pass_impulse_response_is_the_triangle_1_to_6_to_1() {
        let mut lp = LowPass::default();
        let r = impulse(|x| lp.step(x), 14);
        assert_eq!(
            r,
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn the_high_pass_impulse_response_times_32_is_minus_ones_around_31() {
        let mut hp = HighPass::default();
        let r: Vec<f64> = impulse(|x| hp.step(x), 34)
            .iter()
            .map(|v| v * 32.0)
            .collect();
        let mut want = vec![-1.0; 32];
        want[16] = 31.0;
        want.extend([0.0, 0.0]);
        assert_eq!(r, want);
    }

    #[test]
    fn the_high_pass_passes_no_dc() {
        let mut hp = HighPass::default();
        let last = (0..100).map(|_| hp.step(500.0)).last().unwrap_or(1.0);
        assert!(last.abs() < 1e-9, "{last}");
    }

    /// Amplitude at 200 Hz of a `freq` tone given at `fs_in`, after the anti-alias filter
    /// (when `filtered`) and the resampler, past the filter's start.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    fn tone_through(fs_in: f64, freq: f64, filtered: bool) -> f64 {
        let mut aa = AntiAlias::new(fs_in).filter(|_| filtered);
        let mut r = Resampler::new(fs_in);
        let mut out = Vec::new();
        for i in 0..(fs_in as usize * 4) {
            let x = (2.0 * std::f64::consts::PI * freq * i as f64 / fs_in).sin();
            let x = aa.as_mut().map_or(x, |a| a.step(x));
            r.push(x, |v| out.push(v));
        }
        out[200..].iter().fold(0.0f64, |m, v| m.max(v.abs()))
    }

    #[test]
    fn a_tone_above_the_new_nyquist_rate_does_not_fold_into_the_qrs_band() {
        // 190 Hz at 500 Hz folds onto 10 Hz at 200 Hz: almost whole without the filter...
        assert!(tone_through(500.0, 190.0, false) > 0.5);
        // ...and 40 dB down or more with it; likewise 210 Hz (folds onto 10 Hz too).
        for f in [190.0, 210.0, 150.0] {
            let a = tone_through(500.0, f, true);
            assert!(a < 0.01, "{f} Hz leaks at {a}");
        }
        assert!(tone_through(1000.0, 395.0, true) < 0.01);
        // The QRS band passes unchanged.
        let (a, raw) = (
            tone_through(500.0, 10.0, true),
            tone_through(500.0, 10.0, false),
        );
        assert!((a / raw - 1.0).abs() < 0.01, "10 Hz passes at {a} of {raw}");
    }

    #[test]
    fn the_anti_alias_filter_is_used_only_when_the_rate_goes_down() {
        assert!(AntiAlias::new(130.0).is_none());
        assert!(AntiAlias::new(200.0).is_none());
        let aa = AntiAlias::new(500.0).unwrap();
        assert_eq!((aa.len(), aa.delay()), (83, 41));
        assert_eq!(AntiAlias::new(1e6).unwrap().len(), AA_MAX_TAPS);
        // Unity gain at DC.
        let mut aa = AntiAlias::new(250.0).unwrap();
        let last = (0..200).map(|_| aa.step(700.0)).last().unwrap_or(0.0);
        assert!((last - 700.0).abs() < 1e-6, "{last}");
    }

    #[test]
    fn resampling_500_hz_gives_two_outputs_per_five_inputs() {
        let mut r = Resampler::new(500.0);
        let mut out = Vec::new();
        for i in 0..10 {
            r.push(f64::from(i), |v| out.push(v));
        }
        assert_eq!(out, [0.0, 2.5, 5.0, 7.5]);
        let mut r = Resampler::new(200.0);
        let mut same = Vec::new();
        for i in 0..4 {
            r.push(f64::from(i), |v| same.push(v));
        }
        assert_eq!(same, [0.0, 1.0, 2.0, 3.0]);
    }
}
