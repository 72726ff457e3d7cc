//! One audit line: the entry's head (the hash of the line before it, its id and time) with the
//! event's fields beside it, or with the event sealed when the store has a key; and the
//! SHA-256 the next line chains on.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::NONCE_LEN;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AuditError, AuditLog};
use crate::context::audit::AuditEntry;
use crate::model::audit::{AuditEvent, DeliveryOutcome};

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
    let mut a = Vec::with_capacity(16 + prev.len() + 1 + at.len());
    aad_into(&mut a, id, prev, at);
    a
}

/// [`aad`] written into `a` (its old content replaced).
fn aad_into(a: &mut Vec<u8>, id: Uuid, prev: &str, at: &str) {
    a.clear();
    a.extend_from_slice(id.as_bytes());
    a.extend_from_slice(prev.as_bytes());
    a.push(0);
    a.extend_from_slice(at.as_bytes());
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn sha256_hex(line: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, line).as_ref())
}

/// What one append reuses from line to line: the event's JSON, the sealed event's associated
/// data, its nonces (drawn for the whole append in one call) and the last time formatted (the
/// entries of one group commit share their time).
#[derive(Default)]
pub(super) struct Scratch {
    plain: Vec<u8>,
    aad: Vec<u8>,
    nonces: Vec<u8>,
    used: usize,
    at: Option<(OffsetDateTime, String)>,
}

impl Scratch {
    /// Room for `n` sealed lines: their nonces in one call to the system's generator.
    pub(super) fn draw(&mut self, log: &AuditLog, n: usize) -> Result<(), AuditError> {
        let Some(c) = &log.cipher else { return Ok(()) };
        self.nonces.clear();
        self.nonces.resize(n * NONCE_LEN, 0);
        self.used = 0;
        c.fill_nonces(&mut self.nonces)
            .map_err(|e| AuditError::io(&log.dir, e))
    }

    fn nonce(&mut self, log: &AuditLog) -> Result<[u8; NONCE_LEN], AuditError> {
        if self.used + NONCE_LEN > self.nonces.len() {
            self.draw(log, 1)?;
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&self.nonces[self.used..self.used + NONCE_LEN]);
        self.used += NONCE_LEN;
        Ok(n)
    }

    fn at(&mut self, t: OffsetDateTime) -> &str {
        if self.at.as_ref().is_none_or(|(cached, _)| *cached != t) {
            self.at = Some((t, rfc3339(t)));
        }
        self.at.as_ref().map_or("", |(_, s)| s.as_str())
    }
}

/// The hex SHA-256 of `line` in `out` (its old content replaced, its allocation kept).
pub(super) fn sha256_hex_into(line: &[u8], out: &mut String) {
    let d = ring::digest::digest(&ring::digest::SHA256, line);
    let mut hex = [0u8; 64];
    if hex::encode_to_slice(d.as_ref(), &mut hex).is_ok() {
        out.clear();
        out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    }
}

/// `s` as a JSON string: copied between quotes when nothing in it needs escaping (the hashes,
/// ids, times and base64 the chain writes), else through serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

/// The event's JSON, as serde writes it: a receiver's answer (one per delivered reading, the
/// bulk of the log) is written field by field, every other event through serde.
pub(super) fn event_json(out: &mut Vec<u8>, ev: &AuditEvent) -> Result<(), serde_json::Error> {
    let AuditEvent::Delivery {
        reading,
        sink,
        outcome,
        reason,
    } = ev
    else {
        return serde_json::to_writer(out, ev);
    };
    let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = Uuid::from_bytes(reading.to_bytes());
    out.extend_from_slice(b"{\"event\":\"delivery\",\"reading\":\"");
    out.extend_from_slice(id.hyphenated().encode_lower(&mut uuid).as_bytes());
    out.extend_from_slice(b"\",\"sink\":");
    json_str(out, sink.as_str())?;
    out.extend_from_slice(match outcome {
        DeliveryOutcome::Delivered => b",\"outcome\":\"delivered\"",
        DeliveryOutcome::Dead => b",\"outcome\":\"dead\"",
    });
    if let Some(r) = reason {
        out.extend_from_slice(b",\"reason\":");
        json_str(out, r)?;
    }
    out.push(b'}');
    Ok(())
}

impl AuditLog {
    /// One line: the head plus the event's fields, or the head with the event sealed.
    #[cfg(test)]
    pub(super) fn line(
        &self,
        prev: &str,
        id: Uuid,
        entry: &AuditEntry,
    ) -> Result<Vec<u8>, AuditError> {
        let mut out = Vec::new();
        self.write_line(&mut Scratch::default(), &mut out, prev, id, entry)?;
        Ok(out)
    }

    /// Appends one line (without its newline) to `out`: the head plus the event's fields, or
    /// the head with the event sealed. Nothing is appended when it fails.
    pub(super) fn write_line(
        &self,
        s: &mut Scratch,
        out: &mut Vec<u8>,
        prev: &str,
        id: Uuid,
        entry: &AuditEntry,
    ) -> Result<(), AuditError> {
        let bad = |e: &dyn std::fmt::Display| AuditError::io(&self.dir, e);
        let Some(c) = &self.cipher else {
            let head = Head {
                prev,
                id,
                at: rfc3339(entry.at),
                sealed: None,
            };
            let mut v = serde_json::to_value(&head).map_err(|e| bad(&e))?;
            let ev = serde_json::to_value(&entry.event).map_err(|e| bad(&e))?;
            if let (Some(m), serde_json::Value::Object(fields)) = (v.as_object_mut(), ev) {
                m.extend(fields);
            }
            return serde_json::to_writer(out, &v).map_err(|e| bad(&e));
        };
        s.plain.clear();
        event_json(&mut s.plain, &entry.event).map_err(|e| bad(&e))?;
        let nonce = s.nonce(self)?;
        let mut aad = std::mem::take(&mut s.aad);
        let at = s.at(entry.at);
        aad_into(&mut aad, id, prev, at);
        let sealed = c.seal_with(nonce, &aad, &s.plain).map_err(|e| bad(&e));
        s.aad = aad;
        let sealed = sealed?;
        let at = s.at(entry.at);
        // The head written directly: the same bytes as the JSON object of its fields (keys in
        // sorted order), without building that object or its strings for every entry.
        let start = out.len();
        let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.extend_from_slice(b"{\"at\":");
        json_str(out, at).map_err(|e| bad(&e))?;
        out.extend_from_slice(b",\"id\":\"");
        out.extend_from_slice(id.hyphenated().encode_lower(&mut uuid).as_bytes());
        out.extend_from_slice(b"\",\"prev\":");
        if let Err(e) = json_str(out, prev) {
            out.truncate(start);
            return Err(bad(&e));
        }
        out.extend_from_slice(b",\"sealed\":\"");
        let b64 = out.len();
        out.resize(
            b64 + base64::encoded_len(sealed.len(), true).unwrap_or(0),
            0,
        );
        if let Err(e) = STANDARD.encode_slice(&sealed, &mut out[b64..]) {
            out.truncate(start);
            return Err(bad(&e));
        }
        out.extend_from_slice(b"\"}");
        Ok(())
    }
}
