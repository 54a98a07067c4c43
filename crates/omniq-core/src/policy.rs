//! Pure scheduling rules shared by the runtime and tests: retry back-off (R2) and the
//! next interval slot (R5). No I/O.

use time::{Duration, OffsetDateTime};

/// How long to wait before retry number `retry` (1-based).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// Retry at once.
    None,
    /// Always the same delay.
    Fixed(Duration),
    /// `min(base * 2^(n-1), cap)`, scaled by a random factor in `[1 - jitter, 1 + jitter]`.
    Exponential {
        /// The first delay.
        base: Duration,
        /// The largest delay.
        cap: Duration,
        /// Relative jitter, 0.0..=1.0.
        jitter: f64,
    },
}

impl Default for Backoff {
    /// R2's default: `min(2^(n-1), 60)` seconds with ±25% jitter.
    fn default() -> Self {
        Self::Exponential {
            base: Duration::seconds(1),
            cap: Duration::seconds(60),
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// The delay before retry `retry` (1-based), with `unit_random` in `[0, 1)` choosing
    /// the jitter (pass 0.5 for none).
    pub fn delay(&self, retry: u32, unit_random: f64) -> Duration {
        match *self {
            Self::None => Duration::ZERO,
            Self::Fixed(d) => d,
            Self::Exponential { base, cap, jitter } => {
                let exp = retry.saturating_sub(1).min(62);
                let raw = base.as_seconds_f64() * 2f64.powi(exp as i32);
                let capped = raw.min(cap.as_seconds_f64());
                let j = jitter.clamp(0.0, 1.0);
                let factor = 1.0 - j + 2.0 * j * unit_random.clamp(0.0, 1.0);
                Duration::checked_seconds_f64((capped * factor).max(0.0)).unwrap_or(cap)
            }
        }
    }
}

/// R5: the first slot `eta + k·interval` strictly after `now` (k ≥ 1): no drift, and
/// missed slots are skipped rather than run in a burst.
///
/// ```
/// use omniq_core::next_interval_slot;
/// use time::{Duration, macros::datetime};
///
/// let eta = datetime!(2025-01-01 0:00 UTC);
/// // The run finished 2.5 intervals late: the next slot is eta + 3 intervals.
/// let next = next_interval_slot(eta, Duration::minutes(10), datetime!(2025-01-01 0:25 UTC));
/// assert_eq!(next, datetime!(2025-01-01 0:30 UTC));
/// ```
pub fn next_interval_slot(
    eta: OffsetDateTime,
    interval: Duration,
    now: OffsetDateTime,
) -> OffsetDateTime {
    if !interval.is_positive() {
        return now;
    }
    let Some(first) = eta.checked_add(interval) else {
        return now;
    };
    if first > now {
        return first;
    }
    let behind = (now - first).whole_nanoseconds();
    let step = interval.whole_nanoseconds();
    let k = behind / step + 1;
    i64::try_from(step * k)
        .ok()
        .and_then(|add| first.checked_add(Duration::nanoseconds(add)))
        .unwrap_or(now + interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn default_backoff_doubles_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.5), Duration::seconds(1));
        assert_eq!(b.delay(2, 0.5), Duration::seconds(2));
        assert_eq!(b.delay(4, 0.5), Duration::seconds(8));
        assert_eq!(b.delay(10, 0.5), Duration::seconds(60));
        assert_eq!(b.delay(1, 0.0), Duration::milliseconds(750));
        assert_eq!(b.delay(1, 1.0), Duration::milliseconds(1250));
    }

    #[test]
    fn next_slot_never_drifts_and_skips_missed_runs() {
        let eta = datetime!(2025-01-01 0:00 UTC);
        let i = Duration::minutes(10);
        assert_eq!(
            next_interval_slot(eta, i, datetime!(2025-01-01 0:00:05 UTC)),
            datetime!(2025-01-01 0:10 UTC)
        );
        assert_eq!(
            next_interval_slot(eta, i, datetime!(2025-01-01 0:10 UTC)),
            datetime!(2025-01-01 0:20 UTC)
        );
        assert_eq!(
            next_interval_slot(eta, i, datetime!(2025-01-01 3:01 UTC)),
            datetime!(2025-01-01 3:10 UTC)
        );
    }
}
