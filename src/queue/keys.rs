//! The byte layout of the queue's keys and values. Every key lives in ONE store tree so one
//! atomic batch covers a reading, its per-sink entries and the counters.
//!
//! # Layout (`id` = the 16 big-endian bytes of the UUIDv7 reading id, `seq` = u64 big-endian
//! segment number, `ms` = u64 big-endian unix milliseconds, `sink` = the sink id's UTF-8 bytes,
//! never containing 0x00)
//! ```text
//! 'g' seq                     → segment: the readings of one group commit (see `segment`)
//! 'n' seq                     → bitmap of the segment's entries still stored (counted in `readings`)
//! 'p' sink 0x00 seq           → bitmap of the segment's entries fresh-pending for that sink
//! 'q' sink 0x00 id            → PendingValue JSON {"s": slot, "n": attempts, "t": not_before ms, "e": last error}
//! 't' sink 0x00 ms id         → empty; due index of the 'q' entries, ordered by (not_before, id)
//! 'd' sink 0x00 id            → DeadValue JSON {"s": slot, "why": reason, "at": ms, "n": attempts}
//! 'k' dedupe key              → id ++ ms stored: one key per reading, written by earlier
//!                               versions only; looked up and pruned by age until none is left
//! 'w' hour device chunk       → the dedupe index (see `dedupe`)
//! 'm' "bytes"                 → live bytes per class (see `bytes`)
//! 'c' 'r'                     → u64 readings stored
//! 'c' 'u'                     → u64 of them in the quarantine (see `quarantine`)
//! 'c' 's' sink                → u64 pending ++ u64 dead for that sink
//! 'm' "counters"              → "1": the 'c' keys are authoritative (else recounted at open)
//! 'm' "layout"                → "segments vN": the layout version N (see below); plain
//!                               "segments" is version 1 (a store with 'r' keys is from before)
//! ```
//! The 0x00 after the sink id keeps `a` and `ab` apart (0x00 sorts before any id byte). A slot
//! is `[seq, index]`: where the entry's reading is inside its segment.
//!
//! Keys per stored reading are what the writer's throughput depends on (sled's cost is per key,
//! not per byte), so the common case writes one segment, one live bitmap and one `p` bitmap per
//! sink for the whole group commit, plus the dedupe chunk of each device-hour it touches. A fresh entry's not_before is
//! its id's UUIDv7 timestamp; only an entry with a state to remember (a retry scheduled, an
//! error, a dead-letter retried) moves to `q` with a `t` due key. Dedupe keys are pruned by a
//! cursor that walks `k` and reads the stored time from the value.

use serde::{Deserialize, Serialize};

use super::segment::Slot;
use crate::reading::{ReadingId, SinkId};

pub const SEGMENT: u8 = b'g';
pub const LIVE: u8 = b'n';
/// The tag of one key per reading in the layout before segments.
pub const OLD_READING: u8 = b'r';
pub const PENDING: u8 = b'p';
pub const RETRIED: u8 = b'q';
pub const DUE: u8 = b't';
pub const DEAD: u8 = b'd';
pub const DEDUPE: u8 = b'k';
pub const COUNTER: u8 = b'c';
pub const META_COUNTERS: &[u8] = b"mcounters";
pub const META_LAYOUT: &[u8] = b"mlayout";
/// The layout marker's value written by versions before it carried a number: version 1.
pub const LAYOUT_V1: &[u8] = b"segments";
/// The layout version this build writes and the newest it opens. Bump it (and only it) when a
/// change to the stored keys or values makes a store unreadable for the build before; every
/// earlier version keeps opening (docs/store-format.md, "Layout version and downgrades").
pub const LAYOUT_VERSION: u32 = 2;

/// The layout marker this build writes: `segments v` and [`LAYOUT_VERSION`] in decimal.
pub fn layout_marker() -> Vec<u8> {
    format!("segments v{LAYOUT_VERSION}").into_bytes()
}

/// The layout a store's marker names, as an error tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLayout {
    Version(u32),
    /// A marker of a shape this build does not read (written by a later encoding).
    Unrecognised,
}

impl std::fmt::Display for StoreLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLayout::Version(v) => write!(f, "layout version {v}"),
            StoreLayout::Unrecognised => f.write_str("a layout marker this version cannot read"),
        }
    }
}

/// The layout version a marker value names: `segments` is 1, `segments vN` is N; `None` for a
/// value of any other shape (a later encoding of the marker, or damage).
pub fn layout_version(marker: &[u8]) -> Option<u32> {
    if marker == LAYOUT_V1 {
        return Some(1);
    }
    let digits = marker.strip_prefix(b"segments v")?;
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// How long a per-reading dedupe key of an earlier version is remembered.
pub const DEDUPE_WINDOW_MS: u64 = 7 * 24 * 3600 * 1000;

/// The state of one pending entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingValue {
    #[serde(rename = "s")]
    pub slot: Slot,
    #[serde(rename = "n")]
    pub attempts: u32,
    #[serde(rename = "t")]
    pub not_before_ms: u64,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The state of one dead-letter entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadValue {
    #[serde(rename = "s")]
    pub slot: Slot,
    #[serde(rename = "why")]
    pub reason: String,
    pub at: u64,
    #[serde(rename = "n")]
    pub attempts: u32,
}

pub fn segment(seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(SEGMENT);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn live(seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(LIVE);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The segment number at the end of a `g`, `n` or `p` key.
pub fn seq_suffix(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[start..].try_into().ok()?))
}

/// `(sink, seq)` of a `p` key.
pub fn parse_pending(key: &[u8]) -> Option<(SinkId, u64)> {
    let body = key.get(1..)?;
    let nul = body.len().checked_sub(9)?;
    if body.get(nul) != Some(&0) {
        return None;
    }
    let sink = std::str::from_utf8(&body[..nul]).ok()?;
    Some((SinkId::new(sink), seq_suffix(key)?))
}

/// `tag sink 0x00`: the prefix of one sink's pending, due or dead entries.
pub fn sink_prefix(tag: u8, sink: &SinkId) -> Vec<u8> {
    let mut k = Vec::with_capacity(sink.as_str().len() + 2 + 24);
    k.push(tag);
    k.extend_from_slice(sink.as_str().as_bytes());
    k.push(0);
    k
}

pub fn pending(sink: &SinkId, seq: u64) -> Vec<u8> {
    let mut k = sink_prefix(PENDING, sink);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn retried(sink: &SinkId, id: ReadingId) -> Vec<u8> {
    let mut k = sink_prefix(RETRIED, sink);
    k.extend_from_slice(&id.to_bytes());
    k
}

pub fn dead(sink: &SinkId, id: ReadingId) -> Vec<u8> {
    let mut k = sink_prefix(DEAD, sink);
    k.extend_from_slice(&id.to_bytes());
    k
}

pub fn due(sink: &SinkId, not_before_ms: u64, id: ReadingId) -> Vec<u8> {
    let mut k = sink_prefix(DUE, sink);
    k.extend_from_slice(&not_before_ms.to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The id at the end of any key that ends with one.
pub fn id_suffix(key: &[u8]) -> Option<ReadingId> {
    let start = key.len().checked_sub(16)?;
    let b: [u8; 16] = key[start..].try_into().ok()?;
    Some(ReadingId::from_bytes(b))
}

/// `(sink, id)` of a `q` or `d` key.
pub fn parse_sink_entry(key: &[u8]) -> Option<(SinkId, ReadingId)> {
    let body = key.get(1..)?;
    let nul = body.len().checked_sub(17)?;
    if body.get(nul) != Some(&0) {
        return None;
    }
    let sink = std::str::from_utf8(&body[..nul]).ok()?;
    Some((SinkId::new(sink), id_suffix(key)?))
}

/// `(not_before ms, id)` of a `t` key.
pub fn parse_due(key: &[u8]) -> Option<(u64, ReadingId)> {
    let start = key.len().checked_sub(24)?;
    let ms = u64::from_be_bytes(key[start..start + 8].try_into().ok()?);
    Some((ms, id_suffix(key)?))
}

pub fn dedupe(dedupe_key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(dedupe_key.len() + 1);
    k.push(DEDUPE);
    k.extend_from_slice(dedupe_key.as_bytes());
    k
}

/// A `k` value (written by earlier versions; tests build old stores with it).
#[cfg(test)]
pub fn dedupe_value(id: ReadingId, stored_ms: u64) -> Vec<u8> {
    let mut v = id.to_bytes().to_vec();
    v.extend_from_slice(&stored_ms.to_be_bytes());
    v
}

/// `(id, stored ms)` of a `k` value.
pub fn parse_dedupe_value(v: &[u8]) -> Option<(ReadingId, u64)> {
    let id: [u8; 16] = v.get(..16)?.try_into().ok()?;
    let ms: [u8; 8] = v.get(16..24)?.try_into().ok()?;
    Some((ReadingId::from_bytes(id), u64::from_be_bytes(ms)))
}

pub fn counter_readings() -> Vec<u8> {
    vec![COUNTER, b'r']
}

pub fn counter_quarantined() -> Vec<u8> {
    vec![COUNTER, b'u']
}

pub fn counter_sink(sink: &SinkId) -> Vec<u8> {
    let mut k = vec![COUNTER, b's'];
    k.extend_from_slice(sink.as_str().as_bytes());
    k
}

pub fn u64_value(v: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ReadingId {
        ReadingId::from_bytes([n; 16])
    }

    #[test]
    fn sink_entry_keys_round_trip_and_keep_similar_sinks_apart() {
        let a = SinkId::new("a");
        let ab = SinkId::new("ab");
        let k = retried(&a, id(7));
        assert_eq!(parse_sink_entry(&k), Some((a.clone(), id(7))));
        assert!(!pending(&ab, 7).starts_with(&sink_prefix(PENDING, &a)));
        assert_eq!(parse_pending(&pending(&ab, 7)), Some((ab.clone(), 7)));
        assert_eq!(
            parse_pending(&pending(&a, 1 << 40)),
            Some((a.clone(), 1 << 40))
        );
        assert_eq!(
            parse_sink_entry(&dead(&ab, id(1))),
            Some((ab.clone(), id(1)))
        );
        assert_eq!(parse_sink_entry(&retried(&ab, id(2))), Some((ab, id(2))));
        assert!(segment(1) < segment(256));
        assert_eq!(seq_suffix(&live(300)), Some(300));
    }

    #[test]
    fn due_keys_sort_by_time_then_id() {
        let s = SinkId::new("ehr");
        let early = due(&s, 1_000, id(9));
        let late = due(&s, 2_000, id(1));
        assert!(early < late);
        assert!(due(&s, 1_000, id(1)) < early);
        assert_eq!(parse_due(&late), Some((2_000, id(1))));
    }

    #[test]
    fn layout_markers_name_their_version() {
        assert_eq!(layout_version(LAYOUT_V1), Some(1));
        assert_eq!(layout_version(&layout_marker()), Some(LAYOUT_VERSION));
        assert_eq!(layout_version(b"segments v3"), Some(3));
        assert_eq!(layout_version(b"segments v10"), Some(10));
        for bad in [
            &b"segments v"[..],
            b"segments v03",
            b"segments v2x",
            b"segments 2",
            b"rows",
            b"",
            b"segments v9999999999",
        ] {
            assert_eq!(layout_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dedupe_values_round_trip() {
        let v = dedupe_value(id(3), 42);
        assert_eq!(parse_dedupe_value(&v), Some((id(3), 42)));
        assert_eq!(parse_dedupe_value(&[1, 2]), None);
    }
}
