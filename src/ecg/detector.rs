//! Streaming Pan–Tompkins R-peak detection (docs/ecg.md#pantompkins-as-implemented), with bounded memory.
//!
//! Input: samples in µV at any rate, resampled to 200 Hz ([`FS`]); above 200 Hz they are
//! low-passed first ([`AntiAlias`], cutoff 80 Hz, its delay taken off the R-peak positions)
//! so nothing above the new 100 Hz Nyquist rate folds into the QRS band. The 200 Hz signal runs
//! through low-pass → high-pass (band-pass `p`) → derivative `d` → square → 150 ms moving
//! integration `m`. Local maxima of `m` are peaks (maxima closer than 150 ms merge into the
//! larger); a peak is classified 150 ms after it, once no larger one followed:
//! - within 200 ms of the last QRS: ignored (refractory);
//! - above both first thresholds (`THRESHOLD_I1` on `m`, `THRESHOLD_F1` on max |p| in
//!   `[n−45, n]`): a QRS, unless it lies within 360 ms of the last QRS with less than half its
//!   maximal slope (max |d|), which makes it a T wave, i.e. a noise peak;
//! - otherwise a noise peak; one above the second thresholds is kept for search-back.
//! - No QRS within 1.66 × `RR_AVERAGE2`: the kept search-back peak becomes a QRS (signal
//!   levels updated with weight 0.25). An irregular rhythm halves the first thresholds.
//!
//! Learning: the first 2 s set `SPKI = 0.25·max m`, `NPKI = 0.5·mean m` (likewise on |p|);
//! peaks found meanwhile are classified once learning ends. The R peak is the band-pass
//! maximum minus the 21-sample filter delay, mapped back to the input rate.
//!
//! Memory: fixed rings (at most 128 values per signal), the anti-alias filter's taps and
//! history (at most [`super::filters::AA_MAX_TAPS`] each), 8 RR intervals each, at most
//! [`MAX_QUEUED`] peaks held during learning. Nothing grows with the stream's length.

use std::collections::VecDeque;

use super::filters::{AntiAlias, Derivative, HighPass, Integrator, LowPass, Resampler, Ring};

/// The rate the recipe's constants are specified for.
pub const FS: f64 = 200.0;
/// Most peaks held while learning (2 s cannot hold more local maxima than this).
pub const MAX_QUEUED: usize = 64;

const LEARN: u64 = 400; // 2 s
const MERGE: u64 = 30; // 150 ms
const REFRACTORY: u64 = 40; // 200 ms
const T_WINDOW: u64 = 72; // 360 ms
const SEARCH: u64 = 45; // R search window in p
const BANDPASS_DELAY: u64 = 21;

/// A detected beat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    /// R-peak index in the input stream (input samples since the detector started).
    pub r_index: u64,
    /// R-peak index at 200 Hz.
    pub r_index_200: u64,
    /// RR interval to the previous beat in ms, when there was one.
    pub rr_ms: Option<f64>,
    /// Found by search-back.
    pub searchback: bool,
}

#[derive(Debug, Clone, Copy)]
struct Peak {
    n: u64,
    peak_i: f64,
    peak_f: f64,
    r: u64,
    slope: f64,
}

#[derive(Debug, Clone, Default)]
struct Levels {
    spki: f64,
    npki: f64,
    spkf: f64,
    npkf: f64,
}

impl Levels {
    fn thresholds(&self, irregular: bool) -> (f64, f64) {
        let half = if irregular { 0.5 } else { 1.0 };
        (
            half * (self.npki + 0.25 * (self.spki - self.npki)),
            half * (self.npkf + 0.25 * (self.spkf - self.npkf)),
        )
    }
}

/// The streaming detector of one ECG stream.
#[derive(Debug, Clone)]
pub struct Detector {
    fs_in: f64,
    anti_alias: Option<AntiAlias>,
    /// The anti-alias filter's delay in input samples.
    aa_delay: f64,
    resampler: Resampler,
    /// 200 Hz samples produced by the last input sample (reused buffer).
    pending: Vec<f64>,
    lp: LowPass,
    hp: HighPass,
    der: Derivative,
    mwi: Integrator,
    p_hist: Ring<128>,
    d_hist: Ring<128>,
    m1: f64,
    m2: f64,
    n: u64,
    learn: Option<(f64, f64, f64, f64)>,
    queued: Vec<Peak>,
    candidate: Option<Peak>,
    levels: Levels,
    last_qrs: Option<Peak>,
    searchback: Option<Peak>,
    recent: VecDeque<f64>,
    selected: VecDeque<f64>,
    rr_avg2: Option<f64>,
    misses: u32,
    irregular: bool,
    /// The first sample: subtracted so a DC offset does not start with a filter transient.
    offset: Option<f64>,
}

impl Detector {
    pub fn new(fs_in: f64) -> Self {
        let anti_alias = AntiAlias::new(fs_in);
        #[allow(clippy::cast_precision_loss)]
        let aa_delay = anti_alias.as_ref().map_or(0.0, |a| a.delay() as f64);
        Self {
            fs_in,
            anti_alias,
            aa_delay,
            resampler: Resampler::new(fs_in),
            pending: Vec::new(),
            lp: LowPass::default(),
            hp: HighPass::default(),
            der: Derivative::default(),
            mwi: Integrator::default(),
            p_hist: Ring::default(),
            d_hist: Ring::default(),
            m1: 0.0,
            m2: 0.0,
            n: 0,
            learn: Some((0.0, 0.0, 0.0, 0.0)),
            queued: Vec::new(),
            candidate: None,
            levels: Levels::default(),
            last_qrs: None,
            searchback: None,
            recent: VecDeque::with_capacity(8),
            selected: VecDeque::with_capacity(8),
            rr_avg2: None,
            misses: 0,
            irregular: false,
            offset: None,
        }
    }

    /// Feeds one input sample (µV); appends the beats it completes.
    pub fn push(&mut self, x_uv: f64, beats: &mut Vec<Beat>) {
        let x_uv = x_uv - *self.offset.get_or_insert(x_uv);
        let x_uv = match &mut self.anti_alias {
            Some(aa) => aa.step(x_uv),
            None => x_uv,
        };
        let mut pending = std::mem::take(&mut self.pending);
        self.resampler.push(x_uv, |v| pending.push(v));
        for v in &pending {
            self.step(*v, beats);
        }
        pending.clear();
        self.pending = pending;
    }

    /// The stream ended: classifies the peak still waiting for its 150 ms look-ahead.
    pub fn finish(&mut self, beats: &mut Vec<Beat>) {
        if let Some(c) = self.candidate.take() {
            self.peak(c, beats);
        }
    }

    fn step(&mut self, x: f64, beats: &mut Vec<Beat>) {
        let p = self.hp.step(self.lp.step(x));
        let d = self.der.step(p);
        let m = self.mwi.step(d * d);
        self.p_hist.push(p);
        self.d_hist.push(d.abs());
        let n = self.n;
        if let Some((max_m, sum_m, max_p, sum_p)) = &mut self.learn {
            *max_m = max_m.max(m);
            *sum_m += m;
            *max_p = max_p.max(p.abs());
            *sum_p += p.abs();
        }
        if n + 1 == LEARN {
            self.end_learning(beats);
        }
        if self.candidate.is_some_and(|c| n - c.n > MERGE) {
            if let Some(c) = self.candidate.take() {
                self.peak(c, beats);
            }
        }
        // A local maximum of m at n−1.
        if n >= 2 && self.m1 > self.m2 && self.m1 >= m {
            let at = n - 1;
            let fresh = self.make_peak(at, self.m1);
            match self.candidate {
                Some(c) if at - c.n <= MERGE => {
                    if fresh.peak_i > c.peak_i {
                        self.candidate = Some(fresh);
                    }
                }
                _ => self.candidate = Some(fresh),
            }
        }
        self.m2 = self.m1;
        self.m1 = m;
        self.n += 1;
        self.check_searchback(beats);
    }

    /// The peak record of m's maximum at `at`: PEAKF and the R index from p in [at−45, at].
    fn make_peak(&self, at: u64, peak_i: f64) -> Peak {
        let back0 = self.n - at; // p_hist.back(0) is index self.n
        let (mut best_k, mut best) = (at, f64::MIN);
        let mut slope = 0.0f64;
        for off in 0..=SEARCH {
            let Some(idx) = at.checked_sub(off) else {
                break;
            };
            #[allow(clippy::cast_possible_truncation)]
            let k = (back0 + off) as usize;
            let v = self.p_hist.back(k).abs();
            if v > best {
                best = v;
                best_k = idx;
            }
            slope = slope.max(self.d_hist.back(k));
        }
        Peak {
            n: at,
            peak_i,
            peak_f: best,
            r: best_k.saturating_sub(BANDPASS_DELAY),
            slope,
        }
    }

    fn end_learning(&mut self, beats: &mut Vec<Beat>) {
        if let Some((max_m, sum_m, max_p, sum_p)) = self.learn.take() {
            #[allow(clippy::cast_precision_loss)]
            let count = LEARN as f64;
            self.levels = Levels {
                spki: 0.25 * max_m,
                npki: 0.5 * sum_m / count,
                spkf: 0.25 * max_p,
                npkf: 0.5 * sum_p / count,
            };
            for p in std::mem::take(&mut self.queued) {
                self.classify(p, beats);
            }
        }
    }

    fn peak(&mut self, p: Peak, beats: &mut Vec<Beat>) {
        if self.learn.is_some() {
            if self.queued.len() < MAX_QUEUED {
                self.queued.push(p);
            }
            return;
        }
        self.classify(p, beats);
    }

    fn classify(&mut self, p: Peak, beats: &mut Vec<Beat>) {
        let since = self.last_qrs.map(|q| p.n.saturating_sub(q.n));
        if since.is_some_and(|s| s < REFRACTORY) {
            return;
        }
        let t_wave = match (self.last_qrs, since) {
            (Some(q), Some(s)) => s < T_WINDOW && p.slope < 0.5 * q.slope,
            _ => false,
        };
        let (thr_i, thr_f) = self.levels.thresholds(self.irregular);
        if p.peak_i > thr_i && p.peak_f > thr_f && !t_wave {
            self.accept(p, false, beats);
            return;
        }
        let l = &mut self.levels;
        l.npki = 0.125 * p.peak_i + 0.875 * l.npki;
        l.npkf = 0.125 * p.peak_f + 0.875 * l.npkf;
        if !t_wave
            && p.peak_i > 0.5 * thr_i
            && p.peak_f > 0.5 * thr_f
            && self.searchback.is_none_or(|s| p.peak_i > s.peak_i)
        {
            self.searchback = Some(p);
        }
    }

    fn check_searchback(&mut self, beats: &mut Vec<Beat>) {
        let (Some(q), Some(rr2)) = (self.last_qrs, self.rr_avg2) else {
            return;
        };
        #[allow(clippy::cast_precision_loss)]
        let waited = (self.n - q.n) as f64;
        if waited > 1.66 * rr2 {
            if let Some(s) = self.searchback.take() {
                self.accept(s, true, beats);
            }
        }
    }

    fn accept(&mut self, p: Peak, searchback: bool, beats: &mut Vec<Beat>) {
        let w = if searchback { 0.25 } else { 0.125 };
        let l = &mut self.levels;
        l.spki = w * p.peak_i + (1.0 - w) * l.spki;
        l.spkf = w * p.peak_f + (1.0 - w) * l.spkf;
        let rr = self.last_qrs.map(|q| p.r.saturating_sub(q.r));
        #[allow(clippy::cast_precision_loss)]
        let rr_ms = rr.filter(|r| *r > 0).map(|r| r as f64 * 1000.0 / FS);
        if let Some(rr) = rr.filter(|r| *r > 0) {
            #[allow(clippy::cast_precision_loss)]
            self.rr_update(rr as f64);
        }
        self.last_qrs = Some(p);
        self.searchback = None;
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let r_index = (p.r as f64 * self.fs_in / FS - self.aa_delay)
            .round()
            .max(0.0) as u64;
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let r_index_200 = (p.r as f64 - self.aa_delay * FS / self.fs_in)
            .round()
            .max(0.0) as u64;
        beats.push(Beat {
            r_index,
            r_index_200,
            rr_ms,
            searchback,
        });
    }

    fn rr_update(&mut self, rr: f64) {
        push8(&mut self.recent, rr);
        let Some(avg2) = self.rr_avg2 else {
            push8(&mut self.selected, rr);
            self.rr_avg2 = Some(rr);
            return;
        };
        let within = |v: f64| v >= 0.92 * avg2 && v <= 1.16 * avg2;
        if within(rr) {
            push8(&mut self.selected, rr);
            self.misses = 0;
        } else {
            self.misses += 1;
        }
        if self.misses >= 8 {
            // The rate really changed: start the regular average again from the recent RRs.
            self.selected.clone_from(&self.recent);
            self.misses = 0;
        }
        #[allow(clippy::cast_precision_loss)]
        let avg = self.selected.iter().sum::<f64>() / self.selected.len().max(1) as f64;
        self.rr_avg2 = Some(avg);
        self.irregular = !self.recent.iter().all(|v| within(*v));
    }
}

fn push8(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == 8 {
        q.pop_front();
    }
    q.push_back(v);
}

#[cfg(test)]
#[path = "detector_tests.rs"]
mod tests;
