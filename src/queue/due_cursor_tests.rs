//! The delivery loop's cursor over the retried entries ([`DueCursor`]): a read past the cursor
//! does not pass over the entries in flight again, hands out what a read passing over them
//! would, and an entry left behind the cursor is still handed out, once.

use std::collections::HashSet;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::test_store::HookedStore;
use super::{keys, DueCursor, Queue, QueueOptions, Settle};
use crate::queue::tests::{ehr, far_future, reading};
use crate::reading::ReadingId;

const N: usize = 300;
const MAX: usize = 50;

fn ids(p: &[super::Pending]) -> Vec<ReadingId> {
    p.iter().filter_map(|p| p.reading.id).collect()
}

/// A queue over a store that counts the keys its scans of the due list return, holding `N`
/// entries that were tried once and are due again at `at`.
async fn retried(at: OffsetDateTime) -> (Arc<HookedStore>, Queue, Vec<ReadingId>) {
    let store = Arc::new(HookedStore::new().count_scans(|p| p.first() == Some(&keys::DUE)));
    let q = Queue::with_store(store.clone(), QueueOptions::new(vec![ehr()])).unwrap();
    q.enqueue(
        (0..i64::try_from(N).unwrap())
            .map(|i| reading("cuff", i))
            .collect(),
    )
    .await
    .unwrap();
    let sent = ids(&q.pending(&ehr(), 10_000, far_future()).unwrap());
    assert_eq!(sent.len(), N);
    let retry = Settle::Retry {
        at,
        reason: "503".into(),
    };
    q.settle(&ehr(), sent.iter().map(|id| (*id, retry.clone())).collect())
        .await
        .unwrap();
    (store, q, sent)
}

/// Due-list keys the scans of `f` returned.
fn keys_scanned<T>(store: &HookedStore, f: impl FnOnce() -> T) -> (T, u64) {
    let before = store.counted_entries();
    let out = f();
    (out, store.counted_entries() - before)
}

#[tokio::test]
async fn a_read_past_the_cursor_hands_out_the_same_entries_without_passing_over_those_in_flight() {
    let (store, q, _) = retried(OffsetDateTime::UNIX_EPOCH).await;
    let now = far_future();
    let mut in_flight: HashSet<ReadingId> = HashSet::new();
    let mut cursor: Option<DueCursor> = None;
    let mut handed = Vec::new();
    while in_flight.len() < N {
        let want = ids(&q.pending_excluding(&ehr(), MAX, now, &in_flight).unwrap());
        let ((got, next), scanned) = keys_scanned(&store, || {
            q.pending_after(&ehr(), MAX, now, &in_flight, cursor)
                .unwrap()
        });
        let got = ids(&got);
        assert_eq!(got, want, "the same entries, in the same order");
        // One page of keys past the cursor; passing over the entries in flight instead reads
        // one key more for each of them.
        assert!(
            scanned <= MAX as u64,
            "{scanned} keys read with {} in flight",
            in_flight.len()
        );
        assert!(next > cursor, "the cursor moves on");
        in_flight.extend(&got);
        handed.extend(got);
        cursor = next;
    }
    let (last, _) = q
        .pending_after(&ehr(), MAX, now, &in_flight, cursor)
        .unwrap();
    assert!(last.is_empty());
    let unique: HashSet<_> = handed.iter().collect();
    assert_eq!(unique.len(), N, "each entry handed out once");
    q.close().await.unwrap();
}

#[tokio::test]
async fn an_entry_left_behind_the_cursor_is_handed_out_once_when_the_rest_is() {
    let t = OffsetDateTime::now_utc() - Duration::hours(1);
    let (_store, q, sent) = retried(t).await;
    let now = far_future();
    let (first, cursor) = q
        .pending_after(&ehr(), MAX, now, &HashSet::new(), None)
        .unwrap();
    let first = ids(&first);
    assert_eq!(first, sent[..MAX], "oldest first");
    // One of the first batch is tried again and set due two hours earlier (a clock stepped
    // back), and leaves the set in flight: it is behind the cursor now.
    let behind = first[10];
    q.settle(
        &ehr(),
        vec![(
            behind,
            Settle::Retry {
                at: t - Duration::hours(2),
                reason: "clock".into(),
            },
        )],
    )
    .await
    .unwrap();
    let mut in_flight: HashSet<ReadingId> =
        first.iter().copied().filter(|id| *id != behind).collect();
    let mut cursor = cursor;
    let mut handed = first.clone();
    let mut reads = Vec::new();
    loop {
        let (got, next) = q
            .pending_after(&ehr(), MAX, now, &in_flight, cursor)
            .unwrap();
        if got.is_empty() {
            break;
        }
        let got = ids(&got);
        in_flight.extend(&got);
        handed.extend(&got);
        reads.push(got);
        cursor = next;
    }
    // Past the cursor there were full batches first; the read that found fewer than MAX
    // there looked behind it too, and put the oldest first.
    let with_it: Vec<usize> = (0..reads.len())
        .filter(|i| reads[*i].contains(&behind))
        .collect();
    assert_eq!(with_it.len(), 1, "handed out once: {reads:?}");
    let last = reads.last().unwrap();
    assert_eq!(with_it[0], reads.len() - 1);
    assert_eq!(last[0], behind, "oldest first within the batch");
    assert!(last.len() < MAX);
    let unique: HashSet<_> = handed.iter().collect();
    assert_eq!(handed.len(), N + 1, "the first batch had it, and the last");
    assert_eq!(unique.len(), N);
    q.close().await.unwrap();
}
