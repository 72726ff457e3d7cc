//! The FHIR sink against a real HTTP listener written here: a small conditional-create FHIR
//! server (transaction Bundles, `ifNoneExist`, OperationOutcomes, scripted failures, bearer
//! and OAuth2 token checks, including the signature of a SMART private-key JWT), and the real
//! daemon binary stopped and restarted in the middle of a delivery.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod bench;
mod daemon;
mod delivery;
mod server;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value as Json};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;
use vitalsd::config::{FhirAuth, FhirSinkConfig, OAuthConfig, OAuthCredential};
use vitalsd::queue::{Queue, QueueOptions};
use vitalsd::reading::{
    Decimal, DeviceId, DeviceInfo, Kind, PatientRef, Reading, ReadingId, SinkId, Ucum, Value,
};
use vitalsd::sink::fhir::FhirSink;
use vitalsd::sink::{run_delivery, Outcome, RetryPolicy, Sink};

// ---------------------------------------------------------------- readings and sinks

fn reading(n: u32, kind: Kind) -> Reading {
    let (values, device) = match kind {
        Kind::BloodPressure => (
            vec![
                val("8480-6", 150_021, "systolic", "120", "mm[Hg]"),
                val("8462-4", 150_022, "diastolic", "80", "mm[Hg]"),
            ],
            "exam3-cuff",
        ),
        Kind::BodyTemperature => (
            vec![val("8310-5", 150_364, "temperature", "37.60", "Cel")],
            "exam3-thermo",
        ),
        _ => (
            vec![val(
                "8867-4",
                149_530,
                "pulse",
                &format!("{}", 60 + n % 40),
                "/min",
            )],
            "exam3-ox",
        ),
    };
    let t = datetime!(2026-03-15 10:29:30 +01:00) + time::Duration::seconds(i64::from(n));
    Reading {
        id: Some(ReadingId::new()),
        device: DeviceInfo {
            id: DeviceId::new(device),
            driver: "json".into(),
            model: None,
            serial: None,
        },
        room: Some("exam-3".into()),
        patient: Some(PatientRef {
            id: format!("MRN-{n:04}"),
            system: "urn:oid:2.16.840.1.113883.3.9999".into(),
        }),
        patient_record: None,
        kind,
        observed_at: t,
        received_at: t,
        device_time: Some(t),
        values,
        flags: Vec::new(),
        waveform: None,
    }
}

fn val(code: &str, mdc: u32, name: &str, v: &str, unit: &str) -> Value {
    Value {
        code: code.into(),
        mdc: Some(mdc),
        name: name.into(),
        value: Some(v.parse::<Decimal>().expect("decimal")),
        unit: Ucum::new(unit),
        site: None,
        absent: None,
    }
}

fn hr(n: u32) -> Reading {
    reading(n, Kind::HeartRate)
}

fn config(
    addr: SocketAddr,
    auth: FhirAuth,
    batch_size: usize,
    timeout: Duration,
) -> FhirSinkConfig {
    FhirSinkConfig {
        id: SinkId::new("ehr"),
        base_url: format!("http://{addr}/fhir"),
        auth,
        ca_file: None,
        batch_size,
        concurrency: 1,
        timeout,
    }
}

fn sink(addr: SocketAddr, auth: FhirAuth) -> FhirSink {
    FhirSink::new(&config(addr, auth, 50, Duration::from_secs(5))).expect("sink")
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts_per_reading: 10,
    }
}

/// A real queue in `dir` holding `readings` for sink `ehr`, and the delivery loop running.
async fn delivering(
    dir: &Path,
    sink: FhirSink,
    readings: Vec<Reading>,
    policy: RetryPolicy,
) -> (Queue, CancellationToken, tokio::task::JoinHandle<()>) {
    let queue = Queue::open(dir, QueueOptions::new(vec![SinkId::new("ehr")])).expect("queue");
    queue.enqueue(readings).await.expect("enqueue");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_delivery(
        queue.clone(),
        Box::new(sink),
        policy,
        cancel.clone(),
        None,
    ));
    (queue, cancel, task)
}

#[track_caller]
fn id_value(r: &Reading) -> String {
    format!("urn:uuid:{}", r.id.expect("id").uuid())
}

async fn wait_until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The docs/fhir-codes.md#required-elements-of-a-vital-signs-observation / docs/fhir.md#what-vitalsd-sends rules every entry must meet.
#[track_caller]
fn check_entry(e: &Json) {
    let o = &e["resource"];
    assert_eq!(o["resourceType"], "Observation");
    assert_eq!(o["status"], "final");
    let cat = &o["category"][0]["coding"][0];
    assert_eq!(
        cat["system"],
        "http://terminology.hl7.org/CodeSystem/observation-category"
    );
    assert_eq!(cat["code"], "vital-signs");
    let codings = o["code"]["coding"].as_array().expect("codings");
    assert!(
        codings
            .iter()
            .any(|c| c["system"] == "http://loinc.org" && c["code"].is_string()),
        "{o}"
    );
    let quantities: Vec<&Json> = std::iter::once(&o["valueQuantity"])
        .chain(
            o["component"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| &c["valueQuantity"]),
        )
        .filter(|q| !q.is_null())
        .collect();
    assert!(!quantities.is_empty(), "no value: {o}");
    for q in quantities {
        assert_eq!(q["system"], "http://unitsofmeasure.org");
        assert!(q["code"].as_str().is_some_and(|c| !c.is_empty()), "{q}");
    }
    let t = o["effectiveDateTime"].as_str().expect("effectiveDateTime");
    assert!(
        t.ends_with("+01:00") && t.len() == "2026-03-15T10:29:30+01:00".len(),
        "{t}"
    );
    let id = &o["identifier"][0];
    assert_eq!(id["system"], "urn:ietf:rfc:3986");
    let value = id["value"].as_str().expect("identifier value");
    assert!(value.starts_with("urn:uuid:"));
    assert_eq!(e["request"]["method"], "POST");
    assert_eq!(e["request"]["url"], "Observation");
    assert_eq!(
        e["request"]["ifNoneExist"],
        format!("identifier=urn:ietf:rfc:3986|{value}")
    );
    // The fullUrl is a different UUID: servers rewrite strings equal to a fullUrl.
    let full = e["fullUrl"].as_str().expect("fullUrl");
    assert!(full.starts_with("urn:uuid:") && full != value, "{full}");
    assert!(o["subject"]["identifier"]["value"].is_string());
}
