//! FHIR record systems for the interop tests (tests/fhir_interop.rs): Medplum (an independent
//! implementation, run with Node from tests/medplum), a TCP proxy that delays or drops answers
//! after the server committed, and small Rust servers that behave like real servers do in ways
//! that broke delivery (rewriting `urn:uuid:` strings, empty 2xx bodies, batch-responses).
//! Included by tests/fhir_interop.rs with `#[path]`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{self, post};
use axum::Router;
use serde_json::{json, Value as Json};

// ------------------------------------------------------------------ Medplum

/// Medplum's FHIR router over an in-memory repository (tests/medplum/server.mjs), killed when
/// dropped. Needs `node` and `npm ci` in tests/medplum (scripts/test does both).
pub struct Medplum {
    child: Child,
    /// Kept open: the server's stdout.
    _stdout: BufReader<std::process::ChildStdout>,
    pub port: u16,
    stderr: PathBuf,
}

impl Medplum {
    #[track_caller]
    pub fn start(log_dir: &std::path::Path) -> Medplum {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/medplum");
        assert!(
            dir.join("node_modules/@medplum/fhir-router").is_dir(),
            "Medplum is not installed: run `npm ci` in {} (scripts/test does it; it needs node >= 20 and npm)",
            dir.display()
        );
        let stderr = log_dir.join("medplum.log");
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg("0")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("medplum log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` for the Medplum test server ({e}): install Node.js >= 20 (scripts/test does it)")
            });
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut line).expect("read medplum stdout");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "Medplum did not start: `{line}`\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            });
        Medplum {
            child,
            _stdout: out,
            port,
            stderr,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }

    /// `{"observations", "identifiers", "duplicates", "invalid", "requests"}` of the store.
    #[track_caller]
    pub fn stats(&self) -> Json {
        let (status, body) = get(&format!("127.0.0.1:{}", self.port), "/fhir/_stats");
        assert_eq!(status, 200, "Medplum /_stats: {body}\n{}", self.log());
        serde_json::from_str(&body).expect("stats JSON")
    }

    pub fn observations(&self) -> u64 {
        self.stats()["observations"].as_u64().expect("count")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Medplum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET; `(status, body)` (`(0, "")` when nothing answers).
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ------------------------------------------------------------------ proxy

/// What the proxy does with the server's answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyPlan {
    /// Answers to throw away: the request reaches the server (which commits), then the
    /// connection is closed without an answer.
    pub drop_first: u32,
    /// The request (counted from 0) whose answer is held for a minute after the server
    /// committed it: the test kills the daemon meanwhile.
    pub hold: Option<u32>,
}

/// A one-request-per-connection HTTP proxy in front of `upstream`.
pub struct Proxy {
    pub port: u16,
    /// Requests forwarded to the server.
    pub forwarded: Arc<AtomicU32>,
    /// Answers thrown away.
    pub dropped: Arc<AtomicU32>,
}

impl Proxy {
    pub fn start(upstream: u16, plan: ProxyPlan) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = l.local_addr().expect("addr").port();
        let forwarded = Arc::new(AtomicU32::new(0));
        let dropped = Arc::new(AtomicU32::new(0));
        let (f, d) = (forwarded.clone(), dropped.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let (f, d) = (f.clone(), d.clone());
                std::thread::spawn(move || {
                    let _ = relay(conn, upstream, plan, &f, &d);
                });
            }
        });
        Proxy {
            port,
            forwarded,
            dropped,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }
}

/// Reads one request (head and `Content-Length` body) from `conn`; `None` at end of stream.
fn read_request(conn: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Ok(None);
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    // One request per upstream connection: ask the server to close after answering.
    let mut out: Vec<u8> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect();
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    out.extend_from_slice(&body);
    Ok(Some(out))
}

fn relay(
    mut conn: TcpStream,
    upstream: u16,
    plan: ProxyPlan,
    forwarded: &AtomicU32,
    dropped: &AtomicU32,
) -> std::io::Result<()> {
    // One request per connection: the answer says `Connection: close`.
    let Some(req) = read_request(&mut conn)? else {
        return Ok(());
    };
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(&req)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let n = forwarded.fetch_add(1, Ordering::SeqCst);
    if n < plan.drop_first {
        // The server committed; the client never hears it.
        dropped.fetch_add(1, Ordering::SeqCst);
    } else {
        if plan.hold == Some(n) {
            std::thread::sleep(Duration::from_secs(60));
        }
        conn.write_all(&answer)?;
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
    Ok(())
}

// ------------------------------------------------------------------ Rust FHIR servers

/// How a [`QuirkyServer`] answers a transaction (it always stores with conditional create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// Resolves `urn:uuid:` references as transaction processing does: every string in the
    /// Bundle equal to an entry's `fullUrl` becomes that entry's new `Observation/<id>`,
    /// identifier values included. Answers a transaction-response.
    RewritesFullUrls,
    /// `201 Created` (first time) or `200 OK`, with an empty body.
    EmptyBody,
    /// A `batch-response`: every other entry seen for the first time answers `503` (not
    /// stored; once per identifier), the others `201` (stored); entries already stored `200`.
    BatchMixed,
}

#[derive(Default)]
pub struct Store {
    /// Created Observations by their identifier `system|value` after processing.
    pub by_identifier: BTreeMap<String, u32>,
    pub created: u32,
    pub transactions: u32,
    pub refused_entries: u32,
    next_id: u32,
    alternate: u32,
    refused_once: std::collections::BTreeSet<String>,
}

/// A Rust FHIR server with one [`Quirk`].
pub struct QuirkyServer {
    rt: tokio::runtime::Runtime,
    pub port: u16,
    pub store: Arc<Mutex<Store>>,
}

impl QuirkyServer {
    pub fn start(quirk: Quirk) -> QuirkyServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let std = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = std.local_addr().expect("addr").port();
        std.set_nonblocking(true).expect("nonblocking");
        let store: Arc<Mutex<Store>> = Arc::default();
        let app = Router::new()
            .route("/fhir", post(transaction))
            .route("/fhir/metadata", routing::get(metadata))
            .with_state((quirk, store.clone()));
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(std).expect("tokio listener");
            axum::serve(l, app).await.expect("serve");
        });
        QuirkyServer { rt, port, store }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }

    pub fn created(&self) -> u32 {
        self.store.lock().expect("store").created
    }

    pub fn with<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store.lock().expect("store"))
    }
}

async fn metadata() -> Response {
    fhir(
        200,
        json!({"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1"})
            .to_string(),
    )
}

fn fhir(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/fhir+json")
        .body(Body::from(body))
        .expect("response")
}

/// Replaces every string equal to a key of `map` (anywhere in `v`) by its value.
fn rewrite(v: &mut Json, map: &BTreeMap<String, String>) {
    match v {
        Json::String(s) => {
            if let Some(to) = map.get(s.as_str()) {
                *s = to.clone();
            }
        }
        Json::Array(a) => a.iter_mut().for_each(|x| rewrite(x, map)),
        Json::Object(o) => o.values_mut().for_each(|x| rewrite(x, map)),
        _ => {}
    }
}

async fn transaction(
    State((quirk, store)): State<(Quirk, Arc<Mutex<Store>>)>,
    body: Bytes,
) -> Response {
    let Ok(mut bundle) = serde_json::from_slice::<Json>(&body) else {
        return fhir(400, json!({"resourceType":"OperationOutcome"}).to_string());
    };
    let mut s = store.lock().expect("store");
    s.transactions += 1;
    let n = bundle["entry"].as_array().map_or(0, Vec::len);
    // New server ids for every entry, as a server assigns them before resolving references.
    let ids: Vec<u32> = (0..n)
        .map(|_| {
            s.next_id += 1;
            s.next_id
        })
        .collect();
    if quirk == Quirk::RewritesFullUrls {
        let map: BTreeMap<String, String> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(&ids)
            .filter_map(|(e, id)| {
                Some((
                    e["fullUrl"].as_str()?.to_string(),
                    format!("Observation/{id}"),
                ))
            })
            .collect();
        rewrite(&mut bundle, &map);
    }
    let mut statuses = Vec::new();
    for e in bundle["entry"].as_array().cloned().unwrap_or_default() {
        let ident = &e["resource"]["identifier"][0];
        let key = format!(
            "{}|{}",
            ident["system"].as_str().unwrap_or(""),
            ident["value"].as_str().unwrap_or("")
        );
        // ifNoneExist: `identifier=<system>|<value>`.
        let condition = e["request"]["ifNoneExist"]
            .as_str()
            .and_then(|c| c.strip_prefix("identifier="))
            .map(str::to_string);
        let exists = condition
            .as_ref()
            .is_some_and(|c| s.by_identifier.get(c).is_some_and(|n| *n > 0));
        if exists {
            statuses.push(200);
            continue;
        }
        if quirk == Quirk::BatchMixed && !s.refused_once.contains(&key) {
            s.alternate += 1;
            if s.alternate % 2 == 0 {
                s.refused_once.insert(key.clone());
                s.refused_entries += 1;
                statuses.push(503);
                continue;
            }
        }
        *s.by_identifier.entry(key).or_insert(0) += 1;
        s.created += 1;
        statuses.push(201);
    }
    match quirk {
        Quirk::EmptyBody => {
            let status = if statuses.contains(&201) { 201 } else { 200 };
            fhir(status, String::new())
        }
        Quirk::RewritesFullUrls | Quirk::BatchMixed => {
            let kind = if quirk == Quirk::BatchMixed {
                "batch-response"
            } else {
                "transaction-response"
            };
            let entries: Vec<Json> = statuses
                .iter()
                .map(|st| {
                    let text = match st {
                        201 => "201 Created",
                        200 => "200 OK",
                        _ => "503 Service Unavailable",
                    };
                    json!({"response": {"status": text}})
                })
                .collect();
            fhir(
                200,
                json!({"resourceType":"Bundle","type":kind,"entry":entries}).to_string(),
            )
        }
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what()` after `within`.
#[track_caller]
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "not within {within:?}: {}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}
