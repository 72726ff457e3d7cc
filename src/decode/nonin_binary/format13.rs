//! Format #13: one SmartPoint spot-check packet per completed measurement
//! (docs/devices/nonin.md#format-13).
//!
//! `00 02 | type (u16 BE, 13) | len (u16 BE, ≥ 14) | data (len bytes) | CHK | 03`, where CHK is
//! the low byte of the sum of the data bytes. The data starts with the device's wall-clock
//! time in BCD (century, YY, MM, DD, hh, mm, ss; then a fraction byte, ignored), then STATUS
//! MSB (bit 1 SPA, bit 0 NOMS = no measurement), STATUS LSB (bit 4 MEM = sent from memory,
//! bit 0 LOW BAT), HR MSB and LSB (`HR = ((MSB & 0x01) << 8) | LSB`), a reserved byte, and
//! SpO2 (7 bits). Data beyond 14 bytes (later firmware) is covered by the checksum and ignored.
//!
//! The time becomes [`DeviceTime::Local`]; a date that BCD-decodes but does not exist (an
//! unset clock reading `00-00`) becomes [`DeviceTime::ClockNotSet`]; a non-BCD digit makes the
//! packet malformed. NOMS, or both values missing, is `Idle { episode_end: true }`.
//!
//! Framing: a packet starts at `00 02 00 0D`; anything else is skipped a byte at a time. A
//! length under 14 or over [`MAX_DATA_LEN`], a missing ETX or a wrong checksum is an error and
//! the search restarts one byte after the `00`. The buffer holds at most one packet plus one
//! feed chunk.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::{reading_events, HostOptions, Link, Quality, CHUNK};
use crate::decode::{DecodeError, DecodeEvent, Decoder, DeviceTime};

/// Longest data section accepted (the documented one is 14 bytes).
pub const MAX_DATA_LEN: usize = 256;
/// Shortest data section: the documented layout.
const MIN_DATA_LEN: usize = 14;
const HEADER: usize = 6;
const PACKET_TYPE: u16 = 13;
const ETX: u8 = 0x03;

/// The `nonin-13` decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct Nonin13 {
    link: Link,
    buf: Vec<u8>,
}

impl Nonin13 {
    pub fn new(host: HostOptions) -> Self {
        Self {
            link: Link::new(super::Format::F13, host),
            buf: Vec::with_capacity(CHUNK + HEADER + MAX_DATA_LEN + 2),
        }
    }

    /// Consumes every complete packet (or skippable byte) at the front of `buf`.
    fn process(&mut self, out: &mut Vec<DecodeEvent>) {
        let mut i = 0;
        while let Some(rest) = self.buf.get(i..) {
            match Self::step(&mut self.link, rest, out) {
                Some(n) => i += n,
                None => break,
            }
        }
        self.buf.drain(..i.min(self.buf.len()));
    }

    /// Looks at the bytes from a candidate packet start: `Some(bytes consumed)`, or `None`
    /// when more bytes are needed.
    fn step(link: &mut Link, rest: &[u8], out: &mut Vec<DecodeEvent>) -> Option<usize> {
        let b0 = *rest.first()?;
        if b0 != 0x00 {
            if !link.reply(b0, out) {
                link.skip(1);
            }
            return Some(1);
        }
        if *rest.get(1)? != 0x02 {
            link.skip(1);
            return Some(1);
        }
        let &[_, _, t1, t2, l1, l2] = rest.get(..HEADER)? else {
            return Some(1);
        };
        if u16::from_be_bytes([t1, t2]) != PACKET_TYPE {
            // `00 02` inside other data: not a packet start.
            link.skip(1);
            return Some(1);
        }
        let len = usize::from(u16::from_be_bytes([l1, l2]));
        if len < MIN_DATA_LEN {
            let e = link.malformed(format!("data length {len} is under {MIN_DATA_LEN}"));
            link.error(e, out);
            return Some(1);
        }
        if len > MAX_DATA_LEN {
            link.error(DecodeError::Oversized(MAX_DATA_LEN), out);
            return Some(1);
        }
        let total = HEADER + len + 2;
        let packet = rest.get(..total)?;
        let data = packet.get(HEADER..HEADER + len)?;
        let (chk, etx) = (packet.get(HEADER + len)?, packet.get(HEADER + len + 1)?);
        if *etx != ETX {
            let e = link.malformed(format!("no ETX after {len} data bytes (found {etx:#04x})"));
            link.error(e, out);
            return Some(1);
        }
        let sum = data.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        if sum != *chk {
            let e = DecodeError::Checksum(format!(
                "nonin-13: packet CHK {chk:#04x}, data sums to {sum:#04x}"
            ));
            link.error(e, out);
            return Some(1);
        }
        link.synced(out);
        if let Err(e) = decode_packet13(data, out) {
            link.error(e, out);
        }
        Some(total)
    }
}

impl Default for Nonin13 {
    fn default() -> Self {
        Self::new(HostOptions::default())
    }
}

impl Decoder for Nonin13 {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        for chunk in bytes.chunks(CHUNK) {
            self.buf.extend_from_slice(chunk);
            self.process(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        if !self.buf.is_empty() {
            let e = self
                .link
                .malformed(format!("packet cut short after {} bytes", self.buf.len()));
            self.link.error(e, out);
            self.buf.clear();
        }
        self.link.finish(out);
    }

    fn on_connect(&mut self) -> Vec<u8> {
        self.link.on_connect(OffsetDateTime::now_utc())
    }
}

/// Decodes the data section of a #13 packet (length and checksum already checked) and appends
/// its events to `out`. A section under 14 bytes or a non-BCD time is an error.
pub fn decode_packet13(data: &[u8], out: &mut Vec<DecodeEvent>) -> Result<(), DecodeError> {
    let Some(&[cc, yy, mo, dd, hh, mi, ss, _fraction, st_msb, st_lsb, hr_msb, hr_lsb, _, spo2]) =
        data.get(..MIN_DATA_LEN)
    else {
        return Err(DecodeError::Malformed(format!(
            "nonin-13: data section of {} bytes, need {MIN_DATA_LEN}",
            data.len()
        )));
    };
    let bcd_fields = [cc, yy, mo, dd, hh, mi, ss].map(bcd);
    let [Some(cc), Some(yy), Some(mo), Some(dd), Some(hh), Some(mi), Some(ss)] = bcd_fields else {
        return Err(DecodeError::Malformed(
            "nonin-13: date/time is not BCD".into(),
        ));
    };
    let device_time =
        local_time(cc, yy, mo, dd, hh, mi, ss).map_or(DeviceTime::ClockNotSet, DeviceTime::Local);
    if st_msb & 0x01 != 0 {
        // NOMS: the device made no measurement.
        out.push(DecodeEvent::Idle { episode_end: true });
        return Ok(());
    }
    let quality = Quality {
        smartpoint: st_msb & 0x02 != 0,
        from_memory: st_lsb & 0x10 != 0,
        low_battery: st_lsb & 0x01 != 0,
        ..Quality::default()
    };
    let hr = (u16::from(hr_msb & 0x01) << 8) | u16::from(hr_lsb);
    reading_events(spo2 & 0x7F, hr, quality, Some(device_time), out);
    Ok(())
}

/// A packed BCD byte (`0x59` → 59); `None` for a nibble above 9.
fn bcd(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    (hi <= 9 && lo <= 9).then_some(hi * 10 + lo)
}

/// The wall-clock time, if it exists on the calendar.
fn local_time(cc: u8, yy: u8, mo: u8, dd: u8, hh: u8, mi: u8, ss: u8) -> Option<PrimitiveDateTime> {
    let year = i32::from(cc) * 100 + i32::from(yy);
    let date = Date::from_calendar_date(year, Month::try_from(mo).ok()?, dd).ok()?;
    let time = Time::from_hms(hh, mi, ss).ok()?;
    Some(PrimitiveDateTime::new(date, time))
}

#[cfg(test)]
#[path = "format13_tests.rs"]
mod tests;
