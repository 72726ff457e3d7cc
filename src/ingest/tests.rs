//! Tests of the Ingest handle over an in-memory store: one outcome per case (stored, duplicate,
//! held, quarantined, not normalised), a failed flush is an error that keeps the readings, and
//! concurrent commits share the queue's flushes.

use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;

use super::*;
use crate::decode::{DeviceTime, DeviceValue, Measured};
use crate::queue::test_store::HookedStore;
use crate::queue::{MemoryStore, QueueOptions, Store};
use crate::reading::{Kind, SinkId};

const RECEIVED: OffsetDateTime = datetime!(2026-11-27 12:00:10 UTC);

fn config(mode: &str) -> Config {
    let text = format!(
        "[daemon]\ndata_dir = \"/nonexistent/vitalsd-test\"\nadmin_listen = \"\"\n\
         [patient]\nmode = \"{mode}\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n\
         [[device]]\nid = \"scale\"\ndriver = \"json\"\nroom = \"exam-1\"\n\
         mqtt = {{ topic = \"gw/scale\", payload = \"json\" }}\n\
         [[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/nonexistent/outbox\"\nformat = \"reading\"\n"
    );
    crate::config::parse(&text, "test").expect("config")
}

fn queue_on(store: Arc<dyn Store>) -> Queue {
    Queue::with_store(store, QueueOptions::new(vec![SinkId::new("outbox")])).expect("queue")
}

/// A weight in kg measured at `at` by the device's clock.
fn weight(kg: &str, at: OffsetDateTime) -> DeviceMessage {
    let mut m = DeviceMessage::new(
        Kind::BodyWeight,
        vec![DeviceValue::new(
            "weight",
            Measured::Value(kg.parse().expect("decimal")),
            "kg",
        )],
    );
    m.device_time = Some(DeviceTime::Absolute(at));
    m
}

fn device(ingest: &Ingest, cfg: &Config) -> DeviceIngest {
    let d = &cfg.devices[0];
    let status = DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
    ingest.device(d, cfg, status).expect("device ingest")
}

fn link(queue: &Queue, mode: PatientMode) -> PatientLink {
    PatientLink {
        contexts: ContextStore::open(queue.contexts(), queue.audit(), Duration::from_secs(3600))
            .expect("contexts"),
        mode,
        quality: Arc::new(Quality::new()),
        review: false,
    }
}

#[tokio::test]
async fn a_reading_is_stored_after_one_flush_and_a_resend_is_a_duplicate() {
    let queue = queue_on(Arc::new(MemoryStore::new()));
    let cfg = config("location");
    let dev = device(&Ingest::new(queue.clone(), None), &cfg);
    let at = datetime!(2026-11-27 12:00:00 UTC);
    let before = queue.sync_count();
    let first = dev.ingest(vec![weight("81.3", at)], RECEIVED, None).await;
    assert_eq!(
        first,
        Ok(IngestOutcome {
            decoded: 1,
            stored: 1,
            ..IngestOutcome::default()
        })
    );
    assert!(queue.sync_count() > before, "durable before it returns");
    let again = dev.ingest(vec![weight("81.3", at)], RECEIVED, None).await;
    assert_eq!(
        again,
        Ok(IngestOutcome {
            decoded: 1,
            duplicates: 1,
            ..IngestOutcome::default()
        })
    );
    assert_eq!(dev.status().snapshot().readings, 1);
}

#[tokio::test]
async fn a_reading_without_a_patient_is_held_in_hold_mode_and_stored_in_location_mode() {
    let queue = queue_on(Arc::new(MemoryStore::new()));
    let cfg = config("hold");
    let held = Ingest::new(queue.clone(), Some(link(&queue, PatientMode::Hold)));
    let at = datetime!(2026-11-27 12:00:00 UTC);
    let out = device(&held, &cfg)
        .ingest(vec![weight("70", at)], RECEIVED, None)
        .await
        .expect("stored");
    assert_eq!((out.held, out.stored, out.kept()), (1, 0, 1));
    assert_eq!(queue.held().list(10).expect("held list").len(), 1);

    let located = Ingest::new(queue.clone(), Some(link(&queue, PatientMode::Location)));
    let at = datetime!(2026-11-27 12:00:01 UTC);
    let out = device(&located, &cfg)
        .ingest(vec![weight("70", at)], RECEIVED, None)
        .await
        .expect("stored");
    assert_eq!((out.held, out.stored), (0, 1));
}

#[tokio::test]
async fn a_message_naming_its_patient_is_never_held() {
    let queue = queue_on(Arc::new(MemoryStore::new()));
    let cfg = config("hold");
    let ingest = Ingest::new(queue.clone(), Some(link(&queue, PatientMode::Hold)));
    let patient = PatientRef {
        id: "MRN1".into(),
        system: "urn:oid:1.2.3".into(),
    };
    let at = datetime!(2026-11-27 12:00:00 UTC);
    let out = device(&ingest, &cfg)
        .ingest(vec![weight("70", at)], RECEIVED, Some(patient))
        .await
        .expect("stored");
    assert_eq!((out.stored, out.held), (1, 0));
}

#[tokio::test]
async fn unusable_messages_are_counted_rejected_and_implausible_ones_quarantined() {
    let queue = queue_on(Arc::new(MemoryStore::new()));
    let cfg = config("location");
    let dev = device(&Ingest::new(queue.clone(), None), &cfg);
    let at = datetime!(2026-11-27 12:00:00 UTC);
    let mut unknown = weight("70", at);
    unknown.values[0].name = "girth".into();
    let out = dev
        .ingest(
            vec![unknown, weight("0.5", at), weight("71", at)],
            RECEIVED,
            None,
        )
        .await
        .expect("stored");
    assert_eq!(
        out,
        IngestOutcome {
            decoded: 3,
            stored: 1,
            quarantined: 1,
            rejected: 1,
            ..IngestOutcome::default()
        }
    );
    assert_eq!(out.kept(), 2);
}

#[tokio::test]
async fn a_failed_flush_is_an_error_and_keeps_the_readings_for_a_retry() {
    let store = Arc::new(HookedStore::new());
    let queue = queue_on(store.clone());
    let cfg = config("location");
    let dev = device(&Ingest::new(queue.clone(), None), &cfg);
    store.fail_syncs(true);
    let at = datetime!(2026-11-27 12:00:00 UTC);
    let mut p = dev.prepare(vec![weight("70", at)], Vec::new(), RECEIVED, None);
    let result = dev.commit(&mut p).await;
    assert!(
        matches!(result, Err(IngestError::Store(_))),
        "not an ack: {result:?}"
    );
    assert!(!p.is_empty(), "the reading stays to be stored again");
    assert_eq!(p.outcome().stored, 0);
    assert_eq!(dev.status().snapshot().readings, 0);
}

#[tokio::test]
async fn a_full_queue_is_an_error_that_names_no_reading() {
    let mut opts = QueueOptions::new(vec![SinkId::new("outbox")]);
    opts.max_bytes = 1;
    let queue = Queue::with_store(Arc::new(MemoryStore::new()), opts).expect("queue");
    let cfg = config("location");
    let dev = device(&Ingest::new(queue.clone(), None), &cfg);
    // The cap refuses once the undelivered readings reach it.
    let mut result = Ok(IngestOutcome::default());
    for i in 0..3 {
        let at = datetime!(2026-11-27 12:00:00 UTC) + time::Duration::seconds(i);
        result = dev.ingest(vec![weight("70", at)], RECEIVED, None).await;
    }
    assert!(
        matches!(result, Err(IngestError::Full { .. })),
        "{result:?}"
    );
    assert!(!result.unwrap_err().to_string().contains("70"));
}

#[tokio::test]
async fn concurrent_commits_share_the_queues_flushes() {
    let queue = queue_on(Arc::new(MemoryStore::with_sync_delay(
        Duration::from_millis(50),
    )));
    let cfg = config("location");
    let dev = device(&Ingest::new(queue.clone(), None), &cfg);
    let before = queue.sync_count();
    let n = 16;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let dev = dev.clone();
            let at = datetime!(2026-11-27 12:00:00 UTC) + time::Duration::seconds(i);
            tokio::spawn(async move { dev.ingest(vec![weight("70", at)], RECEIVED, None).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("stored").stored, 1);
    }
    let syncs = queue.sync_count() - before;
    assert!(syncs <= 3, "{n} commits took {syncs} flushes");
}
