//! The time that retention, rotation and pruning read.
//!
//! Receives nothing; promises a [`Clock`]: the system's UTC time in production, or a clock that
//! starts at a given time and runs faster (tests and the soak bench make days pass in seconds).
//! The queue's writer and the audit file log read time only through it.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

/// Now, in UTC.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// For tests only (documented in docs/audit-log.md): `VITALSD_TEST_CLOCK=<RFC 3339 time>` or
/// `<RFC 3339 time>*<rate>` starts the daemon's store clock at that time, running `rate` times
/// faster than real time (default 1).
pub const TEST_CLOCK_ENV: &str = "VITALSD_TEST_CLOCK";

/// The system clock.
pub fn system() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// A clock that reads `start` now and advances `rate` times as fast as real time.
pub fn accelerated(start: OffsetDateTime, rate: f64) -> Clock {
    let t0 = Instant::now();
    Arc::new(move || {
        let real = t0.elapsed().as_secs_f64() * rate;
        start + time::Duration::seconds_f64(real)
    })
}

/// The system clock, or the test clock named by [`TEST_CLOCK_ENV`] when it is set and valid
/// (an invalid value is ignored with a WARN: the daemon keeps the system clock).
pub fn from_env() -> Clock {
    match std::env::var(TEST_CLOCK_ENV) {
        Ok(v) if !v.trim().is_empty() => match parse(v.trim()) {
            Some((start, rate)) => {
                tracing::warn!(
                    %start,
                    rate,
                    "the store clock is a test clock (VITALSD_TEST_CLOCK); never set it in production"
                );
                accelerated(start, rate)
            }
            None => {
                tracing::warn!("VITALSD_TEST_CLOCK is not `<RFC 3339 time>[*<rate>]`; ignored");
                system()
            }
        },
        _ => system(),
    }
}

fn parse(v: &str) -> Option<(OffsetDateTime, f64)> {
    let (t, rate) = match v.split_once('*') {
        Some((t, r)) => (t, r.trim().parse::<f64>().ok()?),
        None => (v, 1.0),
    };
    if !(rate.is_finite() && rate > 0.0) {
        return None;
    }
    let start =
        OffsetDateTime::parse(t.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    Some((start, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_clock_parses_a_start_and_a_rate() {
        let (t, r) = parse("2026-12-06T23:59:50Z*3600").unwrap();
        assert_eq!(t, time::macros::datetime!(2026-12-06 23:59:50 UTC));
        assert_eq!(r, 3600.0);
        assert_eq!(parse("2026-12-06T23:59:50Z").unwrap().1, 1.0);
        assert!(parse("tomorrow").is_none());
        assert!(parse("2026-12-06T23:59:50Z*0").is_none());
    }

    #[test]
    fn an_accelerated_clock_runs_faster() {
        let start = time::macros::datetime!(2026-12-06 00:00 UTC);
        let c = accelerated(start, 3600.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let d = c() - start;
        assert!(d >= time::Duration::seconds(60), "{d}");
    }
}
