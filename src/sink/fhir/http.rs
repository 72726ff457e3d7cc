//! The FHIR R4 sink (`[[sink]] type = "fhir"`): posts readings as transaction Bundles to the
//! server's base URL and reports one outcome per reading (docs/fhir.md).
//!
//! Receives batches of up to `batch_size` readings from the delivery loop; emits
//! `POST {base_url}` with a [`super::transaction_bundle`] (`Content-Type: application/fhir+json`,
//! `Prefer: return=minimal`). Every entry is a conditional create on the reading's identifier,
//! so resending is always safe: the server answers `201` (created) or `200` (already there),
//! both `Delivered`. Any 2xx to the transaction means every entry committed (a transaction is
//! atomic), even with an empty or unreadable body; only a `batch-response` is read entry by
//! entry (docs/fhir.md has the whole table).
//!
//! Promises:
//! - **One bad reading never blocks the rest.** A whole-transaction 4xx for several readings
//!   is split: the batch is bisected and resent until the failing reading stands alone; it
//!   alone is `Rejected` with the server's OperationOutcome diagnostics (patient identifiers of
//!   the batch removed, bounded). A 412 means duplicates exist on the server (docs/fhir.md#identifier-ifnoneexist-and-fullurl-why-a-resend-never-duplicates).
//! - **A down server only grows the queue.** 408/429/5xx, 401/403 (credentials), timeouts,
//!   connection errors, a success body that is too big (over [`MAX_RESPONSE_BYTES`]) and a
//!   `batch-response` that does not match the sent entries are `Retry`. A `Retry-After` (seconds or HTTP-date) is
//!   exposed through [`Sink::retry_after`] so the loop waits at least that long.
//! - **Nothing is sent where the config does not say.** Redirects are never followed (for the
//!   Bundle and for the OAuth token request): a 3xx is `Retry` with a reason naming where it
//!   pointed ("set base_url to the final address"), so readings wait, with the loop's backoff,
//!   until the address is fixed (docs/network-security.md).
//! - **Credentials rotate.** A 401 re-reads the token file or drops the cached OAuth token and
//!   retries once at once.
//! - **Several Bundles in flight.** [`Sink::pipeline`] hands the delivery loop up to
//!   `concurrency` handles sharing one connection pool and one credential state; each posts its
//!   own Bundle on its own connection (docs/throughput.md).
//! - Logs carry reading ids and statuses, never patient identifiers or values.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::response::{self, bounded, redact, TransactionAnswer, MAX_DIAGNOSTICS_CHARS};
use super::write_transaction_bundle;
use crate::config::FhirSinkConfig;
use crate::net::http::{client, read_bounded, redirect_reason, transport_reason};
use crate::net::oauth::{Credentials, TokenSource};
use crate::reading::{Reading, SinkId};
use crate::sink::outcome::classify_fhir;
use crate::sink::{DeliverFuture, Outcome, Sink};

/// The most bytes of any FHIR response that are read.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

const FHIR_JSON: &str = "application/fhir+json";

/// Why the sink cannot be built: its HTTP client could not be (TLS trust, client settings).
pub use crate::net::http::ClientError as FhirSinkError;

/// The FHIR R4 HTTP sink.
pub struct FhirSink {
    id: SinkId,
    base_url: String,
    batch_size: usize,
    /// Batches in flight at once (`concurrency`), each on a [`Sink::pipeline`] handle.
    concurrency: usize,
    http: reqwest::Client,
    /// Shared by every handle of the sink, and by every other client with the same
    /// credentials that the app hands it to: one cached token, one renewal after a 401.
    auth: Arc<TokenSource>,
    /// The longest `Retry-After` seen since the delivery loop last asked.
    retry_after: Option<Duration>,
}

impl std::fmt::Debug for FhirSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirSink")
            .field("id", &self.id)
            .field("base_url", &self.base_url)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// What one POST achieved for its sub-batch.
enum Posted {
    /// The server answered each entry.
    Entries(Vec<Outcome>),
    /// The whole transaction failed with a status that may be one entry's fault.
    Failed { status: u16, outcome: Outcome },
    /// Nothing was judged: retry the whole sub-batch (and stop splitting).
    Retry(String),
}

impl FhirSink {
    /// Builds the client: TLS (ring) trusting `ca_file` or the system store when a URL is
    /// https, the request timeout from `timeout`; the credentials are this sink's own.
    pub fn new(cfg: &FhirSinkConfig) -> Result<Self, FhirSinkError> {
        Self::with_tokens(cfg, Arc::new(TokenSource::new(&cfg.auth)))
    }

    /// [`FhirSink::new`] with a token source shared with other clients of the same
    /// credentials (the app hands the same one to the patient lookup); it must hold `cfg.auth`.
    pub fn with_tokens(
        cfg: &FhirSinkConfig,
        tokens: Arc<TokenSource>,
    ) -> Result<Self, FhirSinkError> {
        debug_assert_eq!(tokens.credentials(), &cfg.auth);
        Ok(Self {
            id: cfg.id.clone(),
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            batch_size: cfg.batch_size.max(1),
            concurrency: cfg.concurrency.max(1),
            http: client(&cfg.client_settings())?,
            auth: tokens,
            retry_after: None,
        })
    }

    /// `GET {base_url}/metadata`: the server's `fhirVersion`. A start-up health check.
    pub async fn metadata(&self) -> Result<String, String> {
        let resp = self
            .http
            .get(format!("{}/metadata", self.base_url))
            .header(ACCEPT, FHIR_JSON)
            .send()
            .await
            .map_err(|e| transport_reason(&e))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(redirect_reason(status.as_u16(), resp.headers()));
        }
        let body = read_bounded(resp, MAX_RESPONSE_BYTES).await?;
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        response::fhir_version(&body).ok_or_else(|| "not a CapabilityStatement".to_string())
    }

    /// Runs [`FhirSink::metadata`] in the background and logs the result: INFO with the
    /// server's FHIR version, or a WARN (not fatal: readings wait in the queue).
    pub fn spawn_health_check(&self) {
        let probe = Self {
            id: self.id.clone(),
            base_url: self.base_url.clone(),
            batch_size: self.batch_size,
            concurrency: 1,
            http: self.http.clone(),
            auth: Arc::new(TokenSource::new(&Credentials::None)),
            retry_after: None,
        };
        tokio::spawn(async move {
            match probe.metadata().await {
                Ok(v) => {
                    tracing::info!(sink = %probe.id, fhir_version = %v, "FHIR server reachable")
                }
                Err(reason) => tracing::warn!(sink = %probe.id, %reason,
                    "FHIR server metadata check failed; readings stay queued until it answers"),
            }
        });
    }

    /// Sends `batch`, splitting a failed transaction until each failure stands alone.
    async fn send_all(&mut self, batch: &[Reading]) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut todo = vec![(0, batch.len())];
        while let Some((lo, hi)) = todo.pop() {
            match self.post(&batch[lo..hi]).await {
                Posted::Entries(outcomes) => {
                    for (slot, o) in out[lo..hi].iter_mut().zip(outcomes) {
                        *slot = Some(o);
                    }
                }
                Posted::Failed { status, .. } if hi - lo > 1 => {
                    let mid = lo + (hi - lo) / 2;
                    tracing::debug!(sink = %self.id, status, readings = hi - lo,
                        "transaction failed; splitting it to find the failing reading");
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                }
                Posted::Failed { outcome, .. } => out[lo] = Some(outcome),
                Posted::Retry(reason) => {
                    // The server is not judging anything now: the rest waits too.
                    for slot in out[lo..hi].iter_mut() {
                        *slot = Some(Outcome::Retry(reason.clone()));
                    }
                    for (a, b) in todo.drain(..) {
                        for slot in out[a..b].iter_mut() {
                            *slot = Some(Outcome::Retry(reason.clone()));
                        }
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry("not sent".into())))
            .collect()
    }

    /// One POST of a transaction (plus one immediate retry after a 401).
    async fn post(&mut self, batch: &[Reading]) -> Posted {
        // Written straight into the body; a second POST (after a 401) writes it again rather
        // than every POST copying it.
        let began = std::time::Instant::now();
        let mut body = Some(bundle_body(batch));
        let built = began.elapsed();
        let mut reauthed = false;
        loop {
            let token = match self.auth.bearer(&self.http).await {
                Ok(t) => t,
                Err(e) => return Posted::Retry(format!("auth: {e}")),
            };
            let mut req = self
                .http
                .post(&self.base_url)
                .header(CONTENT_TYPE, FHIR_JSON)
                .header(ACCEPT, FHIR_JSON)
                .header("Prefer", "return=minimal")
                .body(body.take().unwrap_or_else(|| bundle_body(batch)));
            if let Some(t) = &token {
                req = req.header(AUTHORIZATION, format!("Bearer {}", t.expose()));
            }
            let posted = std::time::Instant::now();
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return Posted::Retry(transport_reason(&e)),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && !reauthed
                && self.auth.rejected(token.as_ref()).await
            {
                tracing::info!(sink = %self.id, "server answered 401; renewing credentials once");
                reauthed = true;
                continue;
            }
            if status.is_redirection() {
                let reason = redirect_reason(status.as_u16(), resp.headers());
                tracing::warn!(sink = %self.id, %reason, "FHIR server redirected; not followed");
                return Posted::Retry(reason);
            }
            self.note_retry_after(status, resp.headers());
            let body = match read_bounded(resp, MAX_RESPONSE_BYTES).await {
                Ok(b) => b,
                Err(reason) => return Posted::Retry(reason),
            };
            let answered = std::time::Instant::now();
            let judged = self.judge(status.as_u16(), &body, batch);
            // Where a drain's time goes (docs/throughput.md): durations only.
            let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            tracing::debug!(
                sink = %self.id,
                readings = batch.len(),
                build_us = us(built),
                round_trip_us = us(answered - posted),
                answer_us = us(answered.elapsed()),
                "bundle timings"
            );
            return judged;
        }
    }

    /// Turns one response into outcomes for its sub-batch (the table in docs/fhir.md).
    fn judge(&self, status: u16, body: &[u8], batch: &[Reading]) -> Posted {
        match response::answer(status, body, batch.len()) {
            TransactionAnswer::Committed { warnings } => {
                if warnings > 0 {
                    tracing::info!(sink = %self.id, status, warnings, readings = batch.len(),
                        "transaction committed with warnings from the server");
                }
                Posted::Entries(vec![Outcome::Delivered; batch.len()])
            }
            TransactionAnswer::PerEntry(entries) => {
                // The batch's patient ids at most once per answer, and only when an entry has
                // diagnostics: an entry without (every one of a committed Bundle) has nothing
                // to clean.
                let mut ids: Option<Vec<&str>> = None;
                Posted::Entries(
                    entries
                        .iter()
                        .zip(batch)
                        .map(|(e, r)| {
                            let diag = match e.diagnostics.as_deref() {
                                Some(d) if !d.is_empty() => {
                                    clean_with(d, ids.get_or_insert_with(|| patient_ids(batch)))
                                }
                                _ => String::new(),
                            };
                            let o = classify_fhir(e.status, &diag);
                            log_rejection(&self.id, r, &o);
                            o
                        })
                        .collect(),
                )
            }
            TransactionAnswer::Unknown(e) => Posted::Retry(format!("HTTP {status} but {e}")),
            TransactionAnswer::Failed {
                status,
                diagnostics,
            } => {
                let diag = diagnostics.map(|d| clean(&d, batch)).unwrap_or_default();
                match classify_fhir(status, &diag) {
                    Outcome::Retry(r) => Posted::Retry(r),
                    outcome => {
                        if let [r] = batch {
                            log_rejection(&self.id, r, &outcome);
                        }
                        Posted::Failed { status, outcome }
                    }
                }
            }
        }
    }

    fn note_retry_after(&mut self, status: StatusCode, headers: &HeaderMap) {
        let retryable = matches!(status.as_u16(), 408 | 429 | 500..=599);
        let wait = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| response::retry_after(v, SystemTime::now()));
        if let (true, Some(w)) = (retryable, wait) {
            tracing::debug!(sink = %self.id, status = status.as_u16(), retry_after = ?w, "server asked to wait");
            self.retry_after = Some(self.retry_after.map_or(w, |old| old.max(w)));
        }
    }
}

impl Sink for FhirSink {
    fn id(&self) -> &SinkId {
        &self.id
    }

    fn max_batch(&self) -> usize {
        self.batch_size
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Reading]) -> DeliverFuture<'a> {
        Box::pin(async move {
            if batch.is_empty() {
                return Vec::new();
            }
            self.send_all(batch).await
        })
    }

    fn retry_after(&mut self) -> Option<Duration> {
        self.retry_after.take()
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn pipeline(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(Self {
            id: self.id.clone(),
            base_url: self.base_url.clone(),
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            http: self.http.clone(),
            auth: Arc::clone(&self.auth),
            retry_after: None,
        }))
    }
}

/// The JSON of the transaction Bundle for `batch` (docs/fhir.md), in a buffer sized for it.
fn bundle_body(batch: &[Reading]) -> Vec<u8> {
    // A vital-sign entry is 1.2-2.5 KB; an ECG strip grows the buffer as it needs.
    let mut body = Vec::with_capacity(64 + batch.len() * 2560);
    write_transaction_bundle(batch, &mut body);
    body
}

/// Server text made safe for a dead-letter reason: the batch's patient identifiers removed,
/// bounded.
fn clean(text: &str, batch: &[Reading]) -> String {
    clean_with(text, &patient_ids(batch))
}

/// The patient ids of `batch`, each once (what [`clean_with`] redacts).
fn patient_ids(batch: &[Reading]) -> Vec<&str> {
    let mut ids: Vec<&str> = batch
        .iter()
        .filter_map(|r| r.patient.as_ref())
        .map(|p| p.id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// [`clean`] with the batch's patient ids already collected.
fn clean_with(text: &str, ids: &[&str]) -> String {
    bounded(&redact(text, ids), MAX_DIAGNOSTICS_CHARS)
}

fn log_rejection(sink: &SinkId, r: &Reading, o: &Outcome) {
    if let Outcome::Rejected(reason) = o {
        if reason.starts_with("HTTP 412") {
            tracing::error!(sink = %sink, reading = ?r.id.map(|i| i.uuid()),
                "duplicates of this reading exist on the FHIR server; not retried (operator: merge them)");
        }
    }
}
