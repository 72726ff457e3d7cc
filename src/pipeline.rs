//! One device's pipeline: source events → decoder → (spot-check) → normalize → queue.
//!
//! Receives [`SourceEvent`]s from the device's source; decodes them with the device's own
//! decoder; for continuous devices, reduces the per-second stream to one spot-check reading
//! per measurement; normalises into [`Reading`]s with a fresh [`ReadingId`]; and stores them in
//! the queue, waiting for the durable flush before taking the next bytes. Garbled frames are
//! counted and logged without content; the decoder resynchronises on its own. ECG drivers'
//! waveform samples go to the device's strip builder ([`crate::ecg`]); each finished strip
//! becomes an `ecg` reading (plus a `heart_rate` reading) stored like the others; the partial
//! strip is stored when the stream ends (disconnect, shutdown, [`DevicePipeline::flush_strips`]).
//!
//! With a [`PatientLink`] (the daemon always sets one): a `barcode` device's scans set its
//! room's patient context; every reading takes the patient whose context covers the whole time
//! it could have been measured in (and maps the device user it names, if any), else none and a
//! flag (`patient_ambiguous`, `patient_user_unmapped`); in `hold` mode a reading without a
//! patient is held for an MA instead of queued for the sinks.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::config::{Config, DeviceConfig, PatientMode};
use crate::context::audit::ContextSource;
use crate::context::history::Window;
use crate::context::quality::Quality;
use crate::context::ContextStore;
use crate::decode::{self, DecodeEvent, Decoder, DeviceMessage};
use crate::normalize::spot::Reporter;
use crate::normalize::{self, LocalZone, NormalizeContext};
use crate::queue::{EnqueueOutcome, Queue, QueueError};
use crate::reading::{Kind, PatientRef, Reading, ReadingId};
use crate::source::SourceEvent;
use crate::status::DeviceStatus;

/// How often an open spot-check episode is looked at when the device falls silent.
const TICK: Duration = Duration::from_secs(1);

/// How a pipeline finds its readings' patient (shared by every device of a daemon).
#[derive(Clone)]
pub struct PatientLink {
    pub contexts: ContextStore,
    pub mode: PatientMode,
    pub quality: Arc<Quality>,
    /// `[patient] review`: readings bound for the sinks wait on the review list instead.
    pub review: bool,
}

pub struct DevicePipeline {
    link: Option<PatientLink>,
    /// The `system` option of a `barcode` device: its scans become the room's patient.
    scan_system: Option<String>,
    /// The `patient_system` option of an `hl7v2` device: the system of PID-3 ids naming none.
    patient_system: Option<String>,
    scans: Vec<(String, OffsetDateTime)>,
    decoder: Box<dyn Decoder>,
    reporter: Reporter,
    ctx: NormalizeContext,
    queue: Queue,
    status: Arc<DeviceStatus>,
    writes: mpsc::Sender<Vec<u8>>,
    /// ECG drivers only: cuts the sample stream into strips.
    strips: Option<crate::ecg::StripBuilder>,
    /// ECG readings finished by the last events, not yet stored.
    ecg_ready: Vec<Reading>,
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
        let strips = match decode::driver_info(&d.driver) {
            Some(info) if info.kinds.contains(&crate::reading::Kind::Ecg) => {
                let opts = crate::ecg::StripOptions::from_options(&d.options).map_err(|errs| {
                    let msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
                    anyhow::anyhow!("device {}: {}", d.id, msgs.join("; "))
                })?;
                Some(crate::ecg::StripBuilder::new(opts))
            }
            _ => None,
        };
        let scan_system = (d.driver == "barcode")
            .then(|| decode::barcode::system(&d.options).map(str::to_string))
            .flatten();
        let patient_system = (d.driver == "hl7v2")
            .then(|| decode::hl7v2::patient_system(&d.options).map(str::to_string))
            .flatten();
        Ok(Self {
            strips,
            ecg_ready: Vec::new(),
            link: None,
            scan_system,
            patient_system,
            scans: Vec::new(),
            decoder,
            reporter: Reporter::new(report.report, report.settle),
            ctx: NormalizeContext {
                device: d.id.clone(),
                driver: d.driver.clone(),
                room: Some(d.room.clone()),
                clock_skew_tolerance: cfg.daemon.clock_skew_tolerance,
                zone: local_zone(),
            },
            queue,
            status,
            writes,
        })
    }

    /// Attaches patient contexts (and holds readings without one in `hold` mode).
    #[must_use]
    pub fn with_patient_link(mut self, link: PatientLink) -> Self {
        self.link = Some(link);
        self
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
                    self.finish_strips(now);
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
        self.finish_strips(now);
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
                DecodeEvent::Samples(c) => {
                    self.status.frame_ok(at);
                    if let Some(b) = self.strips.as_mut() {
                        for strip in b.push(&c, at) {
                            self.ecg_ready
                                .extend(crate::ecg::readings(strip, &self.ctx, at));
                        }
                    }
                }
                DecodeEvent::Scan(scan) => {
                    self.status.frame_ok(at);
                    self.scans.push((scan, at));
                }
                DecodeEvent::Error(e) => {
                    self.status.frame_bad();
                    tracing::warn!(device = %self.ctx.device, error = e.label(), "frame skipped");
                    tracing::debug!(device = %self.ctx.device, detail = %crate::decode::redact::redact_quoted(&e.to_string()), "frame skipped");
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
        self.apply_scans().await;
        report.decoded = msgs.len();
        let mut readings = self.normalize_all(msgs, received_at);
        readings.append(&mut self.ecg_ready);
        let system = self.patient_system.as_deref();
        let patient = patient.map(|p| decode::hl7v2::with_patient_system(p, system));
        for r in &mut readings {
            r.patient.clone_from(&patient);
        }
        if readings.is_empty() {
            return Ok(report);
        }
        let (ready, held) = self.route(readings);
        flush_lookup_audit(self.link.as_ref().map(|l| l.contexts.clone())).await;
        let map = |e: QueueError| match e {
            QueueError::Full { size, max } => IngestError::Full { size, max },
            other => IngestError::Store(other.to_string()),
        };
        if !held.is_empty() {
            let kinds: Vec<Kind> = held.iter().map(|r| r.kind).collect();
            let outcomes = self.queue.hold(held).await.map_err(map)?;
            self.count(&kinds, &outcomes, &mut report);
        }
        if !ready.is_empty() {
            let kinds: Vec<Kind> = ready.iter().map(|r| r.kind).collect();
            let outcomes = self.file(ready).await.map_err(map)?;
            self.count(&kinds, &outcomes, &mut report);
        }
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

    /// Counts one enqueue's outcomes (`kinds[i]` is the kind of the i-th reading) into the
    /// device's status and `report`.
    fn count(&self, kinds: &[Kind], outcomes: &[EnqueueOutcome], report: &mut IngestReport) {
        let (mut stored, mut duplicates, mut rejected) = (0, 0, 0);
        for (kind, o) in kinds.iter().zip(outcomes) {
            match o {
                EnqueueOutcome::Stored => {
                    stored += 1;
                    self.status.stored_kind(kind.as_str());
                }
                EnqueueOutcome::Duplicate(_) => duplicates += 1,
                EnqueueOutcome::Rejected(_) => rejected += 1,
            }
        }
        report.stored += stored;
        report.duplicates += duplicates;
        report.rejected += rejected;
        self.status.stored(stored, duplicates, rejected);
        if rejected > 0 {
            tracing::warn!(device = %self.ctx.device, count = rejected, "reading failed a hard plausibility limit; quarantined, sent nowhere until a person releases it (`vitalsd queue quarantine`)");
        }
        tracing::debug!(device = %self.ctx.device, stored = report.stored, duplicates = report.duplicates, "readings stored");
    }

    /// Normalises and stores; returns only after the queue's durable flush (or on shutdown of
    /// the queue). A full queue is retried, never dropped silently.
    async fn store(&mut self, msgs: Vec<DeviceMessage>, received_at: OffsetDateTime) {
        self.apply_scans().await;
        if msgs.is_empty() && self.ecg_ready.is_empty() {
            return;
        }
        let mut readings = self.normalize_all(msgs, received_at);
        readings.append(&mut self.ecg_ready);
        if readings.is_empty() {
            return;
        }
        let (ready, held) = self.route(readings);
        flush_lookup_audit(self.link.as_ref().map(|l| l.contexts.clone())).await;
        self.persist(held, true).await;
        self.persist(ready, false).await;
    }

    /// Sets the room's patient from each scan, in order, durably (audited).
    async fn apply_scans(&mut self) {
        if self.scans.is_empty() {
            return;
        }
        let scans = std::mem::take(&mut self.scans);
        let (Some(link), Some(system)) = (&self.link, &self.scan_system) else {
            tracing::warn!(device = %self.ctx.device, count = scans.len(), "barcode scan ignored: no patient context for this device");
            return;
        };
        let room = self.ctx.room.clone().unwrap_or_default();
        for (id, at) in scans {
            let patient = PatientRef {
                id,
                system: system.clone(),
            };
            let by = self.ctx.device.to_string();
            match link
                .contexts
                .set(&room, patient, None, ContextSource::Scan, &by, at)
                .await
            {
                Ok(()) | Err(crate::context::ContextError::Refused(_)) => {} // logged, audited
                Err(e) => {
                    tracing::error!(device = %self.ctx.device, %room, error = %e, "scan not applied: the room keeps its previous context");
                }
            }
        }
    }

    /// Attaches each reading's patient (unless its message named one) and splits them into
    /// readings for the sinks and readings to hold.
    fn route(&self, readings: Vec<Reading>) -> (Vec<Reading>, Vec<Reading>) {
        let tolerance = self.ctx.clock_skew_tolerance;
        let Some(link) = &self.link else {
            return (readings, Vec::new());
        };
        let mut ready = Vec::with_capacity(readings.len());
        let mut held = Vec::new();
        for mut r in readings {
            if r.patient.is_none() {
                if let Some(room) = r.room.clone() {
                    let window = reading_window(&r, tolerance);
                    let user = device_user(&r);
                    link.contexts.attach(&room, &mut r, window, user);
                }
            }
            link.quality.check(&mut r);
            if r.patient.is_none() && link.mode == PatientMode::Hold && r.rejection().is_none() {
                held.push(r);
            } else {
                ready.push(r);
            }
        }
        if !held.is_empty() {
            let why = |flag: &str| held.iter().filter(|r| r.has_flag(flag)).count();
            tracing::info!(
                device = %self.ctx.device,
                count = held.len(),
                ambiguous = why("patient_ambiguous"),
                user_unmapped = why("patient_user_unmapped"),
                "readings without a patient held for review"
            );
        }
        (ready, held)
    }

    /// Stores readings (held or for the sinks); a full queue is retried, never dropped.
    async fn persist(&mut self, readings: Vec<Reading>, hold: bool) {
        if readings.is_empty() {
            return;
        }
        let mut warned = false;
        loop {
            let result = if hold {
                self.queue.hold(readings.clone()).await
            } else {
                self.file(readings.clone()).await
            };
            match result {
                Ok(outcomes) => {
                    let kinds: Vec<Kind> = readings.iter().map(|r| r.kind).collect();
                    self.count(&kinds, &outcomes, &mut IngestReport::default());
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

impl DevicePipeline {
    /// Readings for the sinks: queued, or on the review list in review mode (docs/review.md).
    async fn file(&mut self, readings: Vec<Reading>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        if self.link.as_ref().is_some_and(|l| l.review) {
            self.queue.to_review(readings).await
        } else {
            self.queue.enqueue(readings).await
        }
    }
}

/// The time `r` could have been measured in. A reading carries a device time when it has one
/// or its device time was refused (`clock_untrusted`: a clock not set or off is still a clock,
/// and the value may come from the device's memory).
fn reading_window(r: &Reading, tolerance: Duration) -> Window {
    let has_device_time = r.device_time.is_some() || r.has_flag("clock_untrusted");
    Window::of_reading(r.observed_at, r.received_at, has_device_time, tolerance)
}

/// Writes the readings' patient-lookup fallbacks to the audit log before they are stored.
async fn flush_lookup_audit(contexts: Option<ContextStore>) {
    if let Some(c) = contexts {
        if let Err(e) = c.flush_audit().await {
            tracing::warn!(error = %e, "cannot record patient lookup fallbacks yet; will try again");
        }
    }
}

/// The device user a multi-user cuff or scale named (the decoders' `device:user:<n>` flag).
fn device_user(r: &Reading) -> Option<u8> {
    r.flags
        .iter()
        .find_map(|f| f.as_str().strip_prefix("device:user:")?.parse().ok())
}

impl DevicePipeline {
    /// Completes the ECG strips in progress (partial ones included) into `ecg_ready`.
    fn finish_strips(&mut self, at: OffsetDateTime) {
        if let Some(b) = self.strips.as_mut() {
            for strip in b.finish() {
                self.ecg_ready
                    .extend(crate::ecg::readings(strip, &self.ctx, at));
            }
        }
    }

    /// For message sources (MQTT) on clean shutdown: stores the ECG strip in progress
    /// (flagged `ecg:partial` when short). Returns after the durable flush.
    pub async fn flush_strips(&mut self) {
        let now = OffsetDateTime::now_utc();
        self.finish_strips(now);
        self.store(Vec::new(), now).await;
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

static LOCAL_ZONE: std::sync::OnceLock<LocalZone> = std::sync::OnceLock::new();

/// Looks up the host's time zone once (`TZ`, else `/etc/localtime`); UTC, with a warning on
/// stderr, when neither names a zone. Its rules cover every daylight-saving change, so the
/// zone need not be read again when the clocks change; a new host zone takes a restart.
pub fn init_local_zone() {
    LOCAL_ZONE.get_or_init(|| {
        LocalZone::system().unwrap_or_else(|e| {
            eprintln!("vitalsd: {e}; device wall-clock times are read as UTC");
            LocalZone::utc()
        })
    });
}

/// The host's time zone, for device clocks that report local wall time (UTC when it could not
/// be determined, or before [`init_local_zone`]).
pub fn local_zone() -> LocalZone {
    LOCAL_ZONE.get().cloned().unwrap_or_else(LocalZone::utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn reading(device_time: Option<&str>, flags: &[&str]) -> Reading {
        let dt = device_time.map_or("null".to_string(), |t| format!("{t:?}"));
        let flags: Vec<String> = flags.iter().map(|f| format!("{f:?}")).collect();
        let json = format!(
            r#"{{"id":null,"device":{{"id":"cuff","driver":"ble-gatt"}},"room":"exam-1",
            "patient":null,"kind":"blood_pressure","observed_at":"2026-11-27T12:00:00Z",
            "received_at":"2026-11-27T12:00:10Z","device_time":{dt},"values":[],
            "flags":[{}]}}"#,
            flags.join(",")
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn a_reading_with_a_device_time_or_an_untrusted_clock_gets_the_tolerance_window() {
        let tol = Duration::from_secs(60);
        let received = datetime!(2026-11-27 12:00:10 UTC);
        let clockless = reading(None, &[]);
        assert_eq!(reading_window(&clockless, tol), Window::at(received));
        let timed = reading(Some("2026-11-27T12:00:00Z"), &[]);
        assert_eq!(
            reading_window(&timed, tol),
            Window {
                from: datetime!(2026-11-27 11:59:00 UTC),
                to: received
            }
        );
        let not_set = reading(None, &["clock_untrusted"]);
        assert_eq!(
            reading_window(&not_set, tol).from,
            datetime!(2026-11-27 11:59:00 UTC)
        );
    }

    #[test]
    fn the_device_user_comes_from_the_decoders_flag() {
        assert_eq!(device_user(&reading(None, &["device:user:2"])), Some(2));
        assert_eq!(
            device_user(&reading(None, &["device:cuff_loose", "device:user:17"])),
            Some(17)
        );
        assert_eq!(device_user(&reading(None, &["device:cuff_loose"])), None);
        assert_eq!(device_user(&reading(None, &["device:user:x"])), None);
    }
}
