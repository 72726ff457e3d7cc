//! The record-system side of the fault matrix (tests/faults.rs): a conditional-create FHIR
//! listener that keeps a ledger of what was posted and stored, the store read back as the
//! test's readings, the admin API read without panicking while daemons die, and the config.
//! Included by tests/faults.rs with `#[path]`, so the other test binaries do not compile it.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value as Json};

// ------------------------------------------------------------------ the FHIR listener

/// How the listener answers transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// 503 with an OperationOutcome, nothing stored.
    Unavailable,
}

/// What the listener saw and kept.
#[derive(Default)]
pub struct Ledger {
    pub mode: Option<Mode>,
    pub delay: Duration,
    /// Transactions answered 503.
    pub refused: u64,
    /// Every entry of every processed transaction (a redelivery counts again).
    pub entries: u64,
    /// Stored Observations by identifier value, with how many times each was created
    /// (more than 1 is a duplicate by identifier).
    pub stored: BTreeMap<String, (Json, u32)>,
}

/// A small FHIR server: POST `/fhir` takes transaction Bundles and creates each entry unless
/// its `ifNoneExist` names an identifier already stored (then `200 OK`, nothing created).
pub struct FhirListener {
    rt: tokio::runtime::Runtime,
    pub port: u16,
    pub ledger: Arc<Mutex<Ledger>>,
}

pub use crate::support::free_port;

impl FhirListener {
    /// A listener with a port but nothing listening yet: connections are refused.
    pub fn reserve() -> FhirListener {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        FhirListener {
            rt,
            port: free_port(),
            ledger: Arc::default(),
        }
    }

    pub fn start(mode: Mode) -> FhirListener {
        let l = Self::reserve();
        l.listen(mode);
        l
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }

    /// Starts answering on the reserved port.
    pub fn listen(&self, mode: Mode) {
        self.set_mode(mode);
        let std = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("rebind port");
        std.set_nonblocking(true).expect("nonblocking");
        let app = Router::new()
            .route("/fhir", post(transaction))
            .route("/fhir/metadata", get(metadata))
            .with_state(self.ledger.clone());
        self.rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(std).expect("tokio listener");
            axum::serve(l, app).await.expect("serve");
        });
    }

    pub fn set_mode(&self, mode: Mode) {
        self.with(|l| l.mode = Some(mode));
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut self.ledger.lock().expect("ledger"))
    }

    /// What the store holds, by reading (see [`Tally`]).
    pub fn tally(&self) -> Tally {
        self.with(|l| Tally::of(l))
    }
}

fn respond(status: u16, body: &Json) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/fhir+json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

async fn metadata() -> Response {
    respond(
        200,
        &json!({"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1"}),
    )
}

async fn transaction(State(ledger): State<Arc<Mutex<Ledger>>>, body: Bytes) -> Response {
    let (mode, delay) = {
        let l = ledger.lock().expect("ledger");
        (l.mode, l.delay)
    };
    if mode != Some(Mode::Up) {
        ledger.lock().expect("ledger").refused += 1;
        let oo = json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"maintenance"}]});
        return respond(503, &oo);
    }
    tokio::time::sleep(delay).await;
    let Ok(bundle) = serde_json::from_slice::<Json>(&body) else {
        return respond(400, &json!({"resourceType":"OperationOutcome"}));
    };
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut l = ledger.lock().expect("ledger");
    let statuses: Vec<Json> = entries
        .iter()
        .map(|e| {
            l.entries += 1;
            let id = &e["resource"]["identifier"][0];
            let value = id["value"].as_str().unwrap_or("").to_string();
            let cond = format!("identifier={}|{value}", id["system"].as_str().unwrap_or(""));
            let conditional = e["request"]["ifNoneExist"].as_str() == Some(cond.as_str());
            let slot = l
                .stored
                .entry(value)
                .or_insert_with(|| (e["resource"].clone(), 0));
            if conditional && slot.1 > 0 {
                json!({"response":{"status":"200 OK"}})
            } else {
                slot.1 += 1;
                json!({"response":{"status":"201 Created","location":"Observation/1/_history/1"}})
            }
        })
        .collect();
    respond(
        200,
        &json!({"resourceType":"Bundle","type":"transaction-response","entry":statuses}),
    )
}

/// The listener's store read back as the test's readings: MQTT weights (hundredths of a kg)
/// and serial frames `(spo2, heart rate)`, each with how many times it is stored.
#[derive(Debug, Default)]
pub struct Tally {
    pub weights: BTreeMap<i64, u32>,
    pub frames: BTreeMap<(u32, u32), u32>,
    /// Identifiers created more than once.
    pub recreated: Vec<String>,
    /// Serial Observations that do not pair up as one SpO2 + one heart rate per frame.
    pub unpaired: Vec<String>,
    pub other: Vec<String>,
    pub stored: usize,
    pub entries: u64,
}

fn has_code(o: &Json, code: &str) -> bool {
    o["code"]["coding"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["code"] == code))
}

impl Tally {
    fn of(l: &Ledger) -> Tally {
        let mut t = Tally {
            stored: l.stored.len(),
            entries: l.entries,
            ..Tally::default()
        };
        // One serial frame is two Observations with the same effectiveDateTime (its receipt).
        let mut by_time: BTreeMap<String, (Option<u32>, Option<u32>, u32)> = BTreeMap::new();
        for (id, (o, creates)) in &l.stored {
            if *creates > 1 {
                t.recreated.push(id.clone());
            }
            let value = o["valueQuantity"]["value"].as_f64();
            match (o["device"]["identifier"]["value"].as_str(), value) {
                (Some("bridge"), Some(v)) => {
                    #[allow(clippy::cast_possible_truncation)]
                    let centi = (v * 100.0).round() as i64;
                    *t.weights.entry(centi).or_insert(0) += creates;
                }
                (Some("ox"), Some(v)) => {
                    let at = o["effectiveDateTime"].as_str().unwrap_or("").to_string();
                    let slot = by_time.entry(at).or_insert((None, None, 0));
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let v = v as u32;
                    if has_code(o, "59408-5") && slot.0.is_none() {
                        slot.0 = Some(v);
                    } else if has_code(o, "8867-4") && slot.1.is_none() {
                        slot.1 = Some(v);
                    } else {
                        t.unpaired.push(o.to_string());
                    }
                    slot.2 = slot.2.max(*creates);
                }
                _ => t.other.push(o.to_string()),
            }
        }
        for (at, pair) in by_time {
            match pair {
                (Some(s), Some(h), n) => *t.frames.entry((s, h)).or_insert(0) += n,
                _ => t.unpaired.push(format!("{at}: {pair:?}")),
            }
        }
        t
    }
}

// ------------------------------------------------------------------ the admin API

/// One GET to the admin API, parsed as JSON; `None` when the daemon does not answer.
pub fn try_get(addr: &str, path: &str) -> Option<Json> {
    serde_json::from_str(&try_get_text(addr, path)?).ok()
}

/// One GET to the admin API; the body of a 200, `None` otherwise.
pub fn try_get_text(addr: &str, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The value of the Prometheus sample `name{labels}` (labels as rendered, e.g.
/// `device="ox",result="bad"`) in `/metrics`.
pub fn metric(addr: &str, name: &str, labels: &str) -> Option<f64> {
    let text = try_get_text(addr, "/metrics")?;
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Readings stored by `device` since this daemon started, from `/api/status`.
pub fn stored_by(status: &Json, device: &str) -> Option<u64> {
    status["devices"]
        .as_array()?
        .iter()
        .find(|d| d["id"] == device)?["readings"]
        .as_u64()
}

/// `(pending, dead)` of `sink` from `/api/status`.
pub fn sink_counts(status: &Json, sink: &str) -> Option<(u64, u64)> {
    let s = status["sinks"]
        .as_array()?
        .iter()
        .find(|s| s["sink"] == sink)?;
    Some((s["pending"].as_u64()?, s["dead"].as_u64()?))
}

#[track_caller]
pub fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------ configs

/// A config with serial device `ox` (nonin-ascii, every line a reading) at `serial`, MQTT
/// device `bridge` (json on `bridge/exam4`) when `broker` is given, and FHIR sink `ehr`.
pub fn config(
    dir: &Path,
    serial: &Path,
    broker: Option<&str>,
    fhir: &str,
    batch: usize,
) -> PathBuf {
    use crate::support::{Admin, DaemonBuilder, Device, Sink};
    let mut b = DaemonBuilder::new(dir)
        .admin(Admin::Token)
        .daemon("clock_skew_tolerance = \"1s\"")
        .patient_mode("hold");
    if let Some(url) = broker {
        b = b.mqtt(url, "vitalsd-faults").device(Device::mqtt(
            "bridge",
            "json",
            "exam-4",
            "bridge/exam4",
            "json",
        ));
    }
    b.device(Device::serial("ox", "nonin-ascii", "exam-1", serial).options(r#"report = "every""#))
        .sink(
            Sink::fhir("ehr", fhir)
                .line(&format!("batch_size = {batch}"))
                .line("timeout = \"5s\""),
        )
        .write()
}
