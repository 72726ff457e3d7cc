//! The strip options every ECG driver accepts (`[[device]] options`): `strip_seconds`,
//! `min_strip_fraction`, `partial_strips`. Checked by the registry, read by the pipeline.

use super::options::{OptionError, OptionSpec, Options};

/// Default strip length (the R4 `Observation/ekg` example uses 10 s chunks).
pub const DEFAULT_STRIP_SECONDS: u32 = 10;
/// Longest strip: bounds the memory held per stream.
pub const MAX_STRIP_SECONDS: u32 = 60;
/// Default share of a strip that must be present for it to count as whole.
pub const DEFAULT_MIN_FRACTION: f64 = 0.8;

/// What to do with a strip shorter than `min_strip_fraction` of its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartialStrips {
    /// Send it flagged `ecg:partial` (default).
    Send,
    /// Drop it (counted, not stored).
    Drop,
}

/// The strip settings of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StripOptions {
    pub strip_seconds: u32,
    pub min_fraction: f64,
    pub partial: PartialStrips,
}

impl Default for StripOptions {
    fn default() -> Self {
        Self {
            strip_seconds: DEFAULT_STRIP_SECONDS,
            min_fraction: DEFAULT_MIN_FRACTION,
            partial: PartialStrips::Send,
        }
    }
}

fn parse_seconds(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(s) if (1..=MAX_STRIP_SECONDS).contains(&s) => Ok(s),
        _ => Err(format!(
            "`{v}` is not a whole number of seconds from 1 to {MAX_STRIP_SECONDS}"
        )),
    }
}

fn parse_fraction(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{v}` is not a fraction from 0 to 1")),
    }
}

fn parse_partial(v: &str) -> Result<PartialStrips, String> {
    match v.trim() {
        "send" => Ok(PartialStrips::Send),
        "drop" => Ok(PartialStrips::Drop),
        _ => Err(format!("`{v}` is not one of: send, drop")),
    }
}

/// The option specs, for each ECG driver's `INFO.options`.
pub const SPECS: [OptionSpec; 3] = [
    OptionSpec {
        key: "strip_seconds",
        help: "length of one ECG strip in seconds (default 10, at most 60)",
        check: |v| parse_seconds(v).map(|_| ()),
    },
    OptionSpec {
        key: "min_strip_fraction",
        help: "share of a strip that must be present, else it is partial (default 0.8)",
        check: |v| parse_fraction(v).map(|_| ()),
    },
    OptionSpec {
        key: "partial_strips",
        help: "`send` (default, flagged ecg:partial) or `drop` strips with too much missing",
        check: |v| parse_partial(v).map(|_| ()),
    },
];

impl StripOptions {
    /// Reads the strip options of a device (other keys are ignored: the driver owns them).
    pub fn from_options(opts: &Options) -> Result<Self, Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut out = Self::default();
        let mut read = |key: &str, f: &mut dyn FnMut(&str) -> Result<(), String>| {
            if let Some(v) = opts.get(key) {
                if let Err(reason) = f(v) {
                    errors.push(OptionError {
                        key: key.into(),
                        reason,
                    });
                }
            }
        };
        read("strip_seconds", &mut |v| {
            out.strip_seconds = parse_seconds(v)?;
            Ok(())
        });
        read("min_strip_fraction", &mut |v| {
            out.min_fraction = parse_fraction(v)?;
            Ok(())
        });
        read("partial_strips", &mut |v| {
            out.partial = parse_partial(v)?;
            Ok(())
        });
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> Options {
        kv.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn strip_options_default_to_10_s_80_percent_and_send() {
        assert_eq!(
            StripOptions::from_options(&Options::new()),
            Ok(StripOptions::default())
        );
        let o = StripOptions::from_options(&opts(&[
            ("strip_seconds", "5"),
            ("min_strip_fraction", "0.5"),
            ("partial_strips", "drop"),
        ]))
        .unwrap();
        assert_eq!(o.strip_seconds, 5);
        assert_eq!(o.partial, PartialStrips::Drop);
    }

    #[test]
    fn bad_strip_options_are_each_reported() {
        let errs = StripOptions::from_options(&opts(&[
            ("strip_seconds", "0"),
            ("min_strip_fraction", "2"),
            ("partial_strips", "keep"),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 3);
    }
}
