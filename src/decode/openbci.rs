//! `openbci`: OpenBCI Cyton (ADS1299) over its USB dongle (docs/ecg.md#openbci-cyton-openbci).
//!
//! 33-byte packets: `A0` · sample number · 8 × signed 24-bit big-endian counts · 6 aux bytes ·
//! footer `C0`–`CF`. `A0` can occur inside data, so a header counts only when the byte 32
//! later is a footer; otherwise one byte is dropped and the search goes on (the skipped bytes
//! are reported once, as one `Error`, when the next packet is found). The buffer never holds
//! more than [`MAX_BUFFER`] bytes.
//!
//! Emits one [`SampleChunk`] per run of consecutive packets in a `feed`: the channels named in
//! the `channels` option (`"1:I,2:II"`; default `"1:ECG"`), scale `4.5 V / gain / (2²³ − 1)`
//! (0.02235 µV/count at the default gain 24), no device time. A sample-number jump starts a new
//! chunk with `gap_before`; a repeated sample number is a duplicate packet: dropped, counted as
//! an `Error`, and flagged `ecg:duplicate_frame` on the next chunk. A count at full scale
//! (`7FFFFF` / `800000`) on a used channel marks the chunk `saturated`. Daisy (16-channel)
//! boards interleave odd/even packets and are not supported.

use super::registry::{DriverInfo, OptionSpec, Parity, SerialDefaults, Transport};
use super::samples::{lead, ChunkLead, SampleChunk};
use super::{DecodeError, DecodeEvent, Decoder, OptionError, Options};
use crate::reading::{Flag, Kind};

pub const PACKET: usize = 33;
pub const HEADER: u8 = 0xA0;
/// Most bytes buffered between feeds (a partial packet plus slack).
pub const MAX_BUFFER: usize = 4 * PACKET;
pub const FULL_SCALE: i32 = 0x7F_FFFF;
pub const NEG_FULL_SCALE: i32 = -0x80_0000;
const GAINS: [u32; 7] = [1, 2, 4, 6, 8, 12, 24];

/// One used channel: its 0-based index and lead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Channel {
    pub index: usize,
    pub name: &'static str,
    pub mdc: u32,
}

/// One decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub sample: u8,
    pub counts: [i32; 8],
    pub footer: u8,
}

/// Decodes one 33-byte packet (header and footer already checked or not).
pub fn packet(b: &[u8]) -> Result<Packet, DecodeError> {
    if b.len() != PACKET {
        return Err(DecodeError::Malformed(format!(
            "packet of {} bytes, not {PACKET}",
            b.len()
        )));
    }
    if b[0] != HEADER || b[32] & 0xF0 != 0xC0 {
        return Err(DecodeError::Malformed("no A0 header / Cx footer".into()));
    }
    let mut counts = [0i32; 8];
    for (c, s) in counts.iter_mut().zip(b[2..26].chunks_exact(3)) {
        *c = i32::from_be_bytes([s[0], s[1], s[2], 0]) >> 8;
    }
    Ok(Packet {
        sample: b[1],
        counts,
        footer: b[32],
    })
}

/// The decoder of one Cyton stream.
#[derive(Debug)]
pub struct OpenBci {
    fs_hz: f64,
    scale_uv: f64,
    channels: Vec<Channel>,
    buf: Vec<u8>,
    skipped: usize,
    last: Option<u8>,
    pending: Vec<Flag>,
}

impl OpenBci {
    pub fn new(fs_hz: f64, gain: u32, channels: Vec<Channel>) -> Self {
        Self {
            fs_hz,
            scale_uv: scale_uv(gain),
            channels,
            buf: Vec::with_capacity(MAX_BUFFER),
            skipped: 0,
            last: None,
            pending: Vec::new(),
        }
    }

    fn new_chunk(&mut self, gap_before: bool) -> SampleChunk {
        SampleChunk {
            fs_hz: self.fs_hz,
            t0: None,
            leads: self
                .channels
                .iter()
                .map(|c| ChunkLead {
                    name: c.name,
                    mdc: c.mdc,
                    scale_uv: self.scale_uv,
                    samples: Vec::new(),
                })
                .collect(),
            gap_before,
            saturated: false,
            flags: std::mem::take(&mut self.pending),
        }
    }

    fn report_skipped(&mut self, out: &mut Vec<DecodeEvent>) {
        if self.skipped > 0 {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "{} bytes without a valid A0…Cx packet skipped",
                self.skipped
            ))));
            self.skipped = 0;
        }
    }

    fn push_chunk(chunk: Option<SampleChunk>, out: &mut Vec<DecodeEvent>) {
        if let Some(c) = chunk.filter(|c| !c.is_empty()) {
            out.push(DecodeEvent::Samples(c));
        }
    }
}

impl Decoder for OpenBci {
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        let mut chunk: Option<SampleChunk> = None;
        loop {
            let room = MAX_BUFFER - self.buf.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buf.extend_from_slice(now);
            bytes = rest;
            let mut at = 0usize;
            while self.buf.len() - at >= PACKET {
                let b = &self.buf[at..at + PACKET];
                let Ok(p) = packet(b) else {
                    at += 1;
                    self.skipped += 1;
                    continue;
                };
                at += PACKET;
                self.report_skipped(out);
                let expected = self.last.map(|l| l.wrapping_add(1));
                if self.last == Some(p.sample) {
                    self.pending.push(Flag::new("ecg:duplicate_frame"));
                    self.pending.dedup();
                    out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                        "duplicate packet (sample number {})",
                        p.sample
                    ))));
                    continue;
                }
                let gap = expected.is_some_and(|e| e != p.sample);
                self.last = Some(p.sample);
                if gap || chunk.is_none() {
                    Self::push_chunk(chunk.take(), out);
                    chunk = Some(self.new_chunk(gap));
                }
                if let Some(c) = chunk.as_mut() {
                    for (lead, ch) in c.leads.iter_mut().zip(&self.channels) {
                        let v = p.counts.get(ch.index).copied().unwrap_or(0);
                        c.saturated |= v == FULL_SCALE || v == NEG_FULL_SCALE;
                        lead.samples.push(v);
                    }
                }
            }
            self.buf.drain(..at);
            if bytes.is_empty() {
                break;
            }
        }
        Self::push_chunk(chunk, out);
    }

    fn finish(&mut self, out: &mut Vec<DecodeEvent>) {
        self.skipped += self.buf.len();
        if !self.buf.is_empty() {
            out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                "truncated packet: {} bytes at the end of the stream",
                self.buf.len()
            ))));
            self.skipped = 0;
        }
        self.report_skipped(out);
        self.buf.clear();
        self.last = None;
    }

    /// `b` starts streaming.
    fn on_connect(&mut self) -> Vec<u8> {
        b"b".to_vec()
    }
}

/// µV per count at `gain`: `4.5 V / gain / (2²³ − 1)`.
pub fn scale_uv(gain: u32) -> f64 {
    4.5 / f64::from(gain.max(1)) / f64::from(FULL_SCALE) * 1e6
}

fn parse_gain(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(g) if GAINS.contains(&g) => Ok(g),
        _ => Err(format!(
            "`{v}` is not an ADS1299 gain (1, 2, 4, 6, 8, 12, 24)"
        )),
    }
}

fn parse_rate(v: &str) -> Result<f64, String> {
    match v.trim().parse::<u32>() {
        Ok(r) if (1..=16_000).contains(&r) => Ok(f64::from(r)),
        _ => Err(format!("`{v}` is not a sample rate in Hz from 1 to 16000")),
    }
}

/// `"1:I,2:II"` → channels (1-based on the wire side, 1..=8, each at most once).
pub fn parse_channels(v: &str) -> Result<Vec<Channel>, String> {
    let mut out: Vec<Channel> = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (n, l) = part
            .split_once(':')
            .ok_or_else(|| format!("`{part}` is not CHANNEL:LEAD (e.g. 1:II)"))?;
        let index = match n.trim().parse::<usize>() {
            Ok(i) if (1..=8).contains(&i) => i - 1,
            _ => return Err(format!("`{n}` is not a channel from 1 to 8")),
        };
        let (name, mdc) = lead(l).ok_or_else(|| {
            format!("`{l}` is not a lead (ECG, I, II, III, aVR, aVL, aVF, V1..V6)")
        })?;
        if out.iter().any(|c| c.index == index || c.mdc == mdc) {
            return Err(format!("`{part}` repeats a channel or a lead"));
        }
        out.push(Channel { index, name, mdc });
    }
    if out.is_empty() {
        return Err("no channel mapped".into());
    }
    Ok(out)
}

fn build(_t: Transport, opts: &Options) -> Result<Box<dyn Decoder>, Vec<OptionError>> {
    let err = |key: &str| {
        let key = key.to_string();
        move |reason| vec![OptionError { key, reason }]
    };
    let gain = opts
        .get("gain")
        .map_or(Ok(24), |v| parse_gain(v))
        .map_err(err("gain"))?;
    let fs = opts
        .get("sample_rate")
        .map_or(Ok(250.0), |v| parse_rate(v))
        .map_err(err("sample_rate"))?;
    let channels = parse_channels(opts.get("channels").map_or("1:ECG", String::as_str))
        .map_err(err("channels"))?;
    Ok(Box::new(OpenBci::new(fs, gain, channels)))
}

const S: [OptionSpec; 3] = crate::model::ecg_options::SPECS;

/// The `openbci` driver entry for the registry.
pub static INFO: DriverInfo = DriverInfo {
    name: "openbci",
    devices: "OpenBCI Cyton (ADS1299) ECG/EEG board over its USB dongle (8 channels)",
    transports: &[Transport::Serial],
    kinds: &[Kind::Ecg, Kind::HeartRate],
    framing: "33-byte packets A0 … Cx, 24-bit big-endian counts, 250 samples/s",
    experimental: false,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SerialDefaults {
        baud: 115_200,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
    }),
    mqtt_topic: None,
    options: &[
        OptionSpec {
            key: "channels",
            help: "channel → lead map, e.g. \"1:I,2:II\" (default \"1:ECG\", unspecified lead)",
            check: |v| parse_channels(v).map(|_| ()),
        },
        OptionSpec {
            key: "gain",
            help: "ADS1299 PGA gain set on the board: 1, 2, 4, 6, 8, 12 or 24 (default 24)",
            check: |v| parse_gain(v).map(|_| ()),
        },
        OptionSpec {
            key: "sample_rate",
            help: "sample rate in Hz (default 250)",
            check: |v| parse_rate(v).map(|_| ()),
        },
        S[0],
        S[1],
        S[2],
    ],
    build,
};

#[cfg(test)]
#[path = "openbci_tests.rs"]
mod tests;
