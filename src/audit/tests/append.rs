//! The writing of lines: nonces drawn for a whole append, and the event JSON written field by
//! field.

use base64::Engine;
use time::macros::datetime;

use super::*;

/// One append writes many sealed lines from one draw of nonces: each line has its own nonce,
/// each opens, and the chain over them verifies.
#[test]
fn the_lines_of_one_append_each_get_their_own_nonce_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manual::new(datetime!(2026-12-06 12:00 UTC));
    let key = StoreKey::from_bytes([5; 32], "test");
    let log = AuditLog::open(opts(dir.path(), m.clock(), Some(key.clone()), u64::MAX)).unwrap();
    let entries: Vec<_> = (0..40).map(|i| set(&format!("r{i}"), m.now())).collect();
    log.append(&entries).unwrap();
    log.sync().unwrap();
    let text = std::fs::read_to_string(dir.path().join("audit-2026-12-06.jsonl")).unwrap();
    let mut nonces = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(v["sealed"].as_str().unwrap())
            .unwrap();
        nonces.insert(sealed[1..13].to_vec());
    }
    assert_eq!(nonces.len(), 40);
    let rep = verify(dir.path(), AuditLog::cipher_for(Some(&key)).as_ref()).unwrap();
    assert_eq!(rep.entries, 40);
    assert!(rep.first_break.is_none(), "{rep:?}");
    assert_eq!(all(&log, false).len(), 40);
}

/// A receiver's answer is written field by field: byte for byte what serde writes.
#[test]
fn a_delivery_event_is_written_as_serde_writes_it() {
    use crate::context::audit::DeliveryOutcome;
    let reading = crate::reading::ReadingId::new();
    for (sink, outcome, reason) in [
        ("ehr", DeliveryOutcome::Delivered, None),
        (
            "ehr \"two\"\n",
            DeliveryOutcome::Dead,
            Some("HTTP 422: \"bad\"\\\u{1}é"),
        ),
        ("", DeliveryOutcome::Dead, Some("")),
    ] {
        let ev = AuditEvent::Delivery {
            reading,
            sink: crate::reading::SinkId::new(sink),
            outcome,
            reason: reason.map(String::from),
        };
        let mut fast = Vec::new();
        crate::audit::line::event_json(&mut fast, &ev).unwrap();
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            serde_json::to_string(&ev).unwrap()
        );
    }
}
