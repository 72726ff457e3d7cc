//! The context store with a patient lookup: known, unknown and ambiguous identifiers, a
//! record system that is down (hold or attach by identifier, each reading audited), a scan
//! being looked up, and no lookup at all.

use super::*;
use crate::config::LookupUnavailable;
use crate::context::lookup::{Directory, LookupChoice, RefusalReason, SearchFuture, Verification};
use crate::model::fixtures;
use crate::reading::{Kind, PatientRecord};
use std::sync::atomic::{AtomicBool, Ordering};

/// A record system: "A" is one Patient, "TWIN" two, anything else none; `down` answers
/// nothing.
struct Directory1 {
    down: AtomicBool,
}

fn record(id: &str) -> PatientRecord {
    PatientRecord {
        id: id.into(),
        family: Some("Doe".into()),
        given: vec!["Jane".into()],
        birth_date: Some("1970-01-02".into()),
    }
}

impl Directory for Directory1 {
    fn search<'a>(&'a self, p: &'a PatientRef) -> SearchFuture<'a> {
        let down = self.down.load(Ordering::SeqCst);
        Box::pin(async move {
            if down {
                return Err("cannot connect".into());
            }
            Ok(match p.id.as_str() {
                "A" => vec![record("pat-a")],
                "TWIN" => vec![record("t1"), record("t2")],
                _ => Vec::new(),
            })
        })
    }
}

fn store_with(unavailable: LookupUnavailable) -> (ContextStore, Queue, Arc<Directory1>) {
    let q = queue(&Arc::new(MemoryStore::new()));
    let c = open_contexts(&q, TTL).unwrap();
    let dir = Arc::new(Directory1 {
        down: AtomicBool::new(false),
    });
    c.set_lookup(Some(Lookup::new(dir.clone(), unavailable, TTL)));
    (c, q, dir)
}

fn reading(at: OffsetDateTime) -> Reading {
    fixtures::reading(Kind::Spo2)
        .device("ox", "nonin-ascii")
        .room(Some("exam-1"))
        .at(at)
        .build()
}

fn attached(c: &ContextStore, at: OffsetDateTime) -> Reading {
    let mut r = reading(at);
    c.attach("exam-1", &mut r, Window::at(at), None);
    r
}

fn flags(r: &Reading) -> Vec<&str> {
    r.flags.iter().map(|f| f.as_str()).collect()
}

#[tokio::test]
async fn a_known_identifier_sets_the_context_with_the_record() {
    let (c, q, _) = store_with(LookupUnavailable::Hold);
    c.set("exam-1", p("A"), None, ContextSource::Scan, "s", t(0))
        .await
        .unwrap();
    let r = attached(&c, t(1));
    assert_eq!(r.patient, Some(p("A")));
    assert_eq!(r.patient_record, Some(record("pat-a")));
    assert!(r.flags.is_empty());
    let now = t(1);
    let masked = &c.views(now)[0];
    assert_eq!(masked.verified, Verification::Record);
    assert_eq!(masked.name, None, "names only for authenticated views");
    let named = &c.views_with_names(now)[0];
    assert_eq!(named.name.as_deref(), Some("Jane Doe"));
    assert_eq!(named.birth_date.as_deref(), Some("1970-01-02"));
    assert!(named.last_refusal.is_none());
    let audit = q.audit().entries(None, 10).unwrap();
    assert!(
        matches!(&audit[1].event, AuditEvent::ContextLookedUp { verified: Verification::Record, record: Some(id), .. } if id == "pat-a")
    );
}

#[tokio::test]
async fn an_unknown_or_ambiguous_identifier_refuses_the_scan_and_ends_the_previous_context() {
    let (c, q, _) = store_with(LookupUnavailable::Hold);
    c.set("exam-1", p("A"), None, ContextSource::Scan, "s", t(0))
        .await
        .unwrap();
    let e = c
        .set("exam-1", p("NOPE"), None, ContextSource::Scan, "s", t(2))
        .await
        .unwrap_err();
    assert!(matches!(e, ContextError::Refused(RefusalReason::NotFound)));
    assert!(!e.to_string().contains("NOPE"), "{e}");
    assert_eq!(
        attached(&c, t(1)).patient,
        Some(p("A")),
        "before the refused scan"
    );
    let after = attached(&c, t(3));
    assert_eq!(after.patient, None);
    assert_eq!(flags(&after), ["patient_unknown"]);
    let v = &c.views_with_names(t(3))[0];
    assert_eq!(v.verified, Verification::None);
    assert_eq!(
        v.last_refusal.map(|r| r.reason),
        Some(RefusalReason::NotFound)
    );
    assert_eq!(v.last_refusal.map(|r| r.at), Some(t(2)));

    let e = c
        .set("exam-1", p("TWIN"), None, ContextSource::Api, "ma", t(4))
        .await
        .unwrap_err();
    assert!(matches!(e, ContextError::Refused(RefusalReason::Ambiguous)));
    let v = &c.views(t(5))[0];
    assert_eq!(
        v.last_refusal.map(|r| r.reason),
        Some(RefusalReason::Ambiguous)
    );
    let kinds: Vec<String> = q
        .audit()
        .entries(None, 10)
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::to_value(&e.event).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "context_set",
            "context_looked_up",
            "context_refused",
            "context_refused"
        ]
    );
    // Ending the room's context clears the shown refusal, durably.
    assert!(c
        .clear("exam-1", ContextSource::Api, "ma", t(5))
        .await
        .unwrap());
    assert!(c.views(t(5))[0].last_refusal.is_none());
    let reopened = open_contexts(&q, TTL).unwrap();
    assert!(reopened.views(t(5))[0].last_refusal.is_none());
    c.set("exam-1", p("TWIN"), None, ContextSource::Api, "ma", t(5))
        .await
        .unwrap_err();
    // A later confirmed scan clears the refusal.
    c.set("exam-1", p("A"), None, ContextSource::Scan, "s", t(6))
        .await
        .unwrap();
    assert!(c.views(t(7))[0].last_refusal.is_none());
    // An MQTT message that is refused is still handled (acknowledged).
    assert!(c
        .set_from_mqtt(
            "exam-1",
            br#"{"id":"NOPE","system":"urn:oid:2.16.840.1.113883.3.999"}"#
        )
        .await
        .is_ok());
}

#[tokio::test]
async fn a_down_record_system_holds_or_attaches_by_identifier_and_each_reading_is_audited() {
    let (c, q, dir) = store_with(LookupUnavailable::Hold);
    dir.down.store(true, Ordering::SeqCst);
    let e = c
        .set("exam-1", p("B"), None, ContextSource::Scan, "s", t(0))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ContextError::Refused(RefusalReason::Unavailable)
    ));
    let r = attached(&c, t(1));
    assert_eq!(
        (r.patient.clone(), flags(&r)),
        (None, vec!["patient_unknown"])
    );
    c.flush_audit().await.unwrap();
    let last = q.audit().entries(None, 10).unwrap().pop().unwrap();
    assert!(
        matches!(last.event, AuditEvent::LookupFallback { reading, choice: LookupChoice::Hold, .. } if Some(reading) == r.id)
    );

    let (c, q, dir) = store_with(LookupUnavailable::Identifier);
    dir.down.store(true, Ordering::SeqCst);
    c.set("exam-1", p("B"), None, ContextSource::Scan, "s", t(0))
        .await
        .unwrap();
    let r = attached(&c, t(1));
    assert_eq!(r.patient, Some(p("B")));
    assert_eq!(r.patient_record, None);
    assert_eq!(flags(&r), ["patient_unverified"]);
    assert_eq!(c.views(t(1))[0].verified, Verification::IdentifierOnly);
    c.flush_audit().await.unwrap();
    let last = q.audit().entries(None, 10).unwrap().pop().unwrap();
    assert!(
        matches!(last.event, AuditEvent::LookupFallback { reading, choice: LookupChoice::Identifier, .. } if Some(reading) == r.id)
    );
    // Once the server answers again, a new scan is confirmed and its readings are not flagged.
    dir.down.store(false, Ordering::SeqCst);
    c.set("exam-1", p("A"), None, ContextSource::Scan, "s", t(2))
        .await
        .unwrap();
    assert!(attached(&c, t(3)).flags.is_empty());
}

/// A record system that answers only when told to.
struct Slow {
    go: tokio::sync::Notify,
}

impl Directory for Slow {
    fn search<'a>(&'a self, _: &'a PatientRef) -> SearchFuture<'a> {
        Box::pin(async move {
            self.go.notified().await;
            Ok(vec![record("pat-a")])
        })
    }
}

#[tokio::test]
async fn while_a_scan_is_looked_up_the_rooms_new_readings_get_no_earlier_patient() {
    let q = queue(&Arc::new(MemoryStore::new()));
    let c = open_contexts(&q, TTL).unwrap();
    // Patient B was scanned without a lookup, then the lookup is switched on.
    c.set("exam-1", p("B"), None, ContextSource::Scan, "s", t(0))
        .await
        .unwrap();
    let slow = Arc::new(Slow {
        go: tokio::sync::Notify::new(),
    });
    c.set_lookup(Some(Lookup::new(
        slow.clone(),
        LookupUnavailable::Hold,
        TTL,
    )));
    let setting = {
        let c = c.clone();
        tokio::spawn(async move {
            c.set("exam-1", p("A"), None, ContextSource::Scan, "s", t(4))
                .await
        })
    };
    tokio::task::yield_now().await;
    while c.inner.checking.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    // A reading from before the scan still belongs to B; one that may be from after it
    // belongs to nobody yet.
    assert_eq!(attached(&c, t(3)).patient, Some(p("B")));
    let during = attached(&c, t(5));
    assert_eq!(during.patient, None);
    assert_eq!(flags(&during), ["patient_ambiguous"]);
    slow.go.notify_one();
    setting.await.unwrap().unwrap();
    assert!(c.inner.checking.lock().unwrap().is_empty());
    assert_eq!(attached(&c, t(6)).patient, Some(p("A")));
}

#[tokio::test]
async fn without_a_lookup_nothing_changes() {
    let q = queue(&Arc::new(MemoryStore::new()));
    let c = open_contexts(&q, TTL).unwrap();
    c.set("exam-1", p("NOPE"), None, ContextSource::Scan, "s", t(0))
        .await
        .unwrap();
    let r = attached(&c, t(1));
    assert_eq!(r.patient, Some(p("NOPE")));
    assert!(r.flags.is_empty() && r.patient_record.is_none());
    assert_eq!(c.views(t(1))[0].verified, Verification::Scanned);
    assert_eq!(
        q.audit().entries(None, 10).unwrap().len(),
        1,
        "context_set only"
    );
}
