//! Waveform samples as decoders hand them on: [`SampleChunk`] (docs/ecg.md#the-canonical-sample-form canonical form).
//!
//! A chunk is a run of consecutive samples of one device: integer counts plus a µV-per-count
//! scale per lead, the sample rate, and the device time of the first sample when the device has
//! a clock. Decoders say when samples were lost right before a chunk (`gap_before`: a lost
//! frame, a sample-counter jump, a timestamp jump) so the ECG strip builder never
//! stitches a strip across a gap. Converting to µV and encoding happen only at the edge.

use crate::reading::Flag;

use super::message::DeviceTime;

/// One lead's samples within a chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkLead {
    /// Component name of the lead in the code table (`ecg`, `lead_i`, `lead_ii`, `lead_v1`, ...).
    pub name: &'static str,
    /// MDC code of the lead (131328 family).
    pub mdc: u32,
    /// µV per count.
    pub scale_uv: f64,
    /// Raw counts, oldest first.
    pub samples: Vec<i32>,
}

/// A run of consecutive samples from one device.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleChunk {
    /// Samples per second of every lead.
    pub fs_hz: f64,
    /// Device time of the first sample (`Absolute` in UTC), `ClockNotSet`, or `None` when the
    /// device has no clock (then the receipt time is used).
    pub t0: Option<DeviceTime>,
    /// Same number of samples in every lead.
    pub leads: Vec<ChunkLead>,
    /// Samples were lost right before this chunk: the strip in progress must end here.
    pub gap_before: bool,
    /// At least one sample sits at the converter's full scale (clipped).
    pub saturated: bool,
    /// Device-side quality facts to carry to the strip (`ecg:duplicate_frame`, ...).
    pub flags: Vec<Flag>,
}

impl SampleChunk {
    /// Samples per lead (the shortest lead when a decoder got them unequal).
    pub fn len(&self) -> usize {
        self.leads
            .iter()
            .map(|l| l.samples.len())
            .min()
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The lead names a `channels` option may use, with their code-table component name and MDC
/// code (docs/ecg.md#lead-codes lead table). `ECG` is the unspecified lead.
pub const LEADS: &[(&str, &str, u32)] = &[
    ("ECG", "ecg", 131_328),
    ("I", "lead_i", 131_329),
    ("II", "lead_ii", 131_330),
    ("III", "lead_iii", 131_389),
    ("aVR", "lead_avr", 131_390),
    ("aVL", "lead_avl", 131_391),
    ("aVF", "lead_avf", 131_392),
    ("V1", "lead_v1", 131_331),
    ("V2", "lead_v2", 131_332),
    ("V3", "lead_v3", 131_333),
    ("V4", "lead_v4", 131_334),
    ("V5", "lead_v5", 131_335),
    ("V6", "lead_v6", 131_336),
];

/// The (component name, MDC code) of a lead label (`II`, `avf`, `V1`; case-insensitive).
pub fn lead(label: &str) -> Option<(&'static str, u32)> {
    LEADS
        .iter()
        .find(|(l, _, _)| l.eq_ignore_ascii_case(label.trim()))
        .map(|(_, name, mdc)| (*name, *mdc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_labels_map_to_the_mdc_lead_codes() {
        assert_eq!(lead("II"), Some(("lead_ii", 131_330)));
        assert_eq!(lead("avf"), Some(("lead_avf", 131_392)));
        assert_eq!(lead("V1"), Some(("lead_v1", 131_331)));
        assert_eq!(lead("ecg"), Some(("ecg", 131_328)));
        assert_eq!(lead("V7"), None);
    }
}
