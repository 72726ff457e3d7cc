//! ECG: waveform samples → strips, R peaks and heart rate (docs/ecg.md).
//!
//! Receives [`crate::model::SampleChunk`]s from the ECG decoders (via the device pipeline);
//! emits finished strips as an `ecg` [`crate::reading::Reading`] carrying the waveform plus a
//! `heart_rate` reading (MDC 147842, flag `source:ecg`).
//! - [`filters`], [`detector`]: streaming Pan–Tompkins at 200 Hz with bounded memory;
//! - [`strip`]: cuts the stream into strips of `strip_seconds`, never across a gap;
//! - [`options`]: the strip options every ECG driver accepts;
//! - [`synth`]: a synthetic PQRST signal for simulators and tests.

pub mod detector;
pub mod filters;
pub mod readings;
pub mod strip;
pub mod synth;

pub use crate::model::ecg_options as options;

pub use options::{PartialStrips, StripOptions};
pub use readings::readings;
pub use strip::{CompletedStrip, StripBuilder};
