//! `suntech` (experimental): the SunTech Advantage / Advantage+ OEM NIBP module, host-driven
//! binary frames (docs/devices/suntech.md, inferred from two open-source hosts — verify on hardware).
//!
//! **Wire.** Host → module: `3A`, command bytes, checksum. Module → host: `3E`, LEN, payload,
//! checksum, with LEN counting the whole frame. Checksum both ways: the two's complement of the
//! 8-bit sum of all preceding bytes. Responses are told apart by LEN: 4 is a status character,
//! 5 the cuff pressure, 0x18 a BP data record, 0x43 a version string.
//!
//! **What the driver sends.** It only *reads* results: every `poll_every` (option, default
//! 2 s) it sends "Get BP data" ([`GET_BP_DATA`]). Starting a measurement inflates a cuff on a
//! patient, which is the medical assistant's decision (the device's start button), so the
//! driver never sends a start command — unless the option `start_on_connect = true` is set, in
//! which case [`Decoder::on_connect`] sends one start ([`parse_start_mode`], option `start_mode`:
//! `adult` (default), `pediatric` or `neonatal`).
//!
//! **Framing.** A frame starts at `3E` followed by a known LEN. Host commands from the table
//! (an adapter echoing what we sent) are skipped as [`DecodeEvent::Idle`]. Other bytes are
//! skipped and reported once per run as [`DecodeError::Malformed`]; a checksum failure is
//! [`DecodeError::Checksum`], after which one byte is dropped and the search resumes inside
//! the buffered bytes. At most one frame ([`MAX_FRAME`] bytes) is buffered. A frame cut short
//! by the end of the stream is reported by [`Decoder::finish`].
//!
//! **Events.**
//! - Status `'O'` received, `'B'` busy, `'S'` sleep, cuff pressure, version: `Idle`; `'K'`
//!   (measurement completed) is `Idle` and marks the next BP record as new; `'A'` (aborted) is
//!   `Idle { episode_end: true }`; `'E'`, `'N'`, `'D'`, `'T'` are [`DecodeError::Unsupported`]
//!   naming the status; another status byte is malformed.
//! - A BP record that is new (rule below) with code 0: a `blood_pressure` message (`systolic`,
//!   `diastolic`, `mean`, mm[Hg]) and a `heart_rate` message (`/min`, MDC 149546 =
//!   MDC_PULS_RATE_NON_INV) unless the pulse is 0 (not measured). An all-zero record (no
//!   measurement since power-up) is `Idle`. Code 86 (aborted by the user) is
//!   `Idle { episode_end: true }`; any other code ("BP out of range", weak signal, leak, ...) is
//!   [`DecodeError::Unsupported`] with the code's meaning and **never** a reading.
//!
//! **Forwarding rule.** The module returns its last record on every poll. A record is new when
//! a `'K'` arrived since the last record, or when its documented fields (systolic, diastolic,
//! pulse, MAP, code) differ from the last record's; otherwise it is `Idle`. Bytes 6–15 and
//! 21–22 are undocumented and ignored, so a live counter there cannot cause duplicates; the
//! price is that two identical results in a row without a `'K'` seen in between are one
//! reading. After a connect ([`Decoder::on_connect`]) the first record only sets the memory
//! (a result already stored may be an earlier patient's and carries no time) unless a `'K'`
//! came first; a reconnect keeps the memory. A decoder that never saw `on_connect`
//! (`vitalsd decode`) treats the first record as new.

use std::time::Duration;

use super::registry::{DriverInfo, OptionSpec, Transport, SERIAL_9600_8N1};
/// Same rule as SureTemp's: all bytes of a frame sum to 0 mod 256.
pub use super::suretemp::checksum;
use super::{suretemp::parse_poll_every, Options};
use super::{DecodeError, DecodeEvent, Decoder, DeviceMessage, DeviceValue, Measured, OptionError};
use crate::model::codes::MDC_PULSE_RATE_CUFF;
use crate::reading::{Decimal, Kind};

/// First byte of a host → module frame.
pub const HOST_START: u8 = 0x3A;
/// First byte of a module → host frame.
pub const MODULE_START: u8 = 0x3E;
/// LEN of a BP data record.
pub const LEN_BP: u8 = 0x18;
/// LEN of the version string response; the longest frame.
pub const LEN_VERSION: u8 = 0x43;
/// Longest frame buffered.
pub const MAX_FRAME: usize = LEN_VERSION as usize;
/// Default poll period.
pub const DEFAULT_POLL: Duration = Duration::from_secs(2);

pub const START_ADULT: [u8; 3] = [0x3A, 0x20, 0xA6];
pub const START_PEDIATRIC: [u8; 3] = [0x3A, 0x87, 0x3F];
pub const START_NEONATAL: [u8; 3] = [0x3A, 0x28, 0x9E];
pub const ABORT: [u8; 5] = [0x3A, 0x79, 0x01, 0x00, 0x4C];
pub const GET_CUFF_PRESSURE: [u8; 5] = [0x3A, 0x79, 0x05, 0x00, 0x48];
pub const GET_BP_DATA: [u8; 5] = [0x3A, 0x79, 0x03, 0x00, 0x4A];
pub const GET_MODULE_DATA: [u8; 3] = [0x3A, 0x00, 0xC6];
pub const GET_VERSION: [u8; 5] = [0x3A, 0x79, 0x02, 0x40, 0x0B];
pub const RESET: [u8; 3] = [0x3A, 0x8A, 0x3C];

/// Every host command of docs/devices/suntech.md (recognised when an adapter echoes them).
#[rustfmt::skip]
const HOST_COMMANDS: [&[u8]; 9] = [
    &START_ADULT, &START_PEDIATRIC, &START_NEONATAL, &ABORT, &GET_CUFF_PRESSURE, &GET_BP_DATA,
    &GET_MODULE_DATA, &GET_VERSION, &RESET,
];

/// BP record codes (decimal) and their meanings.
pub const ERROR_CODES: [(u8, &str); 13] = [
    (1, "weak signal"),
    (2, "erratic signal / artifact"),
    (3, "BP out of range"),
    (4, "measurement timeout"),
    (85, "pneumatic blockage"),
    (86, "aborted by user"),
    (87, "inflation timeout / leak / loose cuff"),
    (88, "safety timeout"),
    (89, "cuff overpressure"),
    (90, "power out of range / hardware"),
    (
        91,
        "permission problem (safety override / auto-zero out of range)",
    ),
    (97, "transducer out of range"),
    (99, "EEPROM calibration failure"),
];
/// Code 86: the user aborted; not a failure.
pub const CODE_ABORTED: u8 = 86;

const OPTIONS: [OptionSpec; 3] = [
    OptionSpec {
        key: "poll_every",
        help: "how often the module is asked for its last BP result (default 2s, 200ms-60s)",
        check: |v| parse_poll_every(v).map(|_| ()),
    },
    OptionSpec {
        key: "start_on_connect",
        help: "`true` sends one start-measurement command when the port opens (inflates the \
               cuff!); default `false`: the driver only reads results",
        check: |v| parse_bool(v).map(|_| ()),
    },
    OptionSpec {
        key: "start_mode",
        help: "cuff mode of that start command: adult (default), pediatric, neonatal",
        check: |v| parse_start_mode(v).map(|_| ()),
    },
];

/// The registry entry of `suntech`.
pub static INFO: DriverInfo = DriverInfo {
    name: "suntech",
    devices: "SunTech Advantage / Advantage+ OEM NIBP module (host-driven; protocol inferred)",
    transports: &[Transport::Serial],
    kinds: &[Kind::BloodPressure, Kind::HeartRate],
    framing: "binary frames 3E LEN … checksum; the host polls \"Get BP data\"",
    experimental: true,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SERIAL_9600_8N1),
    mqtt_topic: None,
    options: &OPTIONS,
    build: |_, opts| build(opts).map(|d| Box::new(d) as Box<dyn Decoder>),
};

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{v}` is not true or false")),
    }
}

/// The start command of a cuff mode (`adult`, `pediatric`, `neonatal`).
pub fn parse_start_mode(v: &str) -> Result<[u8; 3], String> {
    match v {
        "adult" => Ok(START_ADULT),
        "pediatric" => Ok(START_PEDIATRIC),
        "neonatal" => Ok(START_NEONATAL),
        _ => Err(format!("`{v}` is not one of: adult, pediatric, neonatal")),
    }
}

/// Builds the decoder from validated options.
pub fn build(opts: &Options) -> Result<Suntech, Vec<OptionError>> {
    fn get<T>(
        opts: &Options,
        key: &str,
        parse: fn(&str) -> Result<T, String>,
        default: T,
    ) -> Result<T, Vec<OptionError>> {
        opts.get(key).map_or(Ok(default), |v| {
            parse(v).map_err(|reason| {
                vec![OptionError {
                    key: key.into(),
                    reason,
                }]
            })
        })
    }
    let every = get(opts, "poll_every", parse_poll_every, DEFAULT_POLL)?;
    let start = get(opts, "start_on_connect", parse_bool, false)?;
    let mode = get(opts, "start_mode", parse_start_mode, START_ADULT)?;
    Ok(Suntech::new(every, start.then_some(mode)))
}

/// A host → module frame: `3A`, `body`, checksum.
pub fn command(body: &[u8]) -> Vec<u8> {
    let mut f = vec![HOST_START];
    f.extend_from_slice(body);
    f.push(checksum(&f));
    f
}

fn is_known_len(len: u8) -> bool {
    matches!(len, 4 | 5 | LEN_BP | LEN_VERSION)
}

/// The documented fields of a BP record: systolic, diastolic, pulse, MAP, code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpRecord {
    pub systolic: i16,
    pub diastolic: i16,
    pub pulse: i16,
    pub map: i16,
    pub code: u8,
}

impl BpRecord {
    /// Parses a complete 24-byte BP frame (from `3E`); `None` for another length.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let f: &[u8; 24] = frame.try_into().ok()?;
        let at = |i: usize| i16::from_le_bytes([f[i], f[i + 1]]);
        Some(Self {
            systolic: at(2),
            diastolic: at(4),
            pulse: at(16),
            map: at(18),
            code: f[20],
        })
    }
}

/// What the decoder remembers of BP records; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    Fresh,
    Baseline,
    Last(Option<BpRecord>),
}

/// The `suntech` decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct Suntech {
    buf: Vec<u8>,
    skipped: usize,
    resyncing: bool,
    memory: Memory,
    /// A `'K'` arrived since the last BP record.
    completed: bool,
    model: Option<String>,
    poll_every: Duration,
    start: Option<[u8; 3]>,
}

impl Suntech {
    /// A decoder polling every `poll_every`; `start` is the command sent on connect, if any.
    pub fn new(poll_every: Duration, start: Option<[u8; 3]>) -> Self {
        Self {
            buf: Vec::with_capacity(MAX_FRAME),
            skipped: 0,
            resyncing: false,
            memory: Memory::Fresh,
            completed: false,
            model: None,
            poll_every,
            start,
        }
    }
}

/// Where the next frame (or host-command echo) may start, or a prefix at the end.
enum Start {
    /// A module frame at this index.
    Frame(usize),
    /// A complete echoed host command at this index, of this length.
    Echo(usize, usize),
    /// A possible frame or command prefix at this index: wait for more bytes.
    Wait(usize),
    /// Nothing: every byte is garbage.
    None,
}

fn find_start(buf: &[u8]) -> Start {
    for (i, &b) in buf.iter().enumerate() {
        let rest = &buf[i..];
        match b {
            MODULE_START => match rest.get(1) {
                None => return Start::Wait(i),
                Some(&len) if is_known_len(len) => return Start::Frame(i),
                Some(_) => {}
            },
            HOST_START => {
                if let Some(c) = HOST_COMMANDS.iter().find(|c| rest.starts_with(c)) {
                    return Start::Echo(i, c.len());
                }
                if HOST_COMMANDS.iter().any(|c| c.starts_with(rest)) {
                    return Start::Wait(i);
                }
            }
            _ => {}
        }
    }
    Start::None
}

impl Suntech {
    fn report_skipped(&mut self, out: &mut Vec<DecodeEvent>) {
        if self.skipped > 0 {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "suntech: skipped {} bytes without a frame start",
                std::mem::take(&mut self.skipped)
            ))));
        }
    }

    fn skip(&mut self, n: usize) {
        if !self.resyncing {
            self.skipped = self.skipped.saturating_add(n);
        }
        self.buf.drain(..n);
    }

    /// Consumes every complete frame in the buffer.
    fn drain(&mut self, out: &mut Vec<DecodeEvent>) {
        loop {
            let at = match find_start(&self.buf) {
                Start::None => return self.skip(self.buf.len()),
                Start::Wait(i) => return self.skip(i),
                Start::Echo(i, n) => {
                    self.skip(i);
                    self.resyncing = false;
                    self.report_skipped(out);
                    self.buf.drain(..n);
                    out.push(DecodeEvent::Idle { episode_end: false });
                    continue;
                }
                Start::Frame(i) => i,
            };
            self.skip(at);
            self.resyncing = false;
            self.report_skipped(out);
            let len = usize::from(self.buf.get(1).copied().unwrap_or(0));
            let Some(frame) = self.buf.get(..len) else {
                return;
            };
            if frame.iter().fold(0u8, |s, &b| s.wrapping_add(b)) != 0 {
                out.push(DecodeEvent::Error(DecodeError::Checksum(format!(
                    "suntech: frame of {len} bytes does not sum to 0 mod 256"
                ))));
                self.buf.drain(..1);
                self.resyncing = true;
                continue;
            }
            let frame: Vec<u8> = self.buf.drain(..len).collect();
            self.frame(&frame, out);
        }
    }

    /// Handles one checked module frame.
    fn frame(&mut self, frame: &[u8], out: &mut Vec<DecodeEvent>) {
        let idle = |end| DecodeEvent::Idle { episode_end: end };
        let payload = frame.get(2..frame.len().saturating_sub(1)).unwrap_or(&[]);
        match (frame.len(), payload) {
            (4, &[status]) => out.push(self.status(status)),
            (24, _) => match BpRecord::parse(frame) {
                Some(rec) => self.record(&rec, out),
                None => out.push(idle(false)),
            },
            (0x43, _) => {
                self.model = match payload.get(..2) {
                    Some(b"LX") => Some("Advantage".into()),
                    Some(b"SB") => Some("Advantage+".into()),
                    _ => self.model.take(),
                };
                out.push(idle(false));
            }
            _ => out.push(idle(false)), // cuff pressure
        }
    }

    fn status(&mut self, status: u8) -> DecodeEvent {
        let failed = |what: &str| {
            DecodeEvent::Error(DecodeError::Unsupported(format!(
                "suntech: module status '{}': {what}",
                char::from(status)
            )))
        };
        match status {
            b'K' => {
                self.completed = true;
                DecodeEvent::Idle { episode_end: false }
            }
            b'O' | b'B' | b'S' => DecodeEvent::Idle { episode_end: false },
            b'A' => DecodeEvent::Idle { episode_end: true },
            b'E' => failed("error"),
            b'N' => failed("invalid command"),
            b'D' => failed("unrecognised command"),
            b'T' => failed("timeout"),
            other => DecodeEvent::Error(DecodeError::Malformed(format!(
                "suntech: unknown status byte 0x{other:02X}"
            ))),
        }
    }

    /// Applies the forwarding rule of the module docs to one BP record.
    fn record(&mut self, rec: &BpRecord, out: &mut Vec<DecodeEvent>) {
        let completed = std::mem::take(&mut self.completed);
        let previous = std::mem::replace(&mut self.memory, Memory::Last(Some(*rec)));
        let new = completed
            || match previous {
                Memory::Fresh => true,
                Memory::Baseline => false,
                Memory::Last(last) => last != Some(*rec),
            };
        let empty = rec.systolic == 0 && rec.diastolic == 0 && rec.map == 0 && rec.pulse == 0;
        if !new || (empty && rec.code == 0) {
            out.push(DecodeEvent::Idle { episode_end: false });
            return;
        }
        match rec.code {
            0 => bp_messages(rec, self.model.as_ref(), out),
            CODE_ABORTED => out.push(DecodeEvent::Idle { episode_end: true }),
            code => {
                let what = ERROR_CODES
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map_or("unknown code", |(_, w)| w);
                out.push(DecodeEvent::Error(DecodeError::Unsupported(format!(
                    "suntech: measurement failed: {what} (code {code})"
                ))));
            }
        }
    }
}

impl Decoder for Suntech {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        // At most one frame is buffered before it is consumed, whatever the chunk size.
        for chunk in bytes.chunks(MAX_FRAME) {
            self.buf.extend_from_slice(chunk);
            self.drain(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        if self.buf.first() == Some(&MODULE_START) && self.buf.len() >= 2 {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "suntech: stream ended inside a frame ({} bytes)",
                self.buf.len()
            ))));
        } else if !self.resyncing {
            self.skipped = self.skipped.saturating_add(self.buf.len());
        }
        self.buf.clear();
        self.resyncing = false;
        self.report_skipped(out);
    }

    fn on_connect(&mut self) -> Vec<u8> {
        if self.memory == Memory::Fresh {
            self.memory = Memory::Baseline;
        }
        self.start.map(|s| s.to_vec()).unwrap_or_default()
    }

    fn poll_every(&self) -> Option<Duration> {
        Some(self.poll_every)
    }

    fn poll(&mut self) -> Vec<u8> {
        GET_BP_DATA.to_vec()
    }
}

/// The two messages of a successful BP record.
fn bp_messages(rec: &BpRecord, model: Option<&String>, out: &mut Vec<DecodeEvent>) {
    let mm = |name: &str, v: i16| {
        DeviceValue::new(
            name,
            Measured::Value(Decimal::from_int(i64::from(v))),
            "mm[Hg]",
        )
    };
    let mut bp = DeviceMessage::new(
        Kind::BloodPressure,
        vec![
            mm("systolic", rec.systolic),
            mm("diastolic", rec.diastolic),
            mm("mean", rec.map),
        ],
    );
    bp.model = model.cloned();
    out.push(DecodeEvent::Message(bp));
    if rec.pulse != 0 {
        let mut v = DeviceValue::new(
            "heart_rate",
            Measured::Value(Decimal::from_int(i64::from(rec.pulse))),
            "/min",
        );
        v.mdc = Some(MDC_PULSE_RATE_CUFF);
        let mut hr = DeviceMessage::new(Kind::HeartRate, vec![v]);
        hr.model = model.cloned();
        out.push(DecodeEvent::Message(hr));
    }
}

#[cfg(test)]
#[path = "suntech_tests.rs"]
mod tests;
