//! The pure checks of `verify` and `salvage` over a [`MemoryStore`] filled through the real
//! [`Queue`], then damaged key by key.

use std::sync::Arc;

use time::macros::datetime;

use super::*;
use crate::queue::salvage::{salvage, ORPHAN_REASON};
use crate::queue::store::Batch;
use crate::queue::tests::reading;
use crate::queue::{MemoryStore, Queue, QueueOptions, Settle};
use crate::reading::SinkId;

fn sinks() -> Vec<SinkId> {
    vec![SinkId::new("ehr"), SinkId::new("outbox")]
}

/// A store with 3 fresh readings, one retried for `ehr`, one dead for `outbox`, one held,
/// an audit entry and a rejected payload; returns it with the readings' ids.
async fn filled() -> (Arc<MemoryStore>, Vec<ReadingId>) {
    let store = Arc::new(MemoryStore::new());
    let q = Queue::with_store(store.clone(), QueueOptions::new(sinks())).unwrap();
    let rs: Vec<_> = (0..3).map(|n| reading("dev", n)).collect();
    let ids: Vec<_> = rs.iter().map(|r| r.id.unwrap()).collect();
    q.enqueue(rs).await.unwrap();
    let at = datetime!(2030-01-01 00:00 UTC);
    let retry = Settle::Retry {
        at,
        reason: "503".into(),
    };
    q.settle(&SinkId::new("ehr"), vec![(ids[0], retry)])
        .await
        .unwrap();
    let dead = Settle::Dead {
        reason: "400".into(),
    };
    q.settle(&SinkId::new("outbox"), vec![(ids[1], dead)])
        .await
        .unwrap();
    let held = reading("dev", 50);
    let mut all = ids.clone();
    all.push(held.id.unwrap());
    q.hold(vec![held]).await.unwrap();
    q.reject("dev", "t/x", "bad", b"x").unwrap();
    q.close().await.unwrap();
    (store, all)
}

fn put(store: &MemoryStore, k: Vec<u8>, v: &[u8]) {
    let mut b = Batch::new();
    b.put(k, v.to_vec());
    store.apply(b).unwrap();
}

fn remove(store: &MemoryStore, k: Vec<u8>) {
    let mut b = Batch::new();
    b.remove(k);
    store.apply(b).unwrap();
}

#[tokio::test]
async fn a_store_written_by_the_queue_is_clean_and_counted_per_prefix() {
    let (store, _) = filled().await;
    let rep = check(&*store).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert_eq!(rep.keys["readings"], 4);
    assert_eq!(
        rep.keys["pending"], 4,
        "ids 1 and 2 for ehr, 0 and 2 for outbox"
    );
    assert_eq!(rep.keys["pending (retried)"], 1);
    assert_eq!(rep.keys["due index"], 1);
    assert_eq!(rep.keys["dead-letter"], 1);
    assert_eq!(rep.keys["held"], 1);
    assert_eq!(rep.held, 1);
    assert_eq!(rep.found.readings, 4);
    assert_eq!(rep.counted.as_ref(), Some(&rep.found));
}

#[tokio::test]
async fn an_undecodable_reading_is_reported_with_its_entries_and_never_shows_the_value() {
    let (store, ids) = filled().await;
    put(&store, keys::reading(ids[2]), b"{\"MRN\": \"secret 1234\"");
    let rep = check(&*store).unwrap();
    let text = format!("{:?}", rep.problems);
    assert!(!text.contains("secret"), "{text}");
    let rkey = hex::encode(keys::reading(ids[2]));
    assert!(rep
        .problems
        .iter()
        .any(|p| p.key == rkey && p.reason.contains("does not decode")));
    let without = rep
        .problems
        .iter()
        .filter(|p| p.reason == "entry without a readable reading")
        .count();
    assert_eq!(without, 2, "its fresh entries for both sinks: {text}");
}

#[tokio::test]
async fn lost_entries_show_as_orphans_dangling_due_keys_and_counter_shortfalls() {
    let (store, ids) = filled().await;
    remove(&store, keys::retried(&SinkId::new("ehr"), ids[0]));
    remove(&store, keys::pending(&SinkId::new("outbox"), ids[0]));
    remove(&store, keys::reading(ids[1]));
    let rep = check(&*store).unwrap();
    let reasons: Vec<_> = rep.problems.iter().map(|p| p.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("orphan")),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"due key without a retried entry at that time"));
    assert!(reasons.contains(&"entry without a readable reading"));
    let counters = reasons
        .iter()
        .find(|r| r.starts_with("counters differ"))
        .expect("a counter problem");
    assert!(
        counters.contains("4 readings counted, 3 found"),
        "{counters}"
    );
}

#[test]
fn keys_of_unknown_prefixes_or_wrong_shape_are_refused() {
    assert_eq!(classify(b"zzz", b""), Err("unknown key prefix".into()));
    assert!(classify(&[b'r', 1, 2], b"{}").is_err());
    assert!(classify(&[b'p', b'e', 0, 1], b"").is_err());
    let mut fresh = keys::pending(&SinkId::new("ehr"), ReadingId::from_bytes([7; 16]));
    assert!(matches!(classify(&fresh, b""), Ok(Item::Fresh(..))));
    assert!(
        classify(&fresh, b"{\"n\":1}").is_err(),
        "fresh entries are empty"
    );
    fresh[0] = keys::DEAD;
    assert!(
        classify(&fresh, b"{}").is_err(),
        "a dead value needs its fields"
    );
    assert!(classify(b"cr", &[0; 7]).is_err());
    assert!(matches!(classify(b"cr", &[0; 8]), Ok(Item::Counter)));
    assert_eq!(
        show_key(b"kdev|spo2|97"),
        format!(
            "k:sha256:{}",
            crate::queue::rejected::payload_hash(b"kdev|spo2|97")
        )
    );
}

#[test]
fn a_shortfall_names_what_the_counters_claim_and_more_found_is_no_shortfall() {
    let counted = Counts {
        readings: 5,
        sinks: [("ehr".to_string(), (5, 0))].into(),
    };
    let found = Counts {
        readings: 3,
        sinks: [("ehr".to_string(), (3, 1))].into(),
    };
    assert_eq!(
        counted.shortfalls(&found),
        [
            "5 readings counted, 3 found",
            "sink ehr: 5 pending and 0 dead counted, 3 and 1 found"
        ]
    );
    assert!(found.shortfalls(&counted).len() == 1, "only the dead count");
    assert!(counted.shortfalls(&counted).is_empty());
}

#[tokio::test]
async fn salvage_copies_what_reads_quarantines_the_rest_and_the_copy_verifies_clean() {
    let (store, ids) = filled().await;
    put(&store, keys::reading(ids[2]), b"not json");
    remove(&store, keys::pending(&SinkId::new("ehr"), ids[1]));
    remove(&store, keys::dead(&SinkId::new("outbox"), ids[1]));
    put(&store, b"zjunk".to_vec(), b"1");
    let dst = MemoryStore::new();
    let out = salvage(&*store, &dst, 1).unwrap();
    let reasons: Vec<_> = out.quarantined.iter().map(|q| q.reason.as_str()).collect();
    assert_eq!(out.quarantined.len(), 4, "{reasons:?}");
    assert!(reasons.contains(&"unknown key prefix"));
    assert_eq!(out.readings, 3, "ids 0, 1 and the held one");
    assert_eq!(out.orphans, 1, "id 1 lost all its entries");
    let rep = check(&dst).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert_eq!(rep.found.readings, 3);
    assert_eq!(rep.held, 1);
    let q = Queue::with_store(Arc::new(dst), QueueOptions::new(sinks())).unwrap();
    let dead = q.dead(None, 10).unwrap();
    let orphan: Vec<_> = dead.iter().filter(|d| d.reason == ORPHAN_REASON).collect();
    assert_eq!(orphan.len(), 2, "one per sink");
    assert!(orphan.iter().all(|d| d.id == ids[1]));
    let later = datetime!(2031-01-01 00:00 UTC);
    let ehr = q.pending(&SinkId::new("ehr"), 10, later).unwrap();
    assert_eq!(ehr.len(), 1, "the retried entry kept its state");
    assert_eq!(ehr[0].attempts, 1);
    assert_eq!(q.held_count().unwrap(), 1);
}
