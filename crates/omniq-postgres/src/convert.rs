//! Conversions between the model and PostgreSQL values: `timestamptz` as [`PgTime`],
//! durations, statuses, codecs and row decoding.

use crate::error::{Result, corrupt};
use omniq_core::{
    Backoff, ErrorType, Format, Payload, Schedule, Task, TaskError, TaskId, TaskResult, TaskStatus,
};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgRow, PgTypeInfo, PgValueFormat};
use sqlx::{Decode, Encode, Postgres, Row, Type};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 UTC).
const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// A `timestamptz` on the wire: microseconds since the Unix epoch.
///
/// sqlx's own `time` support panics on stored values outside `OffsetDateTime`'s range
/// (`'infinity'`, year 10000+); this type decodes any stored value and leaves the range
/// check to [`PgTime::to_datetime`], where it becomes a corrupt-record error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PgTime(pub(crate) i64);

impl PgTime {
    /// The instant, floored to the microsecond (PostgreSQL's precision).
    pub(crate) fn of(t: OffsetDateTime) -> Self {
        let us = t.unix_timestamp_nanos().div_euclid(1000);
        Self(i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX }))
    }

    /// Back to an `OffsetDateTime`; a value outside its range is a corrupt record.
    pub(crate) fn to_datetime(self) -> Result<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .map_err(|e| corrupt(format!("stored timestamp {} us out of range: {e}", self.0)))
    }
}

const TIMESTAMPTZ_OID: u32 = 1184;
const TIMESTAMPTZ_ARRAY_OID: u32 = 1185;

impl Type<Postgres> for PgTime {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(TIMESTAMPTZ_OID))
    }
}

impl PgHasArrayType for PgTime {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(TIMESTAMPTZ_ARRAY_OID))
    }
}

impl PgTime {
    /// The wire value: microseconds since PostgreSQL's epoch.
    pub(crate) fn to_pg(self) -> Result<i64, BoxDynError> {
        Ok(self
            .0
            .checked_sub(PG_EPOCH_UNIX_US)
            .ok_or("timestamp out of PostgreSQL's range")?)
    }
}

impl Encode<'_, Postgres> for PgTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<'_, Postgres>>::encode(self.to_pg()?, buf)
    }

    fn size_hint(&self) -> usize {
        std::mem::size_of::<i64>()
    }
}

impl<'r> Decode<'r, Postgres> for PgTime {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.format() != PgValueFormat::Binary {
            return Err("timestamptz in text format: only the binary protocol is used".into());
        }
        // 'infinity' and '-infinity' are i64::MAX / i64::MIN: saturate, then the range
        // check in to_datetime reports them.
        let pg = <i64 as Decode<'r, Postgres>>::decode(value)?;
        Ok(Self(pg.saturating_add(PG_EPOCH_UNIX_US)))
    }
}

/// The wall clock (only for bookkeeping, never for scheduling).
pub(crate) fn wall_clock() -> OffsetDateTime {
    OffsetDateTime::now_utc()
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

/// The status a task is stored with: a task is only Running under a lease, so a
/// `Running` input starts Pending.
pub(crate) fn stored_status(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Running => TaskStatus::Pending.as_str(),
        s => s.as_str(),
    }
}

fn u32_of(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(format!("stored {what} {v} out of range")))
}

fn time_of(v: PgTime) -> Result<OffsetDateTime> {
    v.to_datetime()
}

fn opt_time(v: Option<PgTime>) -> Result<Option<OffsetDateTime>> {
    v.map(PgTime::to_datetime).transpose()
}

/// Encodes a TaskError with the configured serializer.
pub(crate) fn encode_error(format: Format, error: &TaskError) -> Result<Vec<u8>> {
    Ok(format.encode(error)?)
}

/// Decodes a stored TaskError. A blob written with the other serializer (the app switched
/// `OMNIQ_SERIALIZER`) still decodes; one that decodes with neither becomes a `decode`
/// TaskError saying so, rather than an error that would fail every claim, read or list
/// touching the row (a bad record must not block its queue).
fn decode_error(format: Format, bytes: Option<Vec<u8>>) -> Option<TaskError> {
    let b = bytes?;
    let other = match format {
        Format::MessagePack => Format::Json,
        Format::Json => Format::MessagePack,
    };
    Some(
        format
            .decode::<TaskError>(&b)
            .or_else(|_| other.decode::<TaskError>(&b))
            .unwrap_or_else(|e| {
                TaskError::new(
                    ErrorType::Decode,
                    format!("the stored error of this task could not be decoded: {e}"),
                )
                .with_context("stored_error_bytes", b.len())
            }),
    )
}

/// A task's own back-off, stored as readable JSON.
pub(crate) fn encode_backoff(b: Option<&Backoff>) -> Result<Option<String>> {
    Ok(b.map(|b| {
        Format::Json
            .encode(b)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    })
    .transpose()?)
}

/// Reads a stored back-off; one that no longer parses falls back to the worker's policy
/// rather than making the row unreadable (a bad record must not block its queue).
fn decode_backoff(text: Option<String>) -> Option<Backoff> {
    text.and_then(|t| Format::Json.decode(t.as_bytes()).ok())
}

/// A task's cron schedule, stored as readable JSON (`{"expr": …, "tz": …}`).
pub(crate) fn encode_cron(c: Option<&omniq_core::CronSchedule>) -> Result<Option<String>> {
    Ok(c.map(|c| {
        Format::Json
            .encode(c)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    })
    .transpose()?)
}

/// Reads a stored cron schedule; one that no longer parses is a corrupt row.
fn decode_cron(text: Option<String>) -> Result<Option<omniq_core::CronSchedule>> {
    Ok(text
        .map(|t| Format::Json.decode(t.as_bytes()))
        .transpose()?)
}

/// A task row read with [`crate::schema::TASK_COLUMNS`], plus its claim bookkeeping.
pub(crate) struct TaskRow {
    pub(crate) task: Task,
    pub(crate) lease_token: i64,
    pub(crate) run_at: PgTime,
    pub(crate) seq: i64,
}

/// The id and lease token of a task row, readable even when the rest is corrupt.
pub(crate) fn row_identity(row: &PgRow) -> Result<(TaskId, i64)> {
    let id: Uuid = row.try_get(0)?;
    let token: i64 = row.try_get(16)?;
    Ok((TaskId(id), token))
}

/// Decodes a row selected with [`crate::schema::TASK_COLUMNS`].
pub(crate) fn task_from_row(row: &PgRow, format: Format) -> Result<TaskRow> {
    let id: Uuid = row.try_get(0)?;
    let status_text: &str = row.try_get(5)?;
    let task = Task {
        id: TaskId(id),
        func_path: row.try_get(1)?,
        args: Payload(row.try_get(2)?),
        queue: row.try_get(3)?,
        priority: row.try_get(4)?,
        status: status(status_text)?,
        schedule: Schedule {
            eta: opt_time(row.try_get(6)?)?,
            interval: row
                .try_get::<Option<i64>, _>(7)?
                .map(Duration::microseconds),
            cron: decode_cron(row.try_get(21)?)?,
        },
        max_retries: u32_of(row.try_get(8)?, "max_retries")?,
        timeout: row
            .try_get::<Option<i64>, _>(9)?
            .map(Duration::microseconds),
        attempts: u32_of(row.try_get(10)?, "attempts")?,
        runs: u32_of(row.try_get(22)?, "runs")?,
        created_at: time_of(row.try_get(11)?)?,
        updated_at: time_of(row.try_get(12)?)?,
        last_attempt_at: opt_time(row.try_get(13)?)?,
        error: decode_error(format, row.try_get(14)?),
        unique_key: row.try_get(15)?,
        backoff: decode_backoff(row.try_get(20)?),
    };
    Ok(TaskRow {
        task,
        lease_token: row.try_get(16)?,
        run_at: row.try_get(18)?,
        seq: row.try_get(19)?,
    })
}

/// Decodes a row selected with [`crate::schema::RESULT_COLUMNS`].
pub(crate) fn result_from_row(row: &PgRow, format: Format) -> Result<TaskResult> {
    let id: Uuid = row.try_get(0)?;
    let status_text: &str = row.try_get(1)?;
    Ok(TaskResult {
        task_id: TaskId(id),
        status: status(status_text)?,
        result: row.try_get::<Option<Vec<u8>>, _>(2)?.map(Payload),
        error: decode_error(format, row.try_get(3)?),
        finished_at: time_of(row.try_get(4)?)?,
        attempts: u32_of(row.try_get(5)?, "attempts")?,
        last_attempt_at: opt_time(row.try_get(6)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_floor_to_the_microsecond_and_round_trip() {
        let t = datetime!(2025-01-02 03:04:05.123456789 UTC);
        let pg = PgTime::of(t);
        assert_eq!(pg.0 % 1_000_000, 123_456);
        assert_eq!(
            pg.to_datetime().ok(),
            Some(datetime!(2025-01-02 03:04:05.123456 UTC))
        );
        assert_eq!(PgTime::of(datetime!(1969-12-31 23:59:59.9999995 UTC)).0, -1);
    }

    #[test]
    fn out_of_range_times_are_corrupt_not_panics() {
        // What 'infinity' decodes to.
        let inf = PgTime(i64::MAX);
        assert!(inf.to_datetime().is_err());
        assert!(PgTime(i64::MIN).to_datetime().is_err());
    }

    #[test]
    fn running_inputs_are_stored_pending() {
        assert_eq!(stored_status(TaskStatus::Running), "pending");
        assert_eq!(stored_status(TaskStatus::Failed), "failed");
    }
}
