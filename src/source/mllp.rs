//! MLLP listener source: monitors push HL7 v2 ORU^R01 messages to vitalsd over TCP
//! (`[[device]] driver = "hl7v2"`, `mllp = { listen = "0.0.0.0:2575" }`; docs/hl7-inbound.md#mllp-framing).
//!
//! Receives TCP connections on the configured address (port 0 picks a free port; the bound
//! address is logged as `listen=` in the "MLLP listener ready" line). Each connection is
//! deframed by [`MllpFramer`] and handled one message at a time, in order:
//!
//! - [`parse_oru`] fails → the message is answered `AE` or `AR` per [`Hl7Error::ack_code`],
//!   with the ERR segment of [`Hl7Error::ack_error`]; nothing is stored. MSA-2 is the MSH-10
//!   read best-effort from the raw text ([`control_id_hint`]).
//! - otherwise the parsed message's device messages go to the device's [`DeviceIngest`] with
//!   PID-3 as the patient (parsed once: as [`parse_oru`] gives them; the ingest attaches the
//!   device's `patient_system` option when PID-3 names no system, see
//!   [`crate::decode::hl7v2::with_patient_system`]). The answer comes from [`answer`]: `AA`
//!   only after [`DeviceIngest::commit`] returned, i.e. after the durable flush (duplicates
//!   were stored before, a message without numeric readings stores nothing: both `AA`); a full
//!   queue or a store failure → `AR` (the sender resends later); readings lost in
//!   normalisation → `AE`. Never `AA` for something not stored.
//!
//! Promises (docs/network-security.md):
//! - **Only allowed peers are served.** A connection from an address outside
//!   [`MllpSource::allow`] (IPv4-mapped IPv6 peers compare as IPv4) is closed at once, without
//!   a byte of answer; so is one over [`MllpLimits::max_connections_per_peer`] from one address
//!   or over [`MllpLimits::max_connections`] in all. Each refusal counts in the device's
//!   `connections_refused`; the WARN naming the peer's address (not patient data) comes at most
//!   once per peer per minute.
//! - **No sender holds a slot for ever.** A connection without a complete message for
//!   [`MllpLimits::idle_timeout`] is closed; a message not complete
//!   [`MllpLimits::message_timeout`] after its first byte is dropped (WARN, no content, counted
//!   `frame_bad`) and its connection closed, however slowly the bytes trickle in.
//! - Frames over [`crate::net::hl7::MAX_MESSAGE`] bytes are skipped by the framer and get
//!   no answer (the sender's ACK timeout fires), as do frames cut short by a new start block.
//!   Framing errors and refused messages count as `frame_bad`, MLLP commit blocks
//!   (`0x06`/`0x15`) as `frame_ok` without an answer; a parsed message counts one `frame_ok`
//!   per reading message it carries (one when it carries none). The device is `connected` while at least one connection is open. On shutdown
//!   the listener stops accepting, every connection answers the message in flight and closes,
//!   and [`MllpSource::run`] returns when all have.
//!
//! With `tls = { cert_file, key_file, client_ca_file? }` every connection starts with a TLS
//! handshake (rustls), which must finish within [`MllpLimits::message_timeout`]; with
//! `client_ca_file` the sender must present a certificate issued by that CA.
//!
//! Each connection answers its messages one after another; messages of several connections
//! are stored concurrently and share the queue's group commits. Patient identifiers and
//! message text never reach the log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::now_utc_ms;
mod answer;
mod limits;

pub use answer::{answer, control_id_hint};
use answer::{new_ack_id, refusal};
pub use limits::MllpLimits;

use crate::decode::hl7v2::parse_oru;
use crate::ingest::DeviceIngest;
use crate::net::hl7::{ack_message, AckCode, AckHeader, MllpFramer, CR, EB};
use crate::net::{unmap, Cidr};
use crate::reading::DeviceId;
use crate::status::DeviceStatus;

/// One `mllp` device: its listener's connections feed its pipeline.
pub struct MllpSource {
    pub device: DeviceId,
    pub limits: MllpLimits,
    /// Networks whose peers are served; everyone else is refused.
    pub allow: Vec<Cidr>,
    /// TLS on every connection (`mllp.tls`); `None`: plain TCP.
    pub tls: Option<TlsAcceptor>,
    pub status: Arc<DeviceStatus>,
    /// Where the device's readings are stored.
    pub ingest: DeviceIngest,
}

/// The acceptor for a listener's `tls` table.
pub fn acceptor(tls: &crate::config::ListenTls) -> Result<TlsAcceptor, crate::tls::TlsError> {
    let config =
        crate::tls::server_config(&tls.cert_file, &tls.key_file, tls.client_ca_file.as_deref())?;
    Ok(TlsAcceptor::from(config))
}

/// Binds `addr` (call inside the runtime). Port 0 picks a free port: read it with
/// `local_addr()`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

/// What every connection of one device shares.
struct Shared {
    device: DeviceId,
    limits: MllpLimits,
    status: Arc<DeviceStatus>,
    ingest: DeviceIngest,
    open: AtomicUsize,
    /// Open connections per peer address.
    peers: std::sync::Mutex<HashMap<IpAddr, usize>>,
    /// When each refused peer was last logged.
    warned: std::sync::Mutex<HashMap<IpAddr, Instant>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotAllowed,
    PeerLimit,
    Full,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "address not in the device's mllp.allow list",
            Refusal::PeerLimit => {
                "too many connections from this address (max_connections_per_peer)"
            }
            Refusal::Full => "too many open connections (max_connections)",
        }
    }
}

/// How often a refused peer is logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

impl MllpSource {
    /// Accepts connections until `cancel` fires, then waits for every connection to answer
    /// its message in flight and close.
    pub async fn run(self, listener: TcpListener, cancel: CancellationToken) {
        if let Ok(addr) = listener.local_addr() {
            let allow: Vec<String> = self.allow.iter().map(ToString::to_string).collect();
            tracing::info!(device = %self.device, listen = %addr, allow = %allow.join(","), "MLLP listener ready");
        }
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let allow = self.allow;
        let tls = self.tls;
        let shared = Arc::new(Shared {
            device: self.device,
            limits: self.limits,
            status: self.status,
            ingest: self.ingest,
            open: AtomicUsize::new(0),
            peers: std::sync::Mutex::new(HashMap::new()),
            warned: std::sync::Mutex::new(HashMap::new()),
        });
        let conns = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: never a hot loop.
                    tracing::warn!(device = %shared.device, error = %e, "MLLP accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let ip = unmap(peer.ip());
            if !allow.iter().any(|c| c.contains(ip)) {
                shared.refuse(stream, ip, Refusal::NotAllowed);
                continue;
            }
            let Some(peer_slot) = PeerSlot::take(&shared, ip) else {
                shared.refuse(stream, ip, Refusal::PeerLimit);
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                drop(peer_slot);
                shared.refuse(stream, ip, Refusal::Full);
                continue;
            };
            let (shared, cancel, tls) = (shared.clone(), cancel.clone(), tls.clone());
            conns.spawn(async move {
                let _permit = permit;
                let _peer = peer_slot;
                let _ = stream.set_nodelay(true);
                let end = match tls {
                    None => {
                        let _open = Open::new(&shared);
                        tracing::debug!(device = %shared.device, %peer, "MLLP sender connected");
                        shared.serve(stream, &cancel).await
                    }
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            shared.limits.message_timeout,
                            acceptor.accept(stream),
                        );
                        let accepted = tokio::select! {
                            () = cancel.cancelled() => return,
                            a = handshake => a,
                        };
                        match accepted {
                            Ok(Ok(stream)) => {
                                let _open = Open::new(&shared);
                                tracing::debug!(device = %shared.device, %peer, "MLLP sender connected over TLS");
                                shared.serve(stream, &cancel).await
                            }
                            _ => End::TlsFailed,
                        }
                    }
                };
                if end.lost() {
                    tracing::warn!(device = %shared.device, %peer, reason = end.reason(), "MLLP connection lost");
                } else {
                    tracing::debug!(device = %shared.device, %peer, reason = end.reason(), "MLLP sender disconnected");
                }
            });
        }
        drop(listener);
        conns.close();
        conns.wait().await;
        tracing::info!(device = %shared.device, "MLLP listener stopped");
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Shutdown,
    Idle,
    MessageTimeout,
    Closed,
    ReadFailed,
    AckNotSent,
    TlsFailed,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::Shutdown => "shutdown",
            End::Idle => "idle timeout",
            End::MessageTimeout => "message timeout",
            End::Closed => "closed by sender",
            End::ReadFailed => "read failed",
            End::AckNotSent => "ACK could not be sent",
            End::TlsFailed => "TLS handshake failed or timed out",
        }
    }

    /// Ended by a fault rather than by the sender, the timeout or shutdown.
    fn lost(self) -> bool {
        matches!(self, End::ReadFailed | End::AckNotSent | End::TlsFailed)
    }
}

/// One connection's place in the per-peer count; given back on drop.
struct PeerSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl PeerSlot {
    /// A place for `ip`, or `None` when it already has `max_connections_per_peer`.
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let mut peers = shared.peers.lock().unwrap_or_else(|p| p.into_inner());
        let n = peers.entry(ip).or_insert(0);
        if *n >= shared.limits.max_connections_per_peer {
            return None;
        }
        *n += 1;
        Some(Self {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self.shared.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = peers.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                peers.remove(&self.ip);
            }
        }
    }
}

/// Counts an open connection for the device's `connected` flag while alive.
struct Open<'a>(&'a Shared);

impl<'a> Open<'a> {
    fn new(s: &'a Shared) -> Self {
        if s.open.fetch_add(1, Ordering::SeqCst) == 0 {
            s.status.set_connected(true);
        }
        Self(s)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.status.set_connected(false);
        }
    }
}

impl Shared {
    /// Closes a refused connection without answering; counts it and logs the peer at most
    /// once per [`REFUSAL_LOG_EVERY`].
    fn refuse(&self, stream: TcpStream, ip: IpAddr, why: Refusal) {
        drop(stream);
        self.status.connection_refused();
        let now = Instant::now();
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.len() > 1024 {
            warned.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
        }
        let due = warned
            .get(&ip)
            .is_none_or(|at| now.duration_since(*at) >= REFUSAL_LOG_EVERY);
        if due {
            warned.insert(ip, now);
            tracing::warn!(device = %self.device, peer = %ip, reason = why.reason(),
                "MLLP connection refused (further refusals of this address are not logged for a minute)");
        }
    }

    /// Serves one connection; returns why it ended.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        cancel: &CancellationToken,
    ) -> End {
        let mut framer = MllpFramer::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut frames = Vec::new();
        // The last complete message (or the connection's start), and the first byte of the
        // message in progress.
        let mut last_message = Instant::now();
        let mut message_start: Option<Instant> = None;
        loop {
            let deadline = match message_start {
                Some(t) => t + self.limits.message_timeout,
                None => last_message + self.limits.idle_timeout,
            };
            let read = tokio::select! {
                biased;
                () = cancel.cancelled() => return End::Shutdown,
                r = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => r,
            };
            let chunk = match read {
                Err(_) if message_start.is_some() => {
                    framer.finish(&mut frames);
                    frames.clear();
                    self.status.frame_bad();
                    tracing::warn!(device = %self.device, limit_s = self.limits.message_timeout.as_secs(), "MLLP message not complete within message_timeout; dropped and the connection closed");
                    return End::MessageTimeout;
                }
                Err(_) => return End::Idle,
                Ok(Ok(0)) => return End::Closed,
                Ok(Err(_)) => return End::ReadFailed,
                Ok(Ok(n)) => &buf[..n],
            };
            let now = Instant::now();
            framer.feed(chunk, &mut frames);
            let completed = frames.iter().any(Result::is_ok);
            if completed {
                last_message = now;
            }
            message_start = if still_partial(chunk, message_start.is_some()) {
                match message_start {
                    Some(t) if !completed && !frames.iter().any(Result::is_err) => Some(t),
                    _ => Some(now),
                }
            } else {
                None
            };
            for frame in frames.drain(..) {
                let message = match frame {
                    Ok(m) => m,
                    Err(e) => {
                        self.status.frame_bad();
                        tracing::warn!(device = %self.device, error = e.label(), "MLLP bytes skipped");
                        tracing::debug!(device = %self.device, detail = %crate::decode::redact::redact_quoted(&e.to_string()), "MLLP bytes skipped");
                        continue;
                    }
                };
                let Some(reply) = self.handle(&message).await else {
                    continue;
                };
                let wrote =
                    tokio::time::timeout(self.limits.write_timeout, stream.write_all(&reply)).await;
                if !matches!(wrote, Ok(Ok(()))) {
                    return End::AckNotSent;
                }
            }
        }
    }

    /// One message → the MLLP-framed ACK to send (none for a commit block).
    async fn handle(&self, message: &[u8]) -> Option<Vec<u8>> {
        let received_at = now_utc_ms();
        if matches!(message, [0x06] | [0x15]) {
            self.status.frame_ok(received_at);
            tracing::debug!(device = %self.device, "MLLP commit block received");
            return None;
        }
        let mut oru = match parse_oru(message) {
            Ok(oru) => oru,
            Err(e) => {
                self.status.frame_bad();
                let err = e.ack_error();
                tracing::warn!(device = %self.device, ack = e.ack_code().as_str(), err = err.code, "HL7 message refused");
                tracing::debug!(device = %self.device, reason = %e, "HL7 message refused");
                return Some(refusal(message, &e, OffsetDateTime::now_utc()));
            }
        };
        for _ in 0..oru.messages.len().max(1) {
            self.status.frame_ok(received_at);
        }
        let result = self
            .ingest
            .ingest(
                std::mem::take(&mut oru.messages),
                received_at,
                oru.patient.clone(),
            )
            .await;
        let (code, err) = answer(&result);
        match &result {
            Ok(r) => {
                tracing::debug!(device = %self.device, ack = code.as_str(), stored = r.stored, held = r.held, duplicates = r.duplicates, skipped_rows = oru.skipped, "HL7 message answered");
            }
            Err(e) => {
                tracing::error!(device = %self.device, error = %e, "HL7 message not stored; answered AR so the sender resends");
            }
        }
        if code == AckCode::AE {
            tracing::warn!(device = %self.device, "HL7 message partly unusable; answered AE");
        }
        let header = AckHeader::reply_to(&oru, &new_ack_id(), OffsetDateTime::now_utc());
        Some(ack_message(&header, &oru.control_id, code, err.as_ref()))
    }
}

/// Whether bytes are left in the framer after `chunk`: anything but a chunk that ends at a
/// frame's end (or only whitespace, which changes nothing) may leave a partial frame. A wrong
/// "yes" only makes the next silence check come earlier and drop nothing.
fn still_partial(chunk: &[u8], before: bool) -> bool {
    if chunk.ends_with(&[EB, CR]) || chunk.ends_with(&[EB]) {
        false
    } else if chunk.iter().all(u8::is_ascii_whitespace) {
        before
    } else {
        true
    }
}

#[cfg(test)]
#[path = "mllp_tests.rs"]
mod tests;
