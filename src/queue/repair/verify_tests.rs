//! The pure checks of `verify` over a [`MemoryStore`] filled through the real [`Queue`], then
//! damaged key by key in the segment layout. The helpers are shared with `salvage_tests`.

use std::sync::Arc;

use time::macros::datetime;

use super::*;
use crate::queue::segment::{self, Segment, Slot};
use crate::queue::store::Batch;
use crate::queue::tests::reading;
use crate::queue::{MemoryStore, Queue, QueueOptions, Settle};
use crate::reading::{ReadingId, SinkId};

pub fn sinks() -> Vec<SinkId> {
    vec![SinkId::new("ehr"), SinkId::new("outbox")]
}

pub fn ehr() -> SinkId {
    SinkId::new("ehr")
}

pub fn outbox() -> SinkId {
    SinkId::new("outbox")
}

/// A store with 3 readings in one segment: id 0 retried for `ehr` (fresh for `outbox`), id 1
/// dead for `outbox` (fresh for `ehr`), id 2 fresh for both; one held reading, an audit entry
/// and a rejected payload. Returns it with the ids (the held one last) and the segment number.
pub async fn filled() -> (Arc<MemoryStore>, Vec<ReadingId>, u64) {
    let store = Arc::new(MemoryStore::new());
    let q = Queue::with_store(store.clone(), QueueOptions::new(sinks())).unwrap();
    let rs: Vec<_> = (0..3).map(|n| reading("dev", n)).collect();
    let ids: Vec<_> = rs.iter().map(|r| r.id.unwrap()).collect();
    q.enqueue(rs).await.unwrap();
    let retry = Settle::Retry {
        at: datetime!(2030-01-01 00:00 UTC),
        reason: "503".into(),
    };
    q.settle(&ehr(), vec![(ids[0], retry)]).await.unwrap();
    let dead = Settle::Dead {
        reason: "400".into(),
    };
    q.settle(&outbox(), vec![(ids[1], dead)]).await.unwrap();
    let held = reading("dev", 50);
    let mut all = ids.clone();
    all.push(held.id.unwrap());
    q.held().hold(vec![held]).await.unwrap();
    q.rejected().reject("dev", "t/x", "bad", b"x").unwrap();
    q.close().await.unwrap();
    let segs = store.scan_prefix(&[keys::SEGMENT], None, 10).unwrap();
    assert_eq!(segs.len(), 1, "one group commit, one segment");
    let seq = keys::seq_suffix(&segs[0].0).unwrap();
    let seg = Segment::parse(&segs[0].1).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            seg.find(*id),
            Some(u32::try_from(i).unwrap()),
            "entry order"
        );
    }
    (store, all, seq)
}

pub fn put(store: &MemoryStore, k: Vec<u8>, v: &[u8]) {
    let mut b = Batch::new();
    b.put(k, v.to_vec());
    store.apply(b).unwrap();
}

pub fn remove(store: &MemoryStore, k: Vec<u8>) {
    let mut b = Batch::new();
    b.remove(k);
    store.apply(b).unwrap();
}

/// Sets (`true`) or clears bit `i` of the bitmap under `k`, removing the key when empty.
pub fn flip(store: &MemoryStore, k: Vec<u8>, i: u32, on: bool) {
    let mut bits = store.get(&k).unwrap().unwrap_or_default();
    if on {
        segment::set_bit(&mut bits, i);
    } else {
        segment::clear_bit(&mut bits, i);
    }
    if segment::count(&bits) == 0 {
        remove(store, k);
    } else {
        put(store, k, &bits);
    }
}

/// Rewrites segment `seq` with entry `idx`'s stored bytes replaced by `json` (any bytes).
pub fn replace_entry(store: &MemoryStore, seq: u64, idx: u32, json: &[u8]) {
    let raw = store.get(&keys::segment(seq)).unwrap().unwrap();
    let seg = Segment::parse(&raw).unwrap();
    let mut w = segment::Writer::default();
    for (i, id, old) in seg.iter() {
        w.push(id, if i == idx { json } else { old });
    }
    put(store, keys::segment(seq), &w.into_bytes());
}

/// Entry `idx` of segment `seq` as a reading whose values are a patient's name: JSON that
/// parses but is not a Reading (serde's own message would quote the string).
pub fn secret_entry(store: &MemoryStore, seq: u64, idx: u32) -> Vec<u8> {
    let raw = store.get(&keys::segment(seq)).unwrap().unwrap();
    let seg = Segment::parse(&raw).unwrap();
    let stored = crate::queue::segment_entry::decode(seg.get(idx).unwrap().1).unwrap();
    let mut r = serde_json::to_value(&stored).unwrap();
    r["values"] = "MRN 1234 secret DOE^JANE".into();
    serde_json::to_vec(&r).unwrap()
}

fn reasons(rep: &Report) -> Vec<&str> {
    rep.problems.iter().map(|p| p.reason.as_str()).collect()
}

#[tokio::test]
async fn a_store_written_by_the_queue_is_clean_and_counted_per_prefix() {
    let (store, _, _) = filled().await;
    let rep = check(&*store).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert_eq!(rep.keys["segments"], 1);
    assert_eq!(rep.keys["live bitmaps"], 1);
    assert_eq!(rep.keys["pending bitmaps"], 2, "one per sink");
    assert_eq!(rep.keys["pending (retried)"], 1);
    assert_eq!(rep.keys["due index"], 1);
    assert_eq!(rep.keys["dead-letter"], 1);
    assert_eq!(rep.keys["held"], 1);
    assert_eq!(rep.held, 1);
    assert_eq!(rep.found.readings, 4);
    assert_eq!(rep.found.sinks["ehr"], (3, 0));
    assert_eq!(rep.found.sinks["outbox"], (2, 1));
    assert_eq!(rep.counted.as_ref(), Some(&rep.found));
}

#[tokio::test]
async fn an_entry_that_is_not_a_reading_is_reported_with_its_bits_and_never_shows_the_value() {
    let (store, _, seq) = filled().await;
    let bad = secret_entry(&store, seq, 2);
    replace_entry(&store, seq, 2, &bad);
    let rep = check(&*store).unwrap();
    let text = format!("{:?}", rep.problems);
    assert!(!text.contains("secret") && !text.contains("DOE"), "{text}");
    let gkey = hex::encode(keys::segment(seq));
    assert!(
        rep.problems.iter().any(|p| p.key == gkey
            && p.reason
                .starts_with("live entry 2: does not decode as a reading")),
        "{text}"
    );
    let bits = reasons(&rep)
        .into_iter()
        .filter(|r| *r == "pending bits 2: its reading is not readable")
        .count();
    assert_eq!(bits, 2, "its fresh bits for both sinks: {text}");
}

#[tokio::test]
async fn a_fresh_bit_without_a_live_bit_and_a_live_bit_past_the_end_are_reported() {
    let (store, _, seq) = filled().await;
    flip(&store, keys::live(seq), 2, false);
    flip(&store, keys::live(seq), 9, true);
    let rep = check(&*store).unwrap();
    let ehr_p = hex::encode(keys::pending(&ehr(), seq));
    let out_p = hex::encode(keys::pending(&outbox(), seq));
    for k in [ehr_p, out_p] {
        assert!(
            rep.problems
                .iter()
                .any(|p| p.key == k && p.reason == "pending bits 2: its entry is not live"),
            "{:?}",
            rep.problems
        );
    }
    assert!(
        reasons(&rep).contains(&"live bits 9 beyond the segment's 3 entries"),
        "{:?}",
        rep.problems
    );
}

#[tokio::test]
async fn a_dead_letter_pointing_at_a_missing_segment_is_reported() {
    let (store, ids, _) = filled().await;
    let dkey = keys::dead(&outbox(), ids[1]);
    let mut v: serde_json::Value =
        serde_json::from_slice(&store.get(&dkey).unwrap().unwrap()).unwrap();
    v["s"] = serde_json::json!([999, 0]);
    put(&store, dkey.clone(), &serde_json::to_vec(&v).unwrap());
    let rep = check(&*store).unwrap();
    assert_eq!(
        rep.problems,
        [Problem {
            key: hex::encode(dkey),
            reason: "dead-letter entry without a readable reading: its segment is missing or \
                     unreadable"
                .into()
        }]
    );
}

#[tokio::test]
async fn lost_entries_show_as_orphans_dangling_due_keys_and_counter_shortfalls() {
    let (store, ids, seq) = filled().await;
    remove(&store, keys::retried(&ehr(), ids[0]));
    flip(&store, keys::pending(&ehr(), seq), 1, false);
    remove(&store, keys::dead(&outbox(), ids[1]));
    let rep = check(&*store).unwrap();
    let r = reasons(&rep);
    assert!(
        r.contains(&"orphan: live entries 1 have no pending or dead entry for any sink"),
        "{r:?}"
    );
    assert!(r.contains(&"due key without a retried entry at that time"));
    let counters = r
        .iter()
        .find(|r| r.starts_with("counters differ"))
        .expect("a counter problem");
    assert!(
        counters.contains("sink ehr: 3 pending and 0 dead counted, 1 and 0 found"),
        "{counters}"
    );
    assert!(counters.contains("sink outbox: 2 pending and 1 dead counted, 2 and 0 found"));
}

#[tokio::test]
async fn a_reading_both_fresh_and_retried_or_pending_and_dead_for_one_sink_is_reported() {
    let (store, ids, seq) = filled().await;
    flip(&store, keys::pending(&ehr(), seq), 0, true);
    flip(&store, keys::pending(&outbox(), seq), 1, true);
    let rep = check(&*store).unwrap();
    let problem = |k: Vec<u8>, why: &str| Problem {
        key: hex::encode(k),
        reason: why.into(),
    };
    let retried = problem(
        keys::retried(&ehr(), ids[0]),
        "pending twice for its sink: retried and a fresh bit",
    );
    let dead = problem(
        keys::dead(&outbox(), ids[1]),
        "dead-letter and pending for the same sink",
    );
    assert!(rep.problems.contains(&retried), "{:?}", rep.problems);
    assert!(rep.problems.contains(&dead), "{:?}", rep.problems);
}

#[tokio::test]
async fn a_segment_that_does_not_parse_loses_its_live_readings() {
    let (store, _, seq) = filled().await;
    let raw = store.get(&keys::segment(seq)).unwrap().unwrap();
    put(&store, keys::segment(seq), &raw[..raw.len() - 3]);
    let rep = check(&*store).unwrap();
    let r = reasons(&rep);
    assert!(
        r.contains(&"segment does not parse: segment entry 2 is cut short"),
        "{r:?}"
    );
    assert!(r.contains(&"live bitmap of a missing or unreadable segment: 3 readings lost"));
    assert!(r.contains(&"pending bits 1, 2: its segment is missing or unreadable"));
    assert!(r.contains(
        &"dead-letter entry without a readable reading: its segment is missing or unreadable"
    ));
}

#[tokio::test]
async fn a_store_of_the_layout_before_segments_is_one_clear_problem() {
    let (store, _, _) = filled().await;
    for n in 0..3 {
        put(&store, vec![b'r', n, 7], b"{\"MRN\": \"secret\"}");
    }
    let rep = check(&*store).unwrap();
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    assert_eq!(rep.problems[0].key, "72");
    assert!(rep.problems[0]
        .reason
        .starts_with("3 reading keys (`r`) of the layout before segments"));
    assert_eq!(rep.keys["readings (old layout)"], 3);
}

#[tokio::test]
async fn counters_that_differ_from_a_recount_and_a_missing_layout_marker_are_reported() {
    let (store, _, _) = filled().await;
    put(&store, keys::counter_readings(), &9u64.to_be_bytes());
    remove(&store, keys::META_LAYOUT.to_vec());
    let rep = check(&*store).unwrap();
    assert_eq!(
        reasons(&rep),
        [
            "the layout marker (`m layout` = \"segments\") is missing",
            "counters differ from a recount: 9 readings counted, 4 found"
        ]
    );
    put(&store, keys::counter_readings(), &1u64.to_be_bytes());
    put(&store, keys::META_LAYOUT.to_vec(), &keys::layout_marker());
    let rep = check(&*store).unwrap();
    assert_eq!(
        reasons(&rep),
        ["counters differ from a recount: the recount finds more than the counters say"]
    );
}

#[test]
fn keys_of_unknown_prefixes_or_wrong_shape_are_refused() {
    let id = ReadingId::from_bytes([7; 16]);
    assert_eq!(classify(b"zzz", b""), Err("unknown key prefix".into()));
    let p = keys::pending(&ehr(), 3);
    assert_eq!(
        classify(&p, &[0b101]),
        Ok(Item::Fresh(ehr(), 3, vec![0b101]))
    );
    assert!(classify(&p, &[]).is_err(), "an empty bitmap is deleted");
    assert!(classify(&p, &[0, 0]).is_err(), "an empty bitmap is deleted");
    assert!(classify(&[b'p', b'e', 0, 1], &[1]).is_err());
    assert!(
        classify(&keys::live(3)[..8], &[1]).is_err(),
        "short `n` key"
    );
    assert!(matches!(
        classify(&keys::live(3), &[0, 2]),
        Ok(Item::Live(3, _))
    ));
    assert!(classify(&keys::segment(3), &[7]).is_err(), "unknown format");
    let mut w = segment::Writer::default();
    w.push(id, b"{}");
    let seg = classify(&keys::segment(3), &w.into_bytes());
    assert!(
        matches!(&seg, Ok(Item::Segment(3, e)) if e.len() == 1 && e[0].1.is_some()),
        "{seg:?}"
    );
    let dead = keys::dead(&ehr(), id);
    assert!(
        classify(&dead, b"{\"why\":\"x\",\"at\":1,\"n\":0}").is_err(),
        "no slot"
    );
    assert_eq!(
        classify(&dead, b"{\"s\":[4,2],\"why\":\"x\",\"at\":1,\"n\":0}"),
        Ok(Item::Dead(ehr(), id, Slot(4, 2)))
    );
    let held = [&[b'h'][..], &id.to_bytes()].concat();
    let mut r = reading("dev", 1);
    let v = |r: &crate::reading::Reading| {
        serde_json::to_vec(&serde_json::json!({"room": null, "at": 5, "reading": r})).unwrap()
    };
    r.id = Some(id);
    assert_eq!(classify(&held, &v(&r)), Ok(Item::Held(id)));
    r.id = Some(ReadingId::from_bytes([8; 16]));
    assert!(classify(&held, &v(&r)).is_err(), "another reading's id");
    assert!(classify(b"cr", &[0; 7]).is_err());
    assert!(matches!(classify(b"cr", &[0; 8]), Ok(Item::Counter)));
    assert!(classify(keys::META_LAYOUT, b"rows").is_err());
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
        quarantined: 0,
        sinks: [("ehr".to_string(), (5, 0))].into(),
    };
    let found = Counts {
        readings: 3,
        quarantined: 0,
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

#[test]
fn long_index_lists_are_cut() {
    assert_eq!(refs::list(&[1, 4]), "1, 4");
    let many: Vec<u32> = (0..10).collect();
    assert_eq!(refs::list(&many), "0, 1, 2, 3, 4, 5, 6, 7, … (+2 more)");
}
