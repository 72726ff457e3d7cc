//! Format #8: 4-byte frames, once per second, no checksum (docs/devices/nonin.md#format-8).
//!
//! | byte | bit 7 | 6 | 5 | 4 | 3 | 2 | 1 | 0 |
//! |---|---|---|---|---|---|---|---|---|
//! | 1 status | 1 | R | OOT | LPRF | MPRF | ARTF | HR8 | HR7 |
//! | 2 HR low | 0 | HR6 … HR0 | | | | | | |
//! | 3 SpO2 | 0 | SP6 … SP0 | | | | | | |
//! | 4 status2 | 0 | R | SPA | R | SNSA | R | R | LOW BAT |
//!
//! `HR = ((b1 & 0x03) << 7) | (b2 & 0x7F)`, `SpO2 = b3 & 0x7F`. Framing: a frame starts at a
//! byte with bit 7 set and takes the next three bytes, which must have bit 7 clear. A byte with
//! bit 7 set inside a frame cuts it short (an error) and starts the next one; bytes with bit 7
//! clear outside a frame are skipped. The decoder holds at most 4 bytes.

use time::OffsetDateTime;

use super::{reading_events, HostOptions, Link, Quality};
use crate::decode::{DecodeEvent, Decoder};

/// The `nonin-8` decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct Nonin8 {
    link: Link,
    frame: [u8; 4],
    len: usize,
}

impl Nonin8 {
    pub fn new(host: HostOptions) -> Self {
        Self {
            link: Link::new(super::Format::F8, host),
            frame: [0; 4],
            len: 0,
        }
    }

    fn push(&mut self, b: u8, out: &mut Vec<DecodeEvent>) {
        let start = b & 0x80 != 0;
        if self.len == 0 {
            if start {
                self.frame[0] = b;
                self.len = 1;
            } else if !self.link.reply(b, out) {
                self.link.skip(1);
            }
            return;
        }
        if start {
            let e = self
                .link
                .malformed(format!("frame cut short after {} of 4 bytes", self.len));
            self.link.error(e, out);
            self.frame[0] = b;
            self.len = 1;
            return;
        }
        let Some(slot) = self.frame.get_mut(self.len) else {
            // Unreachable: `len` is reset when it reaches 4. Stay total anyway.
            self.len = 0;
            return;
        };
        *slot = b;
        self.len += 1;
        if self.len == self.frame.len() {
            self.len = 0;
            self.link.synced(out);
            decode_frame8(self.frame, out);
        }
    }
}

impl Default for Nonin8 {
    fn default() -> Self {
        Self::new(HostOptions::default())
    }
}

impl Decoder for Nonin8 {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        for &b in bytes {
            self.push(b, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        if self.len > 0 {
            let e = self
                .link
                .malformed(format!("frame cut short after {} of 4 bytes", self.len));
            self.link.error(e, out);
            self.len = 0;
        }
        self.link.finish(out);
    }

    fn on_connect(&mut self) -> Vec<u8> {
        self.link.on_connect(OffsetDateTime::now_utc())
    }
}

/// Decodes one complete, framed #8 frame and appends its events to `out`.
pub fn decode_frame8(frame: [u8; 4], out: &mut Vec<DecodeEvent>) {
    let [b1, b2, b3, b4] = frame;
    let hr = (u16::from(b1 & 0x03) << 7) | u16::from(b2 & 0x7F);
    let spo2 = b3 & 0x7F;
    let quality = Quality {
        out_of_track: b1 & 0x20 != 0,
        low_perfusion: b1 & 0x10 != 0,
        marginal_perfusion: b1 & 0x08 != 0,
        artifact: b1 & 0x04 != 0,
        smartpoint: b4 & 0x20 != 0,
        sensor_alarm: b4 & 0x08 != 0,
        low_battery: b4 & 0x01 != 0,
        from_memory: false,
    };
    reading_events(spo2, hr, quality, None, out);
}

#[cfg(test)]
#[path = "format8_tests.rs"]
mod tests;
