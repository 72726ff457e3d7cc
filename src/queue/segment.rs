//! Segments: the readings of one group commit packed into ONE store value, and the bitmaps that
//! say which of a segment's entries are still pending for a sink or still stored at all.
//!
//! sled's cost is per key, not per byte (BENCHMARKS.md): a key per reading and per sink entry
//! capped ingest near 30,000 readings/s. A segment costs one key for the whole group, one bitmap
//! key per sink and one live bitmap, however many readings the group holds.
//!
//! # Encoding
//! ```text
//! segment := 0x01 entry*            (format version 1)
//! entry   := id (16 bytes) len (u32 big-endian) stored (len bytes)
//! bitmap  := bytes; entry i is bit (i % 8) of byte (i / 8); missing bytes are 0
//! ```
//! `stored` is the reading's stored form (`super::segment_entry`: binary behind a format byte
//! since this version, JSON before; both are read, docs/store-format.md); a segment does not
//! look inside it. A [`Slot`] (segment number, entry index) addresses one entry. Segments are never rewritten:
//! a changed reading (a held reading given its patient) is appended to a new segment.

use serde::{Deserialize, Serialize};

use crate::reading::ReadingId;

const FORMAT: u8 = 1;
const HEADER: usize = 16 + 4;

/// A group's readings go to a new segment once one holds this many entries or bytes, so that a
/// big burst does not make one huge value, and an entry that stays (a dead-letter kept for
/// months) keeps a bounded amount of disk.
pub const MAX_ENTRIES: u32 = 256;
pub const MAX_BYTES: usize = 256 << 10;

/// Where a reading is stored: segment `seq`, entry `idx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot(pub u64, pub u32);

impl Slot {
    pub fn seq(self) -> u64 {
        self.0
    }
    pub fn idx(self) -> u32 {
        self.1
    }
}

/// Why a segment value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("segment format {0} is not known (expected 1)")]
    Format(u8),
    #[error("segment is empty")]
    Empty,
    #[error("segment entry {0} is cut short")]
    Truncated(u32),
}

/// A parsed segment: the entries' ids and where their stored readings are, over the borrowed
/// bytes.
#[derive(Debug)]
pub struct Segment<'a> {
    bytes: &'a [u8],
    entries: Index,
}

/// `(id, start, len)` of every entry of a segment value.
type Index = Vec<(ReadingId, usize, usize)>;

fn index(bytes: &[u8]) -> Result<Index, SegmentError> {
    let (&format, mut rest) = bytes.split_first().ok_or(SegmentError::Empty)?;
    if format != FORMAT {
        return Err(SegmentError::Format(format));
    }
    let mut entries = Vec::new();
    let mut at = 1;
    while !rest.is_empty() {
        let n = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        let head = rest.get(..HEADER).ok_or(SegmentError::Truncated(n))?;
        let id: [u8; 16] = head[..16]
            .try_into()
            .map_err(|_| SegmentError::Truncated(n))?;
        let len: [u8; 4] = head[16..]
            .try_into()
            .map_err(|_| SegmentError::Truncated(n))?;
        let len = u32::from_be_bytes(len) as usize;
        let start = at + HEADER;
        if rest.len() < HEADER + len {
            return Err(SegmentError::Truncated(n));
        }
        entries.push((ReadingId::from_bytes(id), start, len));
        at = start + len;
        rest = &rest[HEADER + len..];
    }
    Ok(entries)
}

/// A segment read from the store, indexed once and kept (the queue caches the recent ones).
#[derive(Debug)]
pub struct Loaded {
    bytes: Vec<u8>,
    entries: Index,
}

impl Loaded {
    pub fn new(bytes: Vec<u8>) -> Result<Self, SegmentError> {
        let entries = index(&bytes)?;
        Ok(Self { bytes, entries })
    }

    /// The id and stored reading of entry `idx`.
    pub fn get(&self, idx: u32) -> Option<(ReadingId, &[u8])> {
        let &(id, start, len) = self.entries.get(idx as usize)?;
        Some((id, &self.bytes[start..start + len]))
    }

    /// Bytes held: the value and its index.
    pub fn size(&self) -> usize {
        self.bytes.len() + self.entries.len() * std::mem::size_of::<(ReadingId, usize, usize)>()
    }
}

impl<'a> Segment<'a> {
    /// Indexes `bytes` without decoding any reading.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SegmentError> {
        Ok(Self {
            bytes,
            entries: index(bytes)?,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id and stored reading of entry `idx`.
    pub fn get(&self, idx: u32) -> Option<(ReadingId, &'a [u8])> {
        let &(id, start, len) = self.entries.get(idx as usize)?;
        Some((id, &self.bytes[start..start + len]))
    }

    /// The entry index of `id`.
    pub fn find(&self, id: ReadingId) -> Option<u32> {
        self.entries
            .iter()
            .position(|(e, _, _)| *e == id)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Every entry: `(idx, id, stored reading)`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, ReadingId, &'a [u8])> + '_ {
        self.entries.iter().enumerate().map(|(i, &(id, s, l))| {
            (
                u32::try_from(i).unwrap_or(u32::MAX),
                id,
                &self.bytes[s..s + l],
            )
        })
    }
}

/// Appends entries to a segment value.
#[derive(Debug, Clone)]
pub struct Writer {
    bytes: Vec<u8>,
    len: u32,
}

impl Default for Writer {
    fn default() -> Self {
        Self {
            bytes: vec![FORMAT],
            len: 0,
        }
    }
}

impl Writer {
    /// Appends one entry; returns its index.
    pub fn push(&mut self, id: ReadingId, stored: &[u8]) -> u32 {
        let len = u32::try_from(stored.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&id.to_bytes());
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(stored);
        self.len += 1;
        self.len - 1
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the encoded segment so far.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Drops the entries from `len` on (a rolled-back request).
    pub fn truncate(&mut self, len: u32) {
        if len >= self.len {
            return;
        }
        let Ok(seg) = Segment::parse(&self.bytes) else {
            return;
        };
        let cut = seg
            .entries
            .get(len as usize)
            .map(|&(_, start, _)| start - HEADER);
        if let Some(cut) = cut {
            self.bytes.truncate(cut);
            self.len = len;
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Bit `i` of `bits`.
pub fn bit(bits: &[u8], i: u32) -> bool {
    bits.get((i / 8) as usize)
        .is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Sets bit `i`, growing `bits` as needed.
pub fn set_bit(bits: &mut Vec<u8>, i: u32) {
    let byte = (i / 8) as usize;
    if bits.len() <= byte {
        bits.resize(byte + 1, 0);
    }
    bits[byte] |= 1 << (i % 8);
}

/// Clears bit `i`; true when it was set.
pub fn clear_bit(bits: &mut [u8], i: u32) -> bool {
    let was = bit(bits, i);
    if let Some(b) = bits.get_mut((i / 8) as usize) {
        *b &= !(1 << (i % 8));
    }
    was
}

/// How many bits are set.
pub fn count(bits: &[u8]) -> u64 {
    bits.iter().map(|b| u64::from(b.count_ones())).sum()
}

/// The indexes of the set bits, in order.
pub fn ones(bits: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bits.iter().enumerate().flat_map(|(byte, b)| {
        (0..8u32)
            .filter(move |j| b & (1 << j) != 0)
            .map(move |j| u32::try_from(byte).unwrap_or(u32::MAX / 8) * 8 + j)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ReadingId {
        ReadingId::from_bytes([n; 16])
    }

    #[test]
    fn entries_round_trip_in_order() {
        let mut w = Writer::default();
        assert_eq!(w.push(id(1), b"{\"a\":1}"), 0);
        assert_eq!(w.push(id(2), b""), 1);
        assert_eq!(w.push(id(3), b"[3]"), 2);
        let bytes = w.into_bytes();
        let s = Segment::parse(&bytes).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(0), Some((id(1), &b"{\"a\":1}"[..])));
        assert_eq!(s.get(1), Some((id(2), &b""[..])));
        assert_eq!(s.get(2), Some((id(3), &b"[3]"[..])));
        assert_eq!(s.get(3), None);
        assert_eq!(s.find(id(3)), Some(2));
        assert_eq!(s.find(id(9)), None);
        assert_eq!(s.iter().map(|(i, _, _)| i).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn truncate_drops_the_tail_only() {
        let mut w = Writer::default();
        w.push(id(1), b"one");
        w.push(id(2), b"two");
        w.push(id(3), b"three");
        w.truncate(1);
        assert_eq!(w.len(), 1);
        w.push(id(4), b"four");
        let bytes = w.into_bytes();
        let s = Segment::parse(&bytes).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(1), Some((id(4), &b"four"[..])));
    }

    #[test]
    fn damaged_segments_are_refused_not_misread() {
        let mut w = Writer::default();
        w.push(id(1), b"hello");
        let bytes = w.into_bytes();
        assert_eq!(
            Segment::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            SegmentError::Truncated(0)
        );
        assert_eq!(Segment::parse(&[]).unwrap_err(), SegmentError::Empty);
        assert_eq!(Segment::parse(&[7]).unwrap_err(), SegmentError::Format(7));
        assert!(Segment::parse(&[FORMAT]).unwrap().is_empty());
    }

    #[test]
    fn bitmaps_set_clear_count_and_list() {
        let mut b = Vec::new();
        assert!(!bit(&b, 0));
        set_bit(&mut b, 0);
        set_bit(&mut b, 9);
        set_bit(&mut b, 999);
        assert_eq!(count(&b), 3);
        assert_eq!(ones(&b).collect::<Vec<_>>(), [0, 9, 999]);
        assert!(clear_bit(&mut b, 9));
        assert!(!clear_bit(&mut b, 9));
        assert!(!clear_bit(&mut b, 5000));
        assert_eq!(ones(&b).collect::<Vec<_>>(), [0, 999]);
    }
}
