//! The cached segments never change what a read hands out: readings settled, retried,
//! dead-lettered, released from hold, left pending by a failed apply, or read after a restart
//! are answered as the store says, and a drain with batches in flight reads each segment from
//! the store once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::store::Store;
use super::test_store::HookedStore;
use super::{MemoryStore, Queue, QueueOptions, Settle};
use crate::queue::tests::reading;
use crate::queue::tests::{ehr, far_future, file};
use crate::reading::{PatientRef, Reading, ReadingId, SinkId};

/// Counts single-key reads and the entries of due-list scans; applies fail on request.
fn hooked() -> Arc<HookedStore> {
    Arc::new(HookedStore::new().count_scans(|p| p.first() == Some(&super::keys::DUE)))
}

fn queue(store: Arc<dyn Store>) -> Queue {
    let mut opts = QueueOptions::new(vec![ehr(), file()]);
    opts.max_group = 1;
    Queue::with_store(store, opts).unwrap()
}

fn ids_of(q: &Queue, sink: &SinkId, skip: &HashSet<ReadingId>) -> Vec<ReadingId> {
    q.pending_excluding(sink, 1000, far_future(), skip)
        .unwrap()
        .into_iter()
        .filter_map(|p| p.reading.id)
        .collect()
}

fn ids(rs: &[Reading]) -> Vec<ReadingId> {
    rs.iter().filter_map(|r| r.id).collect()
}

/// `groups` enqueues of `per` readings each (measurements from `first` on): one segment per
/// enqueue.
async fn backlog(q: &Queue, first: i64, groups: i64, per: i64) -> Vec<Reading> {
    let mut all = Vec::new();
    for g in 0..groups {
        let rs: Vec<Reading> = (0..per)
            .map(|i| reading("cuff", first + g * per + i))
            .collect();
        q.enqueue(rs.clone()).await.unwrap();
        all.extend(rs);
    }
    all
}

#[tokio::test]
async fn a_drain_with_batches_in_flight_reads_each_segment_once() {
    let q = queue(Arc::new(MemoryStore::new()));
    // 40 segments of 10 readings; 4 batches of 50 in flight, the oldest settled first.
    let all = backlog(&q, 0, 40, 10).await;
    let loads_before = q.segment_loads();
    let mut in_flight: std::collections::VecDeque<Vec<ReadingId>> = Default::default();
    let mut skip = HashSet::new();
    let mut sent = Vec::new();
    loop {
        let batch: Vec<ReadingId> = q
            .pending_excluding(&ehr(), 50, far_future(), &skip)
            .unwrap()
            .into_iter()
            .filter_map(|p| p.reading.id)
            .collect();
        let got = !batch.is_empty();
        if got {
            skip.extend(batch.iter().copied());
            sent.extend(batch.iter().copied());
            in_flight.push_back(batch);
        }
        if in_flight.len() == 4 || (!in_flight.is_empty() && sent.len() == all.len()) {
            let oldest = in_flight.pop_front().unwrap();
            for id in &oldest {
                skip.remove(id);
            }
            let results = oldest.iter().map(|id| (*id, Settle::Delivered)).collect();
            q.settle(&ehr(), results).await.unwrap();
        } else if !got {
            break;
        }
    }
    assert_eq!(sent, ids(&all), "each reading once, in queue order");
    let loads = q.segment_loads() - loads_before;
    // The one-segment cache this replaced read them 200 times here.
    assert!(loads <= 40, "{loads} segment reads for 40 segments");
    assert_eq!(ids_of(&q, &file(), &HashSet::new()), ids(&all));
}

#[tokio::test]
async fn a_read_decodes_no_more_retried_entries_than_it_hands_out() {
    let store = hooked();
    let q = queue(store.clone());
    let all = backlog(&q, 0, 2, 100).await;
    let every = ids(&all);
    let past = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let retried = every
        .iter()
        .map(|id| {
            let reason = "HTTP 503".to_string();
            (*id, Settle::Retry { at: past, reason })
        })
        .collect();
    q.settle(&ehr(), retried).await.unwrap();
    // 150 batches' worth of readings in flight that are not among the retried ones.
    let skip: HashSet<ReadingId> = (0..150).map(|_| ReadingId::new()).collect();
    let gets = store.gets();
    let got = q
        .pending_excluding(&ehr(), 10, OffsetDateTime::now_utc(), &skip)
        .unwrap();
    assert_eq!(
        got.iter().filter_map(|p| p.reading.id).collect::<Vec<_>>(),
        every[..10]
    );
    assert!(got.iter().all(|p| p.attempts == 1));
    let gets = store.gets() - gets;
    // Ten entries and their segment; reading all 160 the scan saw was 161.
    assert!(gets <= 12, "{gets} store reads for 10 entries");
    // One page of the due list, not the 160 entries a read might have skipped.
    assert_eq!(store.counted_entries(), 16);
    // Entries in flight at the head of the due list are passed over, page after page.
    let skip: HashSet<ReadingId> = every[..20].iter().copied().collect();
    let got = q
        .pending_excluding(&ehr(), 10, OffsetDateTime::now_utc(), &skip)
        .unwrap();
    assert_eq!(
        got.iter().filter_map(|p| p.reading.id).collect::<Vec<_>>(),
        every[20..30]
    );
    // Two pages: 16, then the 14 left of max + skipped = 30.
    assert_eq!(store.counted_entries(), 16 + 30);
}

#[tokio::test]
async fn settles_retries_and_dead_letters_are_seen_through_cached_segments() {
    let q = queue(Arc::new(MemoryStore::new()));
    let all = backlog(&q, 0, 3, 4).await;
    let every = ids(&all);
    // Cache all three segments, for both sinks.
    assert_eq!(ids_of(&q, &ehr(), &HashSet::new()), every);
    assert_eq!(ids_of(&q, &file(), &HashSet::new()), every);
    let at = OffsetDateTime::now_utc() + time::Duration::hours(1);
    q.settle(
        &ehr(),
        vec![
            (every[0], Settle::Delivered),
            (every[5], Settle::Delivered),
            (
                every[6],
                Settle::Retry {
                    at,
                    reason: "HTTP 503".into(),
                },
            ),
            (
                every[11],
                Settle::Dead {
                    reason: "HTTP 422".into(),
                },
            ),
        ],
    )
    .await
    .unwrap();
    let now = OffsetDateTime::now_utc();
    let due: Vec<ReadingId> = q
        .pending(&ehr(), 1000, now)
        .unwrap()
        .into_iter()
        .filter_map(|p| p.reading.id)
        .collect();
    let want: Vec<ReadingId> = every
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 5, 6, 11].contains(i))
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(
        due, want,
        "settled, retried-later and dead readings are not due"
    );
    // The retry comes back at its time, and the next due time says so.
    let after = q
        .pending(&ehr(), 1000, at + time::Duration::seconds(1))
        .unwrap();
    assert!(after.iter().any(|p| p.reading.id == Some(every[6])));
    let done: Vec<(ReadingId, Settle)> = want.iter().map(|id| (*id, Settle::Delivered)).collect();
    q.settle(&ehr(), done).await.unwrap();
    let next = q
        .next_due(&ehr())
        .unwrap()
        .expect("the retry is still pending");
    assert!(
        (next - at).abs() < time::Duration::milliseconds(1),
        "{next} vs {at}"
    );
    // The other sink's entries were not touched by any of it.
    assert_eq!(ids_of(&q, &file(), &HashSet::new()), every);
    // A dead-letter sent back is due again, from its cached segment.
    assert_eq!(q.retry_dead(&ehr(), None).await.unwrap(), 1);
    let back = q.pending(&ehr(), 1000, OffsetDateTime::now_utc()).unwrap();
    assert_eq!(
        back.iter().filter_map(|p| p.reading.id).collect::<Vec<_>>(),
        [every[11]]
    );
    assert_eq!(back[0].reading, all[11]);
}

#[tokio::test]
async fn a_failed_settle_leaves_the_readings_due_and_a_restart_reads_the_store() {
    let store = hooked();
    let q = queue(store.clone());
    let all = backlog(&q, 0, 2, 3).await;
    let every = ids(&all);
    assert_eq!(ids_of(&q, &ehr(), &HashSet::new()), every);
    store.fail_applies(true);
    let results: Vec<(ReadingId, Settle)> = every[..3]
        .iter()
        .map(|id| (*id, Settle::Delivered))
        .collect();
    assert!(q.settle(&ehr(), results.clone()).await.is_err());
    store.fail_applies(false);
    assert_eq!(
        ids_of(&q, &ehr(), &HashSet::new()),
        every,
        "nothing settled"
    );
    q.settle(&ehr(), results).await.unwrap();
    assert_eq!(ids_of(&q, &ehr(), &HashSet::new()), every[3..].to_vec());
    // Every entry of the first segment settled for both sinks: the segment goes, and a new
    // group written after a restart may get its number again.
    let rest: Vec<(ReadingId, Settle)> = every[..3]
        .iter()
        .map(|id| (*id, Settle::Delivered))
        .collect();
    q.settle(&file(), rest).await.unwrap();
    q.close().await.unwrap();
    drop(q);
    let q = queue(store.clone());
    let more = backlog(&q, 1000, 1, 2).await;
    let mut want = every[3..].to_vec();
    want.extend(ids(&more));
    let got = q.pending(&ehr(), 1000, far_future()).unwrap();
    assert_eq!(
        got.iter().filter_map(|p| p.reading.id).collect::<Vec<_>>(),
        want
    );
    assert_eq!(got[3].reading, more[0]);
    q.close().await.unwrap();
}

#[tokio::test]
async fn a_held_reading_released_is_read_from_its_new_segment() {
    let q = queue(Arc::new(MemoryStore::new()));
    let mut held = reading("cuff", 100);
    held.room = Some("exam-2".into());
    let hid = held.id.unwrap();
    q.held().hold(vec![held.clone()]).await.unwrap();
    let first = backlog(&q, 0, 1, 3).await;
    assert_eq!(ids_of(&q, &ehr(), &HashSet::new()), ids(&first));
    let patient = PatientRef {
        id: "MRN0012345".into(),
        system: "urn:oid:1.2.3".into(),
    };
    let released = q
        .held()
        .assign(hid, patient, "nurse".into())
        .await
        .unwrap()
        .expect("held");
    let got = q.pending(&ehr(), 1000, far_future()).unwrap();
    // Due order is id order: the held reading was taken first.
    let mut want = vec![hid];
    want.extend(ids(&first));
    assert_eq!(
        got.iter().filter_map(|p| p.reading.id).collect::<Vec<_>>(),
        want
    );
    assert_eq!(got[0].reading, released);
    assert!(got[0].reading.patient.is_some());
    // Quick enough for a test; a timeout would be a hang in the cache's lock.
    tokio::time::timeout(Duration::from_secs(5), q.close())
        .await
        .unwrap()
        .unwrap();
}
