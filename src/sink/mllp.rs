//! The HL7 v2 sink over MLLP (`[[sink]] type = "hl7-mllp"`; messages and ACK handling are
//! described in `docs/hl7.md`).
//!
//! Receives one reading at a time from the delivery loop ([`Sink::max_batch`] = 1); emits it as
//! an MLLP-framed ORU^R01 ([`super::hl7::oru_r01`]) on one TCP (or TLS) connection and waits for
//! the receiver's ACK, so order is preserved. The ACK decides the outcome ([`classify_ack`]):
//! - `AA` / `CA` → `Delivered`;
//! - `AE` / `CE` → `Rejected` (dead-letter, never resent unchanged);
//! - `AR` / `CR` → `Retry`, until the `max_ar_retries`-th AR for the same reading, which is
//!   `Rejected("gave up after N AR: …")` (the delivery loop treats a batch of one `Retry` as
//!   "receiver down" and would never dead-letter it, so the cap lives here);
//! - the reason of an outcome names only the ACK code, the ERR-3 code (HL7 table 0357) with
//!   the table's description and the ERR-4 severity ([`ack_reason`]); the receiver's free text
//!   (MSA-3, ERR-2, ERR-8), which may quote patient data, is never kept or logged;
//! - an ACK whose MSA-2 is not the sent MSH-10 is not an ACK: it is ignored (WARN) and the
//!   wait goes on;
//! - no ACK within `ack_timeout`, a connection refused, reset or closed before the ACK, or a
//!   reply larger than [`MAX_REPLY_BYTES`] → `Retry`: the connection is closed, and the next
//!   attempt (after the delivery loop's backoff) reconnects and resends the **same bytes** with
//!   the same MSH-10 — the receiver de-duplicates on it.
//!
//! The encoder is pure (MSH-7 comes from the reading), so a resend after a restart is also
//! byte-identical.
//!
//! # Order across an outage
//! While the receiver is down the delivery loop backs off and moves each failed reading behind
//! the others, so when the receiver returns the queue may offer a later reading first. The
//! sink keeps every reading that got `Retry` (framed, by id; at most [`MAX_BACKLOG`]) and,
//! before sending a reading, first sends the kept readings with a smaller id (ids are UUIDv7,
//! ordered by capture). Their outcomes are remembered and reported when the queue offers them
//! (an accepted one is then not sent again). The receiver thus sees capture order. This memory
//! is lost on restart (then order after an outage is the queue's) and AR counts start over:
//! a reading may get up to `max_ar_retries` more ARs before it is dead-lettered.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsConnector;

use super::hl7::{oru_r01, Header};
use super::{DeliverFuture, Outcome, Sink};
use crate::config::MllpSinkConfig;
use crate::net::hl7::Delimiters;
use crate::net::hl7::{error_code_text, mllp_frame, parse_ack, Ack, AckCode, MllpFramer};
use crate::reading::{Reading, ReadingId, SinkId};

/// Most bytes read while waiting for one ACK; a receiver that sends more is dropped.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Readings whose AR count or early outcome is remembered; beyond this the memory starts over
/// (never reached with one message in flight, but bounded whatever the receiver does).
const MAX_TRACKED: usize = 4096;
/// Most readings kept for an in-order resend after an outage.
pub const MAX_BACKLOG: usize = 256;

/// Why an MLLP sink cannot be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum MllpSinkError {
    #[error("address `{0}` is not host:port")]
    BadAddress(String),
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// HL7 v2.6 allows at most [`MAX_NAME_CHARS`] characters (counted escaped) in MSH-3 to
    /// MSH-6; a longer name would make every message fail validation.
    #[error("`{0}` is longer than HL7 allows (at most {MAX_NAME_CHARS} characters, delimiters counting 3)")]
    NameTooLong(&'static str),
}

/// Most characters of a sending or receiving application or facility name, escaped.
pub const MAX_NAME_CHARS: usize = 20;

/// A byte stream to the receiver: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

struct Connection {
    io: Box<dyn Io>,
    framer: MllpFramer,
}

/// The MLLP client sink. See the module doc.
pub struct MllpSink {
    id: SinkId,
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    header: Header,
    ack_timeout: Duration,
    max_ar_retries: u32,
    conn: Option<Connection>,
    ar_counts: HashMap<ReadingId, u32>,
    /// Readings that got `Retry`, framed, resent as is and before any later reading.
    backlog: BTreeMap<ReadingId, Arc<[u8]>>,
    /// Outcomes of backlog readings sent before the queue offered them again.
    ahead: HashMap<ReadingId, Outcome>,
}

impl MllpSink {
    /// A sink for `cfg`; connects lazily on the first delivery.
    pub fn new(cfg: &MllpSinkConfig) -> Result<Self, MllpSinkError> {
        let names = [
            ("sending_application", &cfg.sending_application),
            ("sending_facility", &cfg.sending_facility),
            ("receiving_application", &cfg.receiving_application),
            ("receiving_facility", &cfg.receiving_facility),
        ];
        for (key, name) in names {
            if Delimiters::STANDARD.escape(name).chars().count() > MAX_NAME_CHARS {
                return Err(MllpSinkError::NameTooLong(key));
            }
        }
        let host = match cfg.address.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                h.trim_start_matches('[').trim_end_matches(']')
            }
            _ => return Err(MllpSinkError::BadAddress(cfg.address.clone())),
        };
        let tls = if cfg.tls {
            let config = crate::tls::client_config(cfg.ca_file.as_deref(), None)?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| MllpSinkError::ServerName(host.to_string()))?;
            Some((TlsConnector::from(config), name))
        } else {
            None
        };
        Ok(Self {
            id: cfg.id.clone(),
            address: cfg.address.clone(),
            tls,
            header: Header::from_config(cfg),
            ack_timeout: cfg.ack_timeout,
            max_ar_retries: cfg.max_ar_retries,
            conn: None,
            ar_counts: HashMap::new(),
            backlog: BTreeMap::new(),
            ahead: HashMap::new(),
        })
    }

    /// True while a connection to the receiver is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// How many readings are kept for an in-order resend.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    async fn send_one(&mut self, r: &Reading) -> Outcome {
        let Some(rid) = r.id else {
            return Outcome::Rejected("reading has no id (MSH-10)".into());
        };
        if let Some(o) = self.ahead.remove(&rid) {
            return o;
        }
        let frame = match self.backlog.get(&rid) {
            Some(f) => f.clone(),
            None => mllp_frame(&oru_r01(r, &self.header)).into(),
        };
        // Earlier readings still owed keep their place: send them first.
        let earlier: Vec<(ReadingId, Arc<[u8]>)> = self
            .backlog
            .range(..rid)
            .map(|(id, f)| (*id, f.clone()))
            .collect();
        for (bid, bytes) in earlier {
            match self.attempt(bid, &bytes).await {
                Outcome::Retry(why) => {
                    self.hold(rid, frame);
                    return Outcome::Retry(format!(
                        "earlier reading {bid} not accepted yet: {why}"
                    ));
                }
                o => {
                    if self.ahead.len() >= MAX_TRACKED {
                        self.ahead.clear();
                    }
                    self.ahead.insert(bid, o);
                }
            }
        }
        let outcome = self.attempt(rid, &frame).await;
        if outcome.is_retry() {
            self.hold(rid, frame);
        }
        outcome
    }

    /// Keeps a reading that got `Retry` for an in-order resend (when there is room).
    fn hold(&mut self, rid: ReadingId, frame: Arc<[u8]>) {
        if self.backlog.len() < MAX_BACKLOG || self.backlog.contains_key(&rid) {
            self.backlog.insert(rid, frame);
        }
    }

    /// One send and its ACK. A final outcome forgets the reading's AR count and backlog entry.
    async fn attempt(&mut self, rid: ReadingId, frame: &[u8]) -> Outcome {
        match self.exchange(frame, &rid.to_string()).await {
            Ok(ack) => {
                let seen = if matches!(ack.code, AckCode::AR | AckCode::CR) {
                    if self.ar_counts.len() >= MAX_TRACKED {
                        self.ar_counts.clear();
                    }
                    let n = self.ar_counts.entry(rid).or_insert(0);
                    *n = n.saturating_add(1);
                    *n
                } else {
                    0
                };
                let outcome = classify_ack(&ack, seen, self.max_ar_retries);
                if !outcome.is_retry() {
                    self.ar_counts.remove(&rid);
                    self.backlog.remove(&rid);
                }
                tracing::debug!(sink = %self.id, reading = %rid, ack = ack.code.as_str(), "ACK received");
                outcome
            }
            Err(why) => {
                self.conn = None;
                tracing::debug!(sink = %self.id, reading = %rid, reason = %why, "no ACK; connection closed");
                Outcome::Retry(why)
            }
        }
    }

    async fn connect(&self) -> Result<Connection, String> {
        let addr = &self.address;
        let tcp = timeout(self.ack_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr}: timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        // Small messages and ACKs: do not let Nagle hold them back.
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                timeout(self.ack_timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| format!("TLS handshake with {addr}: timed out"))?
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?,
            ),
        };
        tracing::info!(sink = %self.id, address = %addr, tls = self.tls.is_some(), "connected to the HL7 receiver");
        Ok(Connection {
            io,
            framer: MllpFramer::new(),
        })
    }

    /// Engines close idle connections: look (without waiting) whether the receiver hung up, so
    /// that the next message goes on a fresh connection instead of failing and backing off.
    /// Unsolicited bytes are discarded.
    async fn drop_if_closed(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let mut probe = [0u8; 1024];
        let mut buf = ReadBuf::new(&mut probe);
        // One poll without waiting (a timer, even of zero, would cost a timer tick).
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut conn.io).poll_read(&mut cx, &mut buf) {
            Poll::Pending => {}
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                let n = buf.filled().len();
                tracing::warn!(sink = %self.id, bytes = n, "discarding bytes the receiver sent unasked");
                conn.framer = MllpFramer::new();
            }
            Poll::Ready(_) => {
                tracing::debug!(sink = %self.id, "the receiver closed the idle connection");
                self.conn = None;
            }
        }
    }

    /// Sends `frame` and waits for the ACK whose MSA-2 is `control`. Any `Err` means the
    /// connection is no longer usable.
    async fn exchange(&mut self, frame: &[u8], control: &str) -> Result<Ack, String> {
        self.drop_if_closed().await;
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let (id, wait) = (self.id.clone(), self.ack_timeout);
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        let deadline = Instant::now() + wait;
        let sent = async {
            conn.io.write_all(frame).await?;
            conn.io.flush().await
        };
        match timeout_at(deadline, sent).await {
            Err(_) => return Err(format!("sending timed out after {wait:?}")),
            Ok(Err(e)) => return Err(format!("sending failed: {e}")),
            Ok(Ok(())) => {}
        }
        let mut buf = vec![0u8; 8192];
        let mut received = 0usize;
        loop {
            let n = match timeout_at(deadline, conn.io.read(&mut buf)).await {
                Err(_) => return Err(format!("no ACK within {wait:?}")),
                Ok(Err(e)) => return Err(format!("connection failed before the ACK: {e}")),
                Ok(Ok(0)) => return Err("connection closed by the receiver before the ACK".into()),
                Ok(Ok(n)) => n,
            };
            received += n;
            if received > MAX_REPLY_BYTES {
                return Err(format!(
                    "receiver sent more than {MAX_REPLY_BYTES} bytes without the ACK"
                ));
            }
            let mut frames = Vec::new();
            conn.framer.feed(&buf[..n], &mut frames);
            for f in frames {
                match f.map_err(|e| e.to_string()).and_then(|m| {
                    if matches!(m.as_slice(), [0x06] | [0x15]) {
                        Err(format!("MLLP commit block 0x{:02X}", m[0]))
                    } else {
                        parse_ack(&m).map_err(|e| e.to_string())
                    }
                }) {
                    Ok(ack) if ack.acked_control_id == control => return Ok(ack),
                    Ok(ack) => {
                        // MSA-2 is the receiver's text: kept out of the ordinary log.
                        tracing::warn!(sink = %id, expected = control,
                            "ignoring an ACK for another message; still waiting");
                        let got: String = ack.acked_control_id.chars().take(40).collect();
                        tracing::debug!(sink = %id, acked = %got, "the ACK for another message");
                    }
                    Err(why) => {
                        // The reason may quote the reply: kept out of the ordinary log.
                        tracing::warn!(sink = %id, "ignoring a reply that is not an HL7 ACK");
                        tracing::debug!(sink = %id, reason = %why, "the reply that is not an ACK");
                    }
                }
            }
        }
    }
}

impl Sink for MllpSink {
    fn id(&self) -> &SinkId {
        &self.id
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Reading]) -> DeliverFuture<'a> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(batch.len());
            for r in batch {
                out.push(self.send_one(r).await);
            }
            out
        })
    }
}

/// ACK → outcome (`docs/hl7.md`). `ar_seen` counts the ARs (or CRs) this reading has
/// received, this one included; at `max_ar_retries` it is rejected.
///
/// The reason is built only from coded parts of the ACK ([`ack_reason`]): an engine may quote
/// patient data in MSA-3 or ERR-8, and the reason reaches the log, the sink's `last_error` on
/// the status page and the dead-letter entry.
pub fn classify_ack(ack: &Ack, ar_seen: u32, max_ar_retries: u32) -> Outcome {
    let reason = ack_reason(ack);
    match ack.code {
        AckCode::AA | AckCode::CA => Outcome::Delivered,
        AckCode::AE | AckCode::CE => Outcome::Rejected(reason),
        AckCode::AR | AckCode::CR if ar_seen >= max_ar_retries => Outcome::Rejected(format!(
            "gave up after {ar_seen} {}: {reason}",
            ack.code.as_str()
        )),
        AckCode::AR | AckCode::CR => Outcome::Retry(reason),
    }
}

/// The ACK code with its fixed meaning, then the ERR segment's table 0357 code with the
/// table's description and the ERR-4 severity, e.g. `AE (application error): ERR 101 Required
/// field missing, severity E`. Never MSA-3, ERR-2 or ERR-8: those are the receiver's free text.
pub fn ack_reason(ack: &Ack) -> String {
    let meaning = match ack.code {
        AckCode::AA => "application accept",
        AckCode::AE => "application error",
        AckCode::AR => "application reject",
        AckCode::CA => "commit accept",
        AckCode::CE => "commit error",
        AckCode::CR => "commit reject",
    };
    let mut out = format!("{} ({meaning})", ack.code.as_str());
    match &ack.error {
        Some(e) => {
            let _ = write!(out, ": ERR {} {}", e.code, error_description(e.code));
            if let Some(sev) = ack.severity {
                let _ = write!(out, ", severity {}", sev.as_str());
            }
        }
        None => out.push_str(": no error code given"),
    }
    out
}

/// The description of an ERR-3 code: HL7 table 0357's, or a fixed text for other codes.
fn error_description(code: u16) -> &'static str {
    match code {
        0 | 100..=104 | 200..=207 => error_code_text(code),
        _ => "(not an HL7 table 0357 code)",
    }
}

#[cfg(test)]
#[path = "mllp_tests.rs"]
mod tests;
