//! Driver options as the config and `vitalsd decode` give them, the spec of one option, and
//! the report mode of continuous streams.
//!
//! Receives nothing: plain data. Promises: the shapes the driver registry (decode), the ECG
//! strip options and the spot-check stage (normalize) share, so none of them imports another.

use std::collections::BTreeMap;

/// Driver options (`options = {...}` in config, `--opt K=V` in `decode`), as strings.
pub type Options = BTreeMap<String, String>;

/// A bad driver option, reported by `check-config` as `device[N].options.KEY`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct OptionError {
    pub key: String,
    pub reason: String,
}

/// One option a driver accepts: its key, help text and value checker.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub key: &'static str,
    pub help: &'static str,
    /// Checks one value; the error is the reason shown after the key.
    pub check: fn(&str) -> Result<(), String>,
}

/// How a continuous driver's stream becomes readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// One reading per measurement episode (median after `settle`).
    Spot,
    /// Every message becomes a reading.
    Every,
}
