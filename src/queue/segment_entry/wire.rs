//! The primitives of the binary stored form ([`super`], format 1): a writer and a reader of
//! bytes, varints, strings, options and times, and the reader's walk through a whole reading.
//! Every length is checked against what is left; an error names the field, never a value.

use time::{OffsetDateTime, UtcOffset};

use super::{EntryError, ABSENT};
use crate::reading::{
    Decimal, DeviceId, DeviceInfo, Flag, Kind, Lead, PatientRecord, PatientRef, Reading, ReadingId,
    Ucum, Value, Waveform, MAX_SCALE,
};

pub(super) struct W<'a>(pub(super) &'a mut Vec<u8>);

impl W<'_> {
    pub(super) fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    // Each byte pushed holds seven bits of `v` (the truncation is the point).
    #[allow(clippy::cast_possible_truncation)]
    pub(super) fn uvar(&mut self, mut v: u64) {
        while v >= 0x80 {
            // The low seven bits, with the continuation bit set.
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub(super) fn svar(&mut self, v: i64) {
        self.uvar(((v << 1) ^ (v >> 63)).cast_unsigned());
    }

    pub(super) fn len(&mut self, n: usize) {
        self.uvar(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub(super) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    pub(super) fn opt<T>(&mut self, v: Option<&T>, each: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.byte(0),
            Some(v) => {
                self.byte(1);
                each(self, v);
            }
        }
    }

    pub(super) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
        }
    }

    pub(super) fn time(&mut self, t: OffsetDateTime) {
        self.svar(t.unix_timestamp());
        self.uvar(u64::from(t.nanosecond()));
        self.svar(i64::from(t.offset().whole_seconds()));
    }
}

pub(super) struct R<'a>(pub(super) &'a [u8]);

pub(super) type Res<T> = Result<T, EntryError>;

impl<'a> R<'a> {
    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Res<&'a [u8]> {
        if self.0.len() < n {
            return Err(EntryError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn byte(&mut self, what: &'static str) -> Res<u8> {
        let (&b, rest) = self.0.split_first().ok_or(EntryError::Truncated(what))?;
        self.0 = rest;
        Ok(b)
    }

    pub(super) fn uvar(&mut self, what: &'static str) -> Res<u64> {
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

    pub(super) fn svar(&mut self, what: &'static str) -> Res<i64> {
        let u = self.uvar(what)?;
        Ok((u >> 1).cast_signed() ^ (u & 1).cast_signed().wrapping_neg())
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Res<u32> {
        u32::try_from(self.uvar(what)?).map_err(|_| EntryError::Invalid(what))
    }

    pub(super) fn i32(&mut self, what: &'static str) -> Res<i32> {
        i32::try_from(self.svar(what)?).map_err(|_| EntryError::Invalid(what))
    }

    /// A count of items of at least one byte each: never more than the bytes left, so a
    /// damaged count cannot ask for a huge allocation.
    pub(super) fn len(&mut self, what: &'static str) -> Res<usize> {
        let n = usize::try_from(self.uvar(what)?).map_err(|_| EntryError::Invalid(what))?;
        if n > self.0.len() {
            return Err(EntryError::Truncated(what));
        }
        Ok(n)
    }

    pub(super) fn str(&mut self, what: &'static str) -> Res<String> {
        let n = self.len(what)?;
        let b = self.take(n, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| EntryError::Invalid(what))
    }

    pub(super) fn tag(&mut self, what: &'static str) -> Res<bool> {
        match self.byte(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(EntryError::Invalid(what)),
        }
    }

    pub(super) fn opt<T>(
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

    pub(super) fn opt_str(&mut self, what: &'static str) -> Res<Option<String>> {
        self.opt(what, |r| r.str(what))
    }

    pub(super) fn f64(&mut self, what: &'static str) -> Res<f64> {
        let b: [u8; 8] = self
            .take(8, what)?
            .try_into()
            .map_err(|_| EntryError::Truncated(what))?;
        Ok(f64::from_le_bytes(b))
    }

    pub(super) fn time(&mut self, what: &'static str) -> Res<OffsetDateTime> {
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

    pub(super) fn reading(&mut self) -> Res<Reading> {
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

    pub(super) fn value(&mut self) -> Res<Value> {
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

    pub(super) fn waveform(&mut self) -> Res<Waveform> {
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
