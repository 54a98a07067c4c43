//! Embedded migrations and the namespace's SQL text.
//!
//! The namespace is a PostgreSQL schema, always double-quoted; it has been checked by
//! [`omniq_core::validate_name`] (only `[A-Za-z0-9_.-]`, so it can never close the
//! quotes), so substituting it cannot change a statement's meaning. Values are always
//! bound, batches as arrays: every hot statement is one fixed text, prepared once per
//! connection whatever the batch size.
//!
//! Hot statements send their wake-ups themselves: a scalar sub-select calls `pg_notify`
//! (delivered when the statement's transaction commits), one notification per queue
//! that received work and one per 200 finished task ids, so the payload stays far
//! below PostgreSQL's 8000-byte limit.

use crate::error::{Result, config};
use sqlx::PgConnection;

/// Ordered migrations: `(version, SQL with `{s}` for the quoted schema)`. Append only.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE IF NOT EXISTS {s}.tasks (
    id               uuid        PRIMARY KEY,
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    queue            text        NOT NULL,
    priority         integer     NOT NULL,
    status           text        NOT NULL,
    run_at           timestamptz NOT NULL,
    eta              timestamptz,
    func_path        text        NOT NULL,
    args             bytea       NOT NULL,
    interval_us      bigint,
    max_retries      bigint      NOT NULL,
    timeout_us       bigint,
    attempts         bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_attempt_at  timestamptz,
    error            bytea,
    unique_key       text,
    lease_token      bigint      NOT NULL DEFAULT 0,
    lease_until      timestamptz,
    cancel_requested boolean     NOT NULL DEFAULT false,
    backoff          text,
    CONSTRAINT tasks_status_valid
        CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled')),
    CONSTRAINT tasks_lease_iff_running
        CHECK ((status = 'running') = (lease_until IS NOT NULL))
) WITH (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
CREATE INDEX IF NOT EXISTS tasks_claim
    ON {s}.tasks (queue, priority DESC, run_at, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_due
    ON {s}.tasks (queue, run_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_lease
    ON {s}.tasks (queue, lease_until) WHERE lease_until IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS tasks_unique
    ON {s}.tasks (queue, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS tasks_finished
    ON {s}.tasks (updated_at) WHERE status IN ('success', 'failed', 'cancelled');
CREATE TABLE IF NOT EXISTS {s}.results (
    task_id          uuid        PRIMARY KEY,
    status           text        NOT NULL,
    result           bytea,
    error            bytea,
    finished_at      timestamptz NOT NULL,
    attempts         bigint      NOT NULL,
    last_attempt_at  timestamptz
) WITH (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
CREATE INDEX IF NOT EXISTS results_finished ON {s}.results (finished_at);
"#,
)];

/// The latest schema version this crate knows.
pub(crate) const LATEST_VERSION: i32 = 1;

/// The schema name as a quoted identifier.
pub(crate) fn quoted(ns: &str) -> String {
    format!("\"{ns}\"")
}

/// Applies pending migrations in one transaction. A transaction-scoped advisory lock
/// keyed by the schema name serializes processes that start at once, so the losers
/// wait, then see the winner's version row and apply nothing.
pub(crate) async fn migrate(conn: &mut PgConnection, ns: &str) -> Result<()> {
    let s = quoted(ns);
    let mut tx = sqlx::Connection::begin(conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("omniq-migrate:{ns}"))
        .execute(&mut *tx)
        .await?;
    let create = format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; \
         CREATE TABLE IF NOT EXISTS {s}.schema_version ( \
             version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    );
    // Several statements: sent with the simple query protocol.
    sqlx::Executor::execute(&mut *tx, create.as_str()).await?;
    let current: i32 = sqlx::query_scalar(&format!(
        "SELECT coalesce(max(version), 0) FROM {s}.schema_version"
    ))
    .fetch_one(&mut *tx)
    .await?;
    if current > LATEST_VERSION {
        return Err(config(format!(
            "namespace {ns:?} has schema version {current}, newer than the {LATEST_VERSION} \
             this omniq-postgres supports; upgrade omniq-postgres"
        )));
    }
    let insert = format!("INSERT INTO {s}.schema_version (version) VALUES ($1)");
    for (version, template) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let ddl = template.replace("{s}", &s);
        sqlx::Executor::execute(&mut *tx, ddl.as_str()).await?;
        sqlx::query(&insert)
            .bind(*version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Columns of a task row, in the order [`crate::convert::task_from_row`] reads them.
fn task_columns(alias: &str) -> String {
    [
        "id",
        "func_path",
        "args",
        "queue",
        "priority",
        "status",
        "eta",
        "interval_us",
        "max_retries",
        "timeout_us",
        "attempts",
        "created_at",
        "updated_at",
        "last_attempt_at",
        "error",
        "unique_key",
        "lease_token",
        "lease_until",
        "run_at",
        "seq",
        "backoff",
    ]
    .iter()
    .map(|c| format!("{alias}{c}"))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Columns of a result row, in the order [`crate::convert::result_from_row`] reads them.
pub(crate) const RESULT_COLUMNS: &str =
    "task_id, status, result, error, finished_at, attempts, last_attempt_at";

/// Finished task ids per notification: 200 × 33 bytes stays far below the 8000-byte
/// payload limit.
pub(crate) const FINISHED_PER_NOTIFY: usize = 200;

/// `ON CONFLICT` clause that replaces a task's previous result.
const UPSERT_RESULT: &str = "ON CONFLICT (task_id) DO UPDATE SET status = EXCLUDED.status, \
     result = EXCLUDED.result, error = EXCLUDED.error, finished_at = EXCLUDED.finished_at, \
     attempts = EXCLUDED.attempts, last_attempt_at = EXCLUDED.last_attempt_at";

/// A scalar sub-select that sends the statement's wake-ups and counts them: `Work` for
/// each distinct `queue` of `work` (a query over a CTE), `Finished` for the `id`s of
/// `finished`, chunked. `chan` and `origin` are parameter references (`$5`).
///
/// Uncorrelated, it runs once per statement (an InitPlan); `pg_notify` is volatile, so
/// PostgreSQL never prunes it from the sub-selects.
fn notify_sql(chan: &str, origin: &str, work: Option<&str>, finished: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(work) = work {
        parts.push(format!(
            "(SELECT count(*) FROM (SELECT pg_notify({chan}, {origin} || ' w ' || w.queue) \
             FROM (SELECT DISTINCT queue FROM ({work}) w0) w) wn)"
        ));
    }
    if let Some(finished) = finished {
        parts.push(format!(
            "(SELECT count(*) FROM (SELECT pg_notify({chan}, {origin} || ' f ' || \
             string_agg(replace(f.id::text, '-', ''), ',')) \
             FROM (SELECT f0.id, (row_number() OVER ()) / {FINISHED_PER_NOTIFY} AS g \
             FROM ({finished}) f0) f GROUP BY f.g) fn)"
        ));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" + ")
    }
}

/// `CASE` answering, for an input row `i` no UPDATE matched, whether the task exists
/// (LeaseLost) or not (NotFound). Evaluated only for misses.
fn exists_sql(t: &str) -> String {
    format!("CASE WHEN u.ord IS NULL THEN EXISTS (SELECT 1 FROM {t} x WHERE x.id = i.id) END")
}

/// All SQL text of one namespace, built once.
#[derive(Debug)]
pub(crate) struct Sql {
    /// `$1…$18` task arrays, `$19` channel, `$20` origin → `id, notified`.
    pub(crate) insert: String,
    /// `$1` queues, `$2` keys → `ord, id` of the live holders.
    pub(crate) find_unique: String,
    /// `$1` queues, `$2` now, `$3` limit, `$4` until, `$5` channel, `$6` origin.
    pub(crate) claim: String,
    /// `$1` queues → the earliest due instant.
    pub(crate) next_due: String,
    /// `$1` ids, `$2` tokens, `$3` until → `ord, cancel_requested, known`.
    pub(crate) heartbeat: String,
    /// `$1` ids, `$2` tokens, `$3` results, `$4` nows, `$5` next runs, `$6` channel,
    /// `$7` origin → `ord, status, queue, known, notified`.
    pub(crate) complete: String,
    /// `$1` ids, `$2` tokens, `$3` errors, `$4` nows, `$5` actions, `$6` ats, `$7`
    /// channel, `$8` origin → `ord, status, queue, known, notified`.
    pub(crate) fail: String,
    /// `$1` ids, `$2` tokens, `$3` now, `$4` channel, `$5` origin → `ord, status, queue,
    /// known, notified`.
    pub(crate) release: String,
    pub(crate) get_task: String,
    pub(crate) get_result: String,
    pub(crate) lock_task: String,
    pub(crate) reschedule: String,
    pub(crate) cancel_task: String,
    pub(crate) cancel_result: String,
    pub(crate) request_cancel: String,
    pub(crate) purge_results: String,
    pub(crate) purge_tasks: String,
    pub(crate) sweep_results: String,
    pub(crate) sweep_tasks: String,
    tasks: String,
}

impl Sql {
    pub(crate) fn new(ns: &str) -> Self {
        let s = quoted(ns);
        let t = format!("{s}.tasks");
        let r = format!("{s}.results");
        let cols = task_columns("");
        let t_cols = task_columns("t.");
        let exists = exists_sql(&t);

        let insert = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], \
                 $5::int4[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::int8[], \
                 $10::int8[], $11::int8[], $12::int8[], $13::timestamptz[], $14::timestamptz[], \
                 $15::timestamptz[], $16::bytea[], $17::text[], $18::text[]) \
               WITH ORDINALITY AS i(id, func_path, args, queue, priority, status, eta, run_at, \
                 interval_us, max_retries, timeout_us, attempts, created_at, updated_at, \
                 last_attempt_at, error, unique_key, backoff, ord)), \
             ins AS (INSERT INTO {t} (id, func_path, args, queue, priority, status, eta, run_at, \
                 interval_us, max_retries, timeout_us, attempts, created_at, updated_at, \
                 last_attempt_at, error, unique_key, backoff) \
               SELECT id, func_path, args, queue, priority, status, eta, run_at, interval_us, \
                 max_retries, timeout_us, attempts, created_at, updated_at, last_attempt_at, \
                 error, unique_key, backoff FROM i ORDER BY ord \
               ON CONFLICT (queue, unique_key) \
                 WHERE unique_key IS NOT NULL AND status IN ('pending', 'running') DO NOTHING \
               RETURNING id, queue) \
             SELECT id, {} AS notified FROM ins",
            notify_sql("$19", "$20", Some("SELECT queue FROM ins"), None)
        );

        // The claim: per queue, the due Pending tasks in claim order and the expired
        // leases, each an ordered walk of its partial index locked with SKIP LOCKED;
        // then the best `limit` of them (plus every expired lease whose cancellation was
        // requested: those end Cancelled here instead of being redelivered).
        let claim = format!(
            "WITH cand AS MATERIALIZED ( \
               SELECT c.* FROM unnest($1::text[]) AS q(queue) CROSS JOIN LATERAL ( \
                 SELECT * FROM (SELECT t.id, t.priority, t.run_at, t.seq, false AS cancel \
                   FROM {t} t WHERE t.status = 'pending' AND t.queue = q.queue \
                   AND t.run_at <= $2 ORDER BY t.priority DESC, t.run_at, t.seq \
                   LIMIT $3 FOR UPDATE SKIP LOCKED) p \
                 UNION ALL \
                 SELECT * FROM (SELECT t.id, t.priority, t.run_at, t.seq, t.cancel_requested \
                   FROM {t} t WHERE t.queue = q.queue AND t.lease_until <= $2 \
                   AND t.status = 'running' ORDER BY t.lease_until \
                   LIMIT $3 FOR UPDATE SKIP LOCKED) e \
               ) c), \
             pick AS MATERIALIZED ( \
               (SELECT id FROM cand WHERE NOT cancel ORDER BY priority DESC, run_at, seq LIMIT $3) \
               UNION ALL (SELECT id FROM cand WHERE cancel)), \
             upd AS (UPDATE {t} t SET \
                 status = CASE WHEN t.status = 'running' AND t.cancel_requested \
                   THEN 'cancelled' ELSE 'running' END, \
                 attempts = CASE WHEN t.status = 'running' AND t.cancel_requested \
                   THEN t.attempts ELSE t.attempts + 1 END, \
                 lease_token = CASE WHEN t.status = 'running' AND t.cancel_requested \
                   THEN t.lease_token ELSE t.lease_token + 1 END, \
                 lease_until = CASE WHEN t.status = 'running' AND t.cancel_requested \
                   THEN NULL ELSE $4 END, \
                 last_attempt_at = CASE WHEN t.status = 'running' AND t.cancel_requested \
                   THEN t.last_attempt_at ELSE $2 END, \
                 updated_at = $2 \
               WHERE t.id = ANY (ARRAY(SELECT id FROM pick)) \
               RETURNING {t_cols}), \
             res AS (INSERT INTO {r} ({RESULT_COLUMNS}) \
               SELECT id, 'cancelled', NULL, error, $2, attempts, last_attempt_at \
               FROM upd WHERE status = 'cancelled' {UPSERT_RESULT}) \
             SELECT {cols}, {} AS notified FROM upd",
            notify_sql(
                "$5",
                "$6",
                None,
                Some("SELECT id FROM upd WHERE status = 'cancelled'")
            )
        );

        let next_due = format!(
            "SELECT min(x.at) FROM unnest($1::text[]) AS q(queue) CROSS JOIN LATERAL ( \
               SELECT * FROM (SELECT run_at AS at FROM {t} WHERE status = 'pending' \
                 AND queue = q.queue ORDER BY run_at LIMIT 1) p \
               UNION ALL \
               SELECT * FROM (SELECT lease_until FROM {t} WHERE lease_until IS NOT NULL \
                 AND queue = q.queue ORDER BY lease_until LIMIT 1) l \
             ) x"
        );

        let fenced = "t.id = i.id AND t.status = 'running' AND t.lease_token = i.token";
        let heartbeat = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int8[]) \
                 WITH ORDINALITY AS i(id, token, ord)), \
             u AS (UPDATE {t} t SET lease_until = $3 FROM i WHERE {fenced} \
                 RETURNING i.ord, t.cancel_requested) \
             SELECT i.ord, u.cancel_requested, {exists} AS known \
             FROM i LEFT JOIN u ON u.ord = i.ord ORDER BY i.ord"
        );

        // The result row records the run: its attempts and start come from the task as
        // it was (`o`), before an interval re-arm resets them.
        let again = "i.next_run IS NOT NULL AND NOT t.cancel_requested";
        let complete = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], \
                 $4::timestamptz[], $5::timestamptz[]) \
                 WITH ORDINALITY AS i(id, token, result, now, next_run, ord)), \
             u AS (UPDATE {t} t SET \
                 status = CASE WHEN {again} THEN 'pending' ELSE 'success' END, \
                 eta = CASE WHEN {again} THEN i.next_run ELSE t.eta END, \
                 run_at = CASE WHEN {again} THEN i.next_run ELSE t.run_at END, \
                 attempts = CASE WHEN {again} THEN 0 ELSE t.attempts END, \
                 error = NULL, lease_until = NULL, updated_at = i.now \
               FROM i JOIN {t} o ON o.id = i.id WHERE {fenced} \
               RETURNING i.ord, t.id, t.queue, t.status, i.result, i.now, \
                 o.attempts AS run_attempts, o.last_attempt_at AS run_started), \
             res AS (INSERT INTO {r} ({RESULT_COLUMNS}) \
               SELECT id, 'success', result, NULL, now, run_attempts, run_started FROM u \
               {UPSERT_RESULT}) \
             SELECT i.ord, u.status, u.queue, {exists} AS known, {} AS notified \
             FROM i LEFT JOIN u ON u.ord = i.ord ORDER BY i.ord",
            notify_sql(
                "$6",
                "$7",
                Some("SELECT queue FROM u WHERE status = 'pending'"),
                Some("SELECT id FROM u")
            )
        );

        // Actions: 0 retry at, 1 next run at, 2 fail. A task whose cancellation was
        // requested ends Cancelled whatever the action.
        let fail = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], \
                 $4::timestamptz[], $5::int2[], $6::timestamptz[]) \
                 WITH ORDINALITY AS i(id, token, error, now, action, at, ord)), \
             u AS (UPDATE {t} t SET \
                 status = CASE WHEN t.cancel_requested THEN 'cancelled' \
                   WHEN i.action = 2 THEN 'failed' ELSE 'pending' END, \
                 eta = CASE WHEN NOT t.cancel_requested AND i.action <> 2 \
                   THEN i.at ELSE t.eta END, \
                 run_at = CASE WHEN NOT t.cancel_requested AND i.action <> 2 \
                   THEN i.at ELSE t.run_at END, \
                 attempts = CASE WHEN NOT t.cancel_requested AND i.action = 1 \
                   THEN 0 ELSE t.attempts END, \
                 error = i.error, lease_until = NULL, updated_at = i.now \
               FROM i JOIN {t} o ON o.id = i.id WHERE {fenced} \
               RETURNING i.ord, t.id, t.queue, t.status, i.error, i.now, i.action, \
                 o.attempts AS run_attempts, o.last_attempt_at AS run_started), \
             res AS (INSERT INTO {r} ({RESULT_COLUMNS}) \
               SELECT id, CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'failed' END, \
                 NULL, error, now, run_attempts, run_started FROM u \
               WHERE status = 'cancelled' OR action <> 0 {UPSERT_RESULT}) \
             SELECT i.ord, u.status, u.queue, {exists} AS known, {} AS notified \
             FROM i LEFT JOIN u ON u.ord = i.ord ORDER BY i.ord",
            notify_sql(
                "$7",
                "$8",
                Some("SELECT queue FROM u WHERE status = 'pending'"),
                Some("SELECT id FROM u")
            )
        );

        // The claim's attempt is not counted: the task never started.
        let release = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int8[]) \
                 WITH ORDINALITY AS i(id, token, ord)), \
             u AS (UPDATE {t} t SET \
                 status = CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'pending' END, \
                 lease_until = NULL, attempts = greatest(t.attempts - 1, 0), updated_at = $3 \
               FROM i WHERE {fenced} \
               RETURNING i.ord, t.id, t.queue, t.status, t.error, t.attempts, \
                 t.last_attempt_at), \
             res AS (INSERT INTO {r} ({RESULT_COLUMNS}) \
               SELECT id, 'cancelled', NULL, error, $3, attempts, last_attempt_at FROM u \
               WHERE status = 'cancelled' {UPSERT_RESULT}) \
             SELECT i.ord, u.status, u.queue, {exists} AS known, {} AS notified \
             FROM i LEFT JOIN u ON u.ord = i.ord ORDER BY i.ord",
            notify_sql(
                "$4",
                "$5",
                Some("SELECT queue FROM u WHERE status = 'pending'"),
                Some("SELECT id FROM u WHERE status = 'cancelled'")
            )
        );

        Self {
            insert,
            find_unique: format!(
                "SELECT i.ord, t.id FROM unnest($1::text[], $2::text[]) \
                   WITH ORDINALITY AS i(queue, key, ord) \
                 JOIN {t} t ON t.queue = i.queue AND t.unique_key = i.key \
                 WHERE t.unique_key IS NOT NULL AND t.status IN ('pending', 'running')"
            ),
            claim,
            next_due,
            heartbeat,
            complete,
            fail,
            release,
            get_task: format!("SELECT {cols} FROM {t} WHERE id = $1"),
            get_result: format!(
                "SELECT {RESULT_COLUMNS} FROM {r} WHERE task_id = $1 AND finished_at >= $2"
            ),
            lock_task: format!(
                "SELECT status, queue, lease_until <= $2 AS expired FROM {t} \
                 WHERE id = $1 FOR UPDATE"
            ),
            // An explicit reschedule supersedes an earlier cancel request.
            reschedule: format!(
                "UPDATE {t} SET status = 'pending', eta = $2, run_at = $2, lease_until = NULL, \
                 cancel_requested = false, updated_at = $3 WHERE id = $1"
            ),
            cancel_task: format!(
                "UPDATE {t} SET status = 'cancelled', lease_until = NULL, updated_at = $2 \
                 WHERE id = $1"
            ),
            cancel_result: format!(
                "INSERT INTO {r} ({RESULT_COLUMNS}) \
                 SELECT id, 'cancelled', NULL, error, $2, attempts, last_attempt_at \
                 FROM {t} WHERE id = $1 {UPSERT_RESULT}"
            ),
            request_cancel: format!(
                "UPDATE {t} SET cancel_requested = true, updated_at = $2 WHERE id = $1"
            ),
            purge_results: format!(
                "DELETE FROM {r} WHERE task_id IN (SELECT task_id FROM {r} \
                 WHERE finished_at < $1 ORDER BY finished_at LIMIT $2)"
            ),
            purge_tasks: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} \
                 WHERE status IN ('success', 'failed', 'cancelled') AND updated_at < $1 \
                 ORDER BY updated_at LIMIT $2)"
            ),
            // The background sweep skips rows another process is deleting right now.
            sweep_results: format!(
                "DELETE FROM {r} WHERE task_id IN (SELECT task_id FROM {r} \
                 WHERE finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            sweep_tasks: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} \
                 WHERE status IN ('success', 'failed', 'cancelled') AND updated_at < $1 \
                 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            tasks: t,
        }
    }

    /// A page of tasks: `$1` cursor id, `$2` status, `$3` queue (each used only when its
    /// flag is set), `$4` limit.
    pub(crate) fn list(&self, status: bool, queue: bool, cursor: bool) -> String {
        let mut conds = Vec::new();
        if cursor {
            conds.push("id > $1");
        }
        if status {
            conds.push("status = $2");
        }
        if queue {
            conds.push("queue = $3");
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        format!(
            "SELECT {} FROM {} {filter} ORDER BY id LIMIT $4",
            task_columns(""),
            self.tasks
        )
    }

    /// Counts by queue and status, for every queue or for `$1`.
    pub(crate) fn counts(&self, one_queue: bool) -> String {
        let filter = if one_queue { "WHERE queue = $1" } else { "" };
        format!(
            "SELECT queue, status, count(*) FROM {} {filter} GROUP BY queue, status",
            self.tasks
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_the_namespace() {
        let sql = Sql::new("my-app.v1");
        assert!(sql.get_task.contains("\"my-app.v1\".tasks"));
        assert!(sql.claim.contains("FOR UPDATE SKIP LOCKED"));
        assert_eq!(LATEST_VERSION as usize, MIGRATIONS.len());
    }

    #[test]
    fn finished_notifications_fit_the_payload_limit() {
        // origin (16 hex) + " f " + 200 ids of 32 hex digits and a comma.
        assert!(16 + 3 + FINISHED_PER_NOTIFY * 33 < 8000);
    }
}
