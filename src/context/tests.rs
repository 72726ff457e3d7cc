//! The context store over a real queue: attribution by time, audit, expiry, confirmation,
//! device users, restart.

use std::sync::Arc;

use time::macros::datetime;

use super::*;
use crate::queue::{MemoryStore, Queue, QueueOptions, Store};
use crate::reading::SinkId;

const TTL: Duration = Duration::from_secs(600);

fn p(id: &str) -> PatientRef {
    PatientRef {
        id: id.into(),
        system: "urn:oid:2.16.840.1.113883.3.999".into(),
    }
}

fn queue(store: &Arc<MemoryStore>) -> Queue {
    let s: Arc<dyn Store> = store.clone();
    Queue::with_store(s, QueueOptions::new(vec![SinkId::new("out")])).unwrap()
}

/// The patient of a clockless reading received at `at`, if one.
/// The context store over `q`'s handles, as the app opens it.
fn open_contexts(q: &Queue, ttl: Duration) -> Result<ContextStore, ContextError> {
    ContextStore::open(q.contexts(), q.audit(), ttl)
}

fn attach(c: &ContextStore, room: &str, at: OffsetDateTime) -> Option<PatientRef> {
    match c.attribute(room, Window::at(at), None) {
        Attribution::Patient(a) => Some(a.patient),
        _ => None,
    }
}

fn t(min: i64) -> OffsetDateTime {
    datetime!(2026-11-27 12:00 UTC) + time::Duration::minutes(min)
}

#[tokio::test]
async fn two_rooms_never_mix_and_readings_get_the_patient_of_their_time() {
    let store = Arc::new(MemoryStore::new());
    let c = open_contexts(&queue(&store), TTL).unwrap();
    c.set("exam-1", p("A"), None, ContextSource::Scan, "s1", t(0))
        .await
        .unwrap();
    c.set("exam-2", p("B"), None, ContextSource::Api, "ma", t(1))
        .await
        .unwrap();
    assert_eq!(attach(&c, "exam-1", t(2)), Some(p("A")));
    assert_eq!(attach(&c, "exam-2", t(2)), Some(p("B")));
    assert_eq!(attach(&c, "exam-3", t(2)), None);
    assert_eq!(
        attach(&c, "exam-2", t(0)),
        None,
        "before the context was set"
    );
}

#[tokio::test]
async fn contexts_survive_a_restart_and_every_change_is_audited() {
    let store = Arc::new(MemoryStore::new());
    {
        let q = queue(&store);
        let c = open_contexts(&q, TTL).unwrap();
        c.set("exam-1", p("A"), None, ContextSource::Scan, "s1", t(0))
            .await
            .unwrap();
        c.set_from_mqtt("exam-2", br#"{"id":"B","system":"urn:oid:1.2"}"#)
            .await
            .unwrap();
        assert!(c
            .clear("exam-9", ContextSource::Api, "ma", t(1))
            .await
            .is_ok());
        q.close().await.unwrap();
    }
    let q = queue(&store);
    let c = open_contexts(&q, TTL).unwrap();
    assert_eq!(attach(&c, "exam-1", t(3)), Some(p("A")));
    let now = OffsetDateTime::now_utc();
    assert!(attach(&c, "exam-2", now).is_some());
    c.set_from_mqtt("exam-2", b"").await.unwrap();
    assert!(attach(&c, "exam-2", OffsetDateTime::now_utc()).is_none());
    let events: Vec<_> = q
        .audit()
        .entries(None, 10)
        .unwrap()
        .into_iter()
        .map(|e| match e.event {
            AuditEvent::ContextSet { source, .. } => format!("set:{source}"),
            AuditEvent::ContextCleared { source, .. } => format!("clear:{source}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(events, ["set:scan", "set:mqtt", "clear:mqtt"]);
}

#[tokio::test]
async fn expiry_is_audited_once_and_ends_attachment() {
    let store = Arc::new(MemoryStore::new());
    let q = queue(&store);
    let c = open_contexts(&q, TTL).unwrap();
    c.set("exam-1", p("A"), None, ContextSource::Scan, "s1", t(0))
        .await
        .unwrap();
    assert_eq!(c.expire_due(t(5)).await.unwrap(), 0);
    assert_eq!(c.expire_due(t(11)).await.unwrap(), 1);
    assert_eq!(c.expire_due(t(12)).await.unwrap(), 0);
    assert_eq!(attach(&c, "exam-1", t(11)), None);
    assert_eq!(
        attach(&c, "exam-1", t(9)),
        Some(p("A")),
        "measured while valid"
    );
    let last = q.audit().entries(None, 10).unwrap().pop().unwrap();
    assert!(matches!(last.event, AuditEvent::ContextExpired { .. }));
    assert!(c.views(t(11))[0].patient.is_none());
}

#[tokio::test]
async fn bad_patients_and_payloads_are_refused_without_echoing_them() {
    let store = Arc::new(MemoryStore::new());
    let c = open_contexts(&queue(&store), TTL).unwrap();
    let e = c
        .set_from_mqtt("exam-1", br#"{"id":"MRN777","system":"not a uri"}"#)
        .await
        .unwrap_err();
    assert!(matches!(e, ContextError::BadPatient(_)));
    let e = c
        .set_from_mqtt("exam-1", br#"{"mrn":"MRN777"}"#)
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("MRN777"), "{e}");
    let bad_id = PatientRef {
        id: "with space".into(),
        system: "urn:oid:1".into(),
    };
    assert!(c
        .set("exam-1", bad_id, None, ContextSource::Api, "ma", t(0))
        .await
        .is_err());
}

#[tokio::test]
async fn the_room_view_shows_only_the_masked_patient() {
    let store = Arc::new(MemoryStore::new());
    let c = open_contexts(&queue(&store), TTL).unwrap();
    c.set(
        "exam-1",
        p("MRN0012345"),
        None,
        ContextSource::Scan,
        "s1",
        t(0),
    )
    .await
    .unwrap();
    let v = c.views(t(1));
    assert_eq!(
        v[0].patient.as_deref(),
        Some(p("MRN0012345").masked().as_str())
    );
    let json = serde_json::to_string(&v).unwrap();
    assert!(!json.contains("MRN0012345"));
}

#[tokio::test]
async fn a_confirmation_renews_the_context_is_audited_and_survives_a_restart() {
    let store = Arc::new(MemoryStore::new());
    {
        let q = queue(&store);
        let c = open_contexts(&q, TTL).unwrap();
        c.set("exam-1", p("A"), None, ContextSource::Scan, "s1", t(0))
            .await
            .unwrap();
        assert!(c.confirm("exam-1", "ma-jo", t(8)).await.unwrap());
        assert!(
            !c.confirm("exam-2", "ma-jo", t(8)).await.unwrap(),
            "no context to confirm"
        );
        q.close().await.unwrap();
    }
    let q = queue(&store);
    let c = open_contexts(&q, TTL).unwrap();
    assert_eq!(
        attach(&c, "exam-1", t(17)),
        Some(p("A")),
        "valid 10 min from t(8)"
    );
    assert_eq!(c.expire_due(t(17)).await.unwrap(), 0);
    let v = &c.views(t(17))[0];
    assert_eq!(v.expires_at, Some(t(18)));
    assert_eq!(v.remaining_seconds, Some(60));
    assert_eq!(c.expire_due(t(18)).await.unwrap(), 1);
    assert!(
        !c.confirm("exam-1", "ma-jo", t(19)).await.unwrap(),
        "an expired context cannot be renewed"
    );
    let last: Vec<_> = q.audit().entries(None, 10).unwrap();
    let confirmed = last
        .iter()
        .filter(|e| matches!(&e.event, AuditEvent::ContextConfirmed { by, patient, .. } if by == "ma-jo" && *patient == p("A")))
        .count();
    assert_eq!(confirmed, 1);
}

#[tokio::test]
async fn readings_never_extend_a_context() {
    let store = Arc::new(MemoryStore::new());
    let c = open_contexts(&queue(&store), TTL).unwrap();
    c.set("exam-1", p("A"), None, ContextSource::Scan, "s1", t(0))
        .await
        .unwrap();
    for m in 0..10 {
        assert_eq!(attach(&c, "exam-1", t(m)), Some(p("A")));
    }
    assert_eq!(attach(&c, "exam-1", t(10)), None);
    assert_eq!(c.expire_due(t(10)).await.unwrap(), 1);
}

#[tokio::test]
async fn a_device_user_mapping_comes_from_the_api_or_mqtt_and_is_audited() {
    let store = Arc::new(MemoryStore::new());
    let q = queue(&store);
    let c = open_contexts(&q, TTL).unwrap();
    c.set("exam-1", p("A"), Some(2), ContextSource::Api, "ma", t(0))
        .await
        .unwrap();
    let w = Window::at(t(1));
    assert_eq!(
        c.attribute("exam-1", w, Some(2)),
        Attribution::Patient(history::Attributed::plain(p("A")))
    );
    assert_eq!(c.attribute("exam-1", w, Some(1)), Attribution::UserUnmapped);
    assert!(c
        .set("exam-1", p("A"), Some(255), ContextSource::Api, "ma", t(2))
        .await
        .is_err());
    c.set_from_mqtt("exam-2", br#"{"id":"B","system":"urn:oid:1.2","user":3}"#)
        .await
        .unwrap();
    let now = Window::at(OffsetDateTime::now_utc());
    assert!(matches!(
        c.attribute("exam-2", now, Some(3)),
        Attribution::Patient(_)
    ));
    assert_eq!(c.views(t(1))[0].user, Some(2));
    let users: Vec<(String, u8)> = q
        .audit()
        .entries(None, 10)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            AuditEvent::ContextUserMapped { room, user, .. } => Some((room, user)),
            _ => None,
        })
        .collect();
    assert_eq!(
        users,
        [("exam-1".to_string(), 2), ("exam-2".to_string(), 3)]
    );
}

#[tokio::test]
async fn mqtt_cannot_name_a_room_no_configured_device_is_in() {
    let store = Arc::new(MemoryStore::new());
    let c = open_contexts(&queue(&store), TTL).unwrap();
    c.set_known_rooms(["exam-1".to_string()]);
    assert!(c.is_known_room("exam-1") && !c.is_known_room("lobby"));
    let body = br#"{"id":"B","system":"urn:oid:1.2"}"#;
    // Acknowledged (Ok) but without effect.
    c.set_from_mqtt("lobby", body).await.unwrap();
    assert!(c.views(t(0)).iter().all(|v| v.room != "lobby"));
    c.set_from_mqtt("exam-1", body).await.unwrap();
    assert!(c
        .views(OffsetDateTime::now_utc())
        .iter()
        .any(|v| v.room == "exam-1" && v.patient.is_some()));
}

#[path = "tests/with_lookup_tests.rs"]
mod with_lookup;
