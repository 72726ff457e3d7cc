//! The FHIR listener the system benchmark delivers to: real HTTP (axum) on loopback, a
//! conditional-create server for transaction Bundles (`ifNoneExist` on the identifier), that
//! records when each Observation arrived and can go down and come back on the same port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value as Json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the listener has seen.
#[derive(Default)]
pub struct Seen {
    /// Observations stored, by identifier value, with how often each was created (> 1 would be
    /// a duplicate; a conditional create of an existing one answers 200 and does not count).
    pub stored: HashMap<String, u32>,
    /// Entries that named an identifier already stored (re-sends after a lost answer).
    pub resent: u64,
    pub posts: u64,
    pub first_post: Option<Instant>,
    pub last_post: Option<Instant>,
    /// `(effectiveDateTime as unix nanoseconds, receipt)` per entry, when `keep_receipts`.
    pub receipts: Vec<(i128, SystemTime)>,
    pub keep_receipts: bool,
}

#[derive(Clone, Default)]
struct Srv(Arc<Mutex<Seen>>);

/// A listener that can be stopped and started again on the same address.
pub struct Listener {
    srv: Srv,
    pub addr: SocketAddr,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

fn respond(status: u16, body: &Json) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/fhir+json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn effective_nanos(o: &Json) -> Option<i128> {
    let t = o["effectiveDateTime"].as_str()?;
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp_nanos)
}

async fn transaction(State(srv): State<Srv>, body: Bytes) -> Response {
    let received = SystemTime::now();
    let Ok(bundle) = serde_json::from_slice::<Json>(&body) else {
        return respond(400, &json!({"resourceType":"OperationOutcome"}));
    };
    let empty = Vec::new();
    let entries = bundle["entry"].as_array().unwrap_or(&empty);
    let mut seen = srv
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    seen.posts += 1;
    let now = Instant::now();
    seen.first_post.get_or_insert(now);
    seen.last_post = Some(now);
    let statuses: Vec<Json> = entries
        .iter()
        .map(|e| {
            let o = &e["resource"];
            if seen.keep_receipts {
                if let Some(t) = effective_nanos(o) {
                    seen.receipts.push((t, received));
                }
            }
            let value = o["identifier"][0]["value"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let conditional = e["request"]["ifNoneExist"].is_string();
            let n = seen.stored.entry(value).or_insert(0);
            if conditional && *n > 0 {
                seen.resent += 1;
                json!({"response":{"status":"200 OK"}})
            } else {
                *n += 1;
                json!({"response":{"status":"201 Created","location":"Observation/1/_history/1"}})
            }
        })
        .collect();
    drop(seen);
    respond(
        200,
        &json!({"resourceType":"Bundle","type":"transaction-response","entry":statuses}),
    )
}

async fn metadata() -> Response {
    respond(
        200,
        &json!({"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1"}),
    )
}

impl Listener {
    /// Binds 127.0.0.1 on a free port and serves.
    pub async fn start() -> Listener {
        let mut l = Listener {
            srv: Srv::default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            running: None,
        };
        l.up().await;
        l
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/fhir", self.addr)
    }

    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    /// Serves again (on the same port once it has one).
    pub async fn up(&mut self) {
        if self.running.is_some() {
            return;
        }
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    eprintln!("listener: bind {} failed ({e}); retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind the FHIR listener on {}: {e}", self.addr),
            }
        };
        self.addr = listener.local_addr().expect("local addr");
        let app = Router::new()
            .route("/fhir", post(transaction))
            .route("/fhir/metadata", get(metadata))
            .with_state(self.srv.clone());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        self.running = Some((cancel, task));
    }

    /// Stops accepting and closes every connection (requests in flight are answered first).
    pub async fn down(&mut self) {
        if let Some((cancel, task)) = self.running.take() {
            cancel.cancel();
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                eprintln!("listener: connections still open 10 s after going down");
            }
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self
            .srv
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Forgets everything seen so far.
    pub fn reset(&self, keep_receipts: bool) {
        self.with(|s| {
            *s = Seen {
                keep_receipts,
                ..Seen::default()
            }
        });
    }

    /// Observations stored (distinct identifiers).
    pub fn stored(&self) -> usize {
        self.with(|s| s.stored.len())
    }
}

/// The listener's own ceiling: `clients` connections (keep-alive) each posting its share of
/// `bundles` one after another, as the sink does with `concurrency = clients`. Returns
/// entries per second.
pub async fn ceiling(base_url: &str, bundles: &[(usize, Vec<u8>)], clients: usize) -> f64 {
    let clients = clients.max(1);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mine: Vec<(usize, Vec<u8>)> =
            bundles.iter().skip(c).step_by(clients).cloned().collect();
        let url = base_url.to_string();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut entries = 0usize;
            for (n, body) in mine {
                let resp = client
                    .post(&url)
                    .header("content-type", "application/fhir+json")
                    .header("accept", "application/fhir+json")
                    .header("prefer", "return=minimal")
                    .body(body)
                    .send()
                    .await
                    .expect("post to the listener");
                assert!(
                    resp.status().is_success(),
                    "listener answered {}",
                    resp.status()
                );
                let _ = resp.bytes().await.expect("read the answer");
                entries += n;
            }
            entries
        }));
    }
    let mut entries = 0usize;
    for t in tasks {
        entries += t.await.expect("ceiling client");
    }
    crate::ratio(entries as f64, t0.elapsed().as_secs_f64())
}
