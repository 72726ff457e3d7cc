//! Space comes back online: a drained backlog's store is rewritten while the queue keeps
//! taking readings, and its files return near the size they had before the backlog.

use std::sync::Arc;
use std::time::Duration;

use super::cipher::{Sealed, StoreKey};
use super::reclaim::ReclaimOptions;
use super::{Queue, QueueOptions, Settle, SledStore};
use crate::queue::tests::far_future;
use crate::queue::tests::reading;
use crate::reading::SinkId;

async fn drain(q: &Queue, sink: &SinkId) -> usize {
    let mut n = 0;
    loop {
        let page = q.pending(sink, 1000, far_future()).unwrap();
        if page.is_empty() {
            return n;
        }
        n += page.len();
        let done = page
            .into_iter()
            .map(|p| (p.reading.id.unwrap(), Settle::Delivered))
            .collect();
        q.settle(sink, done).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backlog_gives_its_space_back_while_readings_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue");
    let key = StoreKey::from_bytes([3; 32], "test");
    let sink = SinkId::new("out");
    let mut opts = QueueOptions::new(vec![sink.clone()]);
    let mut reclaim = ReclaimOptions::new(path.clone(), 8 << 20, key.clone());
    reclaim.slack_bytes = 2 << 20;
    reclaim.every = Duration::ZERO;
    opts.reclaim = Some(reclaim);
    let store = Sealed::open(SledStore::open(&path, 8 << 20).unwrap(), &key).unwrap();
    let q = Queue::with_store(Arc::new(store), opts).unwrap();
    // A few readings first: the store as it runs before the backlog.
    for i in 0..10 {
        q.enqueue(vec![reading("warm", i)]).await.unwrap();
    }
    drain(&q, &sink).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.enqueue(vec![reading("warm", 99)]).await.unwrap();
    let empty = q.stats().unwrap().disk_bytes;
    // The backlog: 30,000 undelivered readings, then delivered.
    for b in 0..60 {
        let batch = (0..500).map(|i| reading("cuff", b * 500 + i)).collect();
        q.enqueue(batch).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.enqueue(vec![reading("warm", 100)]).await.unwrap();
    let full = q.stats().unwrap().disk_bytes;
    assert!(
        full > empty * 3,
        "the backlog grew the files: {empty} -> {full}"
    );
    assert_eq!(drain(&q, &sink).await, 30_002);
    // Readings keep coming while the space is given back. A rewrite may already have run
    // while the drain was under way (the check runs at every write): wait for one after it.
    let drained_at = q.stats().unwrap().reclaims;
    let mut i = 1000;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while q.stats().unwrap().reclaims == drained_at && std::time::Instant::now() < deadline {
        q.enqueue(vec![reading("after", i)]).await.unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        q.enqueue(vec![reading("after", i)]).await.unwrap();
        i += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.enqueue(vec![reading("after", i)]).await.unwrap();
    let s = q.stats().unwrap();
    assert!(s.reclaims >= 1, "{s:?}");
    let slack = 4 << 20;
    assert!(
        s.disk_bytes <= empty + empty / 2 + slack,
        "disk {} after, {empty} before the backlog, {full} at its peak",
        s.disk_bytes
    );
    // Nothing was lost across the swap: every reading stored after the backlog is pending.
    let after = i - 1000 + 1;
    assert_eq!(drain(&q, &sink).await as i64, after);
    println!(
        "reclaim: empty {empty} B, peak {full} B, after {} B",
        s.disk_bytes
    );
    q.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_commits_while_a_rewrite_is_held_between_its_windows() {
    use super::reclaim::Phase;
    use super::test_store::Gate;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue");
    let key = StoreKey::from_bytes([4; 32], "test");
    let sink = SinkId::new("out");
    let gate = Arc::new(Gate::default());
    gate.hold(Phase::Window(0));
    let mut opts = QueueOptions::new(vec![sink.clone()]);
    let mut reclaim = ReclaimOptions::new(path.clone(), 1 << 20, key.clone());
    reclaim.slack_bytes = 0;
    reclaim.every = Duration::ZERO;
    reclaim.window_bytes = 64 << 10;
    let g = Arc::clone(&gate);
    reclaim.hook = Some(Arc::new(move |p| {
        g.pass(p);
        Ok(())
    }));
    opts.reclaim = Some(reclaim);
    let store = Sealed::open(SledStore::open(&path, 1 << 20).unwrap(), &key).unwrap();
    let q = Queue::with_store(Arc::new(store), opts).unwrap();
    let mut stored = 0i64;
    for b in 0..20 {
        let batch = (0..100).map(|i| reading("cuff", b * 100 + i)).collect();
        q.enqueue(batch).await.unwrap();
        stored += 100;
    }
    // Writes go on until the writer started a rewrite and it stopped after its first window.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !gate.reached(&Phase::Window(0)) && std::time::Instant::now() < deadline {
        q.enqueue(vec![reading("wait", stored)]).await.unwrap();
        stored += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gate.reached(&Phase::Window(0)), "no rewrite started");
    // The rewrite is held: ingest commits meanwhile (and reads answer), each call quickly.
    for b in 0..10 {
        let batch: Vec<_> = (0..50).map(|i| reading("held", b * 50 + i)).collect();
        let t = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(2), q.enqueue(batch))
            .await
            .expect("an enqueue waited for the rewrite")
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        stored += 50;
    }
    assert_eq!(q.stats().unwrap().reclaims, 0, "still held");
    assert_eq!(q.stats().unwrap().sinks[0].pending as i64, stored);
    gate.release(&Phase::Window(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while q.stats().unwrap().reclaims == 0 && std::time::Instant::now() < deadline {
        q.enqueue(vec![reading("after", stored)]).await.unwrap();
        stored += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        q.stats().unwrap().reclaims >= 1,
        "the rewrite did not finish"
    );
    // Every reading stored, before, during and after the rewrite, is pending once.
    assert_eq!(drain(&q, &sink).await as i64, stored);
    q.close().await.unwrap();
}
