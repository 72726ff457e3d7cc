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

use time::{OffsetDateTime, UtcOffset};

use crate::reading::{
    AbsentReason, Decimal, DeviceId, DeviceInfo, Flag, Kind, Lead, PatientRecord, PatientRef,
    Reading, ReadingId, Ucum, Value, Waveform, MAX_SCALE,
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

struct W<'a>(&'a mut Vec<u8>);

impl W<'_> {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    // Each byte pushed holds seven bits of `v` (the truncation is the point).
    #[allow(clippy::cast_possible_truncation)]
    fn uvar(&mut self, mut v: u64) {
        while v >= 0x80 {
            // The low seven bits, with the continuation bit set.
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn svar(&mut self, v: i64) {
        self.uvar(((v << 1) ^ (v >> 63)).cast_unsigned());
    }

    fn len(&mut self, n: usize) {
        self.uvar(u64::try_from(n).unwrap_or(u64::MAX));
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt<T>(&mut self, v: Option<&T>, each: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.byte(0),
            Some(v) => {
                self.byte(1);
                each(self, v);
            }
        }
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
        }
    }

    fn time(&mut self, t: OffsetDateTime) {
        self.svar(t.unix_timestamp());
        self.uvar(u64::from(t.nanosecond()));
        self.svar(i64::from(t.offset().whole_seconds()));
    }
}

struct R<'a>(&'a [u8]);

type Res<T> = Result<T, EntryError>;

impl<'a> R<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Res<&'a [u8]> {
        if self.0.len() < n {
            return Err(EntryError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self, what: &'static str) -> Res<u8> {
        let (&b, rest) = self.0.split_first().ok_or(EntryError::Truncated(what))?;
        self.0 = rest;
        Ok(b)
    }

    fn uvar(&mut self, what: &'static str) -> Res<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(EntryError::Invalid(what));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                // One form per number: a last byte of 0 after others is a longer form of a
                // shorter number, which the writer never makes.
                if b == 0 && shift > 0 {
                    return Err(EntryError::Invalid(what));
                }
                return Ok(v);
            }
        }
        Err(EntryError::Invalid(what))
    }

    fn svar(&mut self, what: &'static str) -> Res<i64> {
        let u = self.uvar(what)?;
        Ok((u >> 1).cast_signed() ^ (u & 1).cast_signed().wrapping_neg())
    }

    fn u32(&mut self, what: &'static str) -> Res<u32> {
        u32::try_from(self.uvar(what)?).map_err(|_| EntryError::Invalid(what))
    }

    fn i32(&mut self, what: &'static str) -> Res<i32> {
        i32::try_from(self.svar(what)?).map_err(|_| EntryError::Invalid(what))
    }

    /// A count of items of at least one byte each: never more than the bytes left, so a
    /// damaged count cannot ask for a huge allocation.
    fn len(&mut self, what: &'static str) -> Res<usize> {
        let n = usize::try_from(self.uvar(what)?).map_err(|_| EntryError::Invalid(what))?;
        if n > self.0.len() {
            return Err(EntryError::Truncated(what));
        }
        Ok(n)
    }

    fn str(&mut self, what: &'static str) -> Res<String> {
        let n = self.len(what)?;
        let b = self.take(n, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| EntryError::Invalid(what))
    }

    fn tag(&mut self, what: &'static str) -> Res<bool> {
        match self.byte(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(EntryError::Invalid(what)),
        }
    }

    fn opt<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Self) -> Res<T>,
    ) -> Res<Option<T>> {
        if self.tag(what)? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_str(&mut self, what: &'static str) -> Res<Option<String>> {
        self.opt(what, |r| r.str(what))
    }

    fn f64(&mut self, what: &'static str) -> Res<f64> {
        let b: [u8; 8] = self
            .take(8, what)?
            .try_into()
            .map_err(|_| EntryError::Truncated(what))?;
        Ok(f64::from_le_bytes(b))
    }

    fn time(&mut self, what: &'static str) -> Res<OffsetDateTime> {
        let secs = self.svar(what)?;
        let nanos = self.u32(what)?;
        let offset = self.i32(what)?;
        let bad = |_| EntryError::Invalid(what);
        let offset = UtcOffset::from_whole_seconds(offset).map_err(bad)?;
        Ok(OffsetDateTime::from_unix_timestamp(secs)
            .map_err(bad)?
            .replace_nanosecond(nanos)
            .map_err(bad)?
            .to_offset(offset))
    }

    fn reading(&mut self) -> Res<Reading> {
        let id = self.opt("id", |r| {
            let b: [u8; 16] = r
                .take(16, "id")?
                .try_into()
                .map_err(|_| EntryError::Truncated("id"))?;
            Ok(ReadingId::from_bytes(b))
        })?;
        let device = DeviceInfo {
            id: DeviceId::new(self.str("device id")?),
            driver: self.str("driver")?,
            model: self.opt_str("model")?,
            serial: self.opt_str("serial")?,
        };
        let room = self.opt_str("room")?;
        let patient = self.opt("patient", |r| {
            Ok(PatientRef {
                id: r.str("patient")?,
                system: r.str("patient")?,
            })
        })?;
        let patient_record = self.opt("patient record", |r| {
            let id = r.str("patient record")?;
            let family = r.opt_str("patient record")?;
            let n = r.len("patient record")?;
            let given = (0..n)
                .map(|_| r.str("patient record"))
                .collect::<Res<Vec<_>>>()?;
            Ok(PatientRecord {
                id,
                family,
                given,
                birth_date: r.opt_str("patient record")?,
            })
        })?;
        let kind = *Kind::ALL
            .get(usize::from(self.byte("kind")?))
            .ok_or(EntryError::Invalid("kind"))?;
        let observed_at = self.time("observed_at")?;
        let received_at = self.time("received_at")?;
        let device_time = self.opt("device_time", |r| r.time("device_time"))?;
        let n = self.len("values")?;
        let values = (0..n).map(|_| self.value()).collect::<Res<Vec<_>>>()?;
        let n = self.len("flags")?;
        let flags = (0..n)
            .map(|_| self.str("flags").map(Flag::new))
            .collect::<Res<Vec<_>>>()?;
        let waveform = self.opt("waveform", Self::waveform)?;
        Ok(Reading {
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
        })
    }

    fn value(&mut self) -> Res<Value> {
        let code = self.str("value code")?;
        let mdc = self.opt("value mdc", |r| r.u32("value mdc"))?;
        let name = self.str("value name")?;
        let value = self.opt("value", |r| {
            let m = r.svar("value")?;
            let scale = r.byte("value")?;
            if scale > MAX_SCALE {
                return Err(EntryError::Invalid("value"));
            }
            Ok(Decimal::new(m, scale))
        })?;
        let unit = Ucum::new(self.str("value unit")?);
        let site = self.opt_str("value site")?;
        let absent = self.opt("value absent", |r| {
            ABSENT
                .get(usize::from(r.byte("value absent")?))
                .copied()
                .ok_or(EntryError::Invalid("value absent"))
        })?;
        Ok(Value {
            code,
            mdc,
            name,
            value,
            unit,
            site,
            absent,
        })
    }

    fn waveform(&mut self) -> Res<Waveform> {
        let fs_hz = self.f64("waveform")?;
        let t0 = self.time("waveform t0")?;
        let n = self.len("leads")?;
        let mut leads = Vec::with_capacity(n);
        for _ in 0..n {
            let mdc = self.u32("lead")?;
            let name = self.str("lead")?;
            let scale_uv = self.f64("lead")?;
            let k = self.len("samples")?;
            let mut samples = Vec::with_capacity(k);
            for _ in 0..k {
                samples.push(self.i32("samples")?);
            }
            leads.push(Lead {
                mdc,
                name,
                scale_uv,
                samples,
            });
        }
        let mut lists = [Vec::new(), Vec::new()];
        for (list, what) in lists.iter_mut().zip(["r_peaks", "rr_ms"]) {
            let k = self.len(what)?;
            list.reserve(k);
            for _ in 0..k {
                list.push(self.u32(what)?);
            }
        }
        let [r_peaks, rr_ms] = lists;
        Ok(Waveform {
            fs_hz,
            t0,
            leads,
            r_peaks,
            rr_ms,
        })
    }
}

#[cfg(test)]
#[path = "segment_entry_tests.rs"]
mod tests;
