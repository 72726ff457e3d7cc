//! Salvage over a [`MemoryStore`] filled through the real [`Queue`] and damaged in the segment
//! layout (helpers from `verify_tests`); every copy must verify clean and open as a queue.

use std::sync::Arc;

use time::macros::datetime;

use super::*;
use crate::queue::repair::verify::check;
use crate::queue::repair::verify::tests::{
    ehr, filled, flip, outbox, put, remove, replace_entry, secret_entry, sinks,
};
use crate::queue::{MemoryStore, Queue, QueueOptions};

fn reasons(out: &Outcome) -> Vec<&str> {
    out.quarantined.iter().map(|q| q.reason.as_str()).collect()
}

/// Checks `dst` clean and opens it as a queue.
fn clean_queue(dst: MemoryStore) -> Queue {
    let rep = check(&dst).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    Queue::with_store(Arc::new(dst), QueueOptions::new(sinks())).unwrap()
}

#[tokio::test]
async fn salvage_copies_what_reads_quarantines_the_rest_and_the_copy_verifies_clean() {
    let (store, ids, seq) = filled().await;
    let bad = secret_entry(&store, seq, 2);
    replace_entry(&store, seq, 2, &bad);
    flip(&store, keys::pending(&ehr(), seq), 1, false);
    remove(&store, keys::dead(&outbox(), ids[1]));
    put(&store, b"zjunk".to_vec(), b"1");
    let dst = MemoryStore::new();
    let out = salvage(&*store, &dst, 1).unwrap();
    assert_eq!(out.quarantined.len(), 2, "{:?}", reasons(&out));
    assert!(reasons(&out).contains(&"unknown key prefix"));
    let entry = &out.quarantined[0];
    assert_eq!(
        entry.key,
        [keys::segment(seq), 2u32.to_be_bytes().to_vec()].concat()
    );
    assert_eq!(entry.value, bad, "the raw JSON, for the quarantine file");
    assert!(
        entry.reason.contains(&ids[2].to_string()),
        "{}",
        entry.reason
    );
    assert_eq!(out.readings, 3, "ids 0, 1 and the held one");
    assert_eq!(out.orphans, 1, "id 1 lost all its entries");
    assert!(out.lost.is_empty());
    let rep = check(&dst).unwrap();
    assert_eq!(rep.found.readings, 3);
    assert_eq!(rep.held, 1);
    let q = clean_queue(dst);
    let dead = q.dead(None, 10).unwrap();
    let orphan: Vec<_> = dead.iter().filter(|d| d.reason == ORPHAN_REASON).collect();
    assert_eq!(orphan.len(), 2, "one per sink");
    assert!(orphan.iter().all(|d| d.id == ids[1]));
    let later = datetime!(2031-01-01 00:00 UTC);
    let ehr = q.pending(&ehr(), 10, later).unwrap();
    assert_eq!(ehr.len(), 1, "the retried entry kept its state");
    assert_eq!(ehr[0].attempts, 1);
    let out_box = q.pending(&outbox(), 10, later).unwrap();
    assert_eq!(out_box.len(), 1, "id 0 still fresh for outbox");
    assert_eq!(out_box[0].reading.id, Some(ids[0]));
    assert_eq!(q.held().count().unwrap(), 1);
}

#[tokio::test]
async fn a_segment_that_does_not_parse_is_counted_as_lost_with_its_number() {
    let (store, ids, seq) = filled().await;
    let raw = store.get(&keys::segment(seq)).unwrap().unwrap();
    put(&store, keys::segment(seq), &raw[..raw.len() - 3]);
    let dst = MemoryStore::new();
    let out = salvage(&*store, &dst, 1).unwrap();
    assert_eq!(out.lost, [(seq, 3)].into());
    assert_eq!(out.readings, 1, "only the held reading");
    let r = reasons(&out);
    assert!(
        r.contains(&"segment does not parse: segment entry 2 is cut short"),
        "{r:?}"
    );
    assert_eq!(
        r.iter()
            .filter(|r| **r == "its reading is missing or unreadable")
            .count(),
        2,
        "the retried and the dead entry: {r:?}"
    );
    let q = clean_queue(dst);
    assert!(q.dead(None, 10).unwrap().is_empty());
    assert_eq!(q.held().list(10).unwrap()[0].id, ids[3]);
}

#[tokio::test]
async fn a_reading_pending_and_dead_for_one_sink_stays_pending_and_the_dead_letter_is_quarantined()
{
    let (store, ids, seq) = filled().await;
    flip(&store, keys::pending(&outbox(), seq), 1, true);
    flip(&store, keys::pending(&ehr(), seq), 0, true);
    let dst = MemoryStore::new();
    let out = salvage(&*store, &dst, 1).unwrap();
    assert_eq!(
        reasons(&out),
        ["also pending for its sink (the pending entry was kept)"]
    );
    assert_eq!(out.quarantined[0].key, keys::dead(&outbox(), ids[1]));
    let q = clean_queue(dst);
    let later = datetime!(2031-01-01 00:00 UTC);
    let ehr = q.pending(&ehr(), 10, later).unwrap();
    assert_eq!(ehr.len(), 3, "id 0 once (retried), ids 1 and 2");
    assert_eq!(ehr.iter().filter(|p| p.attempts == 1).count(), 1);
    assert_eq!(q.pending(&outbox(), 10, later).unwrap().len(), 3);
}

#[tokio::test]
async fn readings_of_the_layout_before_segments_are_quarantined_and_named() {
    let (store, _, _) = filled().await;
    put(&store, vec![b'r', 1, 2], b"{\"old\": true}");
    let dst = MemoryStore::new();
    let out = salvage(&*store, &dst, 1).unwrap();
    assert_eq!(out.quarantined.len(), 1);
    assert!(out.quarantined[0].reason.contains("layout before segments"));
    assert!(
        out.unreadable
            .iter()
            .any(|u| u.starts_with("`r` keys: 1 readings of the layout before segments")),
        "{:?}",
        out.unreadable
    );
    assert_eq!(out.readings, 4);
    clean_queue(dst);
}
