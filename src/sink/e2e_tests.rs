//! The delivery loop over the real [`Queue`] (in-memory store) into the real file outbox:
//! enqueued readings end up as FHIR lines, announced, and settled out of the queue.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{run_delivery, FileFormat, FileSink, RetryPolicy};
use crate::model::fixtures;
use crate::queue::{MemoryStore, Queue, QueueOptions};
use crate::reading::{Reading, SinkId};

fn reading(device: &str, spo2: i64) -> Reading {
    fixtures::spo2(spo2)
        .device(device, "nonin-8")
        .at(OffsetDateTime::now_utc())
        .build()
}

#[tokio::test]
async fn queued_readings_reach_the_outbox_and_leave_the_queue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sink_id = SinkId::new("outbox");
    let queue = Queue::with_store(
        std::sync::Arc::new(MemoryStore::new()),
        QueueOptions::new(vec![sink_id.clone()]),
    )
    .expect("queue");
    let sink = FileSink::open(sink_id.clone(), tmp.path(), FileFormat::Fhir).expect("outbox");
    let path = sink.current_path();
    let cancel = CancellationToken::new();
    let (tx, mut events) = broadcast::channel(16);
    let task = tokio::spawn(run_delivery(
        queue.clone(),
        Box::new(sink),
        RetryPolicy::default(),
        cancel.clone(),
        Some(tx),
    ));

    let readings: Vec<Reading> = (0..3).map(|i| reading(&format!("ox{i}"), 95 + i)).collect();
    queue.enqueue(readings.clone()).await.expect("enqueue");
    let mut announced = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("delivered in time")
            .expect("event");
        announced.push(e.reading.id);
    }
    announced.sort();
    let mut want: Vec<_> = readings.iter().map(|r| r.id).collect();
    want.sort();
    assert_eq!(announced, want);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops on cancel")
        .expect("task");
    let text = std::fs::read_to_string(&path).expect("outbox file");
    assert_eq!(text.lines().count(), 3);
    let stats = queue.stats().expect("stats");
    let s = stats
        .sinks
        .iter()
        .find(|s| s.sink == sink_id)
        .expect("sink stats");
    assert_eq!((s.pending, s.dead), (0, 0));
}
