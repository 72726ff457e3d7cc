//! The link state the three Nonin binary decoders share: recognising the device's replies to
//! host commands (ACK `06`, NAK `15`) at clean frame boundaries, counting bytes skipped while
//! looking for a frame start and reporting each run of them once, and building the bytes sent
//! on connect. See the parent module's docs for the rules.

use time::OffsetDateTime;

use super::{format_select_command, set_clock_command, Format, HostOptions, ACK, NAK};
use crate::decode::{DecodeError, DecodeEvent};

/// The link state shared by the three decoders: host-reply handling and skipped-byte
/// reporting (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct Link {
    format: Format,
    host: HostOptions,
    /// A format-select reply is still expected.
    awaiting_reply: bool,
    /// Bytes skipped while looking for a frame start, not reported yet.
    skipped: usize,
    /// The current skip run follows a reported error: it is part of that break.
    quiet: bool,
}

impl Link {
    pub(super) fn new(format: Format, host: HostOptions) -> Self {
        Self {
            format,
            host,
            awaiting_reply: host.select_format,
            skipped: 0,
            quiet: false,
        }
    }

    pub(super) fn on_connect(&mut self, now: OffsetDateTime) -> Vec<u8> {
        let mut bytes = Vec::new();
        if self.host.select_format {
            bytes.extend_from_slice(&format_select_command(self.format));
        }
        if self.format == Format::F13 && self.host.set_clock {
            if let Some(cmd) = set_clock_command(now) {
                bytes.extend_from_slice(&cmd);
            }
        }
        self.awaiting_reply = self.host.select_format;
        bytes
    }

    /// At a frame boundary: consumes `b` when it is a reply to a host command. Only a clean
    /// boundary counts (stream start, or right after a valid frame): while bytes are being
    /// skipped after garbage or an error, a `15` is far more likely a data byte (a BCD day,
    /// a pulse rate) than a NAK.
    pub(super) fn reply(&mut self, b: u8, out: &mut Vec<DecodeEvent>) -> bool {
        if self.skipped > 0 || self.quiet {
            return false;
        }
        match b {
            ACK => {
                self.awaiting_reply = false;
                true
            }
            NAK if self.awaiting_reply => {
                self.awaiting_reply = false;
                out.push(DecodeEvent::Error(DecodeError::Unsupported(
                    "device refused format select".into(),
                )));
                true
            }
            _ => false,
        }
    }

    pub(super) fn skip(&mut self, n: usize) {
        self.skipped = self.skipped.saturating_add(n);
    }

    pub(super) fn error(&mut self, e: DecodeError, out: &mut Vec<DecodeEvent>) {
        out.push(DecodeEvent::Error(e));
        self.skipped = 0;
        self.quiet = true;
    }

    /// A valid frame was found: reports the skip run before it, if any.
    pub(super) fn synced(&mut self, out: &mut Vec<DecodeEvent>) {
        if self.skipped > 0 && !self.quiet {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "{}: skipped {} bytes looking for a frame start",
                self.format.driver(),
                self.skipped
            ))));
        }
        self.skipped = 0;
        self.quiet = false;
    }

    /// End of stream: reports the last skip run and returns to the initial state.
    pub(super) fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        self.synced(out);
        self.awaiting_reply = self.host.select_format;
    }

    pub(super) fn malformed(&self, what: impl std::fmt::Display) -> DecodeError {
        DecodeError::Malformed(format!("{}: {what}", self.format.driver()))
    }
}
