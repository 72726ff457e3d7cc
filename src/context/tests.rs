//! The context store over a real queue: attribution by time, audit, expiry, confirmation,
//! device users, restart.

use std::sync::Arc;

use time::macros::datetime;

use super::*;
use crate::queue::{MemoryStore, QueueOptions, Store};
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
    let c = ContextStore::open(queue(&store), TTL).unwrap();
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
        let c = ContextStore::open(q.clone(), TTL).unwrap();
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
    let c = ContextStore::open(q.clone(), TTL).unwrap();
    assert_eq!(attach(&c, "exam-1", t(3)), Some(p("A")));
    let now = OffsetDateTime::now_utc();
    assert!(attach(&c, "exam-2", now).is_some());
    c.set_from_mqtt("exam-2", b"").await.unwrap();
    assert!(attach(&c, "exam-2", OffsetDateTime::now_utc()).is_none());
    let events: Vec<_> = q
        .audit(None, 10)
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
    let c = ContextStore::open(q.clone(), TTL).unwrap();
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
    let last = q.audit(None, 10).unwrap().pop().unwrap();
    assert!(matches!(last.event, AuditEvent::ContextExpired { .. }));
    assert!(c.views(t(11))[0].patient.is_none());
}

#[tokio::test]
async fn bad_patients_and_payloads_are_refused_without_echoing_them() {
    let store = Arc::new(MemoryStore::new());
    let c = ContextStore::open(queue(&store), TTL).unwrap();
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
    let c = ContextStore::open(queue(&store), TTL).unwrap();
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
        let c = ContextStore::open(q.clone(), TTL).unwrap();
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
    let c = ContextStore::open(q.clone(), TTL).unwrap();
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
    let last: Vec<_> = q.audit(None, 10).unwrap();
    let confirmed = last
        .iter()
        .filter(|e| matches!(&e.event, AuditEvent::ContextConfirmed { by, patient, .. } if by == "ma-jo" && *patient == p("A")))
        .count();
    assert_eq!(confirmed, 1);
}

#[tokio::test]
async fn readings_never_extend_a_context() {
    let store = Arc::new(MemoryStore::new());
    let c = ContextStore::open(queue(&store), TTL).unwrap();
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
    let c = ContextStore::open(q.clone(), TTL).unwrap();
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
        .audit(None, 10)
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
    let c = ContextStore::open(queue(&store), TTL).unwrap();
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

// ------------------------------------------------------------------ patient lookup

mod with_lookup {
    use super::*;
    use crate::config::LookupUnavailable;
    use crate::context::lookup::{
        Directory, LookupChoice, RefusalReason, SearchFuture, Verification,
    };
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
        let c = ContextStore::open(q.clone(), TTL).unwrap();
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
        let audit = q.audit(None, 10).unwrap();
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
            .audit(None, 10)
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
        let reopened = ContextStore::open(q.clone(), TTL).unwrap();
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
        let last = q.audit(None, 10).unwrap().pop().unwrap();
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
        let last = q.audit(None, 10).unwrap().pop().unwrap();
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
        let c = ContextStore::open(q.clone(), TTL).unwrap();
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
        let c = ContextStore::open(q.clone(), TTL).unwrap();
        c.set("exam-1", p("NOPE"), None, ContextSource::Scan, "s", t(0))
            .await
            .unwrap();
        let r = attached(&c, t(1));
        assert_eq!(r.patient, Some(p("NOPE")));
        assert!(r.flags.is_empty() && r.patient_record.is_none());
        assert_eq!(c.views(t(1))[0].verified, Verification::Scanned);
        assert_eq!(q.audit(None, 10).unwrap().len(), 1, "context_set only");
    }
}
