//! The decoding stage of one device: bytes → decoder → (spot-check) → device messages, ECG
//! strips → readings, and patient scans. Used by the byte pipeline of serial devices and by
//! the MQTT source (one stage per device, fed one payload at a time, in receive order).
//!
//! Receives bytes with their receipt time; promises a [`Decoded`] per call with the messages to
//! normalise, the ECG readings finished, the scans read and the decode errors, and counts
//! frames in the device's status. Garbled frames are logged without content; the decoder
//! resynchronises on its own. No I/O.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use super::{DeviceIngest, SetupError};
use crate::config::DeviceConfig;
use crate::decode::{self, DecodeError, DecodeEvent, Decoder, DeviceMessage};
use crate::normalize::spot::Reporter;
use crate::normalize::NormalizeContext;
use crate::reading::{Kind, Reading};
use crate::status::DeviceStatus;

/// What one call of the stage produced.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Device messages to normalise (after spot-check reduction).
    pub messages: Vec<DeviceMessage>,
    /// ECG (and heart-rate) readings of finished strips.
    pub readings: Vec<Reading>,
    /// Patient scans with their time of receipt.
    pub scans: Vec<(String, OffsetDateTime)>,
    /// Frames that failed to decode.
    pub errors: Vec<DecodeError>,
}

impl Decoded {
    /// Nothing to store and no scan to apply.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.readings.is_empty() && self.scans.is_empty()
    }
}

/// One device's decoder with its spot-check reporter and (ECG drivers) strip builder.
pub struct DeviceStage {
    decoder: Box<dyn Decoder>,
    reporter: Reporter,
    strips: Option<crate::ecg::StripBuilder>,
    ctx: NormalizeContext,
    status: Arc<DeviceStatus>,
}

fn setup(d: &DeviceConfig, errs: &[impl ToString]) -> SetupError {
    let msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
    SetupError {
        device: d.id.to_string(),
        reasons: msgs.join("; "),
    }
}

impl DeviceStage {
    /// The stage of device `d` around `decoder` (built for the device's transport).
    pub fn new(
        d: &DeviceConfig,
        decoder: Box<dyn Decoder>,
        ingest: &DeviceIngest,
    ) -> Result<Self, SetupError> {
        let report =
            decode::registry::report_options(&d.driver, &d.options).map_err(|e| setup(d, &e))?;
        let strips = match decode::driver_info(&d.driver) {
            Some(info) if info.kinds.contains(&Kind::Ecg) => {
                let opts =
                    crate::ecg::StripOptions::from_options(&d.options).map_err(|e| setup(d, &e))?;
                Some(crate::ecg::StripBuilder::new(opts))
            }
            _ => None,
        };
        Ok(Self {
            decoder,
            reporter: Reporter::new(report.report, report.settle),
            strips,
            ctx: ingest.context().clone(),
            status: ingest.status().clone(),
        })
    }

    /// Bytes as they arrived (a stream: frames may span calls).
    pub fn feed(&mut self, bytes: &[u8], at: OffsetDateTime) -> Decoded {
        let mut events = Vec::new();
        self.decoder.feed(bytes, &mut events);
        self.collect(events, at)
    }

    /// One whole message (an MQTT payload): fed and finished.
    pub fn message(&mut self, bytes: &[u8], at: OffsetDateTime) -> Decoded {
        let mut events = Vec::new();
        self.decoder.feed(bytes, &mut events);
        self.decoder.finish(&mut events);
        self.collect(events, at)
    }

    /// The stream ended (disconnect, shutdown): partial frames, the spot-check episode in
    /// progress (`episode_end`) and the ECG strips in progress are completed.
    pub fn end(&mut self, at: OffsetDateTime, episode_end: bool) -> Decoded {
        let mut events = Vec::new();
        self.decoder.finish(&mut events);
        if episode_end {
            events.push(DecodeEvent::Idle { episode_end: true });
        }
        let mut out = self.collect(events, at);
        out.readings.extend(self.finish_strips(at));
        out
    }

    /// The ECG strips in progress (partial ones flagged `ecg:partial` when short).
    pub fn finish_strips(&mut self, at: OffsetDateTime) -> Vec<Reading> {
        let mut out = Vec::new();
        if let Some(b) = self.strips.as_mut() {
            for strip in b.finish() {
                out.extend(crate::ecg::readings(strip, &self.ctx, at));
            }
        }
        out
    }

    /// A spot check in progress ends on silence too: call this each second while
    /// [`in_episode`](Self::in_episode).
    pub fn tick(&mut self, now: Instant) -> Vec<DeviceMessage> {
        self.reporter.tick(now)
    }

    pub fn in_episode(&self) -> bool {
        matches!(&self.reporter, Reporter::Spot(s) if s.in_episode())
    }

    pub fn decoder(&mut self) -> &mut dyn Decoder {
        self.decoder.as_mut()
    }

    /// Counts decode events and passes them through the reporter.
    fn collect(&mut self, events: Vec<DecodeEvent>, at: OffsetDateTime) -> Decoded {
        let now = Instant::now();
        let mut out = Decoded::default();
        for ev in events {
            out.messages.extend(self.reporter.feed(&ev, now));
            match ev {
                DecodeEvent::Message(_) | DecodeEvent::Idle { .. } => self.status.frame_ok(at),
                DecodeEvent::Samples(c) => {
                    self.status.frame_ok(at);
                    if let Some(b) = self.strips.as_mut() {
                        for strip in b.push(&c, at) {
                            out.readings
                                .extend(crate::ecg::readings(strip, &self.ctx, at));
                        }
                    }
                }
                DecodeEvent::Scan(scan) => {
                    self.status.frame_ok(at);
                    out.scans.push((scan, at));
                }
                DecodeEvent::Error(e) => {
                    self.status.frame_bad();
                    tracing::warn!(device = %self.ctx.device, error = e.label(), "frame skipped");
                    tracing::debug!(device = %self.ctx.device, detail = %crate::decode::redact::redact_quoted(&e.to_string()), "frame skipped");
                    out.errors.push(e);
                }
            }
        }
        out
    }
}
