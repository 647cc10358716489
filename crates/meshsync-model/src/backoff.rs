//! The retry delay every reconnecting part uses (agents, datastore sources, the benchmark's
//! clients): `initial · 2^attempt`, capped at `max`, then a random fraction between half and all
//! of it, so that a herd of clients that failed together spreads out.

use std::time::Duration;

use rand::Rng;

/// The delay before attempt `attempt + 1` (attempt 0 is the first retry).
pub fn jittered_backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let base = initial.saturating_mul(1u32 << attempt.min(16)).min(max);
    base.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_jittered_between_half_and_all() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(10));
        for _ in 0..100 {
            let first = jittered_backoff(min, max, 0);
            assert!(first >= min / 2 && first <= min, "{first:?}");
            let late = jittered_backoff(min, max, 10);
            assert!(late >= max / 2 && late <= max, "{late:?}");
            let huge = jittered_backoff(min, max, u32::MAX);
            assert!(huge <= max);
        }
        assert_eq!(jittered_backoff(Duration::ZERO, max, 3), Duration::ZERO);
    }
}
