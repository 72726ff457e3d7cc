//! The HL7 v2 sink over MLLP against real MLLP receivers written here (port 0): ACK handling,
//! resend of the same bytes, order across an outage, dead-letters through the real queue and
//! delivery loop, and the daemon itself (serial PTY json device → hl7-mllp sink), restarted
//! after a partial delivery. Every message is validated with the independent `hl7-parser`.

#[path = "../support/mod.rs"]
mod support;

mod against_receivers;
mod daemon;
mod drain;
mod receiver;
mod through_the_queue;
mod tls;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::macros::datetime;
use tokio_util::sync::CancellationToken;
use vitalsd::config::MllpSinkConfig;
use vitalsd::queue::{Queue, QueueOptions};
use vitalsd::reading::{
    Decimal, DeviceId, DeviceInfo, Kind, PatientRef, Reading, ReadingId, SinkId, Ucum, Value,
};
use vitalsd::sink::mllp::MllpSink;
use vitalsd::sink::{run_delivery, Outcome, RetryPolicy, Sink};

// ---------------------------------------------------------------------------------------------
// Readings, sinks, queues.

fn reading(i: i64) -> Reading {
    let t = datetime!(2026-11-27 12:00:00 UTC) + time::Duration::seconds(i);
    let v = |name: &str, code: &str, mdc: u32, x: i64| Value {
        code: code.into(),
        mdc: Some(mdc),
        name: name.into(),
        value: Some(Decimal::from_int(x)),
        unit: Ucum::new("mm[Hg]"),
        site: None,
        absent: None,
    };
    Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: DeviceId::new("exam3-cuff"),
            driver: "json".into(),
            model: None,
            serial: None,
        },
        room: Some("exam-3".into()),
        patient: Some(PatientRef {
            id: "MRN0012345".into(),
            system: "urn:oid:2.16.840.1.113883.3.999".into(),
        }),
        patient_record: None,
        kind: Kind::BloodPressure,
        observed_at: t,
        received_at: t,
        device_time: Some(t),
        values: vec![
            v("systolic", "8480-6", 150_021, 100 + i),
            v("diastolic", "8462-4", 150_022, 70),
        ],
        flags: Vec::new(),
        waveform: None,
    }
}

fn sink_config(addr: SocketAddr, ack_timeout: Duration, max_ar: u32) -> MllpSinkConfig {
    MllpSinkConfig {
        id: SinkId::new("engine"),
        address: addr.to_string(),
        ack_timeout,
        tls: false,
        ca_file: None,
        max_ar_retries: max_ar,
        sending_application: "VITALSD".into(),
        sending_facility: "CLINIC_A".into(),
        receiving_application: "EHR".into(),
        receiving_facility: "CLINIC_A".into(),
        waveform: false,
    }
}

fn sink(addr: SocketAddr, ack_timeout: Duration, max_ar: u32) -> MllpSink {
    MllpSink::new(&sink_config(addr, ack_timeout, max_ar)).expect("sink")
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts_per_reading: 10,
    }
}

/// A queue in `dir` with `readings` enqueued, and the delivery loop running `sink` on it.
async fn deliver_through_queue(
    dir: &std::path::Path,
    sink: MllpSink,
    readings: Vec<Reading>,
) -> (Queue, CancellationToken, tokio::task::JoinHandle<()>) {
    let q = Queue::open(dir, QueueOptions::new(vec![SinkId::new("engine")])).expect("queue");
    q.enqueue(readings).await.expect("enqueue");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_delivery(
        q.clone(),
        Box::new(sink),
        fast_policy(),
        cancel.clone(),
        None,
    ));
    (q, cancel, task)
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pending(q: &Queue) -> u64 {
    q.stats()
        .expect("stats")
        .sinks
        .iter()
        .map(|s| s.pending)
        .sum()
}
