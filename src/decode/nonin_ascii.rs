//! `nonin-ascii`: the human-readable 1 line/s output of Nonin oximeters (docs/devices/nonin.md#ascii-lines-nonin-ascii).
//!
//! Receives serial bytes (9600 8N1, lines ending CR LF) and emits, per line
//! `[HH:MM:SS ]SPO2=XXX HR=YYY[ F][*][B]`:
//! - up to two [`DeviceMessage`]s: kind `spo2` (value `spo2`, `%`, MDC 150456) and kind
//!   `heart_rate` (value `heart_rate`, `/min`, MDC 149530, the oximeter pulse rate). A `---`
//!   field is `Measured::Absent(Unknown)`; the other field is still reported.
//! - [`DecodeEvent::Idle`] with `episode_end: true` when both fields are `---` (finger out).
//!
//! Suffixes become device flags on both messages: `*` → `device:event_mark`, `B` →
//! `device:breath`, ` F` (the "fast" averaging option) → `device:fast_averaging`. The prefix
//! becomes [`DeviceTime::TimeOfDay`].
//!
//! Lines that do not match (the power-up header with model, date and time; any other text) are
//! ignored as [`DecodeEvent::Idle`] with `episode_end: false` when they are printable text
//! (ASCII 0x20–0x7E and TAB). A line holding any other byte is line noise (wrong baud rate, a
//! cable glitch) and yields [`DecodeError::Malformed`]. A line that matches but carries an
//! impossible time of day (`25:00:00`) is malformed too. Lines longer than
//! [`MAX_LINE`] bytes are [`DecodeError::Oversized`]; decoding resumes at the next newline.

use std::sync::OnceLock;

use regex::Regex;

use super::framing::{LineDecoder, LineFormat};
use super::{DecodeError, DecodeEvent, DeviceMessage, DeviceTime, DeviceValue, Measured};
use crate::reading::{AbsentReason, Decimal, Flag, Kind};

/// Longest line accepted. Data lines are ~30 bytes; power-up headers are well below this.
pub const MAX_LINE: usize = 256;

/// MDC_PULS_OXIM_SAT_O2.
pub const MDC_SPO2: u32 = 150_456;
/// MDC_PULS_OXIM_PULS_RATE: pulse rate measured by an oximeter.
pub const MDC_OXIMETER_PULSE_RATE: u32 = 149_530;

/// The line pattern of docs/devices/nonin.md#ascii-lines-nonin-ascii, with ASCII-only classes (`[0-9]`, `[ \t]`) because
/// the regex crate's `\d`/`\s` are Unicode-aware. Blanks after `=` are tolerated for devices
/// that pad the 3-character fields with spaces instead of zeros.
const PATTERN: &str = r"^(?:([0-9]{2}):([0-9]{2}):([0-9]{2})[ \t]+)?SPO2=[ \t]*([0-9]{1,3}|---)[ \t]+HR=[ \t]*([0-9]{1,3}|---)([ \t]+F)?[ \t]*(\*)?[ \t]*(B)?[ \t]*$";

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // The pattern is a constant tested below; failing to compile it is a programming error.
    RE.get_or_init(|| Regex::new(PATTERN).expect("nonin-ascii pattern compiles"))
}

/// The `nonin-ascii` line format, for [`LineDecoder`].
#[derive(Debug, Clone, Copy)]
pub struct NoninAsciiLines;

impl LineFormat for NoninAsciiLines {
    const MAX_LINE: usize = MAX_LINE;
    fn decode_line(line: &[u8], out: &mut Vec<DecodeEvent>) {
        decode_line(line, out);
    }
}

/// The `nonin-ascii` decoder: a bounded line framer plus [`decode_line`].
pub type NoninAscii = LineDecoder<NoninAsciiLines>;

/// Decodes one line (without CR/LF) and appends its events to `out`. See the module docs.
pub fn decode_line(line: &[u8], out: &mut Vec<DecodeEvent>) {
    if !line
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        out.push(DecodeEvent::Error(DecodeError::Malformed(format!(
            "nonin-ascii: line of {} bytes holds non-text bytes",
            line.len()
        ))));
        return;
    }
    // All bytes are ASCII, so this cannot fail; stay total anyway.
    let Ok(text) = std::str::from_utf8(line) else {
        out.push(DecodeEvent::Error(DecodeError::Malformed(
            "nonin-ascii: line is not text".into(),
        )));
        return;
    };
    let Some(caps) = pattern().captures(text) else {
        out.push(DecodeEvent::Idle { episode_end: false });
        return;
    };
    let device_time = match (caps.get(1), caps.get(2), caps.get(3)) {
        (Some(h), Some(m), Some(s)) => match time_of_day(h.as_str(), m.as_str(), s.as_str()) {
            Some(t) => Some(DeviceTime::TimeOfDay(t)),
            None => {
                out.push(DecodeEvent::Error(DecodeError::Malformed(
                    "nonin-ascii: time-of-day prefix out of range".into(),
                )));
                return;
            }
        },
        _ => None,
    };
    let field = |i: usize| caps.get(i).map(|m| m.as_str()).unwrap_or("---");
    let (spo2, hr) = (measured(field(4)), measured(field(5)));
    if matches!(spo2, Measured::Absent(_)) && matches!(hr, Measured::Absent(_)) {
        out.push(DecodeEvent::Idle { episode_end: true });
        return;
    }
    let mut flags = Vec::new();
    if caps.get(6).is_some() {
        flags.push(Flag::device("fast_averaging"));
    }
    if caps.get(7).is_some() {
        flags.push(Flag::device("event_mark"));
    }
    if caps.get(8).is_some() {
        flags.push(Flag::device("breath"));
    }
    let message = |kind: Kind, name: &str, value: Measured, unit: &str, mdc: u32| {
        let mut v = DeviceValue::new(name, value, unit);
        v.mdc = Some(mdc);
        let mut m = DeviceMessage::new(kind, vec![v]);
        m.device_time = device_time;
        m.flags = flags.clone();
        DecodeEvent::Message(m)
    };
    out.push(message(Kind::Spo2, "spo2", spo2, "%", MDC_SPO2));
    out.push(message(
        Kind::HeartRate,
        "heart_rate",
        hr,
        "/min",
        MDC_OXIMETER_PULSE_RATE,
    ));
}

fn measured(field: &str) -> Measured {
    match field.parse::<i64>() {
        Ok(v) => Measured::Value(Decimal::from_int(v)),
        Err(_) => Measured::Absent(AbsentReason::Unknown),
    }
}

fn time_of_day(h: &str, m: &str, s: &str) -> Option<time::Time> {
    let (h, m, s) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    time::Time::from_hms(h, m, s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Vec<DecodeEvent> {
        let mut d = NoninAscii::new();
        let mut out = Vec::new();
        d.feed(bytes, &mut out);
        d.finish(&mut out);
        out
    }

    fn message(ev: &DecodeEvent) -> &DeviceMessage {
        match ev {
            DecodeEvent::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn value_of(m: &DeviceMessage) -> Option<Decimal> {
        match m.values[0].value {
            Measured::Value(d) => Some(d),
            Measured::Absent(_) => None,
        }
    }

    #[test]
    fn the_protocols_vector_with_time_prefix_and_event_mark_decodes() {
        let out = decode(b"14:02:11 SPO2=097 HR=072*\r\n");
        assert_eq!(out.len(), 2);
        let (spo2, hr) = (message(&out[0]), message(&out[1]));
        assert_eq!(spo2.kind, Kind::Spo2);
        assert_eq!(spo2.values[0].name, "spo2");
        assert_eq!(spo2.values[0].unit.as_str(), "%");
        assert_eq!(spo2.values[0].mdc, Some(150_456));
        assert_eq!(value_of(spo2), Some(Decimal::from_int(97)));
        assert_eq!(hr.kind, Kind::HeartRate);
        assert_eq!(hr.values[0].name, "heart_rate");
        assert_eq!(hr.values[0].unit.as_str(), "/min");
        assert_eq!(hr.values[0].mdc, Some(149_530));
        assert_eq!(value_of(hr), Some(Decimal::from_int(72)));
        let t = time::Time::from_hms(14, 2, 11).unwrap();
        for m in [spo2, hr] {
            assert_eq!(m.device_time, Some(DeviceTime::TimeOfDay(t)));
            assert_eq!(m.flags, vec![Flag::new("device:event_mark")]);
        }
    }

    #[test]
    fn the_protocols_no_reading_line_ends_the_episode() {
        assert_eq!(
            decode(b"SPO2=--- HR=---\r\n"),
            vec![DecodeEvent::Idle { episode_end: true }]
        );
    }

    #[test]
    fn a_plain_line_has_no_time_and_no_flags() {
        let out = decode(b"SPO2=098 HR=060\r\n");
        assert_eq!(out.len(), 2);
        assert_eq!(message(&out[0]).device_time, None);
        assert!(message(&out[1]).flags.is_empty());
    }

    #[test]
    fn fast_and_breath_suffixes_become_device_flags() {
        let out = decode(b"SPO2=095 HR=080 F\r\n09:00:00 SPO2=096 HR=081 B\r\n");
        assert_eq!(
            message(&out[0]).flags,
            vec![Flag::new("device:fast_averaging")]
        );
        assert_eq!(message(&out[2]).flags, vec![Flag::new("device:breath")]);
    }

    #[test]
    fn one_missing_field_is_absent_and_the_other_is_still_reported() {
        let out = decode(b"SPO2=--- HR=072\r\n");
        assert_eq!(out.len(), 2);
        assert_eq!(
            message(&out[0]).values[0].value,
            Measured::Absent(AbsentReason::Unknown)
        );
        assert_eq!(value_of(message(&out[1])), Some(Decimal::from_int(72)));
    }

    #[test]
    fn the_power_up_header_is_idle_text() {
        assert_eq!(
            decode(b"NONIN 9847 V2.1  27-NOV-26 14:00:00\r\n"),
            vec![DecodeEvent::Idle { episode_end: false }]
        );
    }

    #[test]
    fn binary_garbage_is_malformed_and_the_next_line_decodes() {
        let out = decode(b"\x00\xff\x81SPO2\r\nSPO2=097 HR=072\r\n");
        assert!(matches!(
            out[0],
            DecodeEvent::Error(DecodeError::Malformed(_))
        ));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn an_impossible_time_of_day_is_malformed() {
        let out = decode(b"25:61:00 SPO2=097 HR=072\r\n");
        assert!(matches!(
            out[..],
            [DecodeEvent::Error(DecodeError::Malformed(_))]
        ));
    }

    #[test]
    fn a_very_long_line_is_oversized_and_decoding_resumes() {
        let mut bytes = vec![b'A'; MAX_LINE + 10];
        bytes.extend_from_slice(b"\r\nSPO2=097 HR=072\r\n");
        let out = decode(&bytes);
        assert_eq!(out[0], DecodeEvent::Error(DecodeError::Oversized(MAX_LINE)));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_truncated_last_line_is_reported_at_finish() {
        let out = decode(b"SPO2=097 HR=0");
        assert!(matches!(
            out[..],
            [DecodeEvent::Error(DecodeError::Malformed(_))]
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut d = NoninAscii::new();
            let mut out = Vec::new();
            for c in &chunks {
                d.feed(c, &mut out);
            }
            d.finish(&mut out);
        }

        #[test]
        fn a_generated_valid_line_decodes_back_to_its_values(
            spo2 in 0u32..=100, hr in 0u32..=999,
            prefix in proptest::option::of((0u8..24, 0u8..60, 0u8..60)),
            fast: bool, mark: bool, breath: bool) {
            let mut line = String::new();
            if let Some((h, m, s)) = prefix {
                line.push_str(&format!("{h:02}:{m:02}:{s:02} "));
            }
            line.push_str(&format!("SPO2={spo2:03} HR={hr:03}"));
            if fast { line.push_str(" F"); }
            if mark { line.push('*'); }
            if breath { line.push_str(" B"); }
            line.push_str("\r\n");
            let out = decode(line.as_bytes());
            prop_assert_eq!(out.len(), 2);
            let (s, h) = (message(&out[0]), message(&out[1]));
            prop_assert_eq!(value_of(s), Some(Decimal::from_int(i64::from(spo2))));
            prop_assert_eq!(value_of(h), Some(Decimal::from_int(i64::from(hr))));
            let expected_time = prefix.map(|(hh, mm, ss)| {
                DeviceTime::TimeOfDay(time::Time::from_hms(hh, mm, ss).unwrap())
            });
            prop_assert_eq!(s.device_time, expected_time);
            prop_assert_eq!(s.flags.len(), usize::from(fast) + usize::from(mark) + usize::from(breath));
        }
    }
}
