//! ER7 syntax (docs/hl7-inbound.md#er7-encoding): delimiters from MSH-1/MSH-2, segments,
//! fields, components, escapes, and the DTM time type.
//!
//! Receives a message's bytes (UTF-8, else ISO 8859-1) or values to write; promises a bounded
//! parse (at most [`MAX_SEGMENTS`] segments) into borrowed field lists, [`Hl7Error`]s that
//! quote no field content, and escaping that keeps delimiters and line breaks out of written
//! fields. Read by the `hl7v2` decoder (ORU^R01) and by the ACK reader; the escapes and
//! [`format_dtm`] are also what the HL7 sink writes with.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::Hl7Error;
use crate::model::DeviceTime;

/// Most segments accepted in one message.
pub const MAX_SEGMENTS: usize = 2000;

/// A text cut to 40 characters, for the few reasons that quote a header field (MSH-9, MSH-12).
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The delimiters of a message (MSH-1, MSH-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Delimiters {
    /// `|^~\&`.
    pub const STANDARD: Delimiters = Delimiters {
        field: '|',
        component: '^',
        repetition: '~',
        escape: '\\',
        subcomponent: '&',
    };

    /// Decodes `\F\ \S\ \T\ \R\ \E\`; other escape sequences are kept as they are.
    pub fn unescape(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find(self.escape) {
            out.push_str(&rest[..i]);
            let after = &rest[i + self.escape.len_utf8()..];
            let Some(j) = after.find(self.escape) else {
                out.push_str(&rest[i..]);
                return out;
            };
            let seq = &after[..j];
            match seq {
                "F" => out.push(self.field),
                "S" => out.push(self.component),
                "T" => out.push(self.subcomponent),
                "R" => out.push(self.repetition),
                "E" => out.push(self.escape),
                _ => {
                    out.push(self.escape);
                    out.push_str(seq);
                    out.push(self.escape);
                }
            }
            rest = &after[j + self.escape.len_utf8()..];
        }
        out.push_str(rest);
        out
    }

    /// Escapes delimiters in text for output.
    pub fn escape(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            let code = match c {
                c if c == self.escape => "E",
                c if c == self.field => "F",
                c if c == self.component => "S",
                c if c == self.subcomponent => "T",
                c if c == self.repetition => "R",
                '\r' | '\n' => {
                    out.push(' ');
                    continue;
                }
                _ => {
                    out.push(c);
                    continue;
                }
            };
            out.push(self.escape);
            out.push_str(code);
            out.push(self.escape);
        }
        out
    }

    /// Component `n` (1-based) of the first repetition of a raw field, still escaped.
    pub(crate) fn comp<'a>(&self, field: &'a str, n: usize) -> &'a str {
        let first = field.split(self.repetition).next().unwrap_or("");
        first
            .split(self.component)
            .nth(n.saturating_sub(1))
            .unwrap_or("")
    }

    /// Component `n` unescaped and trimmed.
    pub(crate) fn text(&self, field: &str, n: usize) -> String {
        self.unescape(self.comp(field, n)).trim().to_string()
    }
}

/// A parsed message: its text, delimiters and segments as field lists (`fields[0]` is the
/// segment id; for MSH `fields[1]` is MSH-1 so that `fields[n]` is always SEG-n).
pub(crate) struct Er7<'a> {
    pub(crate) d: Delimiters,
    pub(crate) segments: Vec<Vec<&'a str>>,
}

impl<'a> Er7<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<Self, Hl7Error> {
        let mut lines = text.split(['\r', '\n']).filter(|l| !l.trim().is_empty());
        let msh = lines.next().ok_or(Hl7Error::NoMsh)?;
        let d = delimiters(msh)?;
        let mut segments = Vec::new();
        for line in std::iter::once(msh).chain(lines) {
            if segments.len() >= MAX_SEGMENTS {
                return Err(Hl7Error::TooManySegments(MAX_SEGMENTS));
            }
            let mut fields: Vec<&str> = line.split(d.field).collect();
            if segments.is_empty() {
                // MSH-1 is the separator itself: put it in so numbering matches.
                fields.insert(1, msh.get(3..3 + d.field.len_utf8()).unwrap_or("|"));
            }
            segments.push(fields);
        }
        Ok(Self { d, segments })
    }

    pub(crate) fn msh(&self) -> &[&'a str] {
        self.segments.first().map_or(&[], Vec::as_slice)
    }
}

pub(crate) fn field<'a>(seg: &[&'a str], n: usize) -> &'a str {
    seg.get(n).copied().unwrap_or("")
}

fn delimiters(msh: &str) -> Result<Delimiters, Hl7Error> {
    if !msh.starts_with("MSH") {
        return Err(Hl7Error::NoMsh);
    }
    let mut chars = msh.chars().skip(3);
    let bad = |r: &str| Hl7Error::BadEncoding(r.to_string());
    let field = chars
        .next()
        .ok_or_else(|| bad("no field separator after MSH"))?;
    let enc: Vec<char> = chars.take_while(|&c| c != field).take(5).collect();
    let [component, repetition, escape, subcomponent, ..] = enc[..] else {
        return Err(bad("MSH-2 must declare 4 encoding characters, e.g. ^~\\&"));
    };
    let all = [field, component, repetition, escape, subcomponent];
    let distinct = all.iter().enumerate().all(|(i, c)| !all[..i].contains(c));
    if !distinct || all.iter().any(|c| c.is_alphanumeric() || c.is_whitespace()) {
        return Err(bad("delimiters must be distinct punctuation characters"));
    }
    Ok(Delimiters {
        field,
        component,
        repetition,
        escape,
        subcomponent,
    })
}

/// Message bytes as text: UTF-8 when valid, else ISO 8859-1 (one char per byte).
pub(crate) fn as_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => bytes
            .iter()
            .map(|&b| char::from(b))
            .collect::<String>()
            .into(),
    }
}

/// Reads an HL7 DTM `YYYYMMDDHHMM[SS[.S…]][+/-ZZZZ]`. Empty → `None`; a time less precise
/// than minutes or out of range is an error.
pub fn dtm(s: &str) -> Result<Option<DeviceTime>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || "not an HL7 time YYYYMMDDHHMM[SS[.S]][+/-ZZZZ]".to_string();
    let (body, offset) = match s
        .char_indices()
        .find(|&(i, c)| i >= 4 && (c == '+' || c == '-'))
    {
        Some((i, _)) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (digits, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if !ok(digits) || !ok(frac) || frac.len() > 4 || !matches!(digits.len(), 12 | 14) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).and_then(|t| t.parse::<u32>().ok());
    let year = num(0..4)
        .and_then(|y| i32::try_from(y).ok())
        .ok_or_else(bad)?;
    let month = num(4..6)
        .and_then(|m| u8::try_from(m).ok())
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = num(6..8)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(bad)?;
    let hour = num(8..10)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(bad)?;
    let minute = num(10..12)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(bad)?;
    let second = num(12..14)
        .map_or(Some(0), |v| u8::try_from(v).ok())
        .ok_or_else(bad)?;
    let nanos = if frac.is_empty() {
        0
    } else {
        let f: u32 = frac.parse().map_err(|_| bad())?;
        f * 10u32.pow(9 - u32::try_from(frac.len()).unwrap_or(9).min(9))
    };
    let date = Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    let time = Time::from_hms_nano(hour, minute, second, nanos).map_err(|_| bad())?;
    let local = PrimitiveDateTime::new(date, time);
    let Some(off) = offset else {
        return Ok(Some(DeviceTime::Local(local)));
    };
    let (sign, hhmm) = off.split_at(1);
    if hhmm.len() != 4 || !ok(hhmm) {
        return Err(bad());
    }
    let h = hhmm[..2].parse::<i8>().map_err(|_| bad())?;
    let m = hhmm[2..].parse::<i8>().map_err(|_| bad())?;
    if h > 14 || m > 59 {
        return Err(bad());
    }
    let (h, m) = if sign == "-" { (-h, -m) } else { (h, m) };
    let off = UtcOffset::from_hms(h, m, 0).map_err(|_| bad())?;
    Ok(Some(DeviceTime::Absolute(local.assume_offset(off))))
}

/// Writes an HL7 DTM with seconds and offset: `20240315102930+0100`.
pub fn format_dtm(t: OffsetDateTime) -> String {
    let off = t.offset();
    let (h, m, _) = off.as_hms();
    let sign = if off.is_negative() { '-' } else { '+' };
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{sign}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        h.unsigned_abs(),
        m.unsigned_abs()
    )
}
