//! Running under systemd (`Type=notify`): readiness, status lines, stopping, and the watchdog.
//!
//! Every call is a no-op without `NOTIFY_SOCKET`, so the daemon behaves the same outside
//! systemd. The watchdog pings at half of `WATCHDOG_USEC`, and only after the pipeline proved
//! alive (a probe — the queue writer's round trip — answered within the interval): a wedged
//! writer stops the pings and systemd restarts the service.

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::queue::Queue;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` (with the monotonic time systemd wants) before a reload.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(t) => send(&[NotifyState::Reloading, t]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1` with a status line.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The ping interval for a watchdog timeout: half of it, at least 10 ms.
pub fn ping_interval(watchdog: Duration) -> Duration {
    (watchdog / 2).max(Duration::from_millis(10))
}

/// Starts the watchdog task when systemd asked for one (`WATCHDOG_USEC`); the probe is the
/// queue writer's round trip.
pub fn spawn_watchdog(
    queue: Queue,
    cancel: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let timeout = sd_notify::watchdog_enabled()?;
    tracing::info!(timeout = ?timeout, "systemd watchdog enabled");
    let probe = move || {
        let q = queue.clone();
        async move { q.ping().await.is_ok() }
    };
    Some(tokio::spawn(run_watchdog(
        ping_interval(timeout),
        probe,
        || send(&[NotifyState::Watchdog]),
        cancel,
    )))
}

/// Every `every`: runs `probe`; calls `ping` only when it answered `true` within `every`.
pub async fn run_watchdog<P, F, S>(every: Duration, probe: P, ping: S, cancel: CancellationToken)
where
    P: Fn() -> F,
    F: Future<Output = bool>,
    S: Fn(),
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let alive = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(every, probe()) => matches!(r, Ok(true)),
        };
        if alive {
            if !healthy {
                tracing::info!("the queue writer answers again; watchdog pings resume");
            }
            ping();
        } else if healthy {
            tracing::error!("the queue writer did not answer; watchdog pings stop");
        }
        healthy = alive;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn pings_come_at_half_the_watchdog_timeout() {
        assert_eq!(
            ping_interval(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            ping_interval(Duration::from_millis(4)),
            Duration::from_millis(10)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wedged_probe_stops_the_pings_and_a_live_one_resumes_them() {
        let pings = Arc::new(AtomicU32::new(0));
        let wedged = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let (p, w) = (pings.clone(), wedged.clone());
        let task = tokio::spawn(run_watchdog(
            Duration::from_secs(1),
            move || {
                let w = w.clone();
                async move {
                    if w.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    true
                }
            },
            move || {
                p.fetch_add(1, Ordering::SeqCst);
            },
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let before = pings.load(Ordering::SeqCst);
        assert!(before >= 3, "pings while alive: {before}");
        wedged.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let during = pings.load(Ordering::SeqCst);
        assert!(
            during <= before + 1,
            "pinged while wedged: {before} -> {during}"
        );
        wedged.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(pings.load(Ordering::SeqCst) > during);
        cancel.cancel();
        task.await.unwrap();
    }
}
