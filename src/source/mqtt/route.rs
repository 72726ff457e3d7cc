//! Pure helpers of the MQTT source: which device a topic belongs to and how a payload becomes
//! the device's bytes. No I/O.

use std::borrow::Cow;

use base64::Engine as _;

use crate::config::PayloadMode;

/// True when `topic` matches the subscription `filter` (MQTT 3.1.1 §4.7): `+` matches one
/// level, a trailing `#` matches the parent and every level below it, and wildcards at the
/// first level never match topics starting with `$` (broker-internal topics).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The index of the first filter in `filters` that matches `topic` (the first configured
/// device wins when several filters overlap).
pub fn route<'a>(filters: impl IntoIterator<Item = &'a str>, topic: &str) -> Option<usize> {
    filters.into_iter().position(|f| topic_matches(f, topic))
}

/// The topic level that stands where `filter` has its first `+` (the room of a
/// `clinic/rooms/+/patient` filter), if the topic matches.
pub fn plus_level<'t>(filter: &str, topic: &'t str) -> Option<&'t str> {
    if !topic_matches(filter, topic) {
        return None;
    }
    let at = filter.split('/').position(|l| l == "+")?;
    topic.split('/').nth(at).filter(|l| !l.is_empty())
}

/// The device's bytes inside a payload: hex and base64 text are decoded (whitespace ignored,
/// base64 padding optional); binary and JSON payloads pass as they are (not copied).
pub fn payload_bytes(mode: PayloadMode, payload: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let clean = || -> Vec<u8> {
        payload
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect()
    };
    match mode {
        PayloadMode::Binary | PayloadMode::Json => Ok(Cow::Borrowed(payload)),
        PayloadMode::Hex => hex::decode(clean())
            .map(Cow::Owned)
            .map_err(|e| format!("payload is not hex: {}", e_kind(&e))),
        PayloadMode::Base64 => {
            use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
            let config = GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::Indifferent);
            GeneralPurpose::new(&base64::alphabet::STANDARD, config)
                .decode(clean())
                .map(Cow::Owned)
                .map_err(|_| "payload is not base64".to_string())
        }
    }
}

/// The reason without the offending character (it could be part of a patient's data).
fn e_kind(e: &hex::FromHexError) -> &'static str {
    match e {
        hex::FromHexError::InvalidHexCharacter { .. } => "invalid character",
        hex::FromHexError::OddLength => "odd number of digits",
        hex::FromHexError::InvalidStringLength => "invalid length",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_room_is_the_level_under_the_plus_of_the_patient_topic() {
        let f = "clinic/rooms/+/patient";
        assert_eq!(
            super::plus_level(f, "clinic/rooms/exam-3/patient"),
            Some("exam-3")
        );
        assert_eq!(super::plus_level(f, "clinic/rooms/exam-3/other"), None);
        assert_eq!(super::plus_level("clinic/patient", "clinic/patient"), None);
    }

    use super::*;

    #[test]
    fn single_level_wildcards_match_exactly_one_level() {
        assert!(topic_matches("gw/+/2A1C", "gw/exam3/2A1C"));
        assert!(!topic_matches("gw/+/2A1C", "gw/exam3/x/2A1C"));
        assert!(!topic_matches("gw/+/2A1C", "gw/2A1C"));
        assert!(topic_matches("gw/+", "gw/"));
    }

    #[test]
    fn multi_level_wildcards_match_the_parent_and_everything_below() {
        assert!(topic_matches("gw/#", "gw"));
        assert!(topic_matches("gw/#", "gw/a/b/c"));
        assert!(topic_matches("#", "anything/at/all"));
        assert!(!topic_matches("gw/#", "other/a"));
    }

    #[test]
    fn wildcards_at_the_first_level_skip_broker_topics() {
        assert!(!topic_matches("#", "$SYS/broker/uptime"));
        assert!(!topic_matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(topic_matches("$SYS/#", "$SYS/broker/uptime"));
    }

    #[test]
    fn literal_filters_match_only_the_same_topic() {
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(!topic_matches("a/b/c", "a/b"));
    }

    #[test]
    fn the_first_configured_filter_wins_when_several_match() {
        let filters = ["gw/exam3/#", "gw/+/2A35", "gw/exam4/2A35"];
        assert_eq!(route(filters, "gw/exam3/2A35"), Some(0));
        assert_eq!(route(filters, "gw/exam4/2A35"), Some(1));
        assert_eq!(route(filters, "gw/exam4/2A1C"), None);
    }

    #[test]
    fn hex_and_base64_payloads_become_bytes_and_others_pass_through() {
        assert_eq!(
            payload_bytes(PayloadMode::Hex, b"06 6E 01\n")
                .unwrap()
                .as_ref(),
            [6, 0x6e, 1]
        );
        assert_eq!(
            payload_bytes(PayloadMode::Base64, b"Bm4B")
                .unwrap()
                .as_ref(),
            [6, 0x6e, 1]
        );
        assert_eq!(
            payload_bytes(PayloadMode::Base64, b"AQ").unwrap().as_ref(),
            [1]
        );
        assert_eq!(
            payload_bytes(PayloadMode::Binary, b"\x00\xff")
                .unwrap()
                .as_ref(),
            [0, 0xff]
        );
        assert_eq!(
            payload_bytes(PayloadMode::Json, b"{}").unwrap().as_ref(),
            b"{}"
        );
    }

    #[test]
    fn a_bad_hex_payload_is_refused_without_quoting_it() {
        let e = payload_bytes(PayloadMode::Hex, b"MRN12345").unwrap_err();
        assert_eq!(e, "payload is not hex: invalid character");
        assert!(payload_bytes(PayloadMode::Hex, b"abc").is_err());
        assert!(payload_bytes(PayloadMode::Base64, b"!!!!").is_err());
    }
}
