//! One device's pipeline: source events → decoder → (spot-check) → normalize → queue.
//!
//! Receives [`SourceEvent`]s from the device's source; decodes them with the device's own
//! decoder; for continuous devices, reduces the per-second stream to one spot-check reading
//! per measurement; normalises into [`Reading`]s with a fresh [`ReadingId`]; and stores them in
//! the queue, waiting for the durable flush before taking the next bytes. Garbled frames are
//! counted and logged without content; the decoder resynchronises on its own.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::config::{Config, DeviceConfig};
use crate::decode::{self, DecodeEvent, Decoder, DeviceMessage};
use crate::normalize::spot::Reporter;
use crate::normalize::{self, NormalizeContext};
use crate::queue::{EnqueueOutcome, Queue, QueueError};
use crate::reading::{PatientRef, Reading, ReadingId};
use crate::source::SourceEvent;
use crate::status::DeviceStatus;

/// How often an open spot-check episode is looked at when the device falls silent.
const TICK: Duration = Duration::from_secs(1);

pub struct DevicePipeline {
    decoder: Box<dyn Decoder>,
    reporter: Reporter,
    ctx: NormalizeContext,
    queue: Queue,
    status: Arc<DeviceStatus>,
    writes: mpsc::Sender<Vec<u8>>,
}

impl DevicePipeline {
    pub fn new(
        d: &DeviceConfig,
        cfg: &Config,
        decoder: Box<dyn Decoder>,
        queue: Queue,
        status: Arc<DeviceStatus>,
        writes: mpsc::Sender<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let report = decode::registry::report_options(&d.driver, &d.options).map_err(|errs| {
            let msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("device {}: {}", d.id, msgs.join("; "))
        })?;
        Ok(Self {
            decoder,
            reporter: Reporter::new(report.report, report.settle),
            ctx: NormalizeContext {
                device: d.id.clone(),
                driver: d.driver.clone(),
                room: Some(d.room.clone()),
                clock_skew_tolerance: cfg.daemon.clock_skew_tolerance,
                utc_offset: local_offset(),
            },
            queue,
            status,
            writes,
        })
    }

    /// Runs until the source's channel closes, then stores whatever is complete.
    pub async fn run(mut self, mut events: mpsc::Receiver<SourceEvent>) {
        let mut out = Vec::new();
        let poll_every = self.decoder.poll_every();
        let mut next_poll: Option<std::time::Instant> = None;
        loop {
            // A spot check in progress ends on silence too: look again each second, and only then.
            let spot_deadline = match &self.reporter {
                Reporter::Spot(s) if s.in_episode() => Some(std::time::Instant::now() + TICK),
                _ => None,
            };
            let ev = tokio::select! {
                ev = events.recv() => ev,
                () = sleep_until(spot_deadline) => {
                    let msgs = self.reporter.tick(std::time::Instant::now());
                    self.store(msgs, OffsetDateTime::now_utc()).await;
                    continue;
                }
                () = sleep_until(next_poll) => {
                    // Host-polled devices speak only when asked.
                    let ask = self.decoder.poll();
                    if !ask.is_empty() {
                        let _ = self.writes.send(ask).await;
                    }
                    next_poll = poll_every.map(|p| std::time::Instant::now() + p);
                    continue;
                }
            };
            match ev {
                None => break,
                Some(SourceEvent::Connected) => {
                    self.status.set_connected(true);
                    let hello = self.decoder.on_connect();
                    if !hello.is_empty() {
                        let _ = self.writes.send(hello).await;
                    }
                    next_poll = poll_every.map(|_| std::time::Instant::now());
                }
                Some(SourceEvent::Disconnected { .. }) => {
                    self.status.set_connected(false);
                    next_poll = None;
                    self.decoder.finish(&mut out);
                    let now = OffsetDateTime::now_utc();
                    out.push(DecodeEvent::Idle { episode_end: true });
                    let msgs = self.collect(&mut out, now);
                    self.store(msgs, now).await;
                }
                Some(SourceEvent::Bytes { data, received_at }) => {
                    self.decoder.feed(&data, &mut out);
                    let msgs = self.collect(&mut out, received_at);
                    self.store(msgs, received_at).await;
                }
            }
        }
        self.decoder.finish(&mut out);
        let now = OffsetDateTime::now_utc();
        let msgs = self.collect(&mut out, now);
        self.store(msgs, now).await;
        self.status.set_connected(false);
    }

    /// Counts decode events and passes them through the reporter (spot check or every message).
    fn collect(&mut self, events: &mut Vec<DecodeEvent>, at: OffsetDateTime) -> Vec<DeviceMessage> {
        let now = std::time::Instant::now();
        let mut msgs = Vec::new();
        for ev in events.drain(..) {
            msgs.extend(self.reporter.feed(&ev, now));
            match ev {
                DecodeEvent::Message(_) | DecodeEvent::Idle { .. } => self.status.frame_ok(at),
                DecodeEvent::Scan(_) => {
                    self.status.frame_ok(at);
                    tracing::debug!(device = %self.ctx.device, "barcode scan ignored: patient context is not available in this version");
                }
                DecodeEvent::Error(e) => {
                    self.status.frame_bad();
                    tracing::warn!(device = %self.ctx.device, error = e.label(), "frame skipped");
                    tracing::debug!(device = %self.ctx.device, detail = %e, "frame skipped");
                }
            }
        }
        msgs
    }

    /// Decodes ONE whole message (an MQTT payload, an MLLP frame), normalises it and stores
    /// the readings; returns only after the queue's durable flush, so the caller may then
    /// acknowledge upstream. `patient` (e.g. PID-3 of an HL7 message) is attached to every
    /// reading. A full queue is an error here: the caller must not acknowledge, and the
    /// message comes back later (the broker keeps it; an MLLP sender resends).
    pub async fn ingest_message(
        &mut self,
        bytes: &[u8],
        received_at: OffsetDateTime,
        patient: Option<PatientRef>,
    ) -> Result<IngestReport, IngestError> {
        let mut events = Vec::new();
        self.decoder.feed(bytes, &mut events);
        self.decoder.finish(&mut events);
        let mut report = IngestReport::default();
        for ev in &events {
            if let DecodeEvent::Error(e) = ev {
                report.errors.push(e.clone());
            }
        }
        let msgs = self.collect(&mut events, received_at);
        report.decoded = msgs.len();
        let mut readings = self.normalize_all(msgs, received_at);
        for r in &mut readings {
            r.patient.clone_from(&patient);
        }
        if readings.is_empty() {
            return Ok(report);
        }
        let outcomes = self.queue.enqueue(readings).await.map_err(|e| match e {
            QueueError::Full { size, max } => IngestError::Full { size, max },
            other => IngestError::Store(other.to_string()),
        })?;
        self.count(&outcomes, &mut report);
        Ok(report)
    }

    fn normalize_all(
        &mut self,
        msgs: Vec<DeviceMessage>,
        received_at: OffsetDateTime,
    ) -> Vec<Reading> {
        let mut readings: Vec<Reading> = Vec::with_capacity(msgs.len());
        for m in msgs {
            match normalize::normalize(m, received_at, &self.ctx) {
                Ok(mut r) => {
                    r.id = Some(ReadingId::new());
                    readings.push(r);
                }
                Err(e) => {
                    self.status.frame_bad();
                    tracing::warn!(device = %self.ctx.device, error = %e, "reading not normalised");
                }
            }
        }
        readings
    }

    fn count(&self, outcomes: &[EnqueueOutcome], report: &mut IngestReport) {
        for o in outcomes {
            match o {
                EnqueueOutcome::Stored => report.stored += 1,
                EnqueueOutcome::Duplicate(_) => report.duplicates += 1,
                EnqueueOutcome::Rejected(_) => report.rejected += 1,
            }
        }
        self.status
            .stored(report.stored, report.duplicates, report.rejected);
        if report.rejected > 0 {
            tracing::warn!(device = %self.ctx.device, count = report.rejected, "reading failed a hard plausibility limit; kept in dead-letter");
        }
        tracing::debug!(device = %self.ctx.device, stored = report.stored, duplicates = report.duplicates, "readings stored");
    }

    /// Normalises and stores; returns only after the queue's durable flush (or on shutdown of
    /// the queue). A full queue is retried, never dropped silently.
    async fn store(&mut self, msgs: Vec<DeviceMessage>, received_at: OffsetDateTime) {
        if msgs.is_empty() {
            return;
        }
        let readings = self.normalize_all(msgs, received_at);
        if readings.is_empty() {
            return;
        }
        let mut warned = false;
        loop {
            match self.queue.enqueue(readings.clone()).await {
                Ok(outcomes) => {
                    self.count(&outcomes, &mut IngestReport::default());
                    return;
                }
                Err(QueueError::Full { size, max }) => {
                    if !warned {
                        tracing::error!(device = %self.ctx.device, size, max, "queue full: holding readings until space returns");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(device = %self.ctx.device, error = %e, count = readings.len(), "readings could not be stored");
                    return;
                }
            }
        }
    }
}

/// What [`DevicePipeline::ingest_message`] did with one message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IngestReport {
    /// Device messages decoded (after spot-check reduction).
    pub decoded: usize,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Frames in the message that failed to decode.
    pub errors: Vec<crate::decode::DecodeError>,
}

/// Why a message was not stored; the caller must not acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("queue full ({size} of {max} bytes)")]
    Full { size: u64, max: u64 },
    #[error("store failed: {0}")]
    Store(String),
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

static LOCAL_OFFSET: std::sync::OnceLock<time::UtcOffset> = std::sync::OnceLock::new();

/// Reads the host's UTC offset. Call it before any thread starts: the `time` crate refuses to
/// read the local offset once a process is multi-threaded.
pub fn init_local_offset() {
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let _ = LOCAL_OFFSET.set(offset);
}

/// The host's UTC offset, for device clocks that report local wall time (UTC when unknown).
pub fn local_offset() -> time::UtcOffset {
    LOCAL_OFFSET.get().copied().unwrap_or(time::UtcOffset::UTC)
}
