//! Format #7: 5-byte checksummed frames, 25 frames per packet, 3 packets/s
//! (docs/devices/nonin.md#format-7).
//!
//! A frame is `STATUS, PLETH MSB, PLETH LSB, FLOAT, CHK` with `CHK = (b1+b2+b3+b4) mod 256`
//! and STATUS bit 7 always set; bit 0 (SYNC) is set on frame 1 of a packet only. The FLOAT
//! byte is multiplexed by frame number; this decoder forwards the display values HR-D (frames
//! 20, 21: `((msb & 0x03) << 7) | (lsb & 0x7F)`) and SpO2-D (frame 9), and reads STAT2
//! (frame 8: bit 5 SPA, bit 0 LOW BAT). STATUS bits over the packet's frames become flags
//! (bit 5 ARTF, bit 4 OOT, bit 3 SNSA; perfusion (RPRF bit 2, GPRF bit 1): (1,1) marginal,
//! (1,0) low, (0,1) good).
//!
//! Synchronisation, as docs/devices/nonin.md#format-7 describes it:
//! 1. Look for a byte with bit 7 and SYNC set whose 5-byte window has a valid CHK.
//! 2. Call it frame 1; then require bit 7 and a valid CHK on each following frame (PLETH MSB
//!    can have bit 7 set too, so the checksum is what disambiguates).
//! 3. On any checksum failure drop the partial packet and search again from the next byte.
//! 4. Publish HR-D/SpO2-D only from a packet whose 25 frames were all valid.
//!
//! A SYNC frame before frame 25 cuts the packet short (an error; the new packet starts there);
//! a 26th frame without SYNC is an error and the search starts again. The decoder holds at most
//! one partial frame plus one feed chunk of bytes, and the 25 status and float bytes.

use time::OffsetDateTime;

use super::{reading_events, HostOptions, Link, Quality, CHUNK};
use crate::decode::{DecodeError, DecodeEvent, Decoder};

/// Frames per packet.
pub const FRAMES_PER_PACKET: usize = 25;
const FRAME: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for a frame 1 (step 1).
    Hunting,
    /// In step: `n` frames of the current packet were valid (0 = expecting frame 1).
    Synced { n: usize },
}

/// The `nonin-7` decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct Nonin7 {
    link: Link,
    buf: Vec<u8>,
    state: State,
    status: [u8; FRAMES_PER_PACKET],
    float: [u8; FRAMES_PER_PACKET],
}

impl Nonin7 {
    pub fn new(host: HostOptions) -> Self {
        Self {
            link: Link::new(super::Format::F7, host),
            buf: Vec::with_capacity(CHUNK + FRAME),
            state: State::Hunting,
            status: [0; FRAMES_PER_PACKET],
            float: [0; FRAMES_PER_PACKET],
        }
    }

    /// Consumes every complete frame (or skippable byte) at the front of `buf`.
    fn process(&mut self, out: &mut Vec<DecodeEvent>) {
        let mut i = 0;
        while let Some(rest) = self.buf.get(i..) {
            let Some(&b0) = rest.first() else { break };
            if b0 & 0x80 == 0 && self.link.reply(b0, out) {
                i += 1;
                continue;
            }
            if self.state == State::Hunting && b0 & 0x81 != 0x81 {
                self.link.skip(1);
                i += 1;
                continue;
            }
            let Some(&[s, m, l, f, c]) = rest.get(..FRAME) else {
                break;
            };
            let valid = s & 0x80 != 0 && checksum([s, m, l, f]) == c;
            i += match self.state {
                State::Hunting if valid => {
                    self.link.synced(out);
                    self.start_packet(s, f);
                    FRAME
                }
                State::Hunting => {
                    self.link.skip(1);
                    1
                }
                State::Synced { n } => self.in_step(n, [s, m, l, f, c], valid, out),
            };
        }
        self.buf.drain(..i.min(self.buf.len()));
    }

    /// Handles the next frame while in step; returns the bytes consumed.
    fn in_step(
        &mut self,
        n: usize,
        frame: [u8; 5],
        valid: bool,
        out: &mut Vec<DecodeEvent>,
    ) -> usize {
        let [s, m, l, f, c] = frame;
        if !valid {
            let e = if s & 0x80 == 0 {
                self.link
                    .malformed(format!("frame {} of a packet lacks status bit 7", n + 1))
            } else {
                DecodeError::Checksum(format!(
                    "nonin-7: frame {} of a packet has CHK {c:#04x}, expected {:#04x}",
                    n + 1,
                    checksum([s, m, l, f])
                ))
            };
            self.link.error(e, out);
            self.state = State::Hunting;
            return 1;
        }
        let sync = s & 0x01 != 0;
        match (n, sync) {
            (0, true) => self.start_packet(s, f),
            (0, false) => {
                let e = self
                    .link
                    .malformed("a frame without SYNC follows a complete packet");
                self.link.error(e, out);
                self.state = State::Hunting;
                return 1;
            }
            (_, true) => {
                let e = self
                    .link
                    .malformed(format!("packet cut short after {n} of 25 frames"));
                self.link.error(e, out);
                self.start_packet(s, f);
            }
            (_, false) => {
                if let (Some(st), Some(fl)) = (self.status.get_mut(n), self.float.get_mut(n)) {
                    *st = s;
                    *fl = f;
                }
                let n = n + 1;
                if n == FRAMES_PER_PACKET {
                    decode_packet7(&self.status, &self.float, out);
                    self.state = State::Synced { n: 0 };
                } else {
                    self.state = State::Synced { n };
                }
            }
        }
        FRAME
    }

    fn start_packet(&mut self, status: u8, float: u8) {
        self.status[0] = status;
        self.float[0] = float;
        self.state = State::Synced { n: 1 };
    }
}

impl Default for Nonin7 {
    fn default() -> Self {
        Self::new(HostOptions::default())
    }
}

impl Decoder for Nonin7 {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        for chunk in bytes.chunks(CHUNK) {
            self.buf.extend_from_slice(chunk);
            self.process(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        let frames = match self.state {
            State::Synced { n } => n,
            State::Hunting => 0,
        };
        if frames > 0 || !self.buf.is_empty() {
            let e = self.link.malformed(format!(
                "packet cut short after {frames} of 25 frames and {} more bytes",
                self.buf.len()
            ));
            self.link.error(e, out);
        }
        self.buf.clear();
        self.state = State::Hunting;
        self.link.finish(out);
    }

    fn on_connect(&mut self) -> Vec<u8> {
        self.link.on_connect(OffsetDateTime::now_utc())
    }
}

/// `(b1 + b2 + b3 + b4) mod 256`.
fn checksum(bytes: [u8; 4]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

/// Decodes a complete, all-valid packet from its 25 STATUS and 25 FLOAT bytes (frame 1 first)
/// and appends its events to `out`.
pub fn decode_packet7(
    status: &[u8; FRAMES_PER_PACKET],
    float: &[u8; FRAMES_PER_PACKET],
    out: &mut Vec<DecodeEvent>,
) {
    // Frame numbers in docs/devices/nonin.md#format-7 are 1-based; the arrays are 0-based.
    let [stat2, spo2_d] = [float[7], float[8]];
    let [hr_msb, hr_lsb] = [float[19], float[20]];
    let hr = (u16::from(hr_msb & 0x03) << 7) | u16::from(hr_lsb & 0x7F);
    let mut q = Quality {
        smartpoint: stat2 & 0x20 != 0,
        low_battery: stat2 & 0x01 != 0,
        ..Quality::default()
    };
    for s in status {
        q.artifact |= s & 0x20 != 0;
        q.out_of_track |= s & 0x10 != 0;
        q.sensor_alarm |= s & 0x08 != 0;
        match (s & 0x04 != 0, s & 0x02 != 0) {
            (true, true) => q.marginal_perfusion = true,
            (true, false) => q.low_perfusion = true,
            _ => {}
        }
    }
    reading_events(spo2_d & 0x7F, hr, q, None, out);
}

#[cfg(test)]
#[path = "format7_tests.rs"]
mod tests;
