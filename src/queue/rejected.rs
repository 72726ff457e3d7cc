//! The rejected-payload record: messages a source acknowledged although they held no reading
//! (undecodable MQTT payloads), kept so an operator can see what was refused and why.
//!
//! Receives one record per refused message from a source ([`Rejected::reject`]); lists the newest
//! ones ([`Rejected::list`]) and counts them ([`Rejected::count`]). The payload itself is
//! never stored (it may hold patient data): only its length and a SHA-256 prefix, so two
//! reports of the same bytes can be matched.
//!
//! # Design
//! ```text
//! 'j' seq (u64 BE)          → RejectedRecord JSON
//! 'm' "rejected"            → first seq ++ next seq ++ total ever (3 × u64 BE)
//! ```
//! The log keeps the newest [`KEEP`] records: each insert past the bound removes the oldest in
//! the same atomic batch. Records are applied to the store without a sync of their own: they
//! become durable with the next group commit or sled's background flush (≤ 500 ms). A crash
//! may lose the last few records — never a reading — and a flood of bad payloads costs one
//! small insert each, not an fsync, so it does not slow the good ones.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::handle::{async_reads, Core};
use super::store::Batch;
use super::{keys, ops, txn, QueueError};

/// How many records are kept (the newest).
pub const KEEP: u64 = 10_000;

const TAG: u8 = b'j';
const META: &[u8] = b"mrejected";

/// One refused message, without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// Unix milliseconds when it was refused.
    pub at: u64,
    pub device: String,
    pub topic: String,
    pub reason: String,
    pub payload_len: u64,
    /// Hex of the first 16 bytes of the payload's SHA-256.
    pub sha256: String,
}

impl RejectedRecord {
    pub fn time(&self) -> OffsetDateTime {
        ops::from_ms(self.at)
    }
}

/// In-memory position of the log, loaded from the store on first use.
#[derive(Debug, Default)]
pub struct Log {
    state: Mutex<Option<State>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    first: u64,
    next: u64,
    total: u64,
}

impl State {
    fn encode(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        for n in [self.first, self.next, self.total] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    fn decode(v: &[u8]) -> Option<State> {
        Some(State {
            first: keys::u64_value(v, 0)?,
            next: keys::u64_value(v, 8)?,
            total: keys::u64_value(v, 16)?,
        })
    }
}

fn key(seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(TAG);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Hex of the first 16 bytes of SHA-256(`payload`).
pub fn payload_hash(payload: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, payload);
    hex::encode(d.as_ref().get(..16).unwrap_or_default())
}

/// Bytes (keys and values) of the stored records, by one scan (at open: at most [`KEEP`]).
pub fn measure(store: &dyn super::Store) -> Result<u64, QueueError> {
    let mut n = 0u64;
    super::scan::scan_values(store, &[TAG], |k, v| n += (k.len() + v.len()) as u64)?;
    Ok(n)
}

/// The log of payloads acknowledged without a reading. A cloneable handle over the store
/// (`queue.rejected()`).
#[derive(Clone)]
pub struct Rejected {
    core: Arc<Core>,
}

async_reads!(Rejected);

impl Rejected {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    fn rejected_state(&self) -> Result<std::sync::MutexGuard<'_, Option<State>>, QueueError> {
        let shared = self.core.shared()?;
        let mut guard = self
            .core
            .rejected
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let st = match shared.store.get(META)? {
                Some(v) => State::decode(&v).ok_or_else(|| txn::corrupt(META, "short value"))?,
                None => State::default(),
            };
            *guard = Some(st);
        }
        Ok(guard)
    }

    /// Records that a message from `device` on `topic` was acknowledged without a reading, and
    /// why. Keeps the payload's length and hash only. Does not wait for a sync (see the module
    /// docs); blocks for one small store write.
    pub fn reject(
        &self,
        device: &str,
        topic: &str,
        reason: &str,
        payload: &[u8],
    ) -> Result<(), QueueError> {
        let record = RejectedRecord {
            at: ops::to_ms(OffsetDateTime::now_utc()),
            device: device.to_string(),
            topic: topic.to_string(),
            // A parser's message may quote the payload: keep its kind and place only.
            reason: crate::model::redact::redact_quoted(reason)
                .chars()
                .take(300)
                .collect(),
            payload_len: payload.len() as u64,
            sha256: payload_hash(payload),
        };
        let value = serde_json::to_vec(&record)
            .map_err(|e| txn::corrupt(&[TAG], &format!("cannot encode a record: {e}")))?;
        let mut guard = self.rejected_state()?;
        let mut st = guard.unwrap_or_default();
        let shared = self.core.shared()?;
        let mut batch = Batch::new();
        let added = (9 + value.len()) as u64;
        let mut freed = 0u64;
        batch.put(key(st.next), value);
        st.next += 1;
        st.total += 1;
        while st.next - st.first > KEEP {
            if let Some(old) = shared.store.get(&key(st.first))? {
                freed += (9 + old.len()) as u64;
            }
            batch.remove(key(st.first));
            st.first += 1;
        }
        batch.put(META, st.encode());
        shared.store.apply(batch)?;
        *guard = Some(st);
        // Updated under the log's lock: one reject at a time.
        let bytes = &shared.rejected_bytes;
        let now = bytes.load(std::sync::atomic::Ordering::Relaxed);
        bytes.store(
            (now + added).saturating_sub(freed),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }

    /// The newest `limit` rejected records, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<RejectedRecord>, QueueError> {
        let st = self.rejected_state()?.unwrap_or_default();
        let from = st.next.saturating_sub(limit as u64).max(st.first);
        let after = from.checked_sub(1).map(key);
        let page = self
            .core
            .shared()?
            .store
            .scan_prefix(&[TAG], after.as_deref(), limit)?;
        let mut out = Vec::with_capacity(page.len());
        for (k, v) in page {
            out.push(ops::decode::<RejectedRecord>(&k, &v)?);
        }
        out.reverse();
        Ok(out)
    }

    /// How many messages were ever rejected (including records dropped past [`KEEP`]).
    pub fn count(&self) -> Result<u64, QueueError> {
        Ok(self.rejected_state()?.unwrap_or_default().total)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::{MemoryStore, Queue, QueueOptions};
    use crate::reading::SinkId;

    fn queue(store: Arc<MemoryStore>) -> Queue {
        Queue::with_store(store, QueueOptions::new(vec![SinkId::new("out")])).unwrap()
    }

    #[test]
    fn a_parser_message_quoting_the_payload_is_recorded_without_the_quote() {
        let q = queue(Arc::new(MemoryStore::new()));
        let reason = r#"json: invalid type: string "MRN0012345", expected u32 at line 1 column 20"#;
        q.rejected()
            .reject("bridge", "bridge/exam4", reason, b"{\"id\":\"MRN0012345\"}")
            .unwrap();
        let recs = q.rejected().list(10).unwrap();
        assert!(!recs[0].reason.contains("MRN0012345"), "{}", recs[0].reason);
        assert!(
            recs[0].reason.contains("invalid type"),
            "{}",
            recs[0].reason
        );
    }

    #[test]
    fn a_rejected_payload_is_recorded_without_its_content() {
        let q = queue(Arc::new(MemoryStore::new()));
        q.rejected()
            .reject("cuff", "gw/a/2A35", "malformed: no flags", b"secret MRN123")
            .unwrap();
        let recs = q.rejected().list(10).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].device, "cuff");
        assert_eq!(recs[0].topic, "gw/a/2A35");
        assert_eq!(recs[0].payload_len, 13);
        assert_eq!(recs[0].sha256, payload_hash(b"secret MRN123"));
        assert_eq!(recs[0].sha256.len(), 32);
        let json = serde_json::to_string(&recs[0]).unwrap();
        assert!(!json.contains("MRN123"), "{json}");
        assert_eq!(q.rejected().count().unwrap(), 1);
    }

    #[test]
    fn the_log_keeps_the_newest_records_and_the_total_survives_a_reopen() {
        let store = Arc::new(MemoryStore::new());
        let q = queue(store.clone());
        let n = KEEP + 5;
        for i in 0..n {
            q.rejected()
                .reject("d", "t", &format!("r{i}"), &[])
                .unwrap();
        }
        let newest = q.rejected().list(3).unwrap();
        let reasons: Vec<_> = newest.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                format!("r{}", n - 1),
                format!("r{}", n - 2),
                format!("r{}", n - 3)
            ]
        );
        drop(q);
        let q = queue(store);
        assert_eq!(q.rejected().count().unwrap(), n);
        let all = q.rejected().list(20_000).unwrap();
        assert_eq!(all.len() as u64, KEEP);
        assert_eq!(all.last().unwrap().reason, "r5");
    }
}
