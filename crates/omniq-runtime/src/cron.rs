//! Cron schedules: parsing an expression in an IANA time zone, and the next slot.
//!
//! A cron task keeps its id across runs, like an interval task. After each run (or when
//! its retries are exhausted) the runtime computes the next slot — the first time the
//! expression matches strictly after now — and hands it to storage; so slots never
//! drift, and after downtime the missed slots run once, not once each.
//!
//! Daylight-saving time, in the task's zone:
//! - a local time that does not exist (clocks jump forward over it) runs once, at the
//!   first valid instant after the gap (`30 2 * * *` on a spring-forward night in
//!   Europe/Berlin runs at 03:00 local);
//! - a local time that happens twice (clocks fall back) runs once, at its first
//!   occurrence.
//!
//! ```
//! use omniq_runtime::cron::Cron;
//! use time::macros::datetime;
//!
//! let cron = Cron::parse("0 9 * * 1-5", "Europe/Berlin").unwrap();
//! // Friday 2026-01-02 10:00 UTC is 11:00 in Berlin: the next slot is Monday 09:00 local.
//! let next = cron.next_after(datetime!(2026-01-02 10:00 UTC)).unwrap();
//! assert_eq!(next, datetime!(2026-01-05 08:00 UTC));
//! ```

use crate::error::{Error, Result};
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use omniq_core::CronSchedule;
use std::str::FromStr;
use time::OffsetDateTime;

/// A parsed cron schedule: the expression (5 fields, or 6 with seconds first) in a time
/// zone.
#[derive(Clone)]
pub struct Cron {
    schedule: CronSchedule,
    cron: croner::Cron,
    tz: Tz,
}

impl std::fmt::Debug for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cron")
            .field("expr", &self.schedule.expr)
            .field("tz", &self.schedule.tz)
            .finish()
    }
}

impl Cron {
    /// Parses `expr` in the IANA zone `tz`; a clear `Config` error for either.
    pub fn parse(expr: &str, tz: &str) -> Result<Self> {
        let cron = croner::Cron::new(expr)
            .with_seconds_optional()
            .parse()
            .map_err(|e| {
                Error::Config(format!(
                    "cron expression {expr:?} is not valid: {e} (5 fields \
                     `min hour day month weekday`, or 6 with seconds first)"
                ))
            })?;
        let zone = Tz::from_str(tz).map_err(|_| {
            Error::Config(format!(
                "time zone {tz:?} is not an IANA zone name (e.g. UTC, Europe/Berlin, America/New_York)"
            ))
        })?;
        Ok(Self {
            schedule: CronSchedule {
                expr: expr.to_string(),
                tz: tz.to_string(),
            },
            cron,
            tz: zone,
        })
    }

    /// Parses a stored schedule.
    pub fn of(schedule: &CronSchedule) -> Result<Self> {
        Self::parse(&schedule.expr, &schedule.tz)
    }

    /// The schedule as stored with the task.
    pub fn schedule(&self) -> &CronSchedule {
        &self.schedule
    }

    /// The first slot strictly after `after`, or `None` when the expression never
    /// matches again.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let utc = Utc.timestamp_nanos(i64::try_from(after.unix_timestamp_nanos()).ok()?);
        let mut from = utc.with_timezone(&self.tz);
        // Bounded: each step moves forward to the next match.
        for _ in 0..1000 {
            let next = self.cron.find_next_occurrence(&from, false).ok()?;
            let slot = self.resolve(next);
            if let Some(slot) = slot.filter(|s| *s > utc) {
                return to_time(slot);
            }
            from = next;
        }
        None
    }

    /// Where a matched local time lands: a time that exists once is itself; one in a
    /// fall-back repeat is its first occurrence (a second match of the same local time
    /// is `None`, so it runs once); one that croner reports inside a spring-forward gap
    /// becomes the first instant after the gap.
    fn resolve(&self, matched: DateTime<Tz>) -> Option<DateTime<Utc>> {
        let local: NaiveDateTime = matched.naive_local();
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => {
                let first = first.with_timezone(&Utc);
                (matched.with_timezone(&Utc) == first).then_some(first)
            }
            LocalResult::None => {
                // Walk forward a minute at a time to the first valid local time.
                let mut probe = local;
                for _ in 0..(24 * 60) {
                    probe += chrono::Duration::minutes(1);
                    if let Some(t) = self.tz.from_local_datetime(&probe).earliest() {
                        return Some(t.with_timezone(&Utc));
                    }
                }
                None
            }
        }
    }
}

fn to_time(t: DateTime<Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.timestamp_nanos_opt()?)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn slots(expr: &str, tz: &str, from: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
        let cron = Cron::parse(expr, tz).expect("parse");
        let mut out = Vec::new();
        let mut at = from;
        for _ in 0..n {
            at = cron.next_after(at).expect("a next slot");
            out.push(at);
        }
        out
    }

    #[test]
    fn weekdays_at_nine_in_berlin_follow_the_calendar_and_the_offset() {
        // Winter (UTC+1) then summer (UTC+2) after 2026-03-29.
        let got = slots(
            "0 9 * * 1-5",
            "Europe/Berlin",
            datetime!(2026-03-26 12:00 UTC),
            3,
        );
        assert_eq!(
            got,
            vec![
                datetime!(2026-03-27 08:00 UTC), // Friday, UTC+1
                datetime!(2026-03-30 07:00 UTC), // Monday, UTC+2
                datetime!(2026-03-31 07:00 UTC),
            ]
        );
    }

    #[test]
    fn a_skipped_local_time_runs_once_at_the_first_valid_time_after_the_gap() {
        // 2026-03-29 02:00 → 03:00 in Berlin: 02:30 does not exist that night.
        let got = slots(
            "30 2 * * *",
            "Europe/Berlin",
            datetime!(2026-03-28 12:00 UTC),
            3,
        );
        assert_eq!(
            got[0],
            datetime!(2026-03-29 01:00 UTC),
            "03:00 local, after the gap"
        );
        assert_eq!(got[1], datetime!(2026-03-30 00:30 UTC), "02:30 local again");
        assert_eq!(got[2], datetime!(2026-03-31 00:30 UTC));
    }

    #[test]
    fn a_repeated_local_time_runs_once() {
        // 2026-10-25 03:00 → 02:00 in Berlin: 02:30 happens twice that night.
        let got = slots(
            "30 2 * * *",
            "Europe/Berlin",
            datetime!(2026-10-24 12:00 UTC),
            2,
        );
        assert_eq!(
            got[0],
            datetime!(2026-10-25 00:30 UTC),
            "the first 02:30 (+02:00)"
        );
        assert_eq!(
            got[1],
            datetime!(2026-10-26 01:30 UTC),
            "the next day, not the repeat"
        );
    }

    #[test]
    fn seconds_are_optional_and_bad_input_is_a_clear_error() {
        let every_ten = slots(
            "*/10 * * * * *",
            "UTC",
            datetime!(2026-01-01 00:00:01 UTC),
            2,
        );
        assert_eq!(
            every_ten,
            vec![
                datetime!(2026-01-01 00:00:10 UTC),
                datetime!(2026-01-01 00:00:20 UTC)
            ]
        );
        let e = Cron::parse("61 * * * *", "UTC").expect_err("bad minute");
        assert!(e.to_string().contains("cron expression"), "{e}");
        let e = Cron::parse("0 9 * * *", "Mars/Olympus").expect_err("bad zone");
        assert!(e.to_string().contains("IANA"), "{e}");
    }
}
