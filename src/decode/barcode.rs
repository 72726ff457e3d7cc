//! `barcode`: wristband and chart barcode scanners in keyboard-wedge-over-serial mode.
//!
//! Receives serial bytes: one scan per line, each ending with CR, LF or CR LF (scanners differ;
//! every CR and LF is a terminator and blank lines are skipped). Emits
//! [`DecodeEvent::Scan`] with the scanned text, surrounding blanks trimmed and an optional
//! configured prefix (`strip_prefix`) removed. The source turns a scan into the room's patient
//! context using the `system` option (the issuer of the identifiers, a `urn:oid:`, `urn:` or
//! `http(s)://` URI), read with [`system`].
//!
//! A scan is at most [`MAX_SCAN`] bytes of printable ASCII. Longer lines are
//! [`DecodeError::Oversized`]; a line holding a control or non-ASCII byte, a scan left empty
//! by `strip_prefix`, or a scan that does not fully match the optional `pattern` option is
//! [`DecodeError::Malformed`]. Scans are patient identifiers: no error reason ever contains
//! the scanned text.

use regex::{Regex, RegexBuilder};

use super::framing::LineFramer;
use super::registry::{OptionSpec, Transport, SERIAL_9600_8N1};
use super::{DecodeError, DecodeEvent, Decoder, DriverInfo, OptionError, Options};
// The identifier-system check is the model's: the patient context checks every set with it.
pub use crate::model::identifier::check_system;

/// Longest scan accepted (CR/LF excluded). Wristband MRNs are ~10–20 characters.
pub const MAX_SCAN: usize = 128;
/// Largest compiled size of a `pattern` option, in bytes.
pub const PATTERN_SIZE_LIMIT: usize = 256 * 1024;
/// Longest `pattern` / `strip_prefix` option text.
const MAX_OPTION_LEN: usize = 512;

/// The `barcode` driver entry for the registry.
pub static INFO: DriverInfo = DriverInfo {
    name: "barcode",
    devices: "wristband / chart barcode scanners in serial mode (Honeywell, Zebra, Datalogic, ...)",
    transports: &[Transport::Serial],
    kinds: &[],
    framing: "one scan per line, CR and/or LF",
    experimental: false,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::Scans {
        system_option: "system",
    },
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &OPTIONS,
    build: |_, opts| Barcode::from_options(opts).map(|d| Box::new(d) as Box<dyn Decoder>),
};

const OPTIONS: [OptionSpec; 3] = [
    OptionSpec {
        key: "system",
        help: "REQUIRED: the issuer of the scanned identifiers (`urn:oid:...`, `urn:...` or `https://...`)",
        check: check_system,
    },
    OptionSpec {
        key: "pattern",
        help: "a regex the whole scan must match after `strip_prefix`, e.g. `MRN[0-9]{7}`",
        check: check_pattern,
    },
    OptionSpec {
        key: "strip_prefix",
        help: "text removed from the start of a scan when present (a scanner's symbology prefix)",
        check: check_strip_prefix,
    },
];

/// Compiles a scan pattern anchored at both ends, with a bounded compiled size.
fn compile_pattern(v: &str) -> Result<Regex, String> {
    if v.is_empty() || v.len() > MAX_OPTION_LEN {
        return Err(format!("a pattern has 1 to {MAX_OPTION_LEN} characters"));
    }
    RegexBuilder::new(&format!("^(?:{v})$"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("not a valid regex: {e}"))
}

fn check_pattern(v: &str) -> Result<(), String> {
    compile_pattern(v).map(|_| ())
}

fn check_strip_prefix(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_SCAN || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!(
            "a prefix has 1 to {MAX_SCAN} printable ASCII characters"
        ));
    }
    Ok(())
}

/// The `system` option of a barcode device (validated by [`check_system`]).
pub fn system(opts: &Options) -> Option<&str> {
    opts.get("system").map(String::as_str)
}

/// The `barcode` decoder.
#[derive(Debug, Clone)]
pub struct Barcode {
    framer: LineFramer,
    pattern: Option<Regex>,
    strip_prefix: Option<String>,
}

impl Barcode {
    /// A decoder without pattern or prefix: every printable line is a scan.
    pub fn new() -> Self {
        Self {
            framer: LineFramer::new(MAX_SCAN),
            pattern: None,
            strip_prefix: None,
        }
    }

    /// Builds from driver options; `system` is required, `pattern` and `strip_prefix` optional.
    pub fn from_options(opts: &Options) -> Result<Self, Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut err = |key: &str, reason: String| {
            errors.push(OptionError {
                key: key.into(),
                reason,
            })
        };
        match opts.get("system") {
            None => err(
                "system",
                "required: the issuer of the scanned identifiers, e.g. `urn:oid:2.16.840.1.113883.3.999`".into(),
            ),
            Some(v) => {
                if let Err(r) = check_system(v) {
                    err("system", r);
                }
            }
        }
        let mut d = Self::new();
        if let Some(p) = opts.get("pattern") {
            match compile_pattern(p) {
                Ok(re) => d.pattern = Some(re),
                Err(r) => err("pattern", r),
            }
        }
        if let Some(p) = opts.get("strip_prefix") {
            match check_strip_prefix(p) {
                Ok(()) => d.strip_prefix = Some(p.clone()),
                Err(r) => err("strip_prefix", r),
            }
        }
        for key in opts.keys() {
            if !OPTIONS.iter().any(|o| o.key == key) {
                err(
                    key,
                    "unknown option; driver `barcode` accepts: system, pattern, strip_prefix"
                        .into(),
                );
            }
        }
        if errors.is_empty() {
            Ok(d)
        } else {
            Err(errors)
        }
    }

    /// Decodes one line (without CR/LF) into a scan or an error. See the module docs.
    pub fn decode_line(&self, line: &[u8]) -> DecodeEvent {
        let malformed =
            |r: &str| DecodeEvent::Error(DecodeError::Malformed(format!("barcode: {r}")));
        if !line.iter().all(|&b| (0x20..0x7f).contains(&b)) {
            return malformed("scan holds control or non-ASCII bytes");
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return malformed("scan is not text");
        };
        let mut scan = text.trim();
        if scan.is_empty() {
            return DecodeEvent::Idle { episode_end: false };
        }
        if let Some(p) = &self.strip_prefix {
            scan = scan.strip_prefix(p.as_str()).unwrap_or(scan).trim();
            if scan.is_empty() {
                return malformed("scan is empty after strip_prefix");
            }
        }
        if let Some(re) = &self.pattern {
            if !re.is_match(scan) {
                return malformed("scan does not match pattern");
            }
        }
        DecodeEvent::Scan(scan.to_string())
    }
}

impl Default for Barcode {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for Barcode {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        // CR alone ends a scan too: make every CR an LF; CR LF then gives a blank line, which
        // the framer skips.
        let unified: Vec<u8> = bytes
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect();
        let mut lines = Vec::new();
        self.framer.feed(&unified, &mut lines);
        for line in lines {
            out.push(match line {
                Ok(l) => self.decode_line(&l),
                Err(e) => DecodeEvent::Error(e),
            });
        }
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        if let Some(e) = self.framer.finish() {
            out.push(DecodeEvent::Error(e));
        }
    }
}

#[cfg(test)]
#[path = "barcode_tests.rs"]
mod tests;
