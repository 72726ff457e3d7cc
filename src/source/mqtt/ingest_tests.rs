//! Tests of the MQTT ingest task without a broker: messages handed to it are stored through
//! the device's ingest and acknowledged; messages waiting at once share one durable flush and
//! one commit; no acknowledgement leaves before the flush that holds its message.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, Publish, QoS, Request};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::DeviceTransport;
use crate::ingest::Ingest;
use crate::status::DeviceStatus;

const CONFIG: &str = "[daemon]\ndata_dir = \"/nonexistent/vitalsd-test\"\nadmin_listen = \"\"\n\
    [patient]\nmode = \"location\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n\
    [[device]]\nid = \"bridge\"\ndriver = \"json\"\nroom = \"r\"\n\
    mqtt = { topic = \"bridge/r\", payload = \"json\" }\n\
    [[sink]]\nid = \"outbox\"\ntype = \"file\"\ndir = \"/nonexistent/outbox\"\nformat = \"reading\"\n";

fn weight(kg: u32, second: u32) -> Vec<u8> {
    format!(
        r#"{{"kind":"body_weight","device_time":"2026-11-27T12:00:{second:02}Z","values":[{{"name":"weight","value":{kg},"unit":"kg"}}]}}"#
    )
    .into_bytes()
}

fn incoming(pkid: u16, payload: Vec<u8>) -> Incoming {
    let mut publish = Publish::new("bridge/r", QoS::AtLeastOnce, payload);
    publish.pkid = pkid;
    Incoming {
        publish,
        received_at: time::OffsetDateTime::now_utc(),
    }
}

#[tokio::test]
async fn two_messages_waiting_at_once_share_one_flush_and_are_both_acknowledged() {
    let cfg = crate::config::parse(CONFIG, "test").expect("config");
    let ingest = Ingest::in_memory(Duration::from_millis(300));
    let d = &cfg.devices[0];
    let DeviceTransport::Mqtt(settings) = &d.transport else {
        unreachable!("an mqtt device")
    };
    let status = DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
    let device = MqttDevice::build(d, settings, &cfg, &ingest, status).expect("device");
    // The client is never connected: acks wait in its request channel.
    let (client, _eventloop) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 64);
    let state = Arc::new(SourceState::default());
    let task = Ingester {
        devices: vec![device],
        patient: None,
        ingest: ingest.clone(),
        client,
        state: state.clone(),
    };

    // A first reading keeps the syncer busy; the two messages arrive during its flush.
    let warm_ingest = ingest
        .device(d, &cfg, DeviceStatus::new(d.id.clone(), &d.driver, &d.room))
        .expect("device ingest");
    let before = ingest.sync_count();
    let warm = tokio::spawn(async move {
        let m = crate::ingest::DeviceStage::new(
            &cfg.devices[0],
            crate::decode::registry::build_for(
                "json",
                crate::decode::Transport::Mqtt,
                &cfg.devices[0].options,
            )
            .expect("decoder"),
            &warm_ingest,
        )
        .expect("stage")
        .message(&weight(60, 1), time::OffsetDateTime::now_utc());
        warm_ingest
            .ingest(m.messages, time::OffsetDateTime::now_utc(), None)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (tx, rx) = mpsc::channel(WINDOW);
    tx.send(incoming(1, weight(70, 2))).await.expect("send");
    tx.send(incoming(2, weight(71, 3))).await.expect("send");
    let cancel = CancellationToken::new();
    let run = tokio::spawn(task.run(rx, cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.acked.load(Ordering::Relaxed) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "both acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(warm.await.expect("warm-up").expect("stored").stored, 1);
    assert_eq!(state.stored.load(Ordering::Relaxed), 2);
    assert_eq!(
        ingest.sync_count() - before,
        2,
        "the warm-up's flush and ONE flush shared by both messages"
    );
    cancel.cancel();
    drop(tx);
    run.await.expect("ingest task");
}

/// The ingest task of the `bridge` device over `ingest`, and the request channel of its
/// client: every ack the task sends arrives there.
fn ingester(ingest: &Ingest) -> (Ingester, flume::Receiver<Request>, Arc<SourceState>) {
    let cfg = crate::config::parse(CONFIG, "test").expect("config");
    let d = &cfg.devices[0];
    let DeviceTransport::Mqtt(settings) = &d.transport else {
        unreachable!("an mqtt device")
    };
    let status = DeviceStatus::new(d.id.clone(), &d.driver, &d.room);
    let device = MqttDevice::build(d, settings, &cfg, ingest, status).expect("device");
    let (requests, sent) = flume::bounded(4096);
    let state = Arc::new(SourceState::default());
    let task = Ingester {
        devices: vec![device],
        patient: None,
        ingest: ingest.clone(),
        client: AsyncClient::from_senders(requests),
        state: state.clone(),
    };
    (task, sent, state)
}

/// The packet ids of the acks the ingest task sent since the last call, in order.
fn acks(sent: &flume::Receiver<Request>) -> Vec<u16> {
    sent.try_iter()
        .filter_map(|r| match r {
            Request::PubAck(a) => Some(a.pkid),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_stored_by_few_commits_and_acknowledged_only_after_its_flush() {
    const N: u16 = 200;
    let ingest = Ingest::in_memory(Duration::from_millis(300));
    let (task, sent, state) = ingester(&ingest);
    let before = ingest.sync_count();
    let (tx, rx) = mpsc::channel(WINDOW);
    for i in 0..N {
        let (kg, second) = (50 + u32::from(i / 60), u32::from(i % 60));
        tx.send(incoming(i + 1, weight(kg, second)))
            .await
            .expect("send");
    }
    let cancel = CancellationToken::new();
    let run = tokio::spawn(task.run(rx, cancel.clone()));
    let mut acked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.len() < usize::from(N) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every message acknowledged"
        );
        let got = acks(&sent);
        if !got.is_empty() {
            // The store's sync count rises when a flush is done, before anyone is answered.
            assert!(
                ingest.sync_count() > before,
                "an acknowledgement left before any flush was done"
            );
        }
        acked.extend(got);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(acked, (1..=N).collect::<Vec<_>>(), "acks in receive order");
    assert_eq!(state.stored.load(Ordering::Relaxed), u64::from(N));
    assert_eq!(
        state.peak_unacked.load(Ordering::Relaxed),
        u64::from(N),
        "the whole burst was held unacknowledged while its flush was pending"
    );
    let commits = state.commits.load(Ordering::Relaxed);
    assert!(
        commits <= 3,
        "{commits} commits for {N} messages waiting at once (one per message before batching)"
    );
    assert_eq!(
        state.committed_messages.load(Ordering::Relaxed),
        u64::from(N)
    );
    cancel.cancel();
    drop(tx);
    run.await.expect("ingest task");
}

#[tokio::test]
async fn refused_payloads_inside_a_batch_are_recorded_and_acknowledged_in_their_place() {
    let ingest = Ingest::in_memory(Duration::from_millis(50));
    let (task, sent, state) = ingester(&ingest);
    let (tx, rx) = mpsc::channel(WINDOW);
    tx.send(incoming(1, weight(70, 1))).await.expect("send");
    tx.send(incoming(2, b"not json".to_vec()))
        .await
        .expect("send");
    let mut stray = incoming(3, weight(71, 2));
    stray.publish.topic = "elsewhere/r".into();
    tx.send(stray).await.expect("send");
    tx.send(incoming(4, weight(72, 3))).await.expect("send");
    let cancel = CancellationToken::new();
    let run = tokio::spawn(task.run(rx, cancel.clone()));
    let mut acked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked.len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every message acknowledged"
        );
        acked.extend(acks(&sent));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(acked, [1, 2, 3, 4]);
    assert_eq!(state.stored.load(Ordering::Relaxed), 2);
    assert_eq!(state.rejected.load(Ordering::Relaxed), 2);
    cancel.cancel();
    drop(tx);
    run.await.expect("ingest task");
}
