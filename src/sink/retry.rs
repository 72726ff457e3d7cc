//! Retry schedule: capped exponential backoff with jitter.
//!
//! The delivery loop asks [`RetryPolicy::delay`] how long to wait after the N-th consecutive
//! failure, of a whole sink (receiver down) or of one reading (it alone keeps failing). Jitter
//! spreads retries of many daemons (or many readings) so a recovering EHR is not hit by a wave.
//! The computation is pure given a random source; tests pass a seeded [`fastrand::Rng`].

use std::time::Duration;

/// How a sink backs off. `max_attempts_per_reading` applies only to a reading that fails while
/// others at the same sink succeed; a sink that is down entirely never dead-letters.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failure (before jitter).
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Growth per further failure (2.0 doubles).
    pub multiplier: f64,
    /// Fraction of the delay that is random, 0.0 (none) ..= 1.0 (full jitter): the delay is
    /// uniform in `[base × (1 − jitter), base]`.
    pub jitter: f64,
    /// After this many failed attempts of one reading (while its sink works) it is dead-lettered.
    pub max_attempts_per_reading: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts_per_reading: 10,
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempt`-th consecutive failure (1 = first failure; 0 counts as 1),
    /// with jitter from the thread-local random source.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut fastrand::Rng::new())
    }

    /// [`RetryPolicy::delay`] with an explicit random source (seed it for reproducible tests).
    pub fn delay_with(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let base = self.base(attempt);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Uniform in [base × (1 − jitter), base].
        let factor = 1.0 - jitter * rng.f64();
        base.mul_f64(factor)
    }

    /// The delay before jitter: `initial × multiplier^(attempt − 1)`, capped at `max`.
    pub fn base(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(1000);
        let mult = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let cap = self.max.as_secs_f64();
        let secs = self.initial.as_secs_f64() * mult.powi(i32::try_from(exp).unwrap_or(1000));
        if !secs.is_finite() || secs >= cap {
            self.max
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter,
            max_attempts_per_reading: 5,
        }
    }

    #[test]
    fn without_jitter_the_delay_doubles_from_initial_until_the_cap() {
        let p = policy(0.0);
        let ms: Vec<u128> = (1..=9).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    }

    #[test]
    fn attempt_zero_is_treated_as_the_first_failure() {
        assert_eq!(policy(0.0).delay(0), Duration::from_millis(100));
    }

    #[test]
    fn a_huge_attempt_count_stays_at_the_cap_without_overflow() {
        assert_eq!(policy(0.0).delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jittered_delays_stay_within_their_bounds_and_vary() {
        let p = policy(0.5);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen = std::collections::BTreeSet::new();
        for attempt in 1..=12 {
            for _ in 0..50 {
                let d = p.delay_with(attempt, &mut rng);
                let base = p.base(attempt);
                assert!(d <= base, "{d:?} > {base:?}");
                assert!(d >= base.mul_f64(0.5), "{d:?} < half of {base:?}");
                seen.insert(d);
            }
        }
        assert!(
            seen.len() > 100,
            "jitter should spread delays, got {}",
            seen.len()
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let p = policy(1.0);
        let a: Vec<_> = (1..6)
            .map(|n| p.delay_with(n, &mut fastrand::Rng::with_seed(42)))
            .collect();
        let b: Vec<_> = (1..6)
            .map(|n| p.delay_with(n, &mut fastrand::Rng::with_seed(42)))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn nonsense_multiplier_and_jitter_fall_back_to_safe_values() {
        let mut p = policy(f64::NAN);
        p.multiplier = 0.1;
        assert_eq!(p.delay(5), Duration::from_millis(100));
    }
}
