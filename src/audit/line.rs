//! One audit line: the entry's head (the hash of the line before it, its id and time) with the
//! event's fields beside it, or with the event sealed when the store has a key; and the
//! SHA-256 the next line chains on.

use base64::Engine;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AuditError, AuditLog};
use crate::context::audit::AuditEntry;

/// One line as written (the event's fields sit beside these, or are sealed in `sealed`).
#[derive(Serialize)]
pub(super) struct Head<'a> {
    pub(super) prev: &'a str,
    pub(super) id: Uuid,
    pub(super) at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sealed: Option<String>,
}

/// The additional data a sealed event is bound to: its id, the hash before it and its time
/// (as written, RFC 3339).
pub(super) fn aad(id: Uuid, prev: &str, at: &str) -> Vec<u8> {
    let mut a = id.as_bytes().to_vec();
    a.extend_from_slice(prev.as_bytes());
    a.push(0);
    a.extend_from_slice(at.as_bytes());
    a
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn sha256_hex(line: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, line).as_ref())
}

impl AuditLog {
    /// One line: the head plus the event's fields, or the head with the event sealed.
    pub(super) fn line(
        &self,
        prev: &str,
        id: Uuid,
        entry: &AuditEntry,
    ) -> Result<Vec<u8>, AuditError> {
        let bad = |e: &dyn std::fmt::Display| AuditError::io(&self.dir, e);
        let at = rfc3339(entry.at);
        let Some(c) = &self.cipher else {
            let head = Head {
                prev,
                id,
                at,
                sealed: None,
            };
            let mut v = serde_json::to_value(&head).map_err(|e| bad(&e))?;
            let ev = serde_json::to_value(&entry.event).map_err(|e| bad(&e))?;
            if let (Some(m), serde_json::Value::Object(fields)) = (v.as_object_mut(), ev) {
                m.extend(fields);
            }
            return serde_json::to_vec(&v).map_err(|e| bad(&e));
        };
        let plain = serde_json::to_vec(&entry.event).map_err(|e| bad(&e))?;
        let s = c.seal(&aad(id, prev, &at), &plain).map_err(|e| bad(&e))?;
        let sealed = base64::engine::general_purpose::STANDARD.encode(s);
        // The head alone, written directly: the same bytes as the JSON object of its fields
        // (keys in sorted order), without building that object for every entry.
        let mut out = Vec::with_capacity(sealed.len() + prev.len() + at.len() + 80);
        out.extend_from_slice(b"{\"at\":");
        serde_json::to_writer(&mut out, &at).map_err(|e| bad(&e))?;
        out.extend_from_slice(b",\"id\":");
        serde_json::to_writer(&mut out, &id).map_err(|e| bad(&e))?;
        out.extend_from_slice(b",\"prev\":");
        serde_json::to_writer(&mut out, prev).map_err(|e| bad(&e))?;
        out.extend_from_slice(b",\"sealed\":");
        serde_json::to_writer(&mut out, &sealed).map_err(|e| bad(&e))?;
        out.push(b'}');
        Ok(out)
    }
}
