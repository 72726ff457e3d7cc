//! The review list: pending for no sink until confirmed (then for every sink, once) or rejected
//! (never); whole rooms at once; durable across a reopen; audited; the store's checks accept it.

use std::sync::Arc;

use super::*;
use crate::queue::tests::far_future;
use crate::queue::tests::{hr, reading};
use crate::queue::{MemoryStore, Queue, QueueOptions, SledStore, Store};
use crate::reading::SinkId;

fn opts() -> QueueOptions {
    QueueOptions::new(vec![SinkId::new("a"), SinkId::new("b")])
}

fn pending(q: &Queue, sink: &str) -> usize {
    q.pending(&SinkId::new(sink), 100, far_future())
        .unwrap()
        .len()
}

fn in_room(device: &str, n: i64, room: &str) -> Reading {
    hr(device, n).room(Some(room)).build()
}

#[tokio::test]
async fn a_reading_waits_for_no_sink_until_confirmed_and_is_filed_once() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let r = reading("ox", 1);
    let id = r.id.unwrap();
    assert_eq!(
        q.review().add(vec![r]).await.unwrap(),
        [EnqueueOutcome::Stored]
    );
    assert_eq!((pending(&q, "a"), pending(&q, "b")), (0, 0));
    assert_eq!(q.review().count().unwrap(), 1);
    assert_eq!(q.held().count().unwrap(), 0, "not on the held list");
    assert_eq!(q.stats().unwrap().readings, 1);
    let list = q.review().list(10).unwrap();
    assert_eq!(list[0].id, id);

    let d = q.review().confirm(id, "ma-jo".into()).await.unwrap();
    assert!(matches!(d, Decision::Done(_)));
    assert_eq!((pending(&q, "a"), pending(&q, "b")), (1, 1));
    assert_eq!(q.review().count().unwrap(), 0);
    let again = q.review().confirm(id, "ma-jo".into()).await.unwrap();
    assert_eq!(again, Decision::NotWaiting);
    assert_eq!((pending(&q, "a"), pending(&q, "b")), (1, 1), "filed once");
    let audit = q.audit().entries(None, 10).unwrap();
    assert_eq!(audit.len(), 2);
    assert!(matches!(&audit[0].event, AuditEvent::ReviewWaiting { reading, .. } if *reading == id));
    assert!(matches!(&audit[1].event,
        AuditEvent::ReviewConfirmed { reading, by } if *reading == id && by == "ma-jo"));
}

#[tokio::test]
async fn a_rejected_reading_is_gone_never_filed_and_audited() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let r = reading("ox", 2);
    let id = r.id.unwrap();
    q.review().add(vec![r.clone()]).await.unwrap();
    let d = q
        .review()
        .reject(id, "ma-jo".into(), Some("wrong patient".into()))
        .await
        .unwrap();
    assert!(matches!(d, Decision::Done(_)));
    assert_eq!(q.stats().unwrap().readings, 0);
    assert_eq!(pending(&q, "a"), 0);
    assert_eq!(
        q.review().confirm(id, "x".into()).await.unwrap(),
        Decision::NotWaiting
    );
    assert_eq!(pending(&q, "a"), 0);
    let audit = q.audit().entries(None, 10).unwrap();
    assert!(matches!(&audit[1].event,
        AuditEvent::ReviewRejected { reason: Some(w), by, .. } if w == "wrong patient" && by == "ma-jo"));
    // The same measurement sent again is recognised, not queued for review a second time.
    let mut again = r;
    again.id = Some(ReadingId::new());
    assert_eq!(
        q.review().add(vec![again]).await.unwrap(),
        [EnqueueOutcome::Duplicate(id)]
    );
}

#[tokio::test]
async fn a_room_batch_decides_only_that_rooms_readings() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let one = [in_room("ox", 3, "exam-1"), in_room("bp", 4, "exam-1")];
    let other = in_room("ox2", 5, "exam-2");
    let other_id = other.id.unwrap();
    q.review()
        .add(vec![one[0].clone(), one[1].clone(), other])
        .await
        .unwrap();
    let done = q
        .review()
        .decide_room("exam-1", true, "ma-jo".into())
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(pending(&q, "a"), 2);
    let left = q.review().list(10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, other_id);
    let none = q
        .review()
        .decide_room("exam-1", true, "ma-jo".into())
        .await
        .unwrap();
    assert!(none.is_empty(), "a second batch files nothing");
    let rejected = q
        .review()
        .decide_room("exam-2", false, "ma-jo".into())
        .await
        .unwrap();
    assert_eq!(rejected, [other_id]);
    assert_eq!(pending(&q, "a"), 2);
    assert_eq!(q.stats().unwrap().readings, 2);
}

#[tokio::test]
async fn the_review_list_survives_a_reopen_and_passes_verify() {
    let dir = tempfile::tempdir().unwrap();
    let r = reading("ox", 6);
    let id = r.id.unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap());
        let q = Queue::with_store(store, opts()).unwrap();
        q.review().add(vec![r]).await.unwrap();
        q.close().await.unwrap();
    }
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap());
        let report = crate::queue::repair::verify::check(&*store).unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.found.readings, 1);
    }
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap());
    let q = Queue::with_store(store, opts()).unwrap();
    assert_eq!(q.review().list(10).unwrap()[0].id, id);
    assert_eq!(q.stats().unwrap().readings, 1);
    assert!(matches!(
        q.review().confirm(id, "ma".into()).await.unwrap(),
        Decision::Done(_)
    ));
    assert_eq!(pending(&q, "b"), 1);
}

#[tokio::test]
async fn a_rejected_limit_goes_to_the_quarantine_not_to_review() {
    let q = Queue::with_store(Arc::new(MemoryStore::new()), opts()).unwrap();
    let mut r = reading("ox", 7);
    r.flags
        .push(crate::reading::Flag::new("rejected:implausible"));
    let o = q.review().add(vec![r]).await.unwrap();
    assert!(matches!(&o[0], EnqueueOutcome::Rejected(_)));
    assert_eq!(q.review().count().unwrap(), 0);
    assert_eq!(q.quarantine().count().unwrap(), 1);
}
