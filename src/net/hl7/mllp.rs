//! MLLP framing (docs/hl7-inbound.md#mllp-framing): `0x0B` message `0x1C 0x0D`, bounded and
//! resynchronising.
//!
//! Receives bytes as they arrive on a connection (or a serial line); promises each complete
//! message once, in order, without its framing, and a [`DecodeError`] (never the bytes) for
//! what was skipped. A frame is bounded at [`MAX_MESSAGE`] bytes. Used by the MLLP source, the
//! HL7 sink (reading ACKs) and the `hl7v2` decoder on serial lines.

use crate::model::DecodeError;

/// Largest message accepted (one MLLP frame, framing bytes excluded).
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// MLLP start block, end block and the CR that follows it.
pub const SB: u8 = 0x0B;
pub const EB: u8 = 0x1C;
pub const CR: u8 = 0x0D;

/// One framed item: a message's bytes (framing removed) or why bytes were dropped.
pub type Frame = Result<Vec<u8>, DecodeError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameState {
    Outside,
    Inside,
    AfterEnd,
    Discarding,
}

/// A bounded MLLP deframer. See the module docs.
#[derive(Debug, Clone)]
pub struct MllpFramer {
    buf: Vec<u8>,
    state: FrameState,
    garbage: usize,
}

impl Default for MllpFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl MllpFramer {
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            state: FrameState::Outside,
            garbage: 0,
        }
    }

    /// Feeds bytes; appends every frame (or error) they complete to `out`, in order.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        for &b in bytes {
            self.byte(b, out);
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Frame>) {
        match self.state {
            FrameState::AfterEnd => {
                self.state = FrameState::Outside;
                if b != CR {
                    self.byte(b, out);
                }
            }
            FrameState::Outside if b == SB => {
                self.report_garbage(out);
                self.buf.clear();
                self.state = FrameState::Inside;
            }
            FrameState::Outside => {
                if !b.is_ascii_whitespace() {
                    self.garbage = self.garbage.saturating_add(1);
                }
            }
            FrameState::Inside if b == EB => {
                out.push(Ok(std::mem::take(&mut self.buf)));
                self.state = FrameState::AfterEnd;
            }
            FrameState::Inside if b == SB => {
                out.push(Err(DecodeError::Malformed(format!(
                    "hl7v2: MLLP frame cut short by a new start block after {} bytes",
                    self.buf.len()
                ))));
                self.buf.clear();
            }
            FrameState::Inside if self.buf.len() >= MAX_MESSAGE => {
                out.push(Err(DecodeError::Oversized(MAX_MESSAGE)));
                self.buf = Vec::new();
                self.state = FrameState::Discarding;
            }
            FrameState::Inside => self.buf.push(b),
            FrameState::Discarding if b == SB => self.state = FrameState::Inside,
            FrameState::Discarding if b == EB => self.state = FrameState::AfterEnd,
            FrameState::Discarding => {}
        }
    }

    fn report_garbage(&mut self, out: &mut Vec<Frame>) {
        let n = std::mem::take(&mut self.garbage);
        if n > 0 {
            out.push(Err(DecodeError::Malformed(format!(
                "hl7v2: {n} bytes outside an MLLP frame"
            ))));
        }
    }

    /// End of stream: reports stray bytes and a partial frame, and resets.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        self.report_garbage(out);
        if self.state == FrameState::Inside {
            out.push(Err(DecodeError::Malformed(format!(
                "hl7v2: stream ended inside an MLLP frame ({} bytes)",
                self.buf.len()
            ))));
        }
        self.buf = Vec::new();
        self.state = FrameState::Outside;
    }
}

/// Wraps a message in MLLP framing.
pub fn mllp_frame(message: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(message.len() + 3);
    v.push(SB);
    v.extend_from_slice(message);
    v.extend_from_slice(&[EB, CR]);
    v
}

/// Removes MLLP framing when present.
pub(crate) fn unframe(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(&[SB]).unwrap_or(b);
    let b = b
        .strip_suffix(&[CR])
        .filter(|r| r.ends_with(&[EB]))
        .unwrap_or(b);
    b.strip_suffix(&[EB]).unwrap_or(b)
}
