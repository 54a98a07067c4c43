//! One duration story: every runtime API that takes a duration accepts both
//! `std::time::Duration` and `time::Duration`, through [`IntoDuration`]. (Intervals also
//! accept integer seconds, through [`IntoInterval`](omniq_core::IntoInterval).)

/// A duration from either `std::time::Duration` or `time::Duration`.
///
/// ```
/// use omniq_runtime::IntoDuration;
///
/// assert_eq!(std::time::Duration::from_millis(1500).into_duration(), time::Duration::milliseconds(1500));
/// assert_eq!(time::Duration::seconds(2).into_duration(), time::Duration::seconds(2));
/// // Where only a length makes sense (a wait), a negative duration is zero.
/// assert_eq!(time::Duration::seconds(-1).into_std(), std::time::Duration::ZERO);
/// ```
pub trait IntoDuration {
    /// As a signed `time::Duration` (saturating at its range).
    fn into_duration(self) -> time::Duration;

    /// As a `std::time::Duration`; negative durations become zero.
    fn into_std(self) -> std::time::Duration
    where
        Self: Sized,
    {
        let d = self.into_duration();
        if d.is_negative() {
            std::time::Duration::ZERO
        } else {
            d.unsigned_abs()
        }
    }
}

impl IntoDuration for time::Duration {
    fn into_duration(self) -> time::Duration {
        self
    }
}

impl IntoDuration for std::time::Duration {
    fn into_duration(self) -> time::Duration {
        time::Duration::try_from(self).unwrap_or(time::Duration::MAX)
    }

    fn into_std(self) -> std::time::Duration {
        self
    }
}
