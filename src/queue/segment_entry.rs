//! The stored form of one reading inside a segment entry: a compact binary encoding behind a
//! leading format byte, and the JSON form that earlier versions wrote, still read.
//!
//! Receives a [`Reading`] to store (the writer's enqueue, a held reading given its patient, a
//! confirmed review, a released quarantine) and the bytes of a segment entry to read back (the
//! delivery's queue read, the dead-letter listing, the quarantine's repair, `queue verify` and
//! `queue salvage`). Promises (docs/store-format.md):
//! - [`encode`] writes format 1 (binary); [`decode`] reads format 1 and the JSON form, so a
//!   store written by an earlier version is delivered and verified as it is, mixed with new
//!   entries, without a migration;
//! - what [`decode`] returns equals what was encoded, field by field (times keep their offset,
//!   numbers their scale, floats their bits);
//! - damaged bytes are an error, never a different reading: every length is checked against
//!   what is left, every tag and enum number against the known ones, strings must be UTF-8, and
//!   bytes left over after the reading are an error;
//! - an error names the field or the JSON position only, never a stored value.
//!
//! # Format 1
//! ```text
//! entry    := 0x01 reading                 (a JSON entry starts with `{` instead)
//! reading  := opt(id16) device opt(str) opt(patient) opt(record) kind(u8)
//!             time time opt(time) n value* n str* opt(waveform)
//! device   := str str opt(str) opt(str)           id, driver, model, serial
//! patient  := str str                              id, system
//! record   := str opt(str) n str* opt(str)         id, family, given, birth date
//! value    := str opt(uvar) str opt(decimal) str opt(str) opt(u8)
//!                                                  code, mdc, name, value, unit, site, absent
//! waveform := f64 time n lead* n uvar* n uvar*     fs, t0, leads, R peaks, RR intervals
//! lead     := uvar str f64 n svar*                 mdc, name, µV per count, samples
//! time     := svar uvar svar                       unix seconds, nanoseconds, offset seconds
//! decimal  := svar u8                              mantissa, scale
//! opt(x)   := 0x00 | 0x01 x
//! str      := n utf8-bytes
//! n, uvar  := unsigned LEB128 varint; svar := zigzag then LEB128; f64 := 8 bytes little-endian
//! ```
//! `kind` and `absent` are the variant's position in [`Kind::ALL`] and [`ABSENT`]; new variants
//! are only ever added at the end.

mod wire;

use wire::{R, W};

use crate::reading::{
    AbsentReason, DeviceInfo, Kind, Lead, PatientRecord, PatientRef, Reading, Value, Waveform,
};

/// The leading byte of a binary (format 1) entry.
pub const BINARY_V1: u8 = 0x01;

/// The order that gives an [`AbsentReason`] its stored number.
pub const ABSENT: [AbsentReason; 5] = [
    AbsentReason::Unknown,
    AbsentReason::Error,
    AbsentReason::NotANumber,
    AbsentReason::PositiveInfinity,
    AbsentReason::NegativeInfinity,
];

/// Why a segment entry is not a reading. Never quotes stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the entry is empty")]
    Empty,
    #[error("stored reading format {0} is not known (this version reads 1 and JSON)")]
    Format(u8),
    #[error("stored reading cut short in {0}")]
    Truncated(&'static str),
    #[error("stored reading has an invalid {0}")]
    Invalid(&'static str),
    #[error("stored reading has {0} bytes after its end")]
    Trailing(usize),
    /// A JSON entry (written by an earlier version) that does not decode.
    #[error("{0}")]
    Json(String),
}

/// The stored form of `r`: format 1.
pub fn encode(r: &Reading) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    encode_into(r, &mut out);
    out
}

/// Appends the stored form of `r` (format 1) to `out`.
pub fn encode_into(r: &Reading, out: &mut Vec<u8>) {
    // Destructured so that a field added to `Reading` cannot be forgotten here.
    let Reading {
        id,
        device,
        room,
        patient,
        patient_record,
        kind,
        observed_at,
        received_at,
        device_time,
        values,
        flags,
        waveform,
    } = r;
    let w = &mut W(out);
    w.byte(BINARY_V1);
    w.opt(id.as_ref(), |w, id| w.0.extend_from_slice(&id.to_bytes()));
    let DeviceInfo {
        id: device_id,
        driver,
        model,
        serial,
    } = device;
    w.str(device_id.as_str());
    w.str(driver);
    w.opt_str(model.as_deref());
    w.opt_str(serial.as_deref());
    w.opt_str(room.as_deref());
    w.opt(patient.as_ref(), |w, PatientRef { id, system }| {
        w.str(id);
        w.str(system);
    });
    w.opt(patient_record.as_ref(), |w, p| {
        let PatientRecord {
            id,
            family,
            given,
            birth_date,
        } = p;
        w.str(id);
        w.opt_str(family.as_deref());
        w.len(given.len());
        for g in given {
            w.str(g);
        }
        w.opt_str(birth_date.as_deref());
    });
    w.byte(kind_number(*kind));
    w.time(*observed_at);
    w.time(*received_at);
    w.opt(device_time.as_ref(), |w, t| w.time(*t));
    w.len(values.len());
    for v in values {
        let Value {
            code,
            mdc,
            name,
            value,
            unit,
            site,
            absent,
        } = v;
        w.str(code);
        w.opt(mdc.as_ref(), |w, m| w.uvar(u64::from(*m)));
        w.str(name);
        w.opt(value.as_ref(), |w, d| {
            w.svar(d.mantissa());
            w.byte(d.scale());
        });
        w.str(unit.as_str());
        w.opt_str(site.as_deref());
        w.opt(absent.as_ref(), |w, a| w.byte(absent_number(*a)));
    }
    w.len(flags.len());
    for f in flags {
        w.str(f.as_str());
    }
    w.opt(waveform.as_ref(), |w, wf| {
        let Waveform {
            fs_hz,
            t0,
            leads,
            r_peaks,
            rr_ms,
        } = wf;
        w.0.extend_from_slice(&fs_hz.to_le_bytes());
        w.time(*t0);
        w.len(leads.len());
        for l in leads {
            let Lead {
                mdc,
                name,
                scale_uv,
                samples,
            } = l;
            w.uvar(u64::from(*mdc));
            w.str(name);
            w.0.extend_from_slice(&scale_uv.to_le_bytes());
            w.len(samples.len());
            for s in samples {
                w.svar(i64::from(*s));
            }
        }
        for list in [r_peaks, rr_ms] {
            w.len(list.len());
            for v in list {
                w.uvar(u64::from(*v));
            }
        }
    });
}

/// The JSON form earlier versions stored (and the public reading JSON). Kept to write stores
/// of the earlier form in tests and benchmarks; the queue writes [`encode`].
pub fn encode_json(r: &Reading) -> Vec<u8> {
    // Serialising a Reading into memory cannot fail: every field serialises, no map has
    // non-string keys.
    serde_json::to_vec(r).unwrap_or_default()
}

/// The reading stored in `bytes`: format 1 or the JSON form.
pub fn decode(bytes: &[u8]) -> Result<Reading, EntryError> {
    match bytes.first() {
        None => Err(EntryError::Empty),
        Some(&BINARY_V1) => {
            let mut r = R(&bytes[1..]);
            let reading = r.reading()?;
            match r.0.len() {
                0 => Ok(reading),
                n => Err(EntryError::Trailing(n)),
            }
        }
        Some(b'{' | b' ' | b'\t' | b'\n' | b'\r') => {
            serde_json::from_slice(bytes).map_err(|e| EntryError::Json(json_error(&e)))
        }
        Some(&other) => Err(EntryError::Format(other)),
    }
}

/// Why a JSON entry does not decode, without quoting any of it (serde's own message would quote
/// the offending string).
pub fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "not JSON",
        Category::Data => "JSON of the wrong shape",
        Category::Eof => "JSON cut short",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

fn kind_number(k: Kind) -> u8 {
    let i = Kind::ALL.iter().position(|x| *x == k).unwrap_or(0);
    u8::try_from(i).unwrap_or(0)
}

fn absent_number(a: AbsentReason) -> u8 {
    let i = ABSENT.iter().position(|x| *x == a).unwrap_or(0);
    u8::try_from(i).unwrap_or(0)
}

#[cfg(test)]
#[path = "segment_entry_tests.rs"]
mod tests;
