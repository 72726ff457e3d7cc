//! `/metrics` in the Prometheus/OpenMetrics text format and the in-memory operational state
//! behind it and the readiness checks (`super::ready`): delivery counters and latency, the
//! sinks' delivery health, and the queue-depth samples of the status page.
//!
//! Device and queue figures are read at scrape time from [`DeviceStatus`] snapshots and
//! [`Queue::stats`]; deliveries come from the delivery loops' [`DeliveryEvent`] broadcast,
//! which [`Ops::run`] consumes. The state itself is [`Ops`] (`metrics/ops.rs`).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

use super::AdminState;
use crate::queue::QueueError;

mod ops;

pub use ops::{Ops, DEPTH_SAMPLES};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabel {
    device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    device: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceInfoLabel {
    device: String,
    driver: String,
    room: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoomLabel {
    room: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameLabel {
    device: String,
    result: String,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch, as a gauge value.
fn unix_seconds(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// The whole scrape, in the OpenMetrics text format. Reads the store: call it off the runtime
/// (`queue.read`), as the handler does.
pub fn render(s: &AdminState) -> Result<String, QueueError> {
    let stats = s.queue.stats()?;
    let held = s.queue.held().count()?;
    let mut reg = Registry::default();
    let readings = Family::<DeviceLabel, Counter>::default();
    let by_kind = Family::<KindLabel, Counter>::default();
    let frames = Family::<FrameLabel, Counter>::default();
    let connected = Family::<DeviceLabel, Gauge>::default();
    let last_frame = Family::<DeviceLabel, Gauge>::default();
    let info = Family::<DeviceInfoLabel, Gauge>::default();
    for d in &s.devices {
        let snap = d.snapshot();
        let device = snap.id.to_string();
        let dl = DeviceLabel {
            device: device.clone(),
        };
        readings.get_or_create(&dl).inc_by(snap.readings);
        for (kind, n) in d.kinds() {
            let l = KindLabel {
                device: device.clone(),
                kind,
            };
            by_kind.get_or_create(&l).inc_by(n);
        }
        for (result, n) in [("ok", snap.frames_ok), ("bad", snap.frames_bad)] {
            let l = FrameLabel {
                device: device.clone(),
                result: result.into(),
            };
            frames.get_or_create(&l).inc_by(n);
        }
        connected.get_or_create(&dl).set(i64::from(snap.connected));
        if let Some(at) = snap.last_frame_at {
            last_frame.get_or_create(&dl).set(unix_seconds(at));
        }
        let info_l = DeviceInfoLabel {
            device: device.clone(),
            driver: snap.driver.clone(),
            room: snap.room.clone(),
        };
        info.get_or_create(&info_l).set(1);
    }
    let now = OffsetDateTime::now_utc();
    // Rooms only: whether a patient context is active, never who.
    let context = Family::<RoomLabel, Gauge>::default();
    for v in s.contexts.views(now) {
        context
            .get_or_create(&RoomLabel { room: v.room })
            .set(i64::from(v.patient.is_some()));
    }
    let held_oldest = Gauge::<i64>::default();
    if let Some(e) = s.queue.held().list(1)?.first() {
        held_oldest.set((now - e.held_at).whole_seconds().max(0));
    }
    let started = Gauge::<i64>::default();
    started.set(unix_seconds(s.ops.started_at));
    let failing = Family::<SinkLabel, Gauge>::default();
    let failures = Family::<SinkLabel, Gauge>::default();
    let last_success = Family::<SinkLabel, Gauge>::default();
    let pending = Family::<SinkLabel, Gauge>::default();
    let dead = Family::<SinkLabel, Gauge>::default();
    for st in &stats.sinks {
        let l = SinkLabel {
            sink: st.sink.to_string(),
        };
        pending.get_or_create(&l).set(i64_of(st.pending));
        dead.get_or_create(&l).set(i64_of(st.dead));
        // Every sink shows up, with 0 before its first delivery.
        let _ = s.ops.delivered.get_or_create(&l);
        if let Some(h) = s.ops.sinks.get(&st.sink).map(|x| x.snapshot()) {
            failing
                .get_or_create(&l)
                .set(i64::from(h.failing_since.is_some()));
            failures
                .get_or_create(&l)
                .set(i64::from(h.consecutive_failures));
            if let Some(at) = h.last_success {
                last_success.get_or_create(&l).set(unix_seconds(at));
            }
        }
    }
    let held_g = Gauge::<i64>::default();
    held_g.set(i64_of(held));
    let quarantined = Gauge::<i64>::default();
    quarantined.set(i64_of(stats.quarantined));
    let disk = Gauge::<i64>::default();
    disk.set(i64_of(stats.disk_bytes));
    let disk_store = Gauge::<i64>::default();
    disk_store.set(i64_of(stats.disk_bytes));
    let live = Family::<ClassLabel, Gauge>::default();
    let h = &stats.history;
    for (class, n) in [
        ("undelivered", stats.undelivered_bytes),
        ("dedupe", h.dedupe_bytes),
        ("audit", h.audit_bytes),
        ("rejected", h.rejected_bytes),
    ] {
        live.get_or_create(&ClassLabel {
            class: class.into(),
        })
        .set(i64_of(n));
    }
    let cap = Gauge::<i64>::default();
    cap.set(i64_of(stats.max_bytes));
    let history_cap = Gauge::<i64>::default();
    history_cap.set(i64_of(h.max_bytes));
    let pruned = Counter::<u64>::default();
    pruned.inc_by(h.pruned);
    reg.register(
        "vitalsd_readings_stored",
        "Readings stored, by device",
        readings,
    );
    reg.register(
        "vitalsd_readings",
        "Readings stored, by device and kind",
        by_kind,
    );
    reg.register(
        "vitalsd_frames",
        "Decoder output by device: ok counts each decoded item (a measurement, a frame without one, a scan, a chunk of samples; a frame with two measurements counts 2), bad counts frames skipped as garbled",
        frames,
    );
    reg.register(
        "vitalsd_device_connected",
        "1 while the device's transport is connected",
        connected,
    );
    reg.register(
        "vitalsd_queue_pending",
        "Readings waiting for a sink",
        pending,
    );
    reg.register(
        "vitalsd_queue_dead",
        "Readings in a sink's dead-letter",
        dead,
    );
    reg.register(
        "vitalsd_delivered",
        "Readings delivered since start, by sink",
        s.ops.delivered.clone(),
    );
    reg.register(
        "vitalsd_held_readings",
        "Readings held for an MA's decision",
        held_g,
    );
    reg.register(
        "vitalsd_quarantined_readings",
        "Readings that failed a hard plausibility limit, kept until a person releases or discards them",
        quarantined,
    );
    reg.register(
        "vitalsd_queue_disk_bytes",
        "Size of the queue on disk",
        disk,
    );
    reg.register(
        "vitalsd_store_disk_bytes",
        "Size of the store's files on disk (freed space stays until `vitalsd queue compact`)",
        disk_store,
    );
    reg.register(
        "vitalsd_store_live_bytes",
        "Live bytes (keys and values) in the store by class: undelivered readings count against queue_max_bytes; dedupe, audit and rejected are history, bounded by history_max_bytes",
        live,
    );
    reg.register(
        "vitalsd_queue_max_bytes",
        "The cap on undelivered readings (queue_max_bytes)",
        cap,
    );
    reg.register(
        "vitalsd_history_max_bytes",
        "The bound on retained history (history_max_bytes)",
        history_cap,
    );
    reg.register(
        "vitalsd_history_pruned",
        "History keys (dedupe chunks, audit entries) pruned before their age limit because history was over its bound, since start",
        pruned,
    );
    register_audit_files(&mut reg, h);
    let reclaims = Counter::<u64>::default();
    reclaims.inc_by(stats.reclaims);
    reg.register(
        "vitalsd_store_reclaims",
        "Times the store was rewritten online to give back the space of delivered readings, since start",
        reclaims,
    );
    reg.register(
        "vitalsd_delivery_seconds",
        "Time from reception to delivery",
        s.ops.delivery_seconds.clone(),
    );
    reg.register(
        "vitalsd_device_last_frame_timestamp_seconds",
        "When the device last sent a frame the decoder read (Unix time); absent before the first",
        last_frame,
    );
    reg.register(
        "vitalsd_device_info",
        "Always 1: the device's driver and room, to join device metrics with rooms",
        info,
    );
    reg.register(
        "vitalsd_room_patient_context_active",
        "1 while the room has a valid patient context (who is never shown here)",
        context,
    );
    reg.register(
        "vitalsd_held_oldest_age_seconds",
        "Age of the longest-held reading waiting for an MA (0 when none is held)",
        held_oldest,
    );
    reg.register(
        "vitalsd_start_time_seconds",
        "When the daemon started (Unix time)",
        started,
    );
    reg.register(
        "vitalsd_sink_failing",
        "1 while every batch the sink tries fails as a whole (receiver down or refusing)",
        failing,
    );
    reg.register(
        "vitalsd_sink_consecutive_failures",
        "Batches in a row that failed as a whole",
        failures,
    );
    reg.register(
        "vitalsd_sink_last_success_timestamp_seconds",
        "When the sink last delivered a reading (Unix time); absent before the first",
        last_success,
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).map_err(|e| QueueError::Corrupt {
        key: "metrics".into(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

pub fn metrics_routes() -> Router<AdminState> {
    Router::new().route("/metrics", get(metrics))
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), else the classic Prometheus
/// text format (curl, promtool, older scrapers).
async fn metrics(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    let open = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let state = s.clone();
    match s.queue.read(move |_| render(&state)).await {
        Ok(text) if open => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            classic_text(&text),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// OpenMetrics text → the classic Prometheus text format: a counter family is named with its
/// `_total` suffix in `# HELP` and `# TYPE` (OpenMetrics leaves it off), `# UNIT` and `# EOF`
/// lines go (pure).
pub fn classic_text(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The audit files' gauges and the counter of day files removed (by age, by the size cap).
fn register_audit_files(reg: &mut Registry, h: &crate::queue::HistoryStats) {
    let bytes = Gauge::<i64>::default();
    bytes.set(i64_of(h.audit_file_bytes));
    let files = Gauge::<i64>::default();
    files.set(i64_of(h.audit_files));
    let max = Gauge::<i64>::default();
    max.set(i64_of(h.audit_max_bytes));
    let pruned = Family::<ReasonLabel, Counter>::default();
    for (reason, n) in [
        ("age", h.audit_pruned_age_files),
        ("size", h.audit_pruned_size_files),
    ] {
        pruned
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc_by(n);
    }
    reg.register(
        "vitalsd_audit_bytes",
        "Bytes of the audit files on disk (bounded by audit_max_bytes and audit_retention)",
        bytes,
    );
    reg.register("vitalsd_audit_files", "Audit day files kept", files);
    reg.register(
        "vitalsd_audit_max_bytes",
        "The size cap of the audit files (audit_max_bytes)",
        max,
    );
    reg.register(
        "vitalsd_audit_pruned_files",
        "Audit day files removed since start: past audit_retention (reason=age) or, with a WARN before each, over audit_max_bytes (reason=size)",
        pruned,
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    #[test]
    fn classic_text_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let open = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n# HELP g A gauge.\n# TYPE g gauge\n# UNIT g seconds\ng 1\n# EOF\n";
        assert_eq!(
            classic_text(open),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn depth_samples_keep_only_the_last_ones() {
        let ops = Ops::new(PathBuf::from("/"), Duration::from_secs(600));
        for i in 0..(DEPTH_SAMPLES as u64 + 5) {
            ops.sample_depth(i);
        }
        let d = ops.depth_samples();
        assert_eq!(d.len(), DEPTH_SAMPLES);
        assert_eq!(d[0], 5);
        assert_eq!(*d.last().unwrap(), DEPTH_SAMPLES as u64 + 4);
    }
}
