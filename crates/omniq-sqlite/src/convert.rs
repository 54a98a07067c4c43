//! Conversions between the model and SQLite values: unix-microsecond times, durations,
//! statuses and row decoding.

use crate::error::{Result, corrupt};
use omniq_core::{Format, Payload, Schedule, Task, TaskError, TaskId, TaskResult, TaskStatus};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::{Duration, OffsetDateTime};

/// Unix microseconds (floor) of a time. Every `OffsetDateTime` fits in an `i64` of micros.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    let us = t.unix_timestamp_nanos().div_euclid(1000);
    i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX })
}

/// The wall clock in unix microseconds (only for bookkeeping, never for scheduling).
pub(crate) fn now_micros() -> i64 {
    micros(OffsetDateTime::now_utc())
}

/// A time from unix microseconds.
pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|e| corrupt(format!("stored timestamp {us} out of range: {e}")))
}

fn opt_from_micros(us: Option<i64>) -> Result<Option<OffsetDateTime>> {
    us.map(from_micros).transpose()
}

/// A duration in whole microseconds, saturating.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    let us = d.whole_microseconds();
    i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX })
}

/// Parses a stored status.
pub(crate) fn status(s: &str) -> Result<TaskStatus> {
    s.parse::<TaskStatus>().map_err(|e| corrupt(e.to_string()))
}

fn task_id(s: &str) -> Result<TaskId> {
    s.parse::<TaskId>()
        .map_err(|e| corrupt(format!("stored task id {s:?} is not a UUID: {e}")))
}

fn get<'r, T>(row: &'r SqliteRow, i: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    Ok(row.try_get::<T, usize>(i)?)
}

fn u32_of(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(format!("stored {what} {v} out of range")))
}

/// Decodes a stored TaskError. A blob written with the other serializer (the app switched
/// `OMNIQ_SERIALIZER`) still decodes; one that decodes with neither becomes a `decode`
/// TaskError saying so, rather than an error that would fail every claim, read or list
/// touching the row (a bad record must not block its queue).
fn decode_error(format: Format, bytes: Option<Vec<u8>>) -> Result<Option<TaskError>> {
    let Some(b) = bytes else { return Ok(None) };
    let other = match format {
        Format::MessagePack => Format::Json,
        Format::Json => Format::MessagePack,
    };
    Ok(Some(
        format
            .decode::<TaskError>(&b)
            .or_else(|_| other.decode::<TaskError>(&b))
            .unwrap_or_else(|e| {
                TaskError::new(
                    omniq_core::ErrorType::Decode,
                    format!("the stored error of this task could not be decoded: {e}"),
                )
                .with_context("stored_error_bytes", b.len())
            }),
    ))
}

/// A task's own back-off, stored as readable JSON.
pub(crate) fn encode_backoff(b: Option<&omniq_core::Backoff>) -> Result<Option<String>> {
    Ok(b.map(|b| {
        Format::Json
            .encode(b)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    })
    .transpose()?)
}

/// Reads a stored back-off; one that no longer parses falls back to the worker's policy
/// rather than making the row unreadable (a bad record must not block its queue).
fn decode_backoff(text: Option<String>) -> Option<omniq_core::Backoff> {
    text.and_then(|t| Format::Json.decode(t.as_bytes()).ok())
}

/// Encodes a TaskError with the configured serializer.
pub(crate) fn encode_error(format: Format, error: &TaskError) -> Result<Vec<u8>> {
    Ok(format.encode(error)?)
}

/// A task row read with [`crate::schema::TASK_COLUMNS`], plus its claim bookkeeping.
pub(crate) struct TaskRow {
    pub(crate) task: Task,
    pub(crate) lease_token: i64,
    pub(crate) run_at: i64,
    pub(crate) seq: i64,
}

/// Decodes a row selected with [`crate::schema::TASK_COLUMNS`].
pub(crate) fn task_from_row(row: &SqliteRow, format: Format) -> Result<TaskRow> {
    let id: &str = get(row, 0)?;
    let status_text: &str = get(row, 5)?;
    let args: Option<Vec<u8>> = get(row, 2)?;
    let task = Task {
        id: task_id(id)?,
        func_path: get(row, 1)?,
        args: Payload(args.unwrap_or_default()),
        queue: get(row, 3)?,
        priority: i32::try_from(get::<i64>(row, 4)?)
            .map_err(|_| corrupt("stored priority out of range"))?,
        status: status(status_text)?,
        schedule: Schedule {
            eta: opt_from_micros(get(row, 6)?)?,
            interval: get::<Option<i64>>(row, 7)?.map(Duration::microseconds),
            cron: match (
                get::<Option<String>>(row, 21)?,
                get::<Option<String>>(row, 22)?,
            ) {
                (Some(expr), Some(tz)) => Some(omniq_core::CronSchedule { expr, tz }),
                _ => None,
            },
        },
        max_retries: u32_of(get(row, 8)?, "max_retries")?,
        timeout: get::<Option<i64>>(row, 9)?.map(Duration::microseconds),
        attempts: u32_of(get(row, 10)?, "attempts")?,
        runs: u32_of(get(row, 23)?, "runs")?,
        created_at: from_micros(get(row, 11)?)?,
        updated_at: from_micros(get(row, 12)?)?,
        last_attempt_at: opt_from_micros(get(row, 13)?)?,
        error: decode_error(format, get(row, 14)?)?,
        unique_key: get(row, 15)?,
        backoff: decode_backoff(get(row, 20)?),
    };
    Ok(TaskRow {
        task,
        lease_token: get(row, 16)?,
        run_at: get(row, 18)?,
        seq: get(row, 19)?,
    })
}

/// Decodes a row the claim returned ([`crate::schema::CLAIM_COLUMNS`]); `now` is the
/// claim's time in unix micros, which it stored as `updated_at` and `last_attempt_at`.
/// `Ok(None)` when the row's flag says it sets a column the claim does not return: read
/// it whole (by its `seq`, column 12) and decode it with [`task_from_row`].
pub(crate) fn task_from_claim_row(row: &SqliteRow, now: i64) -> Result<Option<TaskRow>> {
    if get::<bool>(row, 14)? {
        return Ok(None);
    }
    let id: &str = get(row, 0)?;
    let args: Option<Vec<u8>> = get(row, 2)?;
    let now = from_micros(now)?;
    let task = Task {
        id: task_id(id)?,
        func_path: get(row, 1)?,
        args: Payload(args.unwrap_or_default()),
        queue: get(row, 3)?,
        priority: i32::try_from(get::<i64>(row, 4)?)
            .map_err(|_| corrupt("stored priority out of range"))?,
        status: TaskStatus::Running,
        schedule: Schedule {
            eta: opt_from_micros(get(row, 5)?)?,
            interval: None,
            cron: None,
        },
        max_retries: u32_of(get(row, 6)?, "max_retries")?,
        timeout: get::<Option<i64>>(row, 7)?.map(Duration::microseconds),
        attempts: u32_of(get(row, 8)?, "attempts")?,
        runs: u32_of(get(row, 13)?, "runs")?,
        created_at: from_micros(get(row, 9)?)?,
        updated_at: now,
        last_attempt_at: Some(now),
        error: None,
        unique_key: None,
        backoff: None,
    };
    Ok(Some(TaskRow {
        task,
        lease_token: get(row, 10)?,
        run_at: get(row, 11)?,
        seq: get(row, 12)?,
    }))
}

/// Decodes a row selected with [`crate::schema::RESULT_COLUMNS`].
pub(crate) fn result_from_row(row: &SqliteRow, format: Format) -> Result<TaskResult> {
    let id: &str = get(row, 0)?;
    let status_text: &str = get(row, 1)?;
    let result: Option<Vec<u8>> = get(row, 2)?;
    Ok(TaskResult {
        task_id: task_id(id)?,
        status: status(status_text)?,
        result: result.map(Payload),
        error: decode_error(format, get(row, 3)?)?,
        finished_at: from_micros(get(row, 4)?)?,
        attempts: u32_of(get(row, 5)?, "attempts")?,
        last_attempt_at: opt_from_micros(get(row, 6)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn micros_round_trip_and_floor() {
        let t = datetime!(2025-01-02 03:04:05.123456789 UTC);
        let us = micros(t);
        assert_eq!(us % 1_000_000, 123_456);
        assert_eq!(
            from_micros(us).ok(),
            Some(datetime!(2025-01-02 03:04:05.123456 UTC))
        );
        let before_epoch = datetime!(1969-12-31 23:59:59.9999995 UTC);
        assert_eq!(micros(before_epoch), -1);
    }

    #[test]
    fn durations_are_whole_micros() {
        assert_eq!(duration_micros(Duration::seconds(2)), 2_000_000);
        assert_eq!(duration_micros(Duration::nanoseconds(1500)), 1);
    }
}
