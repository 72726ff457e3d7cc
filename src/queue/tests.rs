//! Queue behaviour, run against both stores (sled in a temp dir, and the in-memory map).

use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;

use super::*;
use crate::model::fixtures::{self, ReadingFixture};
use crate::reading::{Reading, ReadingId, SinkId};

/// A heart-rate reading of `device` (driver `test`) in `exam-1`, measured, received and
/// stamped at second `n` of 2026-11-27 12:00 UTC with `60 + n % 100` /min: different `n` give
/// different measurements.
pub fn hr(device: &str, n: i64) -> ReadingFixture {
    let t = datetime!(2026-11-27 12:00:00 UTC) + time::Duration::seconds(n);
    fixtures::heart_rate(60 + n % 100)
        .device(device, "test")
        .room(Some("exam-1"))
        .at(t)
        .device_time(Some(t))
}

/// [`hr`], built.
pub fn reading(device: &str, n: i64) -> Reading {
    hr(device, n).build()
}

fn sinks(names: &[&str]) -> Vec<SinkId> {
    names.iter().map(|n| SinkId::new(*n)).collect()
}

/// One store of each kind; the temp dir lives as long as the tuple.
pub(crate) fn each_store() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap());
    vec![
        ("memory", Arc::new(MemoryStore::new()), None),
        ("sled", sled, Some(dir)),
    ]
}

/// A time after every retry is due.
pub(crate) fn far_future() -> OffsetDateTime {
    datetime!(2100-01-01 0:00 UTC)
}

fn ids(p: &[Pending]) -> Vec<ReadingId> {
    p.iter().filter_map(|p| p.reading.id).collect()
}

/// The sink most queue tests deliver to.
pub(crate) fn ehr() -> SinkId {
    SinkId::new("ehr")
}

/// A second sink, for tests of more than one.
pub(crate) fn file() -> SinkId {
    SinkId::new("file")
}

#[tokio::test]
async fn delivered_entry_leaves_the_queue_with_its_reading() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr"]))).unwrap();
        let (a, b) = (reading("cuff", 1), reading("cuff", 2));
        let out = q.enqueue(vec![a.clone(), b.clone()]).await.unwrap();
        assert_eq!(
            out,
            vec![EnqueueOutcome::Stored, EnqueueOutcome::Stored],
            "{name}"
        );
        let p = q.pending(&ehr(), 10, far_future()).unwrap();
        assert_eq!(
            ids(&p),
            vec![a.id.unwrap(), b.id.unwrap()],
            "{name}: id order"
        );
        assert_eq!(p[0].reading, a, "{name}");
        assert_eq!((p[0].attempts, p[0].last_error.clone()), (0, None));
        q.settle(&ehr(), vec![(a.id.unwrap(), Settle::Delivered)])
            .await
            .unwrap();
        let p = q.pending(&ehr(), 10, far_future()).unwrap();
        assert_eq!(ids(&p), vec![b.id.unwrap()], "{name}");
        let s = q.stats().unwrap();
        assert_eq!(
            (s.readings, s.sinks[0].pending, s.sinks[0].dead),
            (1, 1, 0),
            "{name}"
        );
    }
}

#[tokio::test]
async fn pending_returns_at_most_max_entries_oldest_first() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr"]))).unwrap();
        let rs: Vec<Reading> = (0..40).map(|n| reading("ox", n)).collect();
        q.enqueue(rs.clone()).await.unwrap();
        let p = q.pending(&ehr(), 25, far_future()).unwrap();
        let want: Vec<ReadingId> = rs.iter().take(25).filter_map(|r| r.id).collect();
        assert_eq!(ids(&p), want, "{name}");
    }
}

#[tokio::test]
async fn retried_entry_is_hidden_until_it_is_due() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr"]))).unwrap();
        let r = reading("cuff", 1);
        let id = r.id.unwrap();
        q.enqueue(vec![r]).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let at = now + time::Duration::minutes(5);
        let retry = Settle::Retry {
            at,
            reason: "HTTP 503".into(),
        };
        q.settle(&ehr(), vec![(id, retry)]).await.unwrap();
        assert!(
            q.pending(&ehr(), 10, now).unwrap().is_empty(),
            "{name}: not due yet"
        );
        let due = q.next_due(&ehr()).unwrap().unwrap();
        assert_eq!(ops::to_ms(due), ops::to_ms(at), "{name}");
        let p = q.pending(&ehr(), 10, at).unwrap();
        assert_eq!(ids(&p), vec![id], "{name}");
        assert_eq!(
            (p[0].attempts, p[0].last_error.as_deref()),
            (1, Some("HTTP 503"))
        );
        q.settle(&ehr(), vec![(id, Settle::Delivered)])
            .await
            .unwrap();
        assert_eq!(q.next_due(&ehr()).unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn dead_entry_keeps_its_reason_and_can_be_retried_or_purged() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr"]))).unwrap();
        let (a, b) = (reading("cuff", 1), reading("cuff", 2));
        let (ida, idb) = (a.id.unwrap(), b.id.unwrap());
        q.enqueue(vec![a.clone(), b]).await.unwrap();
        let dead = |reason: &str| Settle::Dead {
            reason: reason.into(),
        };
        q.settle(
            &ehr(),
            vec![(ida, dead("HTTP 422")), (idb, dead("HTTP 400"))],
        )
        .await
        .unwrap();
        assert!(
            q.pending(&ehr(), 10, far_future()).unwrap().is_empty(),
            "{name}"
        );
        let d = q.dead(Some(&ehr()), 10).unwrap();
        assert_eq!(d.len(), 2, "{name}");
        assert_eq!(
            (d[0].id, d[0].reason.as_str(), &d[0].reading),
            (ida, "HTTP 422", &a)
        );
        assert_eq!(q.retry_dead(&ehr(), Some(ida)).await.unwrap(), 1, "{name}");
        let p = q.pending(&ehr(), 10, far_future()).unwrap();
        assert_eq!(ids(&p), vec![ida], "{name}");
        assert_eq!(
            (p[0].attempts, p[0].last_error.as_deref()),
            (0, Some("HTTP 422"))
        );
        assert_eq!(q.purge_dead(Some(&ehr()), None).await.unwrap(), 1, "{name}");
        assert!(q.dead(None, 10).unwrap().is_empty(), "{name}");
        let s = q.stats().unwrap();
        assert_eq!(
            (s.readings, s.sinks[0].pending, s.sinks[0].dead),
            (1, 1, 0),
            "{name}"
        );
    }
}

#[tokio::test]
async fn retry_dead_without_an_id_brings_back_the_whole_dead_letter() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr", "file"]))).unwrap();
        let rs: Vec<Reading> = (0..5).map(|n| reading("ox", n)).collect();
        q.enqueue(rs.clone()).await.unwrap();
        let results = rs
            .iter()
            .map(|r| (r.id.unwrap(), Settle::Dead { reason: "x".into() }));
        q.settle(&ehr(), results.collect()).await.unwrap();
        assert_eq!(q.retry_dead(&ehr(), None).await.unwrap(), 5, "{name}");
        assert_eq!(
            q.pending(&ehr(), 10, far_future()).unwrap().len(),
            5,
            "{name}"
        );
        assert!(q.dead(None, 10).unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn two_equal_readings_of_a_clockless_device_are_both_kept() {
    let q = Queue::with_store(
        Arc::new(MemoryStore::new()),
        QueueOptions::new(sinks(&["ehr"])),
    )
    .unwrap();
    // An oximeter without a clock reports 97 % twice in the same second: two measurements.
    let mut a = reading("oximeter", 7);
    a.device_time = None;
    let mut b = a.clone();
    b.id = Some(ReadingId::new());
    let out = q.enqueue(vec![a.clone(), b]).await.unwrap();
    assert_eq!(out, vec![EnqueueOutcome::Stored, EnqueueOutcome::Stored]);
    // The same reading sent again (same id) is still recognised.
    let out = q.enqueue(vec![a.clone()]).await.unwrap();
    assert_eq!(out, vec![EnqueueOutcome::Duplicate(a.id.unwrap())]);
}

#[tokio::test]
async fn the_same_measurement_twice_is_stored_once() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr"]))).unwrap();
        let first = reading("cuff", 7);
        let mut replay = first.clone();
        replay.id = Some(ReadingId::new());
        let first_id = first.id.unwrap();
        let out = q.enqueue(vec![first.clone()]).await.unwrap();
        assert_eq!(out, vec![EnqueueOutcome::Stored], "{name}");
        let out = q
            .enqueue(vec![replay.clone(), first.clone()])
            .await
            .unwrap();
        let dup = EnqueueOutcome::Duplicate(first_id);
        assert_eq!(out, vec![dup.clone(), dup.clone()], "{name}");
        // Within one call too: the second copy sees the first one staged in the same batch.
        let (x, mut y) = (reading("cuff", 8), reading("cuff", 8));
        y.id = Some(ReadingId::new());
        let out = q.enqueue(vec![x.clone(), y]).await.unwrap();
        let want = vec![
            EnqueueOutcome::Stored,
            EnqueueOutcome::Duplicate(x.id.unwrap()),
        ];
        assert_eq!(out, want, "{name}");
        assert_eq!(q.stats().unwrap().readings, 2, "{name}");
        assert_eq!(
            q.pending(&ehr(), 10, far_future()).unwrap().len(),
            2,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_reading_for_two_sinks_stays_until_both_delivered() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr", "file"]))).unwrap();
        let r = reading("cuff", 1);
        let id = r.id.unwrap();
        q.enqueue(vec![r]).await.unwrap();
        q.settle(&ehr(), vec![(id, Settle::Delivered)])
            .await
            .unwrap();
        assert_eq!(q.stats().unwrap().readings, 1, "{name}");
        let file = q.pending(&SinkId::new("file"), 10, far_future()).unwrap();
        assert_eq!(ids(&file), vec![id], "{name}");
        q.settle(&SinkId::new("file"), vec![(id, Settle::Delivered)])
            .await
            .unwrap();
        assert_eq!(q.stats().unwrap().readings, 0, "{name}");
    }
}

#[tokio::test]
async fn two_sinks_settling_in_one_flush_still_remove_the_reading() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_sync_delay(Duration::from_millis(20)));
    let q = Queue::with_store(
        Arc::clone(&store),
        QueueOptions::new(sinks(&["ehr", "file"])),
    )
    .unwrap();
    let r = reading("cuff", 1);
    let id = r.id.unwrap();
    q.enqueue(vec![r]).await.unwrap();
    // A slow sync makes the writer combine both settles into one group.
    let blocker = q.enqueue(vec![reading("cuff", 2)]);
    let ehr = ehr();
    let a = q.settle(&ehr, vec![(id, Settle::Delivered)]);
    let file = SinkId::new("file");
    let b = q.settle(&file, vec![(id, Settle::Delivered)]);
    let (x, y, z) = tokio::join!(blocker, a, b);
    x.unwrap();
    y.unwrap();
    z.unwrap();
    // The first reading's segment (number 0) went with its last live entry.
    assert_eq!(store.get(&keys::segment(0)).unwrap(), None);
    assert_eq!(store.get(&keys::live(0)).unwrap(), None);
    assert_eq!(q.stats().unwrap().readings, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_flushes() {
    let slow_memory: Arc<dyn Store> =
        Arc::new(MemoryStore::with_sync_delay(Duration::from_millis(2)));
    let mut stores = each_store();
    stores.push(("memory with 2 ms syncs", slow_memory, None));
    for (name, store, _dir) in stores {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr"]))).unwrap();
        let before = q.sync_count();
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let q = q.clone();
                tokio::spawn(async move { q.enqueue(vec![reading("ox", n)]).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), vec![EnqueueOutcome::Stored]);
        }
        let syncs = q.sync_count() - before;
        assert_eq!(q.stats().unwrap().sinks[0].pending, 200, "{name}");
        if name != "memory" {
            assert!(syncs <= 50, "{name}: 200 enqueues took {syncs} syncs");
        }
        assert!(syncs >= 1, "{name}: enqueue must sync");
    }
}

#[tokio::test]
async fn enqueue_is_refused_without_writing_when_over_max_bytes() {
    for (name, store, _dir) in each_store() {
        let mut opts = QueueOptions::new(sinks(&["ehr"]));
        opts.max_bytes = 1;
        let q = Queue::with_store(Arc::clone(&store), opts).unwrap();
        // The writer refreshes the size at most every 250 ms; a fresh store counts too.
        q.enqueue(vec![reading("a", 1)]).await.ok();
        tokio::time::sleep(Duration::from_millis(300)).await;
        q.enqueue(vec![reading("a", 2)]).await.ok();
        let readings = q.stats().unwrap().readings;
        let err = q.enqueue(vec![reading("a", 3)]).await.unwrap_err();
        assert!(
            matches!(err, QueueError::Full { max: 1, .. }),
            "{name}: {err}"
        );
        assert_eq!(
            q.stats().unwrap().readings,
            readings,
            "{name}: nothing written"
        );
    }
}

#[tokio::test]
async fn a_reading_without_an_id_is_refused() {
    let q = Queue::with_store(
        Arc::new(MemoryStore::new()),
        QueueOptions::new(sinks(&["ehr"])),
    )
    .unwrap();
    let mut r = reading("a", 1);
    r.id = None;
    let err = q.enqueue(vec![reading("a", 2), r]).await.unwrap_err();
    assert!(matches!(err, QueueError::MissingId { index: 1 }), "{err}");
    assert_eq!(q.stats().unwrap().readings, 0);
}

#[tokio::test]
async fn wait_new_resolves_after_an_enqueue_for_that_sink() {
    let q = Queue::with_store(
        Arc::new(MemoryStore::new()),
        QueueOptions::new(sinks(&["ehr"])),
    )
    .unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(50), q.wait_new(&ehr())).await;
    assert!(waiting.is_err(), "nothing was enqueued yet");
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.wait_new(&ehr()).await })
    };
    q.enqueue(vec![reading("a", 1)]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_closed_queue_fails_cleanly() {
    for (name, store, _dir) in each_store() {
        let q = Queue::with_store(store, QueueOptions::new(sinks(&["ehr"]))).unwrap();
        q.enqueue(vec![reading("a", 1)]).await.unwrap();
        let syncs = q.sync_count();
        q.close().await.unwrap();
        assert!(q.sync_count() > syncs, "{name}: final sync");
        let err = q.enqueue(vec![reading("a", 2)]).await.unwrap_err();
        assert!(matches!(err, QueueError::Closed), "{name}: {err}");
        assert!(matches!(q.stats(), Err(QueueError::Closed)), "{name}");
        assert!(matches!(q.close().await, Err(QueueError::Closed)), "{name}");
    }
}
