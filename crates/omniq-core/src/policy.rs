//! Pure scheduling rules shared by the runtime and tests: retry back-off and the
//! next interval slot. No I/O.

use time::{Duration, OffsetDateTime};

/// How long to wait before retry number `retry` (1-based).
///
/// Stored with a task (its own policy) as `{"type":"none"}`,
/// `{"type":"fixed","seconds":5.0}` or
/// `{"type":"exponential","base_seconds":1.0,"cap_seconds":60.0,"jitter":0.25}`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "BackoffRepr", try_from = "BackoffRepr")]
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

/// The stored shape of a [`Backoff`]: tagged, durations in seconds.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum BackoffRepr {
    None,
    Fixed {
        seconds: f64,
    },
    Exponential {
        base_seconds: f64,
        cap_seconds: f64,
        jitter: f64,
    },
}

impl From<Backoff> for BackoffRepr {
    fn from(b: Backoff) -> Self {
        match b {
            Backoff::None => Self::None,
            Backoff::Fixed(d) => Self::Fixed {
                seconds: d.as_seconds_f64(),
            },
            Backoff::Exponential { base, cap, jitter } => Self::Exponential {
                base_seconds: base.as_seconds_f64(),
                cap_seconds: cap.as_seconds_f64(),
                jitter,
            },
        }
    }
}

impl TryFrom<BackoffRepr> for Backoff {
    type Error = String;
    fn try_from(r: BackoffRepr) -> Result<Self, String> {
        let secs = |v: f64| {
            Duration::checked_seconds_f64(v).ok_or_else(|| format!("{v} seconds is out of range"))
        };
        Ok(match r {
            BackoffRepr::None => Self::None,
            BackoffRepr::Fixed { seconds } => Self::Fixed(secs(seconds)?),
            BackoffRepr::Exponential {
                base_seconds,
                cap_seconds,
                jitter,
            } => Self::Exponential {
                base: secs(base_seconds)?,
                cap: secs(cap_seconds)?,
                jitter,
            },
        })
    }
}

/// The longest delay a back-off may be configured with.
pub const MAX_BACKOFF: Duration = Duration::days(365);

impl Default for Backoff {
    /// The default: `min(2^(n-1), 60)` seconds with ±25% jitter.
    fn default() -> Self {
        Self::Exponential {
            base: Duration::seconds(1),
            cap: Duration::seconds(60),
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// Checks the policy: delays within 0..=365 days, jitter within 0.0..=1.0.
    pub fn validate(&self) -> Result<(), String> {
        let ok = match *self {
            Self::None => true,
            Self::Fixed(d) => !d.is_negative() && d <= MAX_BACKOFF,
            Self::Exponential { base, cap, jitter } => {
                !base.is_negative()
                    && !cap.is_negative()
                    && base <= MAX_BACKOFF
                    && cap <= MAX_BACKOFF
                    && jitter.is_finite()
                    && (0.0..=1.0).contains(&jitter)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid back-off {self:?}: delays must be 0..=365 days and jitter 0.0..=1.0"
            ))
        }
    }

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

/// The first slot `eta + k·interval` strictly after `now` (k ≥ 1): no drift, and
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
    fn backoff_round_trips_as_tagged_seconds() {
        let b = Backoff::Exponential {
            base: Duration::milliseconds(500),
            cap: Duration::seconds(30),
            jitter: 0.1,
        };
        let v = serde_json::to_value(b).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"type": "exponential", "base_seconds": 0.5, "cap_seconds": 30.0, "jitter": 0.1})
        );
        assert_eq!(serde_json::from_value::<Backoff>(v).ok(), Some(b));
        let f = serde_json::to_value(Backoff::Fixed(Duration::seconds(5))).expect("json");
        assert_eq!(f, serde_json::json!({"type": "fixed", "seconds": 5.0}));
        assert!(Backoff::Fixed(Duration::seconds(-1)).validate().is_err());
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
