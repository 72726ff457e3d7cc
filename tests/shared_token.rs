//! One OAuth access token for the FHIR sink and the patient lookup, through the real binary:
//! a FHIR server and its token endpoint written here count token requests while the sink
//! delivers readings and the lookup confirms scanned wristbands with the same credentials.
//! Both must use one token (one request), and when the server stops accepting it, one renewal
//! serves both.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use support::{Daemon, DaemonBuilder, Device, Pty, Sink};

const SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.999";

/// What the server saw.
#[derive(Default)]
struct Seen {
    /// Token requests answered (the n-th gets `tok-<n>`).
    token_requests: u32,
    /// Tokens the server accepts now.
    accepted: BTreeSet<String>,
    /// Patient searches and transactions answered with 2xx / refused with 401.
    searches: u32,
    bundles: u32,
    refused: u32,
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<Seen>>);

impl Server {
    fn with<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.0.lock().expect("server state"))
    }

    /// Whether `headers` carry a token the server accepts (a refusal is counted).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        self.with(|s| {
            let ok = bearer.is_some_and(|b| s.accepted.contains(&b));
            if !ok {
                s.refused += 1;
            }
            ok
        })
    }
}

fn fhir(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

async fn token(State(srv): State<Server>) -> Response {
    let t = srv.with(|s| {
        s.token_requests += 1;
        let t = format!("tok-{}", s.token_requests);
        s.accepted.insert(t.clone());
        t
    });
    Json(json!({"access_token": t, "token_type": "Bearer", "expires_in": 3600})).into_response()
}

async fn metadata() -> Response {
    fhir(
        StatusCode::OK,
        json!({"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1"}),
    )
}

async fn patients(
    State(srv): State<Server>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if !srv.authorized(&headers) {
        return fhir(
            StatusCode::UNAUTHORIZED,
            json!({"resourceType":"OperationOutcome"}),
        );
    }
    srv.with(|s| s.searches += 1);
    let mrn = q
        .get("identifier")
        .and_then(|i| i.split_once('|'))
        .map_or("", |(_, v)| v)
        .to_string();
    fhir(
        StatusCode::OK,
        json!({"resourceType":"Bundle","type":"searchset","entry":[{
            "resource":{"resourceType":"Patient","id":format!("p-{mrn}"),
                        "identifier":[{"system":SYSTEM,"value":mrn}],
                        "name":[{"family":"Testfamily","given":["Testgiven"]}]},
            "search":{"mode":"match"}}]}),
    )
}

async fn transaction(State(srv): State<Server>, headers: HeaderMap, body: String) -> Response {
    if !srv.authorized(&headers) {
        return fhir(
            StatusCode::UNAUTHORIZED,
            json!({"resourceType":"OperationOutcome"}),
        );
    }
    srv.with(|s| s.bundles += 1);
    let bundle: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let entries: Vec<Value> = bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|_| json!({"response":{"status":"201 Created"}}))
                .collect()
        })
        .unwrap_or_default();
    fhir(
        StatusCode::OK,
        json!({"resourceType":"Bundle","type":"transaction-response","entry":entries}),
    )
}

/// Starts the server on loopback; its port.
fn start_server(srv: Server) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = Router::new()
                .route("/token", post(token))
                .route("/fhir", post(transaction))
                .route("/fhir/metadata", get(metadata))
                .route("/fhir/Patient", get(patients))
                .with_state(srv);
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(l, app).await.expect("serve");
        });
    });
    port
}

#[track_caller]
fn wait_for(what: &str, d: &Daemon, srv: &Server, cond: impl Fn(&Seen) -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if srv.with(|s| cond(s)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = srv.with(|s| {
        format!(
            "{} token requests, {} searches, {} bundles, {} refused",
            s.token_requests, s.searches, s.bundles, s.refused
        )
    });
    panic!("waiting for {what}: {state}\n{}", d.log());
}

/// Sends oximeter frames until the server answered more than `after` Bundles.
#[track_caller]
fn deliver(d: &Daemon, srv: &Server, ox: &Pty, after: u32) {
    let t0 = Instant::now();
    let mut hr = 60;
    while t0.elapsed() < Duration::from_secs(20) {
        if srv.with(|s| s.bundles > after) {
            return;
        }
        ox.send(format!("SPO2=097 HR=0{hr}\r\n").as_bytes());
        hr = if hr >= 99 { 60 } else { hr + 1 };
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for("a delivered Bundle", d, srv, |s| s.bundles > after);
}

#[test]
fn the_fhir_sink_and_the_patient_lookup_share_one_oauth_token_and_one_renewal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let srv = Server::default();
    let port = start_server(srv.clone());
    let secret = tmp.path().join("client.secret");
    std::fs::write(&secret, "s3cret-client\n").expect("secret");
    let (scanner, ox) = (Pty::new(), Pty::new());
    let config = DaemonBuilder::new(tmp.path())
        .patient_mode("hold")
        .patient("lookup = \"ehr\"")
        .device(
            Device::serial("scan1", "barcode", "exam-1", &scanner.path)
                .options(&format!("system = {SYSTEM:?}")),
        )
        .device(
            Device::serial("ox", "nonin-ascii", "exam-1", &ox.path).options("report = \"every\""),
        )
        .sink(
            Sink::fhir("ehr", &format!("http://127.0.0.1:{port}/fhir"))
                .line("timeout = \"5s\"")
                .line("concurrency = 2")
                .table(&format!(
                    "[sink.oauth]\ntoken_url = \"http://127.0.0.1:{port}/token\"\n\
                     client_id = \"vitalsd\"\nclient_secret_file = {secret:?}\n"
                )),
        )
        .write();
    let d = Daemon::start(&config, &tmp.path().join("daemon.log"));
    d.wait_log("vitalsd ready", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(300));

    // The lookup confirms a scan, then the sink delivers the room's readings: one token.
    scanner.send(b"MRN-SHARE-1\r");
    wait_for("the lookup", &d, &srv, |s| s.searches >= 1);
    std::thread::sleep(Duration::from_millis(300));
    deliver(&d, &srv, &ox, 0);
    std::thread::sleep(Duration::from_millis(300));
    srv.with(|s| {
        assert_eq!(
            s.token_requests, 1,
            "the sink and the lookup each fetched a token"
        );
        assert_eq!(s.refused, 0);
    });

    // The server stops accepting tok-1: the sink is refused and renews it; the next lookup
    // uses the renewed token at once (no refusal, no request of its own).
    srv.with(|s| s.accepted.clear());
    let bundles = srv.with(|s| s.bundles);
    deliver(&d, &srv, &ox, bundles);
    let refused = srv.with(|s| {
        assert!(
            s.refused >= 1,
            "the sink was not refused: the test proves nothing"
        );
        assert_eq!(s.token_requests, 2, "one renewal for the sink's handles");
        s.refused
    });
    scanner.send(b"MRN-SHARE-2\r");
    wait_for("the second lookup", &d, &srv, |s| s.searches >= 2);
    std::thread::sleep(Duration::from_millis(300));
    srv.with(|s| {
        assert_eq!(
            (s.token_requests, s.refused),
            (2, refused),
            "the lookup kept the refused token of its own and renewed it again"
        );
    });
    let log = d.log();
    for secret in ["tok-1", "tok-2", "s3cret-client", "MRN-SHARE"] {
        assert!(!log.contains(secret), "the log shows `{secret}`:\n{log}");
    }
}
