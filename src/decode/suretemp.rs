//! `suretemp`: the Welch Allyn SureTemp Plus OEM thermometer module, host-polled binary blocks
//! (docs/devices/suretemp.md).
//!
//! **Wire.** Command and response blocks share one layout: preamble `03 02 10`, command code
//! (2 bytes, big-endian), type (`01` command, `02` good response, `03` NAK), data size (2 bytes,
//! little-endian), data, checksum (the two's complement of the 8-bit sum of all preceding bytes).
//! The module only answers: the driver writes [`POLL`] (command 0x941C, "send temperature
//! record") every `poll_every` (option, default 1 s; the record is refreshed every 173 ms).
//! Nothing needs to be sent on connect: asynchronous messages stay disabled after power-up,
//! which is what a polling host wants.
//!
//! **Framing.** Bytes before a preamble are skipped and reported once per run as
//! [`DecodeError::Malformed`] (bytes skipped while resynchronising after another error belong
//! to that error and are not reported again). A header with an unknown type or a data size over [`MAX_DATA`]
//! is an error at once (it cannot start a block); a block whose checksum fails is
//! [`DecodeError::Checksum`]. After either, one byte is dropped and the search for the next
//! preamble resumes inside the bytes already buffered. The buffer never holds more than one
//! block ([`MAX_BLOCK`] bytes). A block cut short by the end of the stream is reported by
//! [`Decoder::finish`].
//!
//! **Events.** A NAK is [`DecodeError::Unsupported`] naming the command. Good responses to
//! other commands, and command blocks (an adapter echoing our own poll), are
//! [`DecodeEvent::Idle`]. A 0x941C response must hold the 19-byte [`TempRecord`], else it is
//! malformed. Only the record's *final/predicted* temperature is forwarded, never the live probe
//! temperature: one [`DeviceMessage`] of kind `body_temperature` (`temperature`, `Cel`, site
//! `oral` when the record says oral algorithm and oral/axillary probe; other algorithm, probe
//! and method values become `device:algorithm_N`, `device:probe_type_N`,
//! `device:monitor_mode` / `device:method_N` flags and no site, because their meanings are
//! not public). The kelvin float is converted exactly (integer arithmetic on the float's bits)
//! to hundredths of a degree Celsius, rounded half away from zero: 310.15 K → `37.00`. Two
//! decimals keep a °F display (the module's own unit in many products) exact to 0.1 °F.
//!
//! **Forwarding rule (one reading per measurement).** The module keeps returning its last
//! result on every poll. The decoder remembers the final value (its float bits) it saw last:
//! - final `0.0` means "no final yet" (a measurement is running or none was taken): it clears
//!   the memory, so the next final is new;
//! - a final that differs from the remembered one is forwarded (a new measurement finished);
//! - the same final again is not forwarded ([`DecodeEvent::Idle`]).
//! - **After a connect** ([`Decoder::on_connect`]: daemon start, cable plugged in) the first
//!   record only sets the memory: a final already on display when vitalsd connects may belong
//!   to an earlier patient and has no time of its own, so it is never forwarded. A reconnect
//!   keeps the memory, so a result that finished while the cable was out is still forwarded if
//!   it differs from the last one. A decoder that never saw `on_connect` (`vitalsd decode`)
//!   forwards the first final it reads.
//!
//! A record with a non-zero error code yields [`DecodeError::Unsupported`] ("module reports
//! error code N") once per new code, never a temperature, and leaves the memory unchanged.

use std::time::Duration;

use super::registry::{DriverInfo, OptionSpec, Transport, SERIAL_9600_8N1};
use super::{DecodeError, DecodeEvent, Decoder, DeviceMessage, DeviceValue, Measured, OptionError};
use crate::reading::{Decimal, Flag, Kind};

/// Block preamble.
pub const PREAMBLE: [u8; 3] = [0x03, 0x02, 0x10];
/// Preamble, command, type and size.
pub const HEADER: usize = 8;
/// Largest data size accepted (the temperature record has 19 bytes; version strings a few).
pub const MAX_DATA: usize = 64;
/// Largest block: header, data, checksum.
pub const MAX_BLOCK: usize = HEADER + MAX_DATA + 1;
/// Command 0x941C: send temperature record.
pub const CMD_TEMPERATURE: u16 = 0x941C;
/// The poll: command 0x941C with no data.
pub const POLL: [u8; 9] = [0x03, 0x02, 0x10, 0x94, 0x1C, 0x01, 0x00, 0x00, 0x3A];
/// Length of the temperature record.
pub const RECORD_LEN: usize = 19;
/// Block types.
pub const TYPE_COMMAND: u8 = 0x01;
pub const TYPE_RESPONSE: u8 = 0x02;
pub const TYPE_NAK: u8 = 0x03;

/// Default poll period.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
const MIN_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(60);

/// The registry entry of `suretemp`.
pub static INFO: DriverInfo = DriverInfo {
    name: "suretemp",
    devices: "Welch Allyn SureTemp Plus OEM thermometer module (host-polled)",
    transports: &[Transport::Serial],
    kinds: &[Kind::BodyTemperature],
    framing: "binary blocks 03 02 10 …, 8-bit checksum; the host polls 0x941C",
    experimental: false,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &[OptionSpec {
        key: "poll_every",
        help: "how often the module is asked for its temperature record (default 1s, 200ms-60s)",
        check: check_poll_every,
    }],
    build: |_, opts| {
        let every = match opts.get("poll_every") {
            Some(v) => parse_poll_every(v).map_err(|reason| {
                vec![OptionError {
                    key: "poll_every".into(),
                    reason,
                }]
            })?,
            None => DEFAULT_POLL,
        };
        Ok(Box::new(SureTemp::new(every)))
    },
};

/// Parses a `poll_every` option value (a duration between 200 ms and 60 s).
pub fn parse_poll_every(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v).map_err(|e| format!("`{v}` is not a duration: {e}"))?;
    if !(MIN_POLL..=MAX_POLL).contains(&d) {
        return Err(format!("`{v}` is outside 200ms..60s"));
    }
    Ok(d)
}

fn check_poll_every(v: &str) -> Result<(), String> {
    parse_poll_every(v).map(|_| ())
}

/// The checksum byte that makes a block's bytes sum to 0 mod 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |s, &b| s.wrapping_add(b))
        .wrapping_neg()
}

/// A complete block: preamble, command, type, size, data, checksum. `None` when `data` is
/// longer than [`MAX_DATA`].
pub fn block(command: u16, kind: u8, data: &[u8]) -> Option<Vec<u8>> {
    if data.len() > MAX_DATA {
        return None;
    }
    let size = u16::try_from(data.len()).ok()?;
    let mut b = PREAMBLE.to_vec();
    b.extend_from_slice(&command.to_be_bytes());
    b.push(kind);
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(data);
    b.push(checksum(&b));
    Some(b)
}

/// The 19-byte temperature record (response data of 0x941C), fields as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempRecord {
    /// Final/predicted temperature, IEEE-754 binary32 kelvin bits (0.0 = none yet).
    pub final_k: u32,
    /// Live probe temperature, binary32 kelvin bits (never forwarded).
    pub current_k: u32,
    pub sample_counter: u32,
    /// 0 = predictive (1 = monitor, per command 0x2A12).
    pub method: u8,
    /// 0 = oral.
    pub algorithm: u8,
    /// 2 = ready.
    pub state: u8,
    /// 0 = none.
    pub error: u16,
    pub active: u8,
    /// 0 = oral/axillary probe.
    pub probe: u8,
}

impl TempRecord {
    /// Parses the record; `None` unless `data` has exactly [`RECORD_LEN`] bytes.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let d: &[u8; RECORD_LEN] = data.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        Some(Self {
            final_k: u32_at(0),
            current_k: u32_at(4),
            sample_counter: u32_at(8),
            method: d[12],
            algorithm: d[13],
            state: d[14],
            error: u16::from_le_bytes([d[15], d[16]]),
            active: d[17],
            probe: d[18],
        })
    }

    /// The record's 19 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECORD_LEN);
        b.extend_from_slice(&self.final_k.to_le_bytes());
        b.extend_from_slice(&self.current_k.to_le_bytes());
        b.extend_from_slice(&self.sample_counter.to_le_bytes());
        b.extend_from_slice(&[self.method, self.algorithm, self.state]);
        b.extend_from_slice(&self.error.to_le_bytes());
        b.extend_from_slice(&[self.active, self.probe]);
        b
    }

    /// True when the record holds a final temperature (any value but ±0.0).
    pub fn has_final(&self) -> bool {
        self.final_k & 0x7FFF_FFFF != 0
    }
}

/// A binary32 kelvin value as hundredths of a degree Celsius, computed exactly from the
/// float's bits and rounded half away from zero. `None` for NaN, infinities, values at or
/// below 0 K and values above 2^20 K (no thermometer reports them).
pub fn kelvin_bits_to_centi_celsius(bits: u32) -> Option<i64> {
    let negative = bits >> 31 != 0;
    let exp = (bits >> 23) & 0xFF;
    let frac = i128::from(bits & 0x7F_FFFF);
    if exp == 0xFF || negative || bits == 0 {
        return None;
    }
    // value = mantissa × 2^e
    let (mantissa, e) = if exp == 0 {
        (frac, -149i32)
    } else {
        (frac | 0x80_0000, i32::try_from(exp).ok()? - 150)
    };
    if e > -4 {
        return None; // ≥ 2^20 K
    }
    // hundredths = (mantissa × 100 − 27315 × 2^k) / 2^k with k = −e, capped: below 2^-100 the
    // mantissa term cannot change the rounded result.
    let k = u32::try_from(-e).ok()?.min(100);
    let m = if -e > 100 { 0 } else { mantissa };
    let den = 1i128 << k;
    let num = m * 100 - 27_315 * den;
    let q = (num.abs() * 2 + den) / (2 * den);
    i64::try_from(if num < 0 { -q } else { q }).ok()
}

/// What the decoder remembers of the final temperature; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// No record seen and no connect: the first final is forwarded (`vitalsd decode`).
    Fresh,
    /// Connected, no record yet: the first final only sets the memory.
    Baseline,
    /// The last record had no final.
    Cleared,
    /// The last final seen (forwarded or baseline), as float bits.
    Shown(u32),
}

/// The `suretemp` decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct SureTemp {
    buf: Vec<u8>,
    /// Garbage bytes skipped since the last report.
    skipped: usize,
    /// True after a header or checksum error until the next preamble: the bytes skipped in
    /// between belong to the frame already reported.
    resyncing: bool,
    memory: Memory,
    last_error: u16,
    poll_every: Duration,
}

impl SureTemp {
    pub fn new(poll_every: Duration) -> Self {
        Self {
            buf: Vec::with_capacity(MAX_BLOCK),
            skipped: 0,
            resyncing: false,
            memory: Memory::Fresh,
            last_error: 0,
            poll_every,
        }
    }

    fn report_skipped(&mut self, out: &mut Vec<DecodeEvent>) {
        if self.skipped > 0 {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "suretemp: skipped {} bytes without a block preamble",
                std::mem::take(&mut self.skipped)
            ))));
        }
    }

    /// Consumes every complete block in the buffer.
    fn drain(&mut self, out: &mut Vec<DecodeEvent>) {
        loop {
            let start = find_preamble(&self.buf);
            if !self.resyncing {
                self.skipped = self.skipped.saturating_add(start);
            }
            self.buf.drain(..start);
            if self.buf.len() < PREAMBLE.len() {
                return; // nothing or a preamble prefix: wait
            }
            self.resyncing = false;
            self.report_skipped(out);
            let Some(header) = self.buf.get(..HEADER) else {
                return;
            };
            let (kind, size) = (
                header[5],
                usize::from(u16::from_le_bytes([header[6], header[7]])),
            );
            if !(TYPE_COMMAND..=TYPE_NAK).contains(&kind) || size > MAX_DATA {
                out.push(DecodeEvent::Error(if size > MAX_DATA {
                    DecodeError::Oversized(MAX_BLOCK)
                } else {
                    DecodeError::Malformed(format!("suretemp: unknown block type 0x{kind:02X}"))
                }));
                self.buf.drain(..1);
                self.resyncing = true;
                continue;
            }
            let total = HEADER + size + 1;
            let Some(frame) = self.buf.get(..total) else {
                return;
            };
            if frame.iter().fold(0u8, |s, &b| s.wrapping_add(b)) != 0 {
                out.push(DecodeEvent::Error(DecodeError::Checksum(format!(
                    "suretemp: block of {total} bytes does not sum to 0 mod 256"
                ))));
                self.buf.drain(..1);
                self.resyncing = true;
                continue;
            }
            let frame: Vec<u8> = self.buf.drain(..total).collect();
            self.block(&frame, out);
        }
    }

    /// Handles one checked block.
    fn block(&mut self, frame: &[u8], out: &mut Vec<DecodeEvent>) {
        let command = u16::from_be_bytes([frame[3], frame[4]]);
        let data = frame.get(HEADER..frame.len() - 1).unwrap_or(&[]);
        match frame[5] {
            TYPE_NAK => out.push(DecodeEvent::Error(DecodeError::Unsupported(format!(
                "suretemp: module answered NAK to command 0x{command:04X}"
            )))),
            TYPE_RESPONSE if command == CMD_TEMPERATURE => match TempRecord::parse(data) {
                Some(rec) => self.record(&rec, out),
                None => out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                    "suretemp: temperature record of {} bytes, expected {RECORD_LEN}",
                    data.len()
                )))),
            },
            _ => out.push(DecodeEvent::Idle { episode_end: false }),
        }
    }

    /// Applies the forwarding rule of the module docs to one record.
    fn record(&mut self, rec: &TempRecord, out: &mut Vec<DecodeEvent>) {
        if rec.error != 0 {
            if rec.error != std::mem::replace(&mut self.last_error, rec.error) {
                out.push(DecodeEvent::Error(DecodeError::Unsupported(format!(
                    "suretemp: module reports error code {}",
                    rec.error
                ))));
            } else {
                out.push(DecodeEvent::Idle { episode_end: false });
            }
            return;
        }
        self.last_error = 0;
        if !rec.has_final() {
            self.memory = Memory::Cleared;
            out.push(DecodeEvent::Idle { episode_end: false });
            return;
        }
        let Some(centi) = kelvin_bits_to_centi_celsius(rec.final_k) else {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "suretemp: final temperature bits 0x{:08X} are not a kelvin value",
                rec.final_k
            ))));
            return;
        };
        let previous = std::mem::replace(&mut self.memory, Memory::Shown(rec.final_k));
        match previous {
            Memory::Baseline => out.push(DecodeEvent::Idle { episode_end: false }),
            Memory::Shown(bits) if bits == rec.final_k => {
                out.push(DecodeEvent::Idle { episode_end: false });
            }
            Memory::Fresh | Memory::Cleared | Memory::Shown(_) => {
                out.push(DecodeEvent::Message(message(rec, centi)));
            }
        }
    }
}

/// The reading of a record whose final temperature is `centi` hundredths of a degree Celsius.
fn message(rec: &TempRecord, centi: i64) -> DeviceMessage {
    let mut v = DeviceValue::new(
        "temperature",
        Measured::Value(Decimal::new(centi, 2)),
        "Cel",
    );
    if rec.algorithm == 0 && rec.probe == 0 {
        v.site = Some("oral".into());
    }
    let mut m = DeviceMessage::new(Kind::BodyTemperature, vec![v]);
    match rec.method {
        0 => {}
        1 => m.flags.push(Flag::device("monitor_mode")),
        n => m.flags.push(Flag::device(&format!("method_{n}"))),
    }
    if rec.algorithm != 0 {
        m.flags
            .push(Flag::device(&format!("algorithm_{}", rec.algorithm)));
    }
    if rec.probe != 0 {
        m.flags
            .push(Flag::device(&format!("probe_type_{}", rec.probe)));
    }
    m
}

/// Index of the first complete preamble, or of a preamble prefix at the end, or `buf.len()`.
fn find_preamble(buf: &[u8]) -> usize {
    (0..buf.len())
        .find(|&i| {
            let rest = &buf[i..];
            let n = rest.len().min(PREAMBLE.len());
            rest[..n] == PREAMBLE[..n]
        })
        .unwrap_or(buf.len())
}

impl Decoder for SureTemp {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        // At most one block is buffered before it is consumed, whatever the chunk size.
        for chunk in bytes.chunks(MAX_BLOCK) {
            self.buf.extend_from_slice(chunk);
            self.drain(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        if self.buf.len() < PREAMBLE.len() && !self.resyncing {
            self.skipped = self.skipped.saturating_add(self.buf.len());
        }
        self.resyncing = false;
        if self.buf.len() >= PREAMBLE.len() {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "suretemp: stream ended inside a block ({} bytes)",
                self.buf.len()
            ))));
        }
        self.buf.clear();
        self.report_skipped(out);
    }

    fn on_connect(&mut self) -> Vec<u8> {
        if self.memory == Memory::Fresh {
            self.memory = Memory::Baseline;
        }
        Vec::new()
    }

    fn poll_every(&self) -> Option<Duration> {
        Some(self.poll_every)
    }

    fn poll(&mut self) -> Vec<u8> {
        POLL.to_vec()
    }
}

#[cfg(test)]
#[path = "suretemp_tests.rs"]
mod tests;
