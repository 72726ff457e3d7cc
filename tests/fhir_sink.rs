//! The FHIR sink against a real HTTP listener written here: a small conditional-create FHIR
//! server (transaction Bundles, `ifNoneExist`, OperationOutcomes, scripted failures, bearer
//! and OAuth2 token checks, including the signature of a SMART private-key JWT), and the real
//! daemon binary stopped and restarted in the middle of a delivery.

mod support;

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

// ---------------------------------------------------------------- the test FHIR server

/// A failure the server gives before processing the next transaction.
enum Scripted {
    Status(u16, Option<&'static str>),
    Hang(Duration),
    Huge,
}

#[derive(Default)]
struct Inner {
    /// Observations stored, by identifier value (a count > 1 is a duplicate).
    stored: BTreeMap<String, u32>,
    bundles: Vec<Json>,
    post_times: Vec<Instant>,
    script: VecDeque<Scripted>,
    /// Entries whose device id is this fail the whole transaction with 400.
    bad_device: Option<String>,
    /// Bearer tokens the server accepts (`None`: no authentication).
    tokens: Option<Vec<String>>,
    auth_headers: Vec<Option<String>>,
    token_forms: Vec<BTreeMap<String, String>>,
    oauth: Option<OAuthCheck>,
    /// Delay before each transaction is processed.
    delay: Duration,
    /// Do not keep the received Bundles (benchmark).
    skip_bundles: bool,
    /// Every entry of every transaction processed, by identifier value (a resend counts).
    received: BTreeMap<String, u32>,
    /// Transactions being processed now, and the most at once.
    active: u32,
    most_active: u32,
}

struct OAuthCheck {
    client_id: String,
    secret: Option<String>,
    /// Uncompressed P-384 public key for ES384 assertions.
    ec_public: Option<Vec<u8>>,
    kid: Option<String>,
    token_url: String,
    issued: u32,
}

#[derive(Clone, Default)]
struct Srv(Arc<Mutex<Inner>>);

impl Srv {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().expect("server lock"))
    }
}

fn respond(status: u16, body: Json) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/fhir+json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn outcome(text: &str) -> Json {
    json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":text}]})
}

async fn metadata() -> Response {
    respond(
        200,
        json!({"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1"}),
    )
}

async fn transaction(State(srv): State<Srv>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (denied, scripted, delay) = srv.with(|s| {
        s.post_times.push(Instant::now());
        s.auth_headers.push(auth.clone());
        let denied = s.tokens.as_ref().is_some_and(|ok| {
            !ok.iter()
                .any(|t| auth.as_deref() == Some(&format!("Bearer {t}")))
        });
        let scripted = if denied { None } else { s.script.pop_front() };
        (denied, scripted, s.delay)
    });
    if denied {
        return respond(401, outcome("invalid token"));
    }
    match scripted {
        Some(Scripted::Status(code, retry_after)) => {
            let mut r = respond(code, outcome("server busy"));
            if let Some(ra) = retry_after {
                r.headers_mut()
                    .insert("retry-after", ra.parse().expect("header value"));
            }
            return r;
        }
        Some(Scripted::Hang(d)) => {
            tokio::time::sleep(d).await;
            return respond(503, outcome("slow"));
        }
        Some(Scripted::Huge) => {
            let pad = "x".repeat(5 << 20);
            return respond(
                200,
                json!({"resourceType":"Bundle","type":"transaction-response","pad":pad}),
            );
        }
        None => {}
    }
    srv.with(|s| {
        s.active += 1;
        s.most_active = s.most_active.max(s.active);
    });
    tokio::time::sleep(delay).await;
    srv.with(|s| s.active -= 1);
    let Ok(bundle) = serde_json::from_slice::<Json>(&body) else {
        return respond(400, outcome("not JSON"));
    };
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let bad = srv.with(|s| s.bad_device.clone());
    for e in &entries {
        let device = e["resource"]["device"]["identifier"]["value"].as_str();
        if bad.is_some() && device == bad.as_deref() {
            let patient = e["resource"]["subject"]["identifier"]["value"]
                .as_str()
                .unwrap_or("");
            return respond(
                400,
                outcome(&format!(
                    "Observation.device: unknown Device for Patient {patient}"
                )),
            );
        }
    }
    let statuses: Vec<Json> = srv.with(|s| {
        if !s.skip_bundles {
            s.bundles.push(bundle.clone());
        }
        entries
            .iter()
            .map(|e| {
                let id = &e["resource"]["identifier"][0];
                let value = id["value"].as_str().unwrap_or("").to_string();
                let cond = format!(
                    "identifier={}|{}",
                    id["system"].as_str().unwrap_or(""),
                    value
                );
                let conditional = e["request"]["ifNoneExist"].as_str() == Some(cond.as_str());
                *s.received.entry(value.clone()).or_insert(0) += 1;
                let n = s.stored.entry(value).or_insert(0);
                if conditional && *n > 0 {
                    json!({"response":{"status":"200 OK"}})
                } else {
                    *n += 1;
                    json!({"response":{"status":"201 Created","location":"Observation/1/_history/1"}})
                }
            })
            .collect()
    });
    respond(
        200,
        json!({"resourceType":"Bundle","type":"transaction-response","entry":statuses}),
    )
}

fn form_decode(body: &[u8]) -> BTreeMap<String, String> {
    let dec = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let h = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                    out.push(u8::from_str_radix(h, 16).expect("hex"));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf8")
    };
    std::str::from_utf8(body)
        .expect("form is text")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

/// The OAuth2 token endpoint: checks the client secret or the signed assertion.
async fn token(State(srv): State<Srv>, body: Bytes) -> Response {
    let form = form_decode(&body);
    let verdict = srv.with(|s| {
        s.token_forms.push(form.clone());
        let check = s.oauth.as_mut().expect("oauth configured");
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("scope").map(String::as_str) == Some("system/Observation.write")
            && match (&check.secret, &check.ec_public) {
                (Some(secret), _) => {
                    form.get("client_id") == Some(&check.client_id)
                        && form.get("client_secret") == Some(secret)
                }
                (None, Some(public)) => {
                    form.get("client_assertion_type").map(String::as_str)
                        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                        && form
                            .get("client_assertion")
                            .is_some_and(|a| assertion_ok(a, public, check))
                }
                _ => false,
            };
        ok.then(|| {
            check.issued += 1;
            format!("access-{}", check.issued)
        })
    });
    match verdict {
        Some(t) => {
            srv.with(|s| s.tokens.get_or_insert_with(Vec::new).push(t.clone()));
            respond(
                200,
                json!({"access_token":t,"token_type":"bearer","expires_in":3600}),
            )
        }
        None => respond(400, json!({"error":"invalid_client"})),
    }
}

fn assertion_ok(jwt: &str, public: &[u8], check: &OAuthCheck) -> bool {
    let p: Vec<&str> = jwt.split('.').collect();
    if p.len() != 3 {
        return false;
    }
    let dec = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap_or_default();
    let h: Json = serde_json::from_slice(&dec(p[0])).unwrap_or_default();
    let c: Json = serde_json::from_slice(&dec(p[1])).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp = c["exp"].as_i64().unwrap_or(0);
    let signed = format!("{}.{}", p[0], p[1]);
    h["alg"] == "ES384"
        && h["kid"].as_str() == check.kid.as_deref()
        && c["iss"] == check.client_id.as_str()
        && c["sub"] == check.client_id.as_str()
        && c["aud"] == check.token_url.as_str()
        && exp > now
        && exp <= now + 300
        && c["jti"]
            .as_str()
            .is_some_and(|j| uuid::Uuid::parse_str(j).is_ok())
        && ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P384_SHA384_FIXED,
            public,
        )
        .verify(signed.as_bytes(), &dec(p[2]))
        .is_ok()
}

async fn serve(srv: Srv) -> SocketAddr {
    let app = Router::new()
        .route("/fhir", post(transaction))
        .route("/fhir/metadata", get(metadata))
        .route("/token", post(token))
        .with_state(srv);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

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

/// Four Bundles in flight from the real queue: every reading reaches the server once (counted
/// by identifier over every transaction it processed), also when the first transaction fails
/// with a 503 while the others are in flight.
#[tokio::test]
async fn pipelined_delivery_from_the_queue_sends_every_reading_once() {
    let srv = Srv::default();
    srv.with(|s| {
        s.delay = Duration::from_millis(20);
        s.skip_bundles = true;
        s.script.push_back(Scripted::Status(503, None));
    });
    let addr = serve(srv.clone()).await;
    let mut cfg = config(addr, FhirAuth::None, 10, Duration::from_secs(5));
    cfg.concurrency = 4;
    let sink = FhirSink::new(&cfg).expect("sink");
    let readings: Vec<Reading> = (0..400).map(hr).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, cancel, task) = delivering(dir.path(), sink, readings.clone(), fast_policy()).await;
    wait_until("every reading stored", Duration::from_secs(30), || {
        srv.with(|s| s.stored.len() == readings.len())
    })
    .await;
    cancel.cancel();
    task.await.expect("delivery task");
    srv.with(|s| {
        assert!(s.most_active >= 2, "Bundles were in flight side by side");
        assert!(s.most_active <= 4, "never more than `concurrency`");
        for r in &readings {
            assert_eq!(s.received.get(&id_value(r)), Some(&1), "sent once");
        }
    });
    let stats = queue.stats().expect("stats");
    assert!(stats.sinks.iter().all(|s| s.pending == 0 && s.dead == 0));
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

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_batch_arrives_as_a_valid_transaction_bundle_and_a_resend_creates_nothing() {
    let srv = Srv::default();
    let addr = serve(srv.clone()).await;
    let mut s = sink(addr, FhirAuth::None);
    assert_eq!(s.max_batch(), 50);
    let batch = vec![
        reading(1, Kind::BloodPressure),
        hr(2),
        reading(3, Kind::BodyTemperature),
    ];
    assert_eq!(s.deliver(&batch).await, vec![Outcome::Delivered; 3]);
    let bundle = srv.with(|s| s.bundles[0].clone());
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    entries.iter().for_each(check_entry);

    // The same readings again: 200 OK from conditional create, still delivered, no new data.
    assert_eq!(s.deliver(&batch).await, vec![Outcome::Delivered; 3]);
    srv.with(|s| {
        assert_eq!(s.stored.len(), 3);
        assert!(s.stored.values().all(|n| *n == 1), "{:?}", s.stored);
    });
}

#[tokio::test]
async fn the_metadata_check_reports_the_server_fhir_version() {
    let addr = serve(Srv::default()).await;
    assert_eq!(
        sink(addr, FhirAuth::None).metadata().await.as_deref(),
        Ok("4.0.1")
    );
    let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = nobody.local_addr().unwrap();
    drop(nobody);
    assert!(sink(gone, FhirAuth::None).metadata().await.is_err());
}

#[tokio::test]
async fn bursts_of_503_then_success_lose_nothing_and_duplicate_nothing() {
    let srv = Srv::default();
    srv.with(|s| {
        s.script = (0..4).map(|_| Scripted::Status(503, None)).collect();
    });
    let addr = serve(srv.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let readings: Vec<Reading> = (0..23).map(hr).collect();
    let want: Vec<String> = readings.iter().map(id_value).collect();
    let s = FhirSink::new(&config(addr, FhirAuth::None, 5, Duration::from_secs(5))).unwrap();
    let (queue, cancel, task) = delivering(dir.path(), s, readings, fast_policy()).await;
    wait_until("all 23 stored", Duration::from_secs(20), || {
        srv.with(|s| s.stored.len() == 23)
    })
    .await;
    cancel.cancel();
    task.await.unwrap();
    srv.with(|s| {
        assert!(s.script.is_empty(), "the 503 burst was not consumed");
        for id in &want {
            assert_eq!(s.stored.get(id), Some(&1), "{id}");
        }
    });
    assert!(queue.dead(None, 10).unwrap().is_empty());
}

#[tokio::test]
async fn a_hung_server_times_out_and_the_batch_is_retried() {
    let srv = Srv::default();
    srv.with(|s| s.script.push_back(Scripted::Hang(Duration::from_secs(10))));
    let addr = serve(srv.clone()).await;
    let mut s = FhirSink::new(&config(
        addr,
        FhirAuth::None,
        50,
        Duration::from_millis(400),
    ))
    .unwrap();
    let batch = vec![hr(1), hr(2)];
    let t0 = Instant::now();
    let first = s.deliver(&batch).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    for o in &first {
        let Outcome::Retry(r) = o else {
            panic!("{first:?}")
        };
        assert!(r.contains("timed out"), "{r}");
    }
    assert_eq!(s.deliver(&batch).await, vec![Outcome::Delivered; 2]);
}

#[tokio::test]
async fn a_401_rereads_a_rotated_token_file_and_retries_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ehr.token");
    std::fs::write(&path, "token-aaa\n").unwrap();
    let srv = Srv::default();
    srv.with(|s| s.tokens = Some(vec!["token-aaa".into()]));
    let addr = serve(srv.clone()).await;
    let mut s = sink(addr, FhirAuth::TokenFile(path.clone()));
    assert_eq!(s.deliver(&[hr(1)]).await, vec![Outcome::Delivered]);

    // Rotate: same length, and the old modification time put back, so only the 401 can
    // make the sink look at the file again.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "token-bbb\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    srv.with(|s| s.tokens = Some(vec!["token-bbb".into()]));
    assert_eq!(s.deliver(&[hr(2)]).await, vec![Outcome::Delivered]);
    let seen = srv.with(|s| s.auth_headers.clone());
    assert_eq!(
        seen,
        vec![
            Some("Bearer token-aaa".into()),
            Some("Bearer token-aaa".into()),
            Some("Bearer token-bbb".into())
        ]
    );
    // A token nobody accepts: retried (the credentials are wrong, not the reading).
    srv.with(|s| s.tokens = Some(vec!["other".into()]));
    let out = s.deliver(&[hr(3)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(r)] if r.contains("401")),
        "{out:?}"
    );
}

#[tokio::test]
async fn one_bad_entry_in_a_batch_of_five_is_dead_lettered_and_the_other_four_are_delivered() {
    let srv = Srv::default();
    srv.with(|s| s.bad_device = Some("exam3-thermo".into()));
    let addr = serve(srv.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut readings: Vec<Reading> = (0..5).map(hr).collect();
    readings[3] = reading(3, Kind::BodyTemperature);
    let bad = readings[3].id.unwrap();
    let s = FhirSink::new(&config(addr, FhirAuth::None, 5, Duration::from_secs(5))).unwrap();
    let (queue, cancel, task) = delivering(dir.path(), s, readings.clone(), fast_policy()).await;
    wait_until("4 stored and 1 dead", Duration::from_secs(10), || {
        srv.with(|s| s.stored.len() == 4) && queue.dead(None, 10).unwrap().len() == 1
    })
    .await;
    cancel.cancel();
    task.await.unwrap();
    let dead = queue.dead(None, 10).unwrap();
    assert_eq!(dead[0].id, bad);
    assert!(
        dead[0]
            .reason
            .starts_with("HTTP 400: Observation.device: unknown Device"),
        "{}",
        dead[0].reason
    );
    assert!(
        !dead[0].reason.contains("MRN-0003"),
        "patient id in reason: {}",
        dead[0].reason
    );
    srv.with(|s| {
        for (i, r) in readings.iter().enumerate() {
            assert_eq!(s.stored.get(&id_value(r)).copied(), (i != 3).then_some(1));
        }
    });
}

#[tokio::test]
async fn retry_after_is_honoured_by_the_delivery_loop() {
    let srv = Srv::default();
    srv.with(|s| s.script.push_back(Scripted::Status(429, Some("2"))));
    let addr = serve(srv.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_q, cancel, task) = delivering(
        dir.path(),
        sink(addr, FhirAuth::None),
        vec![hr(1)],
        fast_policy(),
    )
    .await;
    wait_until("stored", Duration::from_secs(10), || {
        srv.with(|s| s.stored.len() == 1)
    })
    .await;
    cancel.cancel();
    task.await.unwrap();
    let times = srv.with(|s| s.post_times.clone());
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?} despite Retry-After: 2"
    );

    // The sink alone: an HTTP-date is read too, and the hint is handed over once.
    let srv = Srv::default();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    let date: &'static str = Box::leak(date.into_boxed_str());
    srv.with(|s| s.script.push_back(Scripted::Status(503, Some(date))));
    let mut s = sink(serve(srv).await, FhirAuth::None);
    assert!(s.deliver(&[hr(1)]).await[0].is_retry());
    let hint = s.retry_after().expect("hint");
    assert!(
        hint > Duration::from_secs(25) && hint <= Duration::from_secs(30),
        "{hint:?}"
    );
    assert_eq!(s.retry_after(), None);
}

#[tokio::test]
async fn a_response_bigger_than_the_limit_keeps_the_reading_queued() {
    let srv = Srv::default();
    srv.with(|s| s.script.push_back(Scripted::Huge));
    let mut s = sink(serve(srv).await, FhirAuth::None);
    let out = s.deliver(&[hr(1)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(r)] if r.contains("larger than")),
        "{out:?}"
    );
    assert_eq!(s.deliver(&[hr(1)]).await, vec![Outcome::Delivered]);
}

fn oauth_cfg(addr: SocketAddr, credential: OAuthCredential) -> FhirAuth {
    FhirAuth::OAuth(OAuthConfig {
        token_url: format!("http://{addr}/token"),
        client_id: "vitalsd-east".into(),
        credential,
        scope: "system/Observation.write".into(),
    })
}

#[tokio::test]
async fn oauth_client_secret_gets_a_token_once_and_renews_it_after_a_401() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, "s3cret-value\n").unwrap();
    let srv = Srv::default();
    let addr = serve(srv.clone()).await;
    srv.with(|s| {
        s.tokens = Some(Vec::new());
        s.oauth = Some(OAuthCheck {
            client_id: "vitalsd-east".into(),
            secret: Some("s3cret-value".into()),
            ec_public: None,
            kid: None,
            token_url: format!("http://{addr}/token"),
            issued: 0,
        });
    });
    let mut s = sink(addr, oauth_cfg(addr, OAuthCredential::SecretFile(secret)));
    assert!(!format!("{s:?}").contains("s3cret"));
    assert_eq!(s.deliver(&[hr(1)]).await, vec![Outcome::Delivered]);
    assert_eq!(s.deliver(&[hr(2)]).await, vec![Outcome::Delivered]);
    assert_eq!(srv.with(|s| s.token_forms.len()), 1, "token cached");
    assert!(!format!("{s:?}").contains("access-1"));
    // The server forgets its tokens: one 401, a new token, delivered.
    srv.with(|s| s.tokens = Some(Vec::new()));
    assert_eq!(s.deliver(&[hr(3)]).await, vec![Outcome::Delivered]);
    assert_eq!(srv.with(|s| s.token_forms.len()), 2);
    assert_eq!(
        srv.with(|s| s.auth_headers.last().cloned().flatten()),
        Some("Bearer access-2".into())
    );
}

#[tokio::test]
async fn oauth_private_key_jwt_assertion_is_signed_and_verified_by_the_server() {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("client.pem");
    std::fs::write(
        &key_file,
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        ),
    )
    .unwrap();
    let srv = Srv::default();
    let addr = serve(srv.clone()).await;
    srv.with(|s| {
        s.tokens = Some(Vec::new());
        s.oauth = Some(OAuthCheck {
            client_id: "vitalsd-east".into(),
            secret: None,
            ec_public: Some(pair.public_key().as_ref().to_vec()),
            kid: Some("key-2026".into()),
            token_url: format!("http://{addr}/token"),
            issued: 0,
        });
    });
    let cred = OAuthCredential::PrivateKeyJwt {
        key_file,
        key_id: Some("key-2026".into()),
    };
    let mut s = sink(addr, oauth_cfg(addr, cred));
    assert_eq!(
        s.deliver(&[hr(1), hr(2)]).await,
        vec![Outcome::Delivered; 2]
    );
    srv.with(|s| {
        assert_eq!(s.token_forms.len(), 1);
        assert!(!s.token_forms[0].contains_key("client_secret"));
        assert_eq!(s.auth_headers, vec![Some("Bearer access-1".into())]);
    });

    // A key the server does not know: the token request fails, the readings wait.
    let other = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let other_file = dir.path().join("other.pem");
    std::fs::write(
        &other_file,
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(other.as_ref())
        ),
    )
    .unwrap();
    let cred = OAuthCredential::PrivateKeyJwt {
        key_file: other_file,
        key_id: Some("key-2026".into()),
    };
    let mut s = sink(addr, oauth_cfg(addr, cred));
    let out = s.deliver(&[hr(3)]).await;
    assert!(
        matches!(&out[..], [Outcome::Retry(r)] if r.contains("invalid_client")),
        "{out:?}"
    );
}

// ---------------------------------------------------------------- the real daemon

fn daemon_config(tmp: &Path, pty: &Path, addr: SocketAddr) -> PathBuf {
    let cfg = format!(
        "[daemon]\ndata_dir = {:?}\nadmin_listen = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n\
         clock_skew_tolerance = \"1s\"\n\n\
         [patient]\nmode = \"hold\"\n\n\
         [[device]]\nid = \"bridge\"\ndriver = \"json\"\nroom = \"exam-2\"\nserial = {{ path = {:?} }}\n\n\
         [[sink]]\nid = \"ehr\"\ntype = \"fhir\"\nbase_url = \"http://{addr}/fhir\"\nbatch_size = 2\ntimeout = \"5s\"\n",
        tmp.join("data"),
        pty
    );
    let cfg = support::with_token(&cfg, tmp);
    let path = tmp.join("vitalsd.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

#[test]
fn the_daemon_restarted_mid_delivery_leaves_every_reading_on_the_server_exactly_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = Srv::default();
    srv.with(|s| s.delay = Duration::from_millis(250));
    let addr = rt.block_on(serve(srv.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let pty = support::Pty::new();
    let cfg = daemon_config(tmp.path(), &pty.path, addr);
    let d = support::Daemon::start(&cfg, &tmp.path().join("log1"));
    d.wait_log("serial port open", Duration::from_secs(10));
    d.wait_log("FHIR server reachable", Duration::from_secs(10));
    // FHIR output needs the room's patient; the readings are measured more than the clock-skew
    // tolerance (1 s) after it was set, so the context covers each one's whole window.
    let set_at = time::OffsetDateTime::now_utc();
    support::set_patient(&d.admin_addr(), "exam-2");
    std::thread::sleep(Duration::from_millis(1500));
    const N: i64 = 24;
    for i in 0..N {
        let at = (set_at + time::Duration::milliseconds(1200 + 10 * i))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        pty.send(format!(
            "{{\"kind\":\"body_temperature\",\"device_time\":\"{at}\",\"values\":[{{\"name\":\"temperature\",\"value\":36.{i:02},\"unit\":\"Cel\"}}]}}\n"
        ).as_bytes());
    }
    let stored = |n: usize| srv.with(|s| s.stored.len() >= n);
    let until = Instant::now() + Duration::from_secs(20);
    while !stored(4) {
        assert!(Instant::now() < until, "nothing delivered:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
    let partial = srv.with(|s| s.stored.len());
    assert!(
        partial < 24,
        "all delivered before the stop: the test proves nothing"
    );

    let d = support::Daemon::start(&cfg, &tmp.path().join("log2"));
    let until = Instant::now() + Duration::from_secs(30);
    while !stored(24) {
        assert!(
            Instant::now() < until,
            "only {} of 24 after restart:\n{}",
            srv.with(|s| s.stored.len()),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = d.stop();
    assert!(status.success());
    srv.with(|s| {
        assert_eq!(s.stored.len(), 24, "{:?}", s.stored);
        assert!(
            s.stored.values().all(|n| *n == 1),
            "duplicates: {:?}",
            s.stored
        );
        for b in &s.bundles {
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .for_each(check_entry_daemon);
        }
    });
    drop(rt);
}

/// Daemon readings: the §5.1 rules except the offset; the room's patient as subject.
#[track_caller]
fn check_entry_daemon(e: &Json) {
    let o = &e["resource"];
    assert_eq!(o["subject"]["type"], "Patient");
    let value = o["identifier"][0]["value"].as_str().expect("identifier");
    assert_eq!(
        e["request"]["ifNoneExist"],
        format!("identifier=urn:ietf:rfc:3986|{value}")
    );
    assert_eq!(o["valueQuantity"]["system"], "http://unitsofmeasure.org");
}

// ---------------------------------------------------------------- drain benchmark

/// Backlog drain to a local FHIR listener with 50-reading Bundles (docs/ARCHITECTURE.md#performance-targets: ≥ 5,000/s).
/// `cargo test --release --test fhir_sink -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn drain_benchmark_prints_readings_per_second() {
    const N: u32 = 20_000;
    let srv = Srv::default();
    srv.with(|s| s.skip_bundles = true);
    let addr = serve(srv.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueOptions::new(vec![SinkId::new("ehr")])).unwrap();
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        queue
            .enqueue(chunk.iter().map(|n| hr(*n)).collect())
            .await
            .unwrap();
    }
    let s = sink(addr, FhirAuth::None);
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    let task = tokio::spawn(run_delivery(
        queue.clone(),
        Box::new(s),
        fast_policy(),
        cancel.clone(),
        None,
    ));
    wait_until("drained", Duration::from_secs(300), || {
        srv.with(|s| s.stored.len() == N as usize)
    })
    .await;
    let took = t0.elapsed();
    cancel.cancel();
    task.await.unwrap();
    println!(
        "fhir drain: {N} readings in 50-reading Bundles in {took:.2?} = {:.0} readings/s",
        f64::from(N) / took.as_secs_f64()
    );

    // Same-run baseline: the sink and listener alone, no queue (no reads, no settle fsyncs).
    let srv = Srv::default();
    srv.with(|s| s.skip_bundles = true);
    let mut s = sink(serve(srv.clone()).await, FhirAuth::None);
    let readings: Vec<Reading> = (0..N).map(hr).collect();
    let t0 = Instant::now();
    for batch in readings.chunks(50) {
        assert!(s.deliver(batch).await.iter().all(Outcome::is_delivered));
    }
    let took = t0.elapsed();
    println!(
        "fhir sink alone (no queue): {N} readings in {took:.2?} = {:.0} readings/s",
        f64::from(N) / took.as_secs_f64()
    );
}

/// `cargo test --release --test fhir_sink -- --ignored --nocapture pipelined`: the same drain
/// from the real queue with one Bundle in flight and with four, in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
async fn pipelined_drain_benchmark_one_against_four_in_flight() {
    let n: u32 = std::env::var("DRAIN_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut rates = Vec::new();
    for concurrency in [1, 4] {
        let srv = Srv::default();
        srv.with(|s| s.skip_bundles = true);
        let addr = serve(srv.clone()).await;
        let mut cfg = config(addr, FhirAuth::None, 50, Duration::from_secs(10));
        cfg.concurrency = concurrency;
        let readings: Vec<Reading> = (0..n).map(hr).collect();
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let (_queue, cancel, task) = delivering(
            dir.path(),
            FhirSink::new(&cfg).unwrap(),
            readings,
            fast_policy(),
        )
        .await;
        wait_until("drained", Duration::from_secs(600), || {
            srv.with(|s| s.stored.len() == n as usize)
        })
        .await;
        let took = t0.elapsed();
        cancel.cancel();
        task.await.unwrap();
        let dup = srv.with(|s| s.received.values().filter(|c| **c > 1).count());
        assert_eq!(dup, 0, "sent twice");
        let rate = f64::from(n) / took.as_secs_f64();
        println!("pipelined drain: {n} readings, {concurrency} in flight: {rate:.0} readings/s");
        rates.push(rate);
    }
    println!(
        "pipelined drain: four in flight / one: {:.2}",
        rates[1] / rates[0]
    );
}
