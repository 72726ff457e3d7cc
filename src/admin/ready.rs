//! The readiness checks beyond the queue's own (`/readyz`): a filling disk, the MQTT
//! connection, and stuck sinks: pending readings that wait past `stuck_after` while the sink
//! delivers nothing (a sink draining an old backlog makes progress and is not stuck).

use std::time::Duration;

use time::OffsetDateTime;

use super::AdminState;

/// Below this share of free space the daemon is not ready.
pub const MIN_FREE_RATIO: f64 = 0.05;
/// Below this many free bytes the daemon is not ready.
pub const MIN_FREE_BYTES: u64 = 100 * 1024 * 1024;

/// Why free space makes the daemon not ready, if it does (pure).
pub fn disk_problem(available: u64, total: u64) -> Option<String> {
    let low_ratio = total > 0 && (available as f64) < (total as f64) * MIN_FREE_RATIO;
    if low_ratio || available < MIN_FREE_BYTES {
        Some(format!(
            "data_dir filesystem nearly full: {} free of {}",
            bytesize::ByteSize(available),
            bytesize::ByteSize(total)
        ))
    } else {
        None
    }
}

/// True when a sink with pending readings makes no progress (pure): its oldest pending reading
/// was received more than `threshold` ago AND nothing was delivered within `threshold` (a sink
/// that never delivered counts from `started`, when its loop started). A sink draining a
/// backlog after an outage delivers, so it is not stuck however old that backlog is.
pub fn is_stuck(
    oldest: OffsetDateTime,
    last_success: Option<OffsetDateTime>,
    started: OffsetDateTime,
    now: OffsetDateTime,
    threshold: Duration,
) -> bool {
    let older = |t: OffsetDateTime| now > t && (now - t).unsigned_abs() > threshold;
    older(oldest) && older(last_success.unwrap_or(started))
}

fn ago(now: OffsetDateTime, t: OffsetDateTime) -> String {
    humantime::format_duration(Duration::from_secs((now - t).unsigned_abs().as_secs())).to_string()
}

// The statvfs fields are c_ulong / fsblkcnt_t: u64 here, narrower on 32-bit targets.
#[allow(clippy::useless_conversion)]
fn free_space(dir: &std::path::Path) -> Result<(u64, u64), String> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| e.to_string())?;
    let frag = u64::from(st.fragment_size());
    Ok((
        u64::from(st.blocks_available()).saturating_mul(frag),
        u64::from(st.blocks()).saturating_mul(frag),
    ))
}

/// Readiness problems beyond the queue's own: stuck sinks and a filling disk.
pub fn ready_problems(s: &AdminState) -> Vec<String> {
    let mut out = Vec::new();
    match free_space(&s.ops.data_dir) {
        Ok((avail, total)) => out.extend(disk_problem(avail, total)),
        Err(e) => out.push(format!("cannot check free space of the data_dir: {e}")),
    }
    let mqtt = s
        .ops
        .mqtt
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(m) = mqtt {
        if !m.ready() {
            out.push(
                "mqtt: the queue refuses messages; acknowledgements to the broker are stopped"
                    .into(),
            );
        }
        if !m.connected() {
            out.push("mqtt: not connected to the broker".into());
        }
    }
    let now = OffsetDateTime::now_utc();
    let far = now + time::Duration::days(3650);
    if let Ok(stats) = s.queue.stats() {
        for st in stats
            .sinks
            .iter()
            .filter(|st| st.configured && st.pending > 0)
        {
            let oldest = s
                .queue
                .pending(&st.sink, 16, far)
                .ok()
                .and_then(|p| p.iter().map(|p| p.reading.received_at).min());
            let Some(oldest) = oldest else { continue };
            let status = s.ops.sinks.get(&st.sink);
            let last_success = status.as_ref().and_then(|x| x.snapshot().last_success);
            let started = status.map_or(s.ops.started_at, |x| x.started_at);
            if is_stuck(oldest, last_success, started, now, s.ops.stuck_after) {
                let delivered = match last_success {
                    Some(t) => format!("last delivery {} ago", ago(now, t)),
                    None => "nothing delivered since start".into(),
                };
                out.push(format!(
                    "sink {} is stuck: its oldest pending reading was received {} ago; {delivered}",
                    st.sink,
                    ago(now, oldest),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn less_than_five_percent_or_100_mib_free_is_a_problem() {
        let gib = 1024 * 1024 * 1024;
        assert!(disk_problem(10 * gib, 100 * gib).is_none());
        assert!(disk_problem(4 * gib, 100 * gib).is_some());
        assert!(disk_problem(50 * 1024 * 1024, 200 * 1024 * 1024).is_some());
        assert!(disk_problem(MIN_FREE_BYTES, MIN_FREE_BYTES * 2).is_none());
    }

    /// `is_stuck` at 12:00 with a 10-minute threshold, for a sink started at 08:00.
    fn stuck(oldest: OffsetDateTime, last_success: Option<OffsetDateTime>) -> bool {
        let (start, now) = (
            datetime!(2026-11-27 08:00 UTC),
            datetime!(2026-11-27 12:00 UTC),
        );
        is_stuck(oldest, last_success, start, now, Duration::from_secs(600))
    }

    #[test]
    fn a_sink_is_stuck_once_its_oldest_reading_waited_past_the_threshold_without_deliveries() {
        let long_ago = Some(datetime!(2026-11-27 11:00 UTC));
        assert!(!stuck(datetime!(2026-11-27 11:55 UTC), long_ago));
        assert!(stuck(datetime!(2026-11-27 11:49 UTC), long_ago));
        assert!(!stuck(datetime!(2026-11-27 12:30 UTC), long_ago));
    }

    #[test]
    fn a_sink_draining_an_old_backlog_is_not_stuck() {
        let oldest = datetime!(2026-11-27 09:00 UTC);
        assert!(!stuck(oldest, Some(datetime!(2026-11-27 11:59:59 UTC))));
        assert!(!stuck(oldest, Some(datetime!(2026-11-27 11:50 UTC))));
        assert!(stuck(oldest, Some(datetime!(2026-11-27 11:49:59 UTC))));
    }

    #[test]
    fn a_sink_that_never_delivered_is_stuck_only_once_it_ran_past_the_threshold() {
        let (now, ten) = (datetime!(2026-11-27 12:00 UTC), Duration::from_secs(600));
        let oldest = datetime!(2026-11-27 09:00 UTC);
        assert!(!is_stuck(
            oldest,
            None,
            datetime!(2026-11-27 11:55 UTC),
            now,
            ten
        ));
        assert!(is_stuck(
            oldest,
            None,
            datetime!(2026-11-27 11:49 UTC),
            now,
            ten
        ));
        assert!(stuck(oldest, None), "running since 08:00, never delivered");
    }
}
