//! The strip builder: one device's [`SampleChunk`]s → [`CompletedStrip`]s with their R peaks.
//!
//! Samples are appended to the strip in progress until it holds `strip_seconds` of samples.
//! A *segment* is a run of samples without a gap; the R-peak [`Detector`] runs over the whole
//! segment (not restarted at strip boundaries) on one lead (lead II when present, else the
//! first). A gap (`gap_before`, a change of rate or leads) ends the segment: the detector is
//! finished, and the strips in progress are completed, never stitched across the gap.
//! [`StripBuilder::finish`] (clean shutdown, disconnect) completes the partial strip.
//!
//! A full strip is held back for [`HOLD_SECONDS`] more of input so that the beats near its
//! end (reported ~0.4 s late, later after search-back) still land in it. A strip with less
//! than `min_strip_fraction` of its samples is flagged `ecg:partial`, or dropped.
//!
//! Memory bound per stream: `(strip_seconds + HOLD_SECONDS) · fs · leads` samples (4 bytes
//! each) plus the detector's fixed rings (~3 KiB) and ≤ 1 beat record per 200 ms of strip.
//! With the 60 s maximum, 500 Hz and 12 leads: 62 · 500 · 12 · 4 B ≈ 1.5 MB.

use time::{Duration, OffsetDateTime};

use super::detector::{Beat, Detector};
use super::options::{PartialStrips, StripOptions};
use crate::model::{DeviceTime, SampleChunk};
use crate::reading::{Flag, Lead};

/// Seconds of input a full strip waits for late beats.
pub const HOLD_SECONDS: f64 = 2.0;

/// A finished strip, before it becomes readings (see [`super::readings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedStrip {
    pub fs_hz: f64,
    pub leads: Vec<Lead>,
    /// The device's time of the first sample, if it has a clock.
    pub device_t0: Option<DeviceTime>,
    /// The first sample's time estimated from the receipt time.
    pub receipt_t0: OffsetDateTime,
    /// Samples a whole strip holds.
    pub expected_samples: usize,
    /// R peaks as sample indices into the strip.
    pub r_peaks: Vec<u32>,
    /// RR intervals (ms) of the beats in this strip.
    pub rr_ms: Vec<f64>,
    /// `ecg:partial`, `ecg:saturated`, device flags.
    pub flags: Vec<Flag>,
}

impl CompletedStrip {
    pub fn len(&self) -> usize {
        self.leads.first().map_or(0, |l| l.samples.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters of one builder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StripStats {
    pub strips: u64,
    pub partial: u64,
    pub dropped: u64,
    pub gaps: u64,
}

#[derive(Debug)]
struct Building {
    fs_hz: f64,
    start: u64,
    leads: Vec<Lead>,
    device_t0: Option<DeviceTime>,
    receipt_t0: OffsetDateTime,
    beats: Vec<Beat>,
    flags: Vec<Flag>,
}

impl Building {
    fn len(&self) -> usize {
        self.leads.first().map_or(0, |l| l.samples.len())
    }

    fn end(&self) -> u64 {
        self.start + self.len() as u64
    }

    fn flag(&mut self, f: &Flag) {
        if !self.flags.contains(f) {
            self.flags.push(f.clone());
        }
    }
}

#[derive(Debug)]
struct Segment {
    fs_hz: f64,
    signature: Vec<(u32, u64)>,
    lead: usize,
    detector: Detector,
    index: u64,
}

/// Cuts one device's sample stream into strips. See the module docs.
#[derive(Debug)]
pub struct StripBuilder {
    opts: StripOptions,
    segment: Option<Segment>,
    current: Option<Building>,
    held: Option<Building>,
    beats: Vec<Beat>,
    stats: StripStats,
}

impl StripBuilder {
    pub fn new(opts: StripOptions) -> Self {
        Self {
            opts,
            segment: None,
            current: None,
            held: None,
            beats: Vec::new(),
            stats: StripStats::default(),
        }
    }

    pub fn stats(&self) -> StripStats {
        self.stats
    }

    /// Feeds one chunk received at `received_at`; returns the strips it completed.
    pub fn push(
        &mut self,
        chunk: &SampleChunk,
        received_at: OffsetDateTime,
    ) -> Vec<CompletedStrip> {
        let mut out = Vec::new();
        let signature: Vec<(u32, u64)> = chunk
            .leads
            .iter()
            .map(|l| (l.mdc, l.scale_uv.to_bits()))
            .collect();
        let fits = self.segment.as_ref().is_some_and(|s| {
            s.fs_hz.to_bits() == chunk.fs_hz.to_bits() && s.signature == signature
        });
        if self.segment.is_some() && (chunk.gap_before || !fits) {
            self.stats.gaps += 1;
            self.end_segment(&mut out);
        }
        let n = chunk.len();
        if n == 0 || !(chunk.fs_hz.is_finite() && chunk.fs_hz > 0.0) {
            return out;
        }
        let mut seg = self.segment.take().unwrap_or_else(|| Segment {
            fs_hz: chunk.fs_hz,
            signature,
            lead: chunk
                .leads
                .iter()
                .position(|l| l.name == "lead_ii")
                .unwrap_or(0),
            detector: Detector::new(chunk.fs_hz),
            index: 0,
        });
        let strip_len = strip_samples(self.opts.strip_seconds, chunk.fs_hz);
        let mut i = 0usize;
        while i < n {
            let cur = self.current.get_or_insert_with(|| {
                let missing = Duration::seconds_f64((n - i) as f64 / chunk.fs_hz);
                Building {
                    fs_hz: chunk.fs_hz,
                    start: seg.index,
                    leads: chunk
                        .leads
                        .iter()
                        .map(|l| Lead {
                            mdc: l.mdc,
                            name: l.name.to_string(),
                            scale_uv: l.scale_uv,
                            samples: Vec::with_capacity(strip_len),
                        })
                        .collect(),
                    device_t0: shift(chunk.t0, i, chunk.fs_hz),
                    receipt_t0: received_at - missing,
                    beats: Vec::new(),
                    flags: Vec::new(),
                }
            });
            let take = (strip_len - cur.len()).min(n - i);
            for (dst, src) in cur.leads.iter_mut().zip(&chunk.leads) {
                dst.samples.extend_from_slice(&src.samples[i..i + take]);
            }
            if chunk.saturated {
                cur.flag(&Flag::new("ecg:saturated"));
            }
            for f in &chunk.flags {
                cur.flag(f);
            }
            if let Some(lead) = chunk.leads.get(seg.lead) {
                for s in &lead.samples[i..i + take] {
                    seg.detector
                        .push(f64::from(*s) * lead.scale_uv, &mut self.beats);
                }
            }
            seg.index += take as u64;
            i += take;
            if cur.len() >= strip_len {
                // A new full strip: the one held before it has waited long enough by now
                // only if strips are longer than the hold; release it either way.
                let full = self.current.take();
                if let Some(h) = self.held.take() {
                    out.extend(self.complete(h));
                }
                self.held = full;
            }
            self.route_beats();
            self.release_held(&seg, &mut out);
        }
        self.segment = Some(seg);
        out
    }

    /// The stream ended cleanly: completes every strip in progress (partial ones included).
    pub fn finish(&mut self) -> Vec<CompletedStrip> {
        let mut out = Vec::new();
        self.end_segment(&mut out);
        out
    }

    fn end_segment(&mut self, out: &mut Vec<CompletedStrip>) {
        if let Some(mut seg) = self.segment.take() {
            seg.detector.finish(&mut self.beats);
        }
        self.route_beats();
        if let Some(h) = self.held.take() {
            out.extend(self.complete(h));
        }
        if let Some(c) = self.current.take() {
            out.extend(self.complete(c));
        }
        self.beats.clear();
    }

    fn route_beats(&mut self) {
        for b in self.beats.drain(..) {
            for s in [self.held.as_mut(), self.current.as_mut()]
                .into_iter()
                .flatten()
            {
                if b.r_index >= s.start && b.r_index < s.end() {
                    s.beats.push(b);
                }
            }
        }
    }

    fn release_held(&mut self, seg: &Segment, out: &mut Vec<CompletedStrip>) {
        let Some(h) = &self.held else {
            return;
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let hold = (HOLD_SECONDS * seg.fs_hz).ceil() as u64;
        if seg.index >= h.end() + hold {
            if let Some(h) = self.held.take() {
                out.extend(self.complete(h));
            }
        }
    }

    fn complete(&mut self, mut b: Building) -> Option<CompletedStrip> {
        let len = b.len();
        if len == 0 {
            return None;
        }
        let fs_hz = b.fs_hz;
        let expected = strip_samples(self.opts.strip_seconds, fs_hz);
        #[allow(clippy::cast_precision_loss)]
        let fraction = len as f64 / expected as f64;
        if fraction < self.opts.min_fraction {
            if self.opts.partial == PartialStrips::Drop {
                self.stats.dropped += 1;
                return None;
            }
            self.stats.partial += 1;
            b.flag(&Flag::new("ecg:partial"));
        }
        self.stats.strips += 1;
        #[allow(clippy::cast_possible_truncation)]
        let r_peaks = b
            .beats
            .iter()
            .map(|x| (x.r_index - b.start) as u32)
            .collect();
        let rr_ms = b.beats.iter().filter_map(|x| x.rr_ms).collect();
        Some(CompletedStrip {
            fs_hz,
            leads: b.leads,
            device_t0: b.device_t0,
            receipt_t0: b.receipt_t0,
            expected_samples: expected,
            r_peaks,
            rr_ms,
            flags: b.flags,
        })
    }
}

/// Samples in a strip of `seconds` at `fs`.
fn strip_samples(seconds: u32, fs: f64) -> usize {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (f64::from(seconds) * fs).round() as usize;
    n.max(1)
}

/// The device time of sample `i` of a chunk that starts at `t0`.
fn shift(t0: Option<DeviceTime>, i: usize, fs: f64) -> Option<DeviceTime> {
    match t0 {
        Some(DeviceTime::Absolute(t)) if i > 0 => Some(DeviceTime::Absolute(
            t + Duration::seconds_f64(i as f64 / fs),
        )),
        other => other,
    }
}

#[cfg(test)]
#[path = "strip_tests.rs"]
mod tests;
