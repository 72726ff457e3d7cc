//! The small encodings the queue's requests share: times as unix milliseconds, a reading id's
//! capture time, stored JSON values and stored readings (with the key named when one does not
//! decode), and the listing of entries kept by reading id (held and quarantined readings).

use time::OffsetDateTime;

use super::keys;
use super::txn::corrupt;
use super::types::QueueError;
use crate::reading::ReadingId;

/// Unix milliseconds of `t`, 0 before 1970.
pub fn to_ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

pub fn from_ms(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A never-tried entry is due from its id's capture time, so the fresh (`p`) entries, kept in
/// id order, are also in due order. Ids without a timestamp are due at once.
pub fn fresh_not_before(id: ReadingId, now_ms: u64) -> u64 {
    id_ms(id).min(now_ms)
}

/// The UUIDv7 timestamp of `id` in unix milliseconds, 0 when it has none.
pub fn id_ms(id: ReadingId) -> u64 {
    id.uuid()
        .get_timestamp()
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            secs.saturating_mul(1000) + u64::from(nanos / 1_000_000)
        })
        .unwrap_or(0)
}

pub(super) fn json<T: serde::Serialize>(key: &[u8], v: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(v).map_err(|e| corrupt(key, &e.to_string()))
}

/// Up to `limit` entries of the one-byte `tag` whose keys end in a reading id, oldest id first,
/// each value decoded and turned into an item by `item` (held and quarantined listings).
pub fn list_by_id<V: serde::de::DeserializeOwned, T>(
    store: &dyn super::store::Store,
    tag: u8,
    what: &'static str,
    limit: usize,
    mut item: impl FnMut(ReadingId, V) -> T,
) -> Result<Vec<T>, QueueError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    while out.len() < limit {
        let page = store.scan_prefix(&[tag], after.as_deref(), limit.clamp(16, 512))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (k, v) in page {
            let id = keys::id_suffix(&k).ok_or_else(|| corrupt(&k, what))?;
            out.push(item(id, decode(&k, &v)?));
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// The reading stored in a segment entry (either stored form, see `segment_entry`), with the
/// segment's key named when it does not decode.
pub fn reading(key: &[u8], stored: &[u8]) -> Result<crate::reading::Reading, QueueError> {
    super::segment_entry::decode(stored).map_err(|e| corrupt(key, &e.to_string()))
}

pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(v).map_err(|e| corrupt(key, &e.to_string()))
}
