//! Held readings: pending for no sink until assigned (then for every sink, atomically) or
//! discarded; durable across a reopen; audited.

use std::sync::Arc;

use super::*;
use crate::model::audit::AuditEvent;
use crate::queue::tests::far_future;
use crate::queue::tests::reading;
use crate::queue::{MemoryStore, Queue, QueueOptions, SledStore, Store};
use crate::reading::SinkId;

fn opts() -> QueueOptions {
    QueueOptions::new(vec![SinkId::new("a"), SinkId::new("b")])
}

fn patient() -> PatientRef {
    PatientRef {
        id: "MRN0012345".into(),
        system: "urn:oid:1.2.3".into(),
    }
}

fn events(q: &Queue) -> Vec<&'static str> {
    q.audit()
        .entries(None, 100)
        .unwrap()
        .into_iter()
        .map(|e| match e.event {
            AuditEvent::Held { .. } => "held",
            AuditEvent::Assigned { .. } => "assigned",
            AuditEvent::Discarded { .. } => "discarded",
            _ => "other",
        })
        .collect()
}

#[tokio::test]
async fn a_held_reading_is_pending_for_no_sink_until_assigned_then_for_every_sink() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let r = reading("ox", 1);
    let id = r.id.unwrap();
    assert_eq!(
        q.held().hold(vec![r]).await.unwrap(),
        [EnqueueOutcome::Stored]
    );
    for s in ["a", "b"] {
        assert!(q
            .pending(&SinkId::new(s), 10, far_future())
            .unwrap()
            .is_empty());
    }
    assert_eq!(q.held().count().unwrap(), 1);
    let held = q.held().list(10).unwrap();
    assert_eq!(held[0].id, id);
    assert_eq!(held[0].room.as_deref(), Some("exam-1"));

    let assigned = q
        .held()
        .assign(id, patient(), "ma-jo".into())
        .await
        .unwrap();
    assert_eq!(assigned.unwrap().patient, Some(patient()));
    for s in ["a", "b"] {
        let p = q.pending(&SinkId::new(s), 10, far_future()).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].reading.patient, Some(patient()));
    }
    assert_eq!(q.held().count().unwrap(), 0);
    assert_eq!(q.stats().unwrap().sinks[0].pending, 1);
    // Once released it cannot be assigned again (never re-attributed).
    let again = q.held().assign(id, patient(), "x".into()).await.unwrap();
    assert!(again.is_none());
    assert_eq!(events(&q), ["held", "assigned"]);
}

#[tokio::test]
async fn a_discarded_reading_is_gone_and_the_discard_is_audited_with_its_reason() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let r = reading("ox", 2);
    let id = r.id.unwrap();
    q.held().hold(vec![r.clone()]).await.unwrap();
    let d = q
        .held()
        .discard(id, "wrong room".into(), "ma-jo".into())
        .await
        .unwrap();
    assert!(d.is_some());
    assert_eq!(q.held().count().unwrap(), 0);
    assert_eq!(q.stats().unwrap().readings, 0);
    assert!(q
        .pending(&SinkId::new("a"), 10, far_future())
        .unwrap()
        .is_empty());
    let audit = q.audit().entries(None, 10).unwrap();
    assert!(matches!(&audit[1].event,
        AuditEvent::Discarded { reason, by, .. } if reason == "wrong room" && by == "ma-jo"));
    // The same measurement sent again is recognised, not held a second time.
    let mut again = r;
    again.id = Some(ReadingId::new());
    let o = q.held().hold(vec![again]).await.unwrap();
    assert_eq!(o, [EnqueueOutcome::Duplicate(id)]);
}

#[tokio::test]
async fn held_readings_survive_a_reopen_of_the_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let r = reading("ox", 3);
    let id = r.id.unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap());
        let q = Queue::with_store(store, opts()).unwrap();
        q.held().hold(vec![r]).await.unwrap();
        q.close().await.unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap());
    let q = Queue::with_store(store, opts()).unwrap();
    assert_eq!(q.held().list(10).unwrap()[0].id, id);
    assert_eq!(q.stats().unwrap().readings, 1);
    assert!(q
        .held()
        .assign(id, patient(), "ma".into())
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        q.pending(&SinkId::new("b"), 10, far_future())
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_rejected_reading_goes_to_the_quarantine_not_to_the_held_list() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let mut r = reading("ox", 4);
    r.flags
        .push(crate::reading::Flag::new("rejected:implausible"));
    let o = q.held().hold(vec![r]).await.unwrap();
    assert!(matches!(&o[0], EnqueueOutcome::Rejected(_)));
    assert_eq!(q.held().count().unwrap(), 0);
    assert_eq!(q.quarantine().count().unwrap(), 1);
    assert!(q.dead(None, 10).unwrap().is_empty());
}

#[test]
fn an_entry_is_in_review_after_hold_for() {
    let e = HeldEntry {
        id: ReadingId::new(),
        room: None,
        held_at: time::macros::datetime!(2026-11-27 12:00 UTC),
        reading: reading("ox", 5),
    };
    let day = std::time::Duration::from_secs(86_400);
    assert!(!e.in_review(day, time::macros::datetime!(2026-11-28 11:59 UTC)));
    assert!(e.in_review(day, time::macros::datetime!(2026-11-28 12:01 UTC)));
}

#[tokio::test]
async fn settling_with_audit_records_each_final_answer_once() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let r = reading("ox", 6);
    let id = r.id.unwrap();
    q.enqueue(vec![r]).await.unwrap();
    let a = SinkId::new("a");
    q.settle_audited(&a, vec![(id, crate::queue::Settle::Delivered)])
        .await
        .unwrap();
    // A second settle of the same entry is ignored and not audited again.
    q.settle_audited(&a, vec![(id, crate::queue::Settle::Delivered)])
        .await
        .unwrap();
    let b = SinkId::new("b");
    let dead = crate::queue::Settle::Dead {
        reason: "HTTP 422".into(),
    };
    q.settle_audited(&b, vec![(id, dead)]).await.unwrap();
    let audit = q.audit().entries(None, 10).unwrap();
    assert_eq!(audit.len(), 2);
    assert!(matches!(&audit[1].event,
        AuditEvent::Delivery { reason: Some(r), sink, .. } if r == "HTTP 422" && sink == &b));
}
