//! Sources: transports only. A source opens its device, reads bytes, reconnects with backoff
//! when the device goes away, and emits [`SourceEvent`]s stamped with the device id and the
//! time of receipt. It knows nothing of wire formats: framing and decoding happen downstream.
//! Bytes the host must send to the device (format select, polls) come back through the
//! source's writer channel.

pub mod mllp;
pub mod mqtt;
pub mod serial;
pub mod usb;

use std::time::Duration;

use time::OffsetDateTime;

/// What a source reports to its device pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// The port is open; the pipeline may send the decoder's connect bytes.
    Connected,
    /// Bytes as they arrived.
    Bytes {
        data: Vec<u8>,
        received_at: OffsetDateTime,
    },
    /// The port closed or failed, or stayed silent past the inactivity timeout; the source
    /// reopens it with backoff. Buffered partial frames must be dropped.
    Disconnected { reason: String },
}

/// The time of receipt, to the millisecond (finer digits only add noise to records).
pub fn now_utc_ms() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).unwrap_or(t)
}

/// Capped exponential backoff with full jitter for reconnects: never a hot loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next wait: uniformly random in [cap/2, cap], cap doubling up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(16));
        let cap = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = cap / 2;
        let span = u64::try_from((cap - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=span))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_never_below_half_of_it() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            b.next_delay();
        }
        let late = b.next_delay();
        assert!(
            late >= Duration::from_secs(1) && late <= Duration::from_secs(2),
            "{late:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
