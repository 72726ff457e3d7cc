//! The Pan–Tompkins filter stages at 200 Hz (PROTOCOLS §3.4), as exact FIR forms with fixed
//! ring buffers (no recursion, so no float drift however long a stream runs), and the linear
//! resampler that brings any input rate to 200 Hz.

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

/// Linear-interpolation resampler from `fs_in` to 200 Hz (identity at 200 Hz). Output `k` sits
/// at input position `k · fs_in / 200`. No anti-alias filter: ECG content lies below 100 Hz.
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
