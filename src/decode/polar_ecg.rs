//! `polar-ecg`: Polar H10 ECG as Polar Measurement Data (PMD) frames, one notification per
//! MQTT payload from a BLE→MQTT gateway (docs/ecg.md#polar-h10-polar-ecg).
//!
//! Frame: type (low 6 bits, 0 = ECG) · timestamp uint64 LE, ns since 2000-01-01 in sensor time,
//! of the LAST sample · frame type (bit 7 = compressed; only type 0 is read) · signed 24-bit LE
//! µV samples. Emits one [`SampleChunk`] per frame: scale 1 µV/count, `t0` = the first sample's
//! time (`ts − (n−1)/fs`) as an absolute UTC device time; normalize's clock rule then decides
//! whether it is trusted (an H10 restarts at 2019-01-01 until the host sets its clock).
//!
//! Continuity: a frame whose first sample is more than [`GAP_PERIODS`] sample periods after
//! the previous frame's last sample (or overlaps it) starts after a gap (`gap_before`). A frame
//! with the same timestamp as the previous one is a duplicate, an older one is out of order:
//! both are dropped with an `Error` event (counted) and the next chunk carries the flag
//! `ecg:duplicate_frame` / `ecg:out_of_order_frame`.

use time::OffsetDateTime;

use super::registry::{DriverInfo, OptionSpec, Transport};
use super::samples::{lead, ChunkLead, SampleChunk};
use super::{DecodeError, DecodeEvent, Decoder, DeviceTime, OptionError, Options};
use crate::reading::{Flag, Kind};

/// ns from 1970-01-01 to 2000-01-01.
pub const EPOCH_2000_NS: i128 = 946_684_800_000_000_000;
/// Header bytes before the samples.
pub const HEADER: usize = 10;
/// Largest frame accepted (a BLE notification is at most 512 bytes; gateways may batch).
pub const MAX_FRAME: usize = 4096;
/// A jump of more than this many sample periods between frames is a gap.
pub const GAP_PERIODS: f64 = 10.0;

/// How the gateway puts the frame into the MQTT payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    Binary,
    Hex,
}

/// The decoder of one H10 stream.
#[derive(Debug)]
pub struct PolarEcg {
    payload: Payload,
    fs_hz: f64,
    lead: (&'static str, u32),
    last_ts: Option<u64>,
    pending: Vec<Flag>,
}

impl PolarEcg {
    pub fn new(payload: Payload, fs_hz: f64, lead: (&'static str, u32)) -> Self {
        Self {
            payload,
            fs_hz,
            lead,
            last_ts: None,
            pending: Vec::new(),
        }
    }

    fn frame(&mut self, b: &[u8]) -> Result<Option<SampleChunk>, DecodeError> {
        if b.len() > MAX_FRAME {
            return Err(DecodeError::Oversized(MAX_FRAME));
        }
        let (Some(&mtype), Some(ts), Some(&ftype)) = (b.first(), b.get(1..9), b.get(9)) else {
            return Err(DecodeError::Malformed(format!(
                "PMD frame of {} bytes is shorter than its 10-byte header",
                b.len()
            )));
        };
        if mtype & 0x3F != 0 {
            return Err(DecodeError::Unsupported(format!(
                "PMD measurement type {} is not ECG",
                mtype & 0x3F
            )));
        }
        if ftype & 0x80 != 0 {
            return Err(DecodeError::Unsupported(
                "compressed (delta) ECG frame".into(),
            ));
        }
        if ftype != 0 {
            return Err(DecodeError::Unsupported(format!("ECG frame type {ftype}")));
        }
        let data = &b[HEADER..];
        if !data.len().is_multiple_of(3) {
            return Err(DecodeError::Malformed(format!(
                "{} sample bytes are not whole 3-byte samples",
                data.len()
            )));
        }
        let mut ts_bytes = [0u8; 8];
        ts_bytes.copy_from_slice(ts);
        let ts = u64::from_le_bytes(ts_bytes);
        let samples: Vec<i32> = data
            .chunks_exact(3)
            .map(|s| i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8)
            .collect();
        if samples.is_empty() {
            return Ok(None);
        }
        let period_ns = 1e9 / self.fs_hz;
        #[allow(clippy::cast_precision_loss)]
        let span_ns = (samples.len() - 1) as f64 * period_ns;
        #[allow(clippy::cast_possible_truncation)]
        let first = i128::from(ts) - span_ns.round() as i128;
        let mut gap_before = false;
        if let Some(prev) = self.last_ts {
            if ts == prev {
                self.flag("ecg:duplicate_frame");
                return Err(DecodeError::Malformed(
                    "duplicate PMD frame (same timestamp as the previous)".into(),
                ));
            }
            if ts < prev {
                self.flag("ecg:out_of_order_frame");
                return Err(DecodeError::Malformed(
                    "out-of-order PMD frame (older than the previous)".into(),
                ));
            }
            #[allow(clippy::cast_precision_loss)]
            let jump = (first - i128::from(prev)) as f64 / period_ns;
            gap_before = !(0.5..=GAP_PERIODS).contains(&jump);
        }
        self.last_ts = Some(ts);
        let t0 = OffsetDateTime::from_unix_timestamp_nanos(first + EPOCH_2000_NS)
            .map(DeviceTime::Absolute)
            .unwrap_or(DeviceTime::ClockNotSet);
        Ok(Some(SampleChunk {
            fs_hz: self.fs_hz,
            t0: Some(t0),
            leads: vec![ChunkLead {
                name: self.lead.0,
                mdc: self.lead.1,
                scale_uv: 1.0,
                samples,
            }],
            gap_before,
            saturated: false,
            flags: std::mem::take(&mut self.pending),
        }))
    }

    fn flag(&mut self, f: &str) {
        let f = Flag::new(f);
        if !self.pending.contains(&f) {
            self.pending.push(f);
        }
    }
}

impl Decoder for PolarEcg {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        let decoded;
        let frame = match self.payload {
            Payload::Binary => bytes,
            Payload::Hex => {
                if bytes.len() > 2 * MAX_FRAME + 64 {
                    out.push(DecodeEvent::Error(DecodeError::Oversized(2 * MAX_FRAME)));
                    return;
                }
                let clean: Vec<u8> = bytes
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                match hex::decode(&clean) {
                    Ok(d) => {
                        decoded = d;
                        &decoded
                    }
                    Err(e) => {
                        out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
                            "payload is not hex: {e}"
                        ))));
                        return;
                    }
                }
            }
        };
        match self.frame(frame) {
            Ok(Some(chunk)) => out.push(DecodeEvent::Samples(chunk)),
            Ok(None) => out.push(DecodeEvent::Idle { episode_end: false }),
            Err(e) => out.push(DecodeEvent::Error(e)),
        }
    }

    /// Every `feed` is one whole payload: nothing is buffered.
    fn finish(&mut self, _out: &mut Vec<DecodeEvent>) {}
}

fn parse_payload(v: &str) -> Result<Payload, String> {
    match v {
        "binary" => Ok(Payload::Binary),
        "hex" => Ok(Payload::Hex),
        _ => Err(format!("`{v}` is not one of: binary, hex")),
    }
}

fn parse_rate(v: &str) -> Result<f64, String> {
    match v.trim().parse::<u32>() {
        Ok(r) if (1..=2000).contains(&r) => Ok(f64::from(r)),
        _ => Err(format!("`{v}` is not a sample rate in Hz from 1 to 2000")),
    }
}

fn parse_lead(v: &str) -> Result<(&'static str, u32), String> {
    lead(v).ok_or_else(|| format!("`{v}` is not a lead (ECG, I, II, III, aVR, aVL, aVF, V1..V6)"))
}

fn build(_t: Transport, opts: &Options) -> Result<Box<dyn Decoder>, Vec<OptionError>> {
    let err = |key: &str| {
        let key = key.to_string();
        move |reason| vec![OptionError { key, reason }]
    };
    let payload = opts
        .get("payload")
        .map_or(Ok(Payload::Binary), |v| parse_payload(v))
        .map_err(err("payload"))?;
    let fs = opts
        .get("sample_rate")
        .map_or(Ok(130.0), |v| parse_rate(v))
        .map_err(err("sample_rate"))?;
    let lead = opts
        .get("lead")
        .map_or(Ok(("ecg", 131_328)), |v| parse_lead(v))
        .map_err(err("lead"))?;
    Ok(Box::new(PolarEcg::new(payload, fs, lead)))
}

const S: [OptionSpec; 3] = crate::model::ecg_options::SPECS;

/// The `polar-ecg` driver entry for the registry.
pub static INFO: DriverInfo = DriverInfo {
    name: "polar-ecg",
    devices: "Polar H10 chest strap ECG (PMD data frames) via a BLE→MQTT gateway",
    transports: &[Transport::Mqtt],
    kinds: &[Kind::Ecg, Kind::HeartRate],
    framing: "one PMD data notification per MQTT message (binary or hex)",
    experimental: false,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: None,
    mqtt_topic: None,
    options: &[
        OptionSpec {
            key: "payload",
            help: "`binary` (default) or `hex`: how the gateway puts the frame in the payload",
            check: |v| parse_payload(v).map(|_| ()),
        },
        OptionSpec {
            key: "sample_rate",
            help: "ECG sample rate set on the strap, Hz (default 130, the H10's rate)",
            check: |v| parse_rate(v).map(|_| ()),
        },
        OptionSpec {
            key: "lead",
            help: "lead the electrodes approximate (default ECG = unspecified, MDC 131328)",
            check: |v| parse_lead(v).map(|_| ()),
        },
        S[0],
        S[1],
        S[2],
    ],
    build,
};

#[cfg(test)]
#[path = "polar_ecg_tests.rs"]
mod tests;
