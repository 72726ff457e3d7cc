//! The byte pipeline of one stream device (serial): source events → [`DeviceStage`] →
//! [`DeviceIngest`].
//!
//! Receives [`SourceEvent`]s from the device's source; decodes them; for continuous devices
//! reduces the per-second stream to one spot-check reading per measurement (an episode also
//! ends after a second of silence); hands messages, finished ECG strips and patient scans to
//! the device's ingest, waiting for the durable flush before taking the next bytes (a full
//! queue is retried every second, never dropped). Host bytes the decoder asks for (format
//! select on connect, polls of host-polled devices) go back to the source's writer channel.
//! The ECG strip in progress is stored when the stream ends (disconnect, shutdown).

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{Decoded, DeviceIngest, DeviceStage, SetupError};
use crate::config::DeviceConfig;
use crate::decode::Decoder;
use crate::source::SourceEvent;

/// How often an open spot-check episode is looked at when the device falls silent.
const TICK: Duration = Duration::from_secs(1);

/// See the module docs.
pub struct DevicePipeline {
    stage: DeviceStage,
    ingest: DeviceIngest,
    writes: mpsc::Sender<Vec<u8>>,
}

impl DevicePipeline {
    /// The pipeline of device `d`; `writes` reaches the device through its source.
    pub fn new(
        d: &DeviceConfig,
        decoder: Box<dyn Decoder>,
        ingest: DeviceIngest,
        writes: mpsc::Sender<Vec<u8>>,
    ) -> Result<Self, SetupError> {
        Ok(Self {
            stage: DeviceStage::new(d, decoder, &ingest)?,
            ingest,
            writes,
        })
    }

    /// Runs until the source's channel closes, then stores whatever is complete.
    pub async fn run(mut self, mut events: mpsc::Receiver<SourceEvent>) {
        let poll_every = self.stage.decoder().poll_every();
        let mut next_poll: Option<Instant> = None;
        let status = self.ingest.status().clone();
        loop {
            let spot_deadline = self.stage.in_episode().then(|| Instant::now() + TICK);
            let ev = tokio::select! {
                ev = events.recv() => ev,
                () = sleep_until(spot_deadline) => {
                    let messages = self.stage.tick(Instant::now());
                    let decoded = Decoded { messages, ..Decoded::default() };
                    self.store(decoded, OffsetDateTime::now_utc()).await;
                    continue;
                }
                () = sleep_until(next_poll) => {
                    // Host-polled devices speak only when asked.
                    let ask = self.stage.decoder().poll();
                    if !ask.is_empty() {
                        let _ = self.writes.send(ask).await;
                    }
                    next_poll = poll_every.map(|p| Instant::now() + p);
                    continue;
                }
            };
            match ev {
                None => break,
                Some(SourceEvent::Connected) => {
                    status.set_connected(true);
                    let hello = self.stage.decoder().on_connect();
                    if !hello.is_empty() {
                        let _ = self.writes.send(hello).await;
                    }
                    next_poll = poll_every.map(|_| Instant::now());
                }
                Some(SourceEvent::Disconnected { .. }) => {
                    status.set_connected(false);
                    next_poll = None;
                    let now = OffsetDateTime::now_utc();
                    let decoded = self.stage.end(now, true);
                    self.store(decoded, now).await;
                }
                Some(SourceEvent::Bytes { data, received_at }) => {
                    let decoded = self.stage.feed(&data, received_at);
                    self.store(decoded, received_at).await;
                }
            }
        }
        let now = OffsetDateTime::now_utc();
        let decoded = self.stage.end(now, false);
        self.store(decoded, now).await;
        status.set_connected(false);
    }

    /// Applies the scans, then normalises and stores; returns after the durable flush.
    async fn store(&mut self, decoded: Decoded, received_at: OffsetDateTime) {
        self.ingest.apply_scans(decoded.scans).await;
        if decoded.messages.is_empty() && decoded.readings.is_empty() {
            return;
        }
        let p = self
            .ingest
            .prepare(decoded.messages, decoded.readings, received_at, None);
        self.ingest.commit_until_stored(p).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
