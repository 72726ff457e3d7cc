//! The in-memory operational state behind `/metrics`, readiness and the status page: delivery
//! counters and latency fed by the delivery loops' events, the sinks' delivery health, the
//! running MQTT connection and the queue-depth samples.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::SinkLabel;
use crate::queue::Queue;
use crate::sink::DeliveryEvent;
use crate::status::SinkStatusList;

/// How many queue-depth samples the status page keeps.
pub const DEPTH_SAMPLES: usize = 120;

/// Live operational state: what the scrape cannot read from the queue or the devices.
#[derive(Debug)]
pub struct Ops {
    pub(super) delivered: Family<SinkLabel, Counter>,
    pub(super) delivery_seconds: Histogram,
    pub(super) depth: Mutex<VecDeque<u64>>,
    /// The filesystem checked for free space.
    pub data_dir: PathBuf,
    /// A sink is stuck (not ready) when its oldest pending reading is older than this and it
    /// delivered nothing for as long (see [`super::super::ready::is_stuck`]).
    pub stuck_after: Duration,
    /// When the daemon started (a sink that never delivered counts from here at the latest).
    pub started_at: OffsetDateTime,
    /// The running sinks' delivery health, written by their delivery loops.
    pub sinks: SinkStatusList,
    /// The running MQTT connection, if any (replaced or cleared by a reload): not ready while
    /// the queue refuses its messages (acks stopped) or the broker is unreachable.
    pub mqtt: std::sync::Mutex<Option<crate::source::mqtt::SourceHandle>>,
}

impl Ops {
    pub fn new(data_dir: PathBuf, stuck_after: Duration) -> Arc<Self> {
        let buckets = [
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
        ];
        Arc::new(Self {
            delivered: Family::default(),
            delivery_seconds: Histogram::new(buckets),
            depth: Mutex::new(VecDeque::with_capacity(DEPTH_SAMPLES)),
            data_dir,
            stuck_after,
            started_at: OffsetDateTime::now_utc(),
            sinks: SinkStatusList::default(),
            mqtt: std::sync::Mutex::new(None),
        })
    }

    /// Counts one delivered reading and observes its time from reception to delivery.
    pub fn record_delivery(&self, ev: &DeliveryEvent, now: OffsetDateTime) {
        self.delivered
            .get_or_create(&SinkLabel {
                sink: ev.sink.to_string(),
            })
            .inc();
        let secs = (now - ev.reading.received_at).as_seconds_f64().max(0.0);
        self.delivery_seconds.observe(secs);
    }

    /// Keeps one queue-depth sample (the last [`DEPTH_SAMPLES`]).
    pub fn sample_depth(&self, pending: u64) {
        if let Ok(mut d) = self.depth.lock() {
            if d.len() == DEPTH_SAMPLES {
                d.pop_front();
            }
            d.push_back(pending);
        }
    }

    /// The kept queue-depth samples, oldest first.
    pub fn depth_samples(&self) -> Vec<u64> {
        self.depth
            .lock()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Consumes delivery events and samples the queue depth every `every` until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        queue: Queue,
        mut deliveries: broadcast::Receiver<DeliveryEvent>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    if let Ok(st) = queue.read(|q| q.stats()).await {
                        self.sample_depth(st.sinks.iter().map(|s| s.pending).sum());
                    }
                }
                ev = deliveries.recv() => match ev {
                    Ok(ev) => self.record_delivery(&ev, OffsetDateTime::now_utc()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "metrics missed delivery events; vitalsd_delivered_total reads a little low, nothing else is affected"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        cancel.cancelled().await;
                        return;
                    }
                },
            }
        }
    }
}
