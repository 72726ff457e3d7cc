//! ECG: waveform samples → strips, R peaks and heart rate (docs/ecg.md).
//!
//! Receives [`crate::model::SampleChunk`]s from the ECG decoders (via the device pipeline);
//! emits finished strips as an `ecg` [`crate::reading::Reading`] carrying the waveform plus a
//! `heart_rate` reading (MDC 147842, flag `source:ecg`).
//! - [`filters`], [`detector`]: streaming Pan–Tompkins at 200 Hz with bounded memory;
//! - [`strip`]: cuts the stream into strips of `strip_seconds`, never across a gap;
//! - [`options`]: the strip options every ECG driver accepts (kept in
//!   [`crate::model::ecg_options`], which the ECG decoders read too);
//! - [`synth`]: a synthetic PQRST signal for simulators and tests.
//!
//! Imports only [`crate::model`] and [`crate::reading`]: the strip readings use the model's
//! code table, plausibility limits and device-time rules, the same ones normalize applies.

pub mod detector;
pub mod filters;
pub mod readings;
pub mod strip;
pub mod synth;

pub use crate::model::ecg_options as options;

pub use options::{PartialStrips, StripOptions};
pub use readings::readings;
pub use strip::{CompletedStrip, StripBuilder};
