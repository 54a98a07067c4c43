//! Interval input compatibility and the interval wire format.
//!
//! Every API that takes an interval accepts `time::Duration`, `std::time::Duration`
//! and integer seconds through [`IntoInterval`]. On the wire an interval is written
//! as `{"type": "timedelta", "total_seconds": 3600.0}`; old records that stored a
//! bare number of seconds still decode.

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserializer, Serializer};
use std::fmt;
use time::Duration;

/// Why an interval was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid interval {given}: an interval must be a positive duration (e.g. 3600 seconds or Duration::hours(1))"
)]
pub struct IntervalError {
    /// The rejected input, as written by the caller.
    pub given: String,
}

/// Converts the accepted interval inputs into a positive `time::Duration`.
///
/// ```
/// use omniq_core::IntoInterval;
/// use time::Duration;
///
/// assert_eq!(3600.into_interval().unwrap(), Duration::hours(1));
/// assert_eq!(Duration::minutes(5).into_interval().unwrap(), Duration::minutes(5));
/// assert_eq!(std::time::Duration::from_secs(30).into_interval().unwrap(), Duration::seconds(30));
/// assert!(0.into_interval().is_err());
/// assert!((-5).into_interval().is_err());
/// ```
pub trait IntoInterval {
    /// The interval as a positive duration, or a clear error for zero/negative input.
    fn into_interval(self) -> Result<Duration, IntervalError>;
}

/// The longest interval accepted: 100 years (keeps every `eta + k·interval` in range).
pub const MAX_INTERVAL: Duration = Duration::days(36_525);

fn positive(d: Duration, given: impl fmt::Display) -> Result<Duration, IntervalError> {
    if d.is_positive() && d <= MAX_INTERVAL {
        Ok(d)
    } else {
        Err(IntervalError {
            given: given.to_string(),
        })
    }
}

impl IntoInterval for Duration {
    fn into_interval(self) -> Result<Duration, IntervalError> {
        positive(self, self)
    }
}

impl IntoInterval for std::time::Duration {
    fn into_interval(self) -> Result<Duration, IntervalError> {
        let d = Duration::try_from(self).map_err(|_| IntervalError {
            given: format!("{self:?}"),
        })?;
        positive(d, format!("{self:?}"))
    }
}

macro_rules! int_seconds {
    ($($t:ty),*) => {$(
        impl IntoInterval for $t {
            fn into_interval(self) -> Result<Duration, IntervalError> {
                let secs = i64::try_from(self).map_err(|_| IntervalError { given: format!("{self} seconds") })?;
                positive(Duration::seconds(secs), format_args!("{self} seconds"))
            }
        }
    )*};
}
int_seconds!(i32, i64, u32, u64, usize);

/// Writes an interval as `{"type":"timedelta","total_seconds":f64}`.
pub fn serialize_timedelta<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(2))?;
    m.serialize_entry("type", "timedelta")?;
    m.serialize_entry("total_seconds", &d.as_seconds_f64())?;
    m.end()
}

/// Reads an interval written by [`serialize_timedelta`], or a bare number of seconds
/// (the old integer format).
pub fn deserialize_timedelta<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(TimedeltaVisitor)
}

struct TimedeltaVisitor;

impl<'de> Visitor<'de> for TimedeltaVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"{"type":"timedelta","total_seconds":N} or a number of seconds"#)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Ok(Duration::seconds(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        i64::try_from(v)
            .map(Duration::seconds)
            .map_err(|_| E::custom("interval too large"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        if !v.is_finite() {
            return Err(E::custom("interval must be finite"));
        }
        // A stored number can be anything: out of range is an error, never a panic.
        Duration::checked_seconds_f64(v)
            .ok_or_else(|| E::custom(format!("interval of {v} seconds is out of range")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Duration, A::Error> {
        let mut total: Option<f64> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "total_seconds" => total = Some(map.next_value()?),
                "type" => {
                    let t: String = map.next_value()?;
                    if t != "timedelta" {
                        return Err(de::Error::custom(format!(
                            "unknown interval type {t:?}, expected \"timedelta\""
                        )));
                    }
                }
                _ => {
                    let _: de::IgnoredAny = map.next_value()?;
                }
            }
        }
        let total = total.ok_or_else(|| de::Error::missing_field("total_seconds"))?;
        self.visit_f64(total)
    }
}

/// Serde adapter for `Option<Duration>` intervals (used with `#[serde(with = ...)]`).
pub mod option {
    use super::*;
    use serde::Deserialize;

    #[derive(serde::Serialize)]
    struct Wrap<'a>(#[serde(serialize_with = "serialize_timedelta")] &'a Duration);

    #[derive(Deserialize)]
    struct WrapDe(#[serde(deserialize_with = "deserialize_timedelta")] Duration);

    /// Serialize an optional interval.
    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&Wrap(d)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize an optional interval (null, timedelta map or seconds).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<WrapDe>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_seconds_become_durations() {
        assert_eq!(3600_i64.into_interval(), Ok(Duration::hours(1)));
        assert_eq!(60_u32.into_interval(), Ok(Duration::minutes(1)));
    }

    #[test]
    fn zero_and_negative_intervals_are_rejected() {
        assert!(0_i64.into_interval().is_err());
        assert!(Duration::MAX.into_interval().is_err());
        assert!(u64::MAX.into_interval().is_err());
        assert!(Duration::seconds(-1).into_interval().is_err());
        assert!(std::time::Duration::ZERO.into_interval().is_err());
        let msg = (-3_i32).into_interval().unwrap_err().to_string();
        assert!(msg.contains("-3 seconds"), "{msg}");
    }

    #[test]
    fn complex_intervals_keep_their_parts() {
        let d = (Duration::days(1) + Duration::hours(2) + Duration::minutes(30)).into_interval();
        assert_eq!(d.map(|d| d.whole_seconds()), Ok(95_400));
    }
}
