//! The quarantine: rejected readings reach no sink and no dead-letter retry; a release is
//! audited and sends them once; a store of the earlier version is migrated at open. Run
//! against both stores.

use std::sync::Arc;

use super::*;
use crate::model::audit::AuditEvent;
use crate::queue::tests::{each_store, far_future, hr, reading};
use crate::queue::{EnqueueOutcome, MemoryStore, Queue, QueueOptions, Settle, Store};
use crate::reading::Flag;

const WHY: &str = "heart_rate 400 /min >= 300";

fn sinks() -> [SinkId; 2] {
    [SinkId::new("ehr"), SinkId::new("file")]
}

fn opts() -> QueueOptions {
    QueueOptions::new(sinks().to_vec())
}

fn rejected(n: i64) -> Reading {
    hr("cuff", n)
        .flag(Flag::new(format!("rejected:{WHY}")))
        .build()
}

fn patient() -> PatientRef {
    PatientRef {
        id: "MRN0012345".into(),
        system: "urn:oid:1.2.3".into(),
    }
}

fn req(patient: Option<PatientRef>, require_patient: bool) -> ReleaseRequest {
    ReleaseRequest {
        by: "dr-lee".into(),
        reason: "cuff re-checked, value confirmed".into(),
        patient,
        require_patient,
    }
}

fn pending_ids(q: &Queue, s: &SinkId) -> Vec<ReadingId> {
    q.pending(s, 100, far_future())
        .unwrap()
        .into_iter()
        .filter_map(|p| p.reading.id)
        .collect()
}

fn events(q: &Queue) -> Vec<AuditEvent> {
    q.audit()
        .entries(None, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .filter(|e| {
            matches!(
                e,
                AuditEvent::Quarantined { .. }
                    | AuditEvent::QuarantineReleased { .. }
                    | AuditEvent::QuarantineDiscarded { .. }
            )
        })
        .collect()
}

#[tokio::test]
async fn a_rejected_reading_is_quarantined_and_no_dead_letter_retry_sends_it() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, opts()).unwrap();
        let r = rejected(1);
        let id = r.id.unwrap();
        let out = q.enqueue(vec![r]).await.unwrap();
        assert_eq!(out, [EnqueueOutcome::Rejected(WHY.into())], "{name}");
        for s in sinks() {
            assert!(pending_ids(&q, &s).is_empty(), "{name}");
            assert!(q.dead(Some(&s), 10).unwrap().is_empty(), "{name}");
            assert_eq!(q.next_due(&s).unwrap(), None, "{name}");
            assert_eq!(q.retry_dead(&s, None).await.unwrap(), 0, "{name}");
            assert_eq!(q.retry_dead(&s, Some(id)).await.unwrap(), 0, "{name}");
            assert!(pending_ids(&q, &s).is_empty(), "{name}");
        }
        let list = q.quarantine().list(10).unwrap();
        assert_eq!(list.len(), 1, "{name}");
        assert_eq!((list[0].id, list[0].reason.as_str()), (id, WHY), "{name}");
        assert!(!list[0].migrated, "{name}");
        let st = q.stats().unwrap();
        assert_eq!((st.readings, st.quarantined), (1, 1), "{name}");
        assert!(
            st.sinks.iter().all(|s| s.pending == 0 && s.dead == 0),
            "{name}"
        );
        assert_eq!(
            events(&q),
            [AuditEvent::Quarantined {
                reading: id,
                reason: WHY.into(),
                migrated: false
            }],
            "{name}"
        );
        // The same measurement again is a duplicate, not a second quarantine entry.
        let mut again = rejected(1);
        again.id = Some(ReadingId::new());
        assert_eq!(
            q.enqueue(vec![again]).await.unwrap(),
            [EnqueueOutcome::Duplicate(id)],
            "{name}"
        );
        assert_eq!(q.quarantine().count().unwrap(), 1, "{name}");
    }
}

#[tokio::test]
async fn a_release_sends_it_to_every_sink_once_with_its_flag_and_is_audited() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store.clone(), opts()).unwrap();
        let mut r = rejected(2);
        r.patient = Some(patient());
        let id = r.id.unwrap();
        q.enqueue(vec![r]).await.unwrap();
        let Release::Released(out) = q.quarantine().release(id, req(None, true)).await.unwrap()
        else {
            panic!("{name}: not released");
        };
        assert_eq!(out.rejection(), Some(WHY), "{name}");
        for s in sinks() {
            let p = q.pending(&s, 10, far_future()).unwrap();
            assert_eq!(p.len(), 1, "{name}");
            assert_eq!(p[0].reading.rejection(), Some(WHY), "{name}");
            assert_eq!(p[0].reading.patient, Some(patient()), "{name}");
        }
        assert_eq!(
            q.quarantine().release(id, req(None, true)).await.unwrap(),
            Release::NotFound,
            "{name}"
        );
        let st = q.stats().unwrap();
        assert_eq!((st.readings, st.quarantined), (1, 0), "{name}");
        assert!(st.sinks.iter().all(|s| s.pending == 1), "{name}");
        let ev = events(&q);
        assert_eq!(
            ev.last(),
            Some(&AuditEvent::QuarantineReleased {
                reading: id,
                by: "dr-lee".into(),
                reason: "cuff re-checked, value confirmed".into(),
                patient: None,
            }),
            "{name}"
        );
        // Delivered to both: the reading leaves the store.
        for s in sinks() {
            q.settle(&s, vec![(id, Settle::Delivered)]).await.unwrap();
        }
        assert_eq!(q.stats().unwrap().readings, 0, "{name}");
        drop(q);
        let q = Queue::with_store(store, opts()).unwrap();
        assert_eq!(q.quarantine().count().unwrap(), 0, "{name}");
        assert!(pending_ids(&q, &SinkId::new("ehr")).is_empty(), "{name}");
    }
}

#[tokio::test]
async fn a_reading_without_a_patient_needs_one_when_required_and_keeps_a_different_one() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let r = rejected(3);
    let id = r.id.unwrap();
    q.enqueue(vec![r]).await.unwrap();
    assert_eq!(
        q.quarantine().release(id, req(None, true)).await.unwrap(),
        Release::NeedsPatient
    );
    assert_eq!(q.quarantine().count().unwrap(), 1);
    let Release::Released(out) = q
        .quarantine()
        .release(id, req(Some(patient()), true))
        .await
        .unwrap()
    else {
        panic!("not released");
    };
    assert_eq!(out.patient, Some(patient()));
    let p = q.pending(&SinkId::new("ehr"), 10, far_future()).unwrap();
    assert_eq!(p[0].reading.patient, Some(patient()));
    assert!(matches!(
        events(&q).last(),
        Some(AuditEvent::QuarantineReleased { patient: Some(p), .. }) if *p == patient()
    ));

    // A reading with a patient is never given another one.
    let mut r = rejected(4);
    r.patient = Some(patient());
    let id = r.id.unwrap();
    q.enqueue(vec![r]).await.unwrap();
    let other = PatientRef {
        id: "MRN9".into(),
        system: "urn:oid:1.2.3".into(),
    };
    assert_eq!(
        q.quarantine()
            .release(id, req(Some(other), false))
            .await
            .unwrap(),
        Release::HasPatient
    );
    // Without the requirement (location mode), no patient is fine.
    let r = rejected(5);
    let id5 = r.id.unwrap();
    q.enqueue(vec![r]).await.unwrap();
    assert!(matches!(
        q.quarantine().release(id5, req(None, false)).await.unwrap(),
        Release::Released(_)
    ));
    assert_eq!(q.quarantine().count().unwrap(), 1);
}

#[tokio::test]
async fn a_discard_removes_it_with_an_audit_entry() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, opts()).unwrap();
        let r = rejected(6);
        let id = r.id.unwrap();
        q.enqueue(vec![r]).await.unwrap();
        assert!(q
            .quarantine()
            .discard(id, "ma-jo".into(), "cuff fault".into())
            .await
            .unwrap());
        assert!(!q
            .quarantine()
            .discard(id, "ma-jo".into(), "again".into())
            .await
            .unwrap());
        let st = q.stats().unwrap();
        assert_eq!((st.readings, st.quarantined), (0, 0), "{name}");
        assert_eq!(
            events(&q).last(),
            Some(&AuditEvent::QuarantineDiscarded {
                reading: id,
                by: "ma-jo".into(),
                reason: "cuff fault".into()
            }),
            "{name}"
        );
        assert_eq!(
            q.quarantine().release(id, req(None, false)).await.unwrap(),
            Release::NotFound
        );
    }
}

#[tokio::test]
async fn without_sinks_a_release_is_refused_and_the_reading_stays() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let q = Queue::with_store(store.clone(), opts()).unwrap();
    let r = rejected(7);
    let id = r.id.unwrap();
    q.enqueue(vec![r]).await.unwrap();
    drop(q);
    let q = Queue::with_store(store, QueueOptions::new(vec![])).unwrap();
    assert_eq!(
        q.quarantine().release(id, req(None, false)).await.unwrap(),
        Release::NoSinks
    );
    assert_eq!(q.quarantine().count().unwrap(), 1);
}

/// What the earlier version's enqueue wrote for a rejected reading: the reading in a segment
/// and a dead entry for every configured sink, with the rejection as reason.
async fn old_enqueue(q: &Queue, r: Reading) {
    q.core
        .stage(move |tx, ctx| {
            let id = match ops::claim(tx, ctx, 0, &r)? {
                ops::Claim::New(id) => id,
                ops::Claim::Duplicate(_) => panic!("duplicate"),
            };
            let value = ops::json(&keys::segment(tx.next_seq()), &r)?;
            let slot = tx.append(id, &value);
            tx.counters.readings += 1;
            let dead = DeadValue {
                slot,
                reason: r.rejection().unwrap().to_string(),
                at: ctx.now_ms,
                attempts: 0,
            };
            for s in ctx.configured {
                ops::add_dead(tx, s, id, &dead)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_store_of_the_earlier_version_has_its_rejected_dead_letters_moved_at_open() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store.clone(), opts()).unwrap();
        let (a, b) = (rejected(10), rejected(11));
        let (ida, idb) = (a.id.unwrap(), b.id.unwrap());
        old_enqueue(&q, a).await;
        old_enqueue(&q, b).await;
        // Someone already ran the old `queue retry` for `b` on one sink.
        let file = SinkId::new("file");
        assert_eq!(q.retry_dead(&file, Some(idb)).await.unwrap(), 1, "{name}");
        // A reading a receiver refused stays in the dead-letter.
        let ok = reading("cuff", 12);
        let idok = ok.id.unwrap();
        q.enqueue(vec![ok]).await.unwrap();
        for s in sinks() {
            let dead = Settle::Dead {
                reason: "HTTP 422: bad code".into(),
            };
            q.settle(&s, vec![(idok, dead)]).await.unwrap();
        }
        let before = q.stats().unwrap();
        assert_eq!((before.readings, before.quarantined), (3, 0), "{name}");
        drop(q);

        let q = Queue::with_store(store.clone(), opts()).unwrap();
        let mut ids: Vec<_> = q
            .quarantine()
            .list(10)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        ids.sort();
        let mut want = vec![ida, idb];
        want.sort();
        assert_eq!(ids, want, "{name}");
        assert!(q
            .quarantine()
            .list(10)
            .unwrap()
            .iter()
            .all(|e| e.migrated && e.reason == WHY));
        for s in sinks() {
            let dead: Vec<_> = q.dead(Some(&s), 10).unwrap().iter().map(|d| d.id).collect();
            assert_eq!(dead, [idok], "{name} {s}");
            assert!(pending_ids(&q, &s).is_empty(), "{name} {s}");
            assert_eq!(q.retry_dead(&s, None).await.unwrap(), 1, "{name}");
        }
        let st = q.stats().unwrap();
        assert_eq!((st.readings, st.quarantined), (3, 2), "{name}");
        let migrated = events(&q)
            .iter()
            .filter(|e| matches!(e, AuditEvent::Quarantined { migrated: true, .. }))
            .count();
        assert_eq!(migrated, 2, "{name}");
        q.close().await.unwrap();
        drop(q);
        let rep = crate::queue::repair::verify::check(&*store).unwrap();
        assert!(rep.is_clean(), "{name}: {:?}", rep.problems);
        assert_eq!(rep.quarantined, 2, "{name}");

        assert_eq!(
            rep.counted.as_ref().map(|c| c.quarantined),
            Some(2),
            "{name}"
        );
        assert_eq!(rep.found.quarantined, 2, "{name}");

        // A second open finds nothing more to move.
        let q = Queue::with_store(store, opts()).unwrap();
        assert_eq!(q.quarantine().count().unwrap(), 2, "{name}");
        assert_eq!(q.stats().unwrap().quarantined, 2, "{name}");
        let migrated = events(&q)
            .iter()
            .filter(|e| matches!(e, AuditEvent::Quarantined { migrated: true, .. }))
            .count();
        assert_eq!(migrated, 2, "{name}");
        assert_eq!(q.stats().unwrap().readings, 3, "{name}");
    }
}

#[tokio::test]
async fn a_released_reading_refused_by_a_receiver_is_not_quarantined_again_at_open() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let q = Queue::with_store(store.clone(), opts()).unwrap();
    let mut r = rejected(20);
    r.patient = Some(patient());
    let id = r.id.unwrap();
    q.enqueue(vec![r]).await.unwrap();
    q.quarantine().release(id, req(None, true)).await.unwrap();
    for s in sinks() {
        let dead = Settle::Dead {
            reason: "HTTP 422: bad value".into(),
        };
        q.settle(&s, vec![(id, dead)]).await.unwrap();
    }
    drop(q);
    let q = Queue::with_store(store, opts()).unwrap();
    assert_eq!(q.quarantine().count().unwrap(), 0);
    assert_eq!(q.dead(None, 10).unwrap().len(), 2);
}

#[test]
fn the_summary_masks_the_patient_and_leaves_out_values() {
    let mut r = rejected(30);
    r.patient = Some(patient());
    let e = QuarantineEntry {
        id: r.id.unwrap(),
        reason: WHY.into(),
        quarantined_at: far_future(),
        migrated: false,
        reading: r,
    };
    let json = serde_json::to_string(&e.summary()).unwrap();
    assert!(!json.contains("MRN0012345"), "{json}");
    assert!(json.contains(&patient().masked()), "{json}");
    assert!(json.contains("\"kind\":\"heart_rate\""), "{json}");
    assert!(json.contains("\"device\":\"cuff\""), "{json}");
    assert!(!json.contains("\"values\""), "{json}");
}
