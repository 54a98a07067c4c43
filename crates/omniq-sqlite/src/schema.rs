//! Embedded migrations and the namespace's SQL text.
//!
//! Every identifier is `{ns}_…`, double-quoted; the namespace has been checked by
//! [`omniq_core::validate_name`] (only `[A-Za-z0-9_.-]`), so substituting it can never
//! change the statement's meaning. Values are always bound.

use crate::error::{Result, config};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Executor, Sqlite, SqlitePool};

/// A query with its binds, as the batch helpers build them.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Ordered migrations: `(version, SQL with `{ns}` placeholders)`. Append only.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE IF NOT EXISTS "{ns}_tasks" (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    func_path        TEXT    NOT NULL,
    args             BLOB    NOT NULL,
    queue            TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    eta              INTEGER,
    run_at           INTEGER NOT NULL,
    interval_us      INTEGER,
    max_retries      INTEGER NOT NULL,
    timeout_us       INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    last_attempt_at  INTEGER,
    error            BLOB,
    unique_key       TEXT,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_until      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    backoff          TEXT
);
CREATE INDEX IF NOT EXISTS "{ns}_tasks_claim"
    ON "{ns}_tasks" (queue, priority DESC, run_at, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS "{ns}_tasks_lease"
    ON "{ns}_tasks" (lease_until) WHERE status = 'running';
CREATE UNIQUE INDEX IF NOT EXISTS "{ns}_tasks_unique"
    ON "{ns}_tasks" (queue, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS "{ns}_results" (
    task_id          TEXT    PRIMARY KEY,
    status           TEXT    NOT NULL,
    result           BLOB,
    error            BLOB,
    finished_at      INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    last_attempt_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "{ns}_results_finished" ON "{ns}_results" (finished_at);
CREATE INDEX IF NOT EXISTS "{ns}_tasks_finished" ON "{ns}_tasks" (updated_at)
    WHERE status IN ('success', 'failed', 'cancelled');
"#,
    ),
    (
        2,
        r#"
CREATE INDEX IF NOT EXISTS "{ns}_tasks_due"
    ON "{ns}_tasks" (queue, run_at) WHERE status = 'pending';
DROP INDEX IF EXISTS "{ns}_tasks_lease";
CREATE INDEX IF NOT EXISTS "{ns}_tasks_lease_by_queue"
    ON "{ns}_tasks" (queue, lease_until) WHERE status = 'running';
"#,
    ),
    (
        3,
        r#"
ALTER TABLE "{ns}_tasks" ADD COLUMN cron_expr TEXT;
ALTER TABLE "{ns}_tasks" ADD COLUMN cron_tz TEXT;
"#,
    ),
    (
        4,
        r#"
ALTER TABLE "{ns}_tasks" ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    // Fewer index entries per task: `next_due` walks `_tasks_claim` instead of keeping
    // `_tasks_due` (one entry per enqueue and per claim).
    (
        5,
        r#"
DROP INDEX IF EXISTS "{ns}_tasks_due";
"#,
    ),
    // No finished-index entry per completion: purge finds finished tasks through their
    // result rows (`_results_finished`; every finish of a claimed task stores its result
    // with `finished_at = updated_at`), and through `_tasks_finished_bare` the finished
    // tasks that may have none: never claimed (`lease_token = 0`: enqueued finished), or
    // `bare`, set here on the finished rows of an older layout without such a result
    // (a sticky mark: a marked task that runs again is only purged by its own index too).
    (
        6,
        r#"
ALTER TABLE "{ns}_tasks" ADD COLUMN bare INTEGER NOT NULL DEFAULT 0;
UPDATE "{ns}_tasks" SET bare = 1
    WHERE status IN ('success', 'failed', 'cancelled') AND lease_token <> 0
    AND NOT EXISTS (SELECT 1 FROM "{ns}_results" AS r
        WHERE r.task_id = "{ns}_tasks".id AND r.finished_at = "{ns}_tasks".updated_at);
CREATE INDEX IF NOT EXISTS "{ns}_tasks_finished_bare" ON "{ns}_tasks" (updated_at)
    WHERE status IN ('success', 'failed', 'cancelled') AND (lease_token = 0 OR bare = 1);
DROP INDEX IF EXISTS "{ns}_tasks_finished";
"#,
    ),
];

/// The latest schema version this crate knows.
pub(crate) const LATEST_VERSION: i64 = 6;

fn subst(template: &str, ns: &str) -> String {
    template.replace("{ns}", ns)
}

/// Applies pending migrations in one `BEGIN IMMEDIATE` transaction, so two instances
/// starting at once on one file serialize on SQLite's write lock and the loser sees the
/// winner's version row and applies nothing.
pub(crate) async fn migrate(pool: &SqlitePool, ns: &str) -> Result<()> {
    migrate_to(pool, ns, LATEST_VERSION).await
}

/// [`migrate`] up to `target` only (tests build older schemas with it).
async fn migrate_to(pool: &SqlitePool, ns: &str, target: i64) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let create = subst(
        r#"CREATE TABLE IF NOT EXISTS "{ns}_schema_version" (
            version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"#,
        ns,
    );
    (&mut *tx).execute(create.as_str()).await?;
    let select = subst(
        r#"SELECT coalesce(max(version), 0) FROM "{ns}_schema_version""#,
        ns,
    );
    let current: i64 = sqlx::query_scalar(&select).fetch_one(&mut *tx).await?;
    if current > LATEST_VERSION {
        return Err(config(format!(
            "namespace {ns:?} has schema version {current}, newer than the {LATEST_VERSION} \
             this omniq-sqlite supports; upgrade omniq-sqlite"
        )));
    }
    let insert = subst(
        r#"INSERT INTO "{ns}_schema_version" (version, applied_at) VALUES (?1, ?2)"#,
        ns,
    );
    for (version, template) in MIGRATIONS {
        if *version <= current || *version > target {
            continue;
        }
        let ddl = subst(template, ns);
        (&mut *tx).execute(ddl.as_str()).await?;
        sqlx::query(&insert)
            .bind(*version)
            .bind(crate::convert::now_micros())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Columns of a task row, in the order [`crate::convert::task_from_row`] reads them.
pub(crate) const TASK_COLUMNS: &str = "id, func_path, args, queue, priority, status, eta, \
     interval_us, max_retries, timeout_us, attempts, created_at, updated_at, \
     last_attempt_at, error, unique_key, lease_token, lease_until, run_at, seq, backoff, \
     cron_expr, cron_tz, runs";

/// What the claim returns per row, in the order [`crate::convert::task_from_claim_row`]
/// reads them: every column a plain task sets, but none the claim itself writes (status,
/// `updated_at`, `last_attempt_at`, `lease_until`: known from the claim request) and, in
/// place of the columns only some tasks use (interval, error, unique key, back-off,
/// cron), one flag saying whether any of them is set. sqlx copies every value of every
/// returned row (one allocation each, freed again on the caller's thread), so a claimed
/// row costs by its column count. A flagged row is read whole with
/// [`Sql::claimed_rows`] in the claim's transaction.
pub(crate) const CLAIM_COLUMNS: &str = "id, func_path, args, queue, priority, eta, \
     max_retries, timeout_us, attempts, created_at, lease_token, run_at, seq, runs, \
     coalesce(interval_us, error, unique_key, backoff, cron_expr, cron_tz) IS NOT NULL";

/// Columns of a result row, in the order [`crate::convert::result_from_row`] reads them.
pub(crate) const RESULT_COLUMNS: &str =
    "task_id, status, result, error, finished_at, attempts, last_attempt_at";

/// Bound values per enqueued row.
pub(crate) const INSERT_ARITY: usize = 21;

/// Bound values per row of the lean insert, after its two shared ones (handler, queue):
/// for a chunk of fresh Pending tasks of one handler and queue that set none of the
/// columns it leaves out (stored as their defaults, NULL or 0).
pub(crate) const LEAN_INSERT_ARITY: usize = 9;

/// Batched statements are built for these row counts (powers of two); a batch is split
/// into them so each shape is prepared once and cached.
pub(crate) const SHAPES: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

/// Index of a shape in [`SHAPES`].
pub(crate) fn shape_index(rows: usize) -> usize {
    SHAPES
        .iter()
        .position(|s| *s == rows)
        .unwrap_or(SHAPES.len() - 1)
}

/// Splits `n` rows into shape sizes, largest first (e.g. 300 → 256, 32, 8, 4).
pub(crate) fn split_shapes(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for s in SHAPES {
        while n >= s {
            out.push(s);
            n -= s;
        }
    }
    out
}

/// `(?,?,…),(?,?,…)…`: anonymous parameters only. sqlx looks every parameter's name up
/// with `sqlite3_bind_parameter_name`, a linear scan over the statement's named
/// parameters, so numbered `?NNN` parameters make binding a wide batch quadratic.
fn values_list(rows: usize, arity: usize) -> String {
    let row = format!("({})", vec!["?"; arity].join(","));
    vec![row; rows].join(",")
}

/// The check of a fenced complete/fail chunk, read before its writes: binds
/// `(id, token, x)` per row and returns `(id, queue, hit)` for each item that will not
/// apply (`hit` 0: the lease is stale; NULL: no such task) and for each that will and
/// goes back to Pending (`hit` 1; `requeue` decides, over `t` and `v.column3`). A batch
/// where every item applies and none re-arms returns no row at all: one message.
fn check_sql(t: &str, rows: usize, requeue: &str) -> String {
    format!(
        "SELECT v.column1, t.queue, t.status = 'running' AND t.lease_token = v.column2 \
         FROM (VALUES {}) AS v LEFT JOIN {t} AS t ON t.id = v.column1 \
         WHERE v.column1 IS NOT NULL AND (t.id IS NULL OR t.status <> 'running' \
         OR t.lease_token <> v.column2 OR ({requeue}))",
        values_list(rows, 3)
    )
}

/// `check; results; tasks` per shape: one command, so one round trip to the connection
/// thread. sqlx-sqlite runs the statements of one query in order, binding anonymous
/// parameters in sequence across them.
fn batch_commands(check: &[String], results: &[String], tasks: &[String]) -> Vec<String> {
    check
        .iter()
        .zip(results)
        .zip(tasks)
        .map(|((c, r), t)| format!("{c};\n{r};\n{t}"))
        .collect()
}

/// All SQL text of one namespace, built once.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) tasks: String,
    /// Multi-row insert, no RETURNING (chunks without unique keys), per shape.
    pub(crate) insert: Vec<String>,
    /// Multi-row insert of lean rows (see [`LEAN_INSERT_ARITY`]), per shape.
    pub(crate) insert_lean: Vec<String>,
    /// Multi-row insert that skips live unique-key duplicates and returns inserted ids.
    pub(crate) insert_returning: Vec<String>,
    pub(crate) find_unique: String,
    pub(crate) get_task: String,
    /// Whole rows ([`TASK_COLUMNS`]) of claimed tasks by `seq`, bound as one JSON array:
    /// the claimed rows whose [`CLAIM_COLUMNS`] flag is set.
    pub(crate) claimed_rows: String,
    pub(crate) get_result: String,
    pub(crate) task_exists: String,
    /// Complete, per shape: one command of three statements (check, results, tasks);
    /// see [`Sql::new`]. The parts are kept for the query-plan test.
    pub(crate) complete: Vec<String>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) complete_parts: [Vec<String>; 3],
    /// Fail, per shape: like `complete`.
    pub(crate) fail: Vec<String>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fail_parts: [Vec<String>; 3],
    pub(crate) heartbeat: Vec<String>,
    pub(crate) start: Vec<String>,
    pub(crate) release: Vec<String>,
    pub(crate) status_of: String,
    pub(crate) cancel_task: String,
    pub(crate) cancel_result: String,
    /// A claimed row that cannot be decoded: its result, then the row itself, failed.
    pub(crate) unreadable_result: String,
    pub(crate) unreadable_task: String,
    pub(crate) request_cancel: String,
    pub(crate) reschedule: String,
    pub(crate) lease_expired: String,
    pub(crate) released_cancel_result: String,
    pub(crate) purge_results: String,
    /// Finished tasks that may have no result, by `_tasks_finished_bare`.
    pub(crate) purge_bare_tasks: String,
    /// Finished tasks whose result is purged, by `_results_finished`: run before
    /// `purge_results`.
    pub(crate) purge_tasks_with_results: String,
}

impl Sql {
    pub(crate) fn new(ns: &str) -> Self {
        let tasks = format!("\"{ns}_tasks\"");
        let results = format!("\"{ns}_results\"");
        let t = &tasks;
        let r = &results;
        let insert_head = format!(
            "INSERT INTO {t} (id, func_path, args, queue, priority, status, eta, run_at, \
             interval_us, max_retries, timeout_us, attempts, created_at, updated_at, \
             last_attempt_at, error, unique_key, backoff, cron_expr, cron_tz, runs) VALUES "
        );
        let insert = SHAPES
            .iter()
            .map(|n| format!("{insert_head}{}", values_list(*n, INSERT_ARITY)))
            .collect();
        // Fewer bound values per row: each text or blob is copied (and allocated) once
        // more by sqlx and once more by SQLite, and every value is one more register per
        // row. The handler and queue, shared by the chunk, are bound once.
        let insert_lean = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "INSERT INTO {t} (func_path, queue, status, id, args, priority, eta, \
                     run_at, max_retries, timeout_us, created_at, updated_at) \
                     SELECT ?, ?, 'pending', {} FROM (VALUES {})",
                    (1..=LEAN_INSERT_ARITY)
                        .map(|i| format!("column{i}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    values_list(*n, LEAN_INSERT_ARITY)
                )
            })
            .collect();
        let insert_returning = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "{insert_head}{} ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL \
                     AND status IN ('pending', 'running') DO NOTHING RETURNING id",
                    values_list(*n, INSERT_ARITY)
                )
            })
            .collect();

        // complete: (id, token, result, now, next_run) per row. One command per chunk:
        // the check (misses and re-armed tasks, read before the writes), the results,
        // the tasks. Padding rows (id NULL) match nothing.
        let complete_results: Vec<String> = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "INSERT OR REPLACE INTO {r} ({RESULT_COLUMNS}) \
                     SELECT t.id, 'success', v.column3, NULL, v.column4, t.attempts, t.last_attempt_at \
                     FROM (VALUES {}) AS v JOIN {t} AS t ON t.id = v.column1 \
                     WHERE t.status = 'running' AND t.lease_token = v.column2",
                    values_list(*n, 5)
                )
            })
            .collect();
        let next = "v.column5 IS NOT NULL AND t.cancel_requested = 0";
        let complete_tasks: Vec<String> = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "UPDATE {t} AS t SET \
                     status = CASE WHEN {next} THEN 'pending' ELSE 'success' END, \
                     eta = CASE WHEN {next} THEN v.column5 ELSE t.eta END, \
                     run_at = CASE WHEN {next} THEN v.column5 ELSE t.run_at END, \
                     attempts = CASE WHEN {next} THEN 0 ELSE t.attempts END, \
                     runs = CASE WHEN {next} THEN 0 ELSE t.runs END, \
                     error = NULL, lease_until = NULL, updated_at = v.column4 \
                     FROM (VALUES {}) AS v \
                     WHERE t.id = v.column1 AND t.status = 'running' AND t.lease_token = v.column2",
                    values_list(*n, 5)
                )
            })
            .collect();
        // check binds (id, token, next_run): a completion with a next run re-arms its task.
        let complete_check: Vec<String> = SHAPES
            .iter()
            .map(|n| check_sql(t, *n, "v.column3 IS NOT NULL AND t.cancel_requested = 0"))
            .collect();
        let complete = batch_commands(&complete_check, &complete_results, &complete_tasks);

        // fail: (id, token, error, now, action: 0 retry | 1 next run | 2 fail | 3 defer, at)
        let fail_results: Vec<String> = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "INSERT OR REPLACE INTO {r} ({RESULT_COLUMNS}) \
                     SELECT t.id, CASE WHEN t.cancel_requested = 1 THEN 'cancelled' ELSE 'failed' END, \
                     NULL, v.column3, v.column4, \
                     CASE WHEN v.column5 = 3 THEN max(t.attempts - 1, 0) ELSE t.attempts END, \
                     t.last_attempt_at \
                     FROM (VALUES {}) AS v JOIN {t} AS t ON t.id = v.column1 \
                     WHERE t.status = 'running' AND t.lease_token = v.column2 \
                     AND (v.column5 IN (1, 2) OR t.cancel_requested = 1)",
                    values_list(*n, 6)
                )
            })
            .collect();
        let again = "t.cancel_requested = 0 AND v.column5 <> 2";
        let fail_tasks: Vec<String> = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "UPDATE {t} AS t SET \
                     status = CASE WHEN t.cancel_requested = 1 THEN 'cancelled' \
                                   WHEN v.column5 = 2 THEN 'failed' ELSE 'pending' END, \
                     eta = CASE WHEN {again} THEN v.column6 ELSE t.eta END, \
                     run_at = CASE WHEN {again} THEN v.column6 ELSE t.run_at END, \
                     attempts = CASE WHEN v.column5 = 3 THEN max(t.attempts - 1, 0) \
                                     WHEN t.cancel_requested = 0 AND v.column5 = 1 THEN 0 \
                                     ELSE t.attempts END, \
                     runs = CASE WHEN t.cancel_requested = 0 AND v.column5 = 1 THEN 0 \
                                 ELSE t.runs END, \
                     error = v.column3, lease_until = NULL, updated_at = v.column4 \
                     FROM (VALUES {}) AS v \
                     WHERE t.id = v.column1 AND t.status = 'running' AND t.lease_token = v.column2",
                    values_list(*n, 6)
                )
            })
            .collect();
        // check binds (id, token, action): every action but Fail re-arms a task that was
        // not asked to cancel.
        let fail_check: Vec<String> = SHAPES
            .iter()
            .map(|n| check_sql(t, *n, "t.cancel_requested = 0 AND v.column3 <> 2"))
            .collect();
        let fail = batch_commands(&fail_check, &fail_results, &fail_tasks);

        // heartbeat: until (the first `?`), then (id, token) rows
        let heartbeat = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "UPDATE {t} AS t SET lease_until = ? FROM (VALUES {}) AS v \
                     WHERE t.id = v.column1 AND t.status = 'running' AND t.lease_token = v.column2 \
                     RETURNING id, lease_token, cancel_requested",
                    values_list(*n, 2)
                )
            })
            .collect();

        // start: the increment, 1 (the first `?`), then (id, token) rows
        let start = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "UPDATE {t} AS t SET runs = t.runs + ? FROM (VALUES {}) AS v \
                     WHERE t.id = v.column1 AND t.status = 'running' AND t.lease_token = v.column2 \
                     RETURNING id, lease_token",
                    values_list(*n, 2)
                )
            })
            .collect();

        // release: updated_at (the first `?`), then (id, token) rows. The claim's attempt
        // is not counted: the task never started.
        let release = SHAPES
            .iter()
            .map(|n| {
                format!(
                    "UPDATE {t} AS t SET status = CASE WHEN t.cancel_requested = 1 \
                     THEN 'cancelled' ELSE 'pending' END, lease_until = NULL, \
                     attempts = max(t.attempts - 1, 0), updated_at = ? FROM (VALUES {}) AS v \
                     WHERE t.id = v.column1 AND t.status = 'running' AND t.lease_token = v.column2 \
                     RETURNING id, lease_token, queue, status",
                    values_list(*n, 2)
                )
            })
            .collect();

        Self {
            insert,
            insert_lean,
            insert_returning,
            release,
            find_unique: format!(
                "SELECT id FROM {t} WHERE queue = ?1 AND unique_key = ?2 \
                 AND unique_key IS NOT NULL AND status IN ('pending', 'running')"
            ),
            get_task: format!("SELECT {TASK_COLUMNS} FROM {t} WHERE id = ?1"),
            claimed_rows: format!(
                "SELECT {TASK_COLUMNS} FROM {t} WHERE seq IN (SELECT value FROM json_each(?1))"
            ),
            get_result: format!(
                "SELECT {RESULT_COLUMNS} FROM {r} WHERE task_id = ?1 AND finished_at >= ?2"
            ),
            task_exists: format!("SELECT 1 FROM {t} WHERE id = ?1"),
            complete,
            complete_parts: [complete_check, complete_results, complete_tasks],
            fail,
            fail_parts: [fail_check, fail_results, fail_tasks],
            heartbeat,
            start,
            status_of: format!("SELECT status, queue FROM {t} WHERE id = ?1"),
            cancel_task: format!(
                "UPDATE {t} SET status = 'cancelled', lease_until = NULL, updated_at = ?2 \
                 WHERE id = ?1"
            ),
            cancel_result: format!(
                "INSERT OR REPLACE INTO {r} ({RESULT_COLUMNS}) \
                 SELECT id, 'cancelled', NULL, error, ?2, attempts, last_attempt_at \
                 FROM {t} WHERE id = ?1"
            ),
            unreadable_result: format!(
                "INSERT OR REPLACE INTO {r} ({RESULT_COLUMNS}) \
                 SELECT id, 'failed', NULL, ?2, ?3, MAX(attempts, 0), last_attempt_at \
                 FROM {t} WHERE id = ?1"
            ),
            unreadable_task: format!(
                "UPDATE {t} SET status = 'failed', lease_until = NULL, error = ?2, \
                 updated_at = ?3 WHERE id = ?1"
            ),
            request_cancel: format!(
                "UPDATE {t} SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1"
            ),
            // An explicit reschedule supersedes an earlier cancel request.
            reschedule: format!(
                "UPDATE {t} SET status = 'pending', eta = ?2, run_at = ?2, lease_until = NULL, \
                 cancel_requested = 0, runs = 0, updated_at = ?3 WHERE id = ?1"
            ),
            lease_expired: format!(
                "SELECT 1 FROM {t} WHERE id = ?1 AND status = 'running' AND lease_until <= ?2"
            ),
            released_cancel_result: format!(
                "INSERT OR REPLACE INTO {r} ({RESULT_COLUMNS}) \
                 SELECT id, 'cancelled', NULL, error, ?2, attempts, last_attempt_at \
                 FROM {t} WHERE id = ?1 AND status = 'cancelled'"
            ),
            purge_results: format!("DELETE FROM {r} WHERE finished_at < ?1"),
            purge_bare_tasks: format!(
                "DELETE FROM {t} WHERE status IN ('success', 'failed', 'cancelled') \
                 AND (lease_token = 0 OR bare = 1) AND updated_at < ?1"
            ),
            purge_tasks_with_results: format!(
                "DELETE FROM {t} WHERE id IN (SELECT task_id FROM {r} WHERE finished_at < ?1) \
                 AND status IN ('success', 'failed', 'cancelled') AND updated_at < ?1"
            ),
            tasks,
        }
    }

    /// Flips expired leases of `queues` (bound as ?2…) back to Pending, or to Cancelled when
    /// cancellation was requested. Index-driven by the partial lease index.
    pub(crate) fn expire(&self, queues: usize) -> String {
        let placeholders = (0..queues)
            .map(|i| format!("?{}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "UPDATE {t} SET status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'pending' END, \
             lease_until = NULL, updated_at = ?1 \
             WHERE status = 'running' AND lease_until <= ?1 AND queue IN ({placeholders}) \
             RETURNING id, queue, status",
            t = self.tasks
        )
    }

    /// The claim: ?1 lease_until, ?2 now, ?3 limit, queues bound as ?4…. Each queue's
    /// candidates come from its own ordered walk of the claim index (LIMIT each), so a
    /// claim over several queues never sorts a whole queue.
    pub(crate) fn claim(&self, queues: usize) -> String {
        let t = &self.tasks;
        let arm = |q: usize| {
            format!(
                "SELECT seq, priority, run_at FROM {t} WHERE status = 'pending' AND queue = ?{q} \
                 AND run_at <= ?2 ORDER BY priority DESC, run_at, seq LIMIT ?3"
            )
        };
        let candidates = if queues == 1 {
            format!(
                "SELECT seq FROM {t} WHERE status = 'pending' AND queue = ?4 AND run_at <= ?2 \
                     ORDER BY priority DESC, run_at, seq LIMIT ?3"
            )
        } else {
            let arms = (0..queues)
                .map(|i| format!("SELECT * FROM ({})", arm(i + 4)))
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            format!("SELECT seq FROM ({arms}) ORDER BY priority DESC, run_at, seq LIMIT ?3")
        };
        format!(
            "UPDATE {t} SET status = 'running', attempts = attempts + 1, \
             lease_token = lease_token + 1, lease_until = ?1, last_attempt_at = ?2, \
             updated_at = ?2 WHERE seq IN ({candidates}) RETURNING {CLAIM_COLUMNS}"
        )
    }

    /// The earliest pending `run_at` or running `lease_until` of the queues bound as
    /// ?1…. Per queue: a loose walk of `_tasks_claim` (one probe per distinct priority:
    /// the first entry of each priority is its earliest `run_at`) and the first entry of
    /// `_tasks_lease_by_queue`. No index of its own, so enqueues and claims maintain one
    /// index entry fewer.
    pub(crate) fn next_due(&self, queues: usize) -> String {
        let t = &self.tasks;
        let arms = (1..=queues)
            .flat_map(|q| {
                let pending = format!("FROM {t} WHERE status = 'pending' AND queue = ?{q}");
                [
                    format!(
                        "SELECT (WITH RECURSIVE p(pr) AS (\
                         SELECT (SELECT priority {pending} ORDER BY priority DESC LIMIT 1) \
                         UNION ALL \
                         SELECT (SELECT priority {pending} AND priority < p.pr \
                         ORDER BY priority DESC LIMIT 1) FROM p WHERE p.pr IS NOT NULL) \
                         SELECT min((SELECT run_at {pending} AND priority = p.pr \
                         ORDER BY priority DESC, run_at LIMIT 1)) FROM p WHERE p.pr IS NOT NULL) AS at"
                    ),
                    format!(
                        "SELECT min(lease_until) AS at FROM {t} WHERE status = 'running' AND queue = ?{q}"
                    ),
                ]
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        format!("SELECT min(at) FROM ({arms})")
    }

    /// A page of tasks: ?1 cursor id (or NULL), ?2 status (or NULL), ?3 queue (or NULL), ?4 limit.
    pub(crate) fn list(&self, status: bool, queue: bool, cursor: bool) -> String {
        let mut conds = Vec::new();
        if cursor {
            conds.push("id > ?1");
        }
        if status {
            conds.push("status = ?2");
        }
        if queue {
            conds.push("queue = ?3");
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        format!(
            "SELECT {TASK_COLUMNS} FROM {} {filter} ORDER BY id LIMIT ?4",
            self.tasks
        )
    }

    /// Counts by queue and status, optionally for one queue (?1).
    pub(crate) fn counts(&self, one_queue: bool) -> String {
        let filter = if one_queue { "WHERE queue = ?1" } else { "" };
        format!(
            "SELECT queue, status, count(*) FROM {} {filter} GROUP BY queue, status ORDER BY queue",
            self.tasks
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_cached_shapes() {
        assert_eq!(split_shapes(300), vec![256, 32, 8, 4]);
        assert_eq!(split_shapes(1), vec![1]);
        assert_eq!(split_shapes(0), Vec::<usize>::new());
        assert_eq!(split_shapes(1000).iter().sum::<usize>(), 1000);
        assert_eq!(shape_index(64), 2);
    }

    #[test]
    fn identifiers_are_quoted_with_the_namespace() {
        let sql = Sql::new("my-app.v1");
        assert!(sql.get_task.contains("\"my-app.v1_tasks\""));
        assert!(sql.claim(2).contains("UNION ALL"));
        assert_eq!(LATEST_VERSION, MIGRATIONS.len() as i64);
    }

    // The query plans of the hot statements: none may scan the tasks table.
    use crate::SqliteStorage;
    use sqlx::Row;

    /// The query plan's detail lines for `sql` (parameters unbound = NULL).
    async fn plan(s: &SqliteStorage, sql: &str) -> Vec<String> {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&s.inner.writer)
            .await
            .unwrap_or_else(|e| panic!("explain {sql}: {e}"));
        rows.iter()
            .map(|r| r.try_get::<String, _>(3).unwrap_or_default())
            .collect()
    }

    fn assert_no_task_scan(what: &str, lines: &[String]) {
        for l in lines {
            let scans_tasks = l.starts_with("SCAN")
                && (l.contains("omniq_tasks") || l == "SCAN t")
                && !l.contains("INDEX");
            assert!(!scans_tasks, "{what} scans the tasks table: {lines:#?}");
        }
    }

    /// A database file `v<version>.db` in `dir`, migrated only up to `version` (as an
    /// older omniq-sqlite left it), with a pool open on it.
    async fn database_at(dir: &std::path::Path, version: i64) -> (std::path::PathBuf, SqlitePool) {
        let path = dir.join(format!("v{version}.db"));
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(opts).await.expect("pool");
        migrate_to(&pool, "omniq", version)
            .await
            .unwrap_or_else(|e| panic!("migrate to {version}: {e}"));
        (path, pool)
    }

    /// A database left at version 4 (with `_tasks_due`) by an older omniq-sqlite: its
    /// tasks are claimed, awaited and purged as before after the upgrade.
    #[tokio::test]
    async fn a_version_4_database_upgrades_and_keeps_its_tasks() {
        use omniq_core::{ClaimRequest, Completion, Storage, StorageExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, pool) = database_at(dir.path(), 4).await;
        let indexes = |pool: SqlitePool| async move {
            sqlx::query_scalar::<_, String>(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'omniq_tasks_due'",
            )
            .fetch_all(&pool)
            .await
            .expect("indexes")
        };
        assert_eq!(
            indexes(pool.clone()).await.len(),
            1,
            "version 4 has the due index"
        );
        let t0: i64 = 1_800_000_000_000_000;
        let ids: Vec<String> = (0..5)
            .map(|_| omniq_core::TaskId::new().to_string())
            .collect();
        // (id, priority, status, run_at, lease_until, updated_at)
        let rows = [
            (&ids[0], 0, "pending", t0 - 2_000_000, None, t0 - 9_000_000),
            (&ids[1], 5, "pending", t0 - 1_000_000, None, t0 - 9_000_000),
            (&ids[2], 5, "pending", t0 + 60_000_000, None, t0 - 9_000_000),
            (
                &ids[3],
                0,
                "running",
                t0 - 5_000_000,
                Some(t0 - 1),
                t0 - 9_000_000,
            ),
            (&ids[4], 0, "success", t0 - 5_000_000, None, t0 - 9_000_000),
        ];
        for (id, priority, status, run_at, lease_until, updated_at) in rows {
            sqlx::query(
                r#"INSERT INTO "omniq_tasks" (id, func_path, args, queue, priority, status,
                   run_at, max_retries, created_at, updated_at, lease_token, lease_until)
                   VALUES (?1, 'tests.f', x'5b315d', 'default', ?2, ?3, ?4, 3, ?5, ?5, ?6, ?7)"#,
            )
            .bind(id.as_str())
            .bind(priority)
            .bind(status)
            .bind(run_at)
            .bind(updated_at)
            .bind(i64::from(lease_until.is_some()))
            .bind(lease_until)
            .execute(&pool)
            .await
            .expect("insert a version 4 row");
        }
        sqlx::query(
            r#"INSERT INTO "omniq_results" (task_id, status, result, error, finished_at,
               attempts, last_attempt_at) VALUES (?1, 'success', NULL, NULL, ?2, 1, ?2)"#,
        )
        .bind(ids[4].as_str())
        .bind(t0 - 9_000_000)
        .execute(&pool)
        .await
        .expect("insert a version 4 result");
        pool.close().await;

        let s = SqliteStorage::open(&path).await.expect("open upgrades");
        let versions: Vec<i64> =
            sqlx::query_scalar(r#"SELECT version FROM "omniq_schema_version" ORDER BY version"#)
                .fetch_all(&s.inner.writer)
                .await
                .expect("versions");
        assert_eq!(versions, (1..=LATEST_VERSION).collect::<Vec<_>>());
        assert!(
            indexes(s.inner.writer.clone()).await.is_empty(),
            "the due index is dropped"
        );
        let at = |us: i64| crate::convert::from_micros(us).expect("time");
        let queues = vec!["default".to_string()];
        // The earliest of every priority's pending run_at and the running lease.
        assert_eq!(
            s.next_due(&queues).await.expect("next_due"),
            Some(at(t0 - 2_000_000))
        );
        let claimed = s
            .claim(ClaimRequest {
                queues: queues.clone(),
                limit: 10,
                now: at(t0),
                lease: time::Duration::seconds(30),
            })
            .await
            .expect("claim");
        let got: Vec<String> = claimed.iter().map(|c| c.task.id.to_string()).collect();
        // Priority first, then run_at; the expired lease is redelivered; the future task waits.
        assert_eq!(got, vec![ids[1].clone(), ids[3].clone(), ids[0].clone()]);
        assert_eq!(claimed[1].lease.token.0, 2);
        // Only the future task and the new leases are left to wait for.
        assert_eq!(
            s.next_due(&queues).await.expect("next_due"),
            Some(at(t0 + 30_000_000))
        );
        for c in &claimed {
            s.complete_one(Completion {
                lease: c.lease_ref(),
                result: None,
                now: at(t0),
                next_run: None,
            })
            .await
            .expect("complete");
        }
        assert_eq!(
            s.next_due(&queues).await.expect("next_due"),
            Some(at(t0 + 60_000_000))
        );
        // The version 4 result and its task are purged; the new ones are kept.
        assert_eq!(s.purge_results(at(t0 - 1)).await.expect("purge"), 1);
        let id4: omniq_core::TaskId = ids[4].parse().expect("id");
        assert!(s.get_task(&id4).await.expect("get").is_none());
        let id1: omniq_core::TaskId = ids[1].parse().expect("id");
        assert!(s.get_task(&id1).await.expect("get").is_some());
        s.close().await.expect("close");
    }

    /// A database at version 5 (with `_tasks_finished`) upgrades to purging through the
    /// results: finished rows without a result of their `updated_at` (enqueued finished,
    /// or left so by an older version) stay findable by `_tasks_finished_bare`, and every
    /// finished task is still purged by its `updated_at`; pending and running rows are
    /// listed, counted, claimed and completed as before.
    #[tokio::test]
    async fn a_version_5_database_upgrades_and_purges_every_finished_task() {
        use omniq_core::{ClaimRequest, Completion, QueueCounts, Storage, StorageExt, TaskFilter};
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, pool) = database_at(dir.path(), 5).await;
        let t0: i64 = 1_800_000_000_000_000;
        let old = t0 - 9_000_000;
        let ids: Vec<String> = (0..7)
            .map(|_| omniq_core::TaskId::new().to_string())
            .collect();
        // (id, status, run_at, lease_token, lease_until, updated_at, result finished_at)
        let rows = [
            (&ids[0], "pending", t0 - 2_000_000, 0, None, old, None),
            (
                &ids[1],
                "running",
                t0 - 5_000_000,
                1,
                Some(t0 - 1),
                old,
                None,
            ),
            // A run that finished: its result has the task's updated_at.
            (&ids[2], "success", t0 - 5_000_000, 1, None, old, Some(old)),
            // Finished, claimed once, without a result (left so by an older version).
            (&ids[3], "failed", t0 - 5_000_000, 2, None, old, None),
            // Enqueued finished, never claimed, without a result.
            (&ids[4], "success", t0 - 5_000_000, 0, None, old, None),
            // A result older than the task's last change.
            (
                &ids[5],
                "cancelled",
                t0 - 5_000_000,
                1,
                None,
                old,
                Some(old - 9_000_000),
            ),
            // Finished recently.
            (&ids[6], "success", t0 - 5_000_000, 3, None, t0, Some(t0)),
        ];
        for (id, status, run_at, token, lease_until, updated_at, finished_at) in rows {
            sqlx::query(
                r#"INSERT INTO "omniq_tasks" (id, func_path, args, queue, priority, status,
                   run_at, max_retries, created_at, updated_at, lease_token, lease_until)
                   VALUES (?1, 'tests.f', x'5b315d', 'default', 0, ?2, ?3, 3, ?4, ?4, ?5, ?6)"#,
            )
            .bind(id.as_str())
            .bind(status)
            .bind(run_at)
            .bind(updated_at)
            .bind(token)
            .bind(lease_until)
            .execute(&pool)
            .await
            .expect("insert a version 5 row");
            if let Some(finished_at) = finished_at {
                sqlx::query(
                    r#"INSERT INTO "omniq_results" (task_id, status, result, error, finished_at,
                       attempts, last_attempt_at) VALUES (?1, ?2, x'31', NULL, ?3, 1, ?3)"#,
                )
                .bind(id.as_str())
                .bind(status)
                .bind(finished_at)
                .execute(&pool)
                .await
                .expect("insert a version 5 result");
            }
        }
        pool.close().await;

        let s = SqliteStorage::open(&path).await.expect("open upgrades");
        let w = s.inner.writer.clone();
        let versions: Vec<i64> =
            sqlx::query_scalar(r#"SELECT version FROM "omniq_schema_version" ORDER BY version"#)
                .fetch_all(&w)
                .await
                .expect("versions");
        assert_eq!(versions, (1..=LATEST_VERSION).collect::<Vec<_>>());
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%finished%' \
             ORDER BY name",
        )
        .fetch_all(&w)
        .await
        .expect("indexes");
        assert_eq!(
            indexes,
            vec!["omniq_results_finished", "omniq_tasks_finished_bare"]
        );
        // The finished rows without a result of their updated_at, claimed before, are
        // marked; lease tokens are untouched (they only ever grow).
        let marked: Vec<String> =
            sqlx::query_scalar(r#"SELECT id FROM "omniq_tasks" WHERE bare = 1 ORDER BY id"#)
                .fetch_all(&w)
                .await
                .expect("marked");
        let mut expected = vec![ids[3].clone(), ids[5].clone()];
        expected.sort();
        assert_eq!(marked, expected);
        let tokens: Vec<i64> =
            sqlx::query_scalar(r#"SELECT lease_token FROM "omniq_tasks" ORDER BY id"#)
                .fetch_all(&w)
                .await
                .expect("tokens");
        let mut expected: Vec<(&String, i64)> = ids.iter().zip([0, 1, 1, 2, 0, 1, 3]).collect();
        expected.sort();
        assert_eq!(tokens, expected.iter().map(|(_, t)| *t).collect::<Vec<_>>());

        let counts = s.counts(Some("default")).await.expect("counts");
        assert_eq!(
            counts,
            vec![QueueCounts {
                queue: "default".into(),
                pending: 1,
                running: 1,
                success: 3,
                failed: 1,
                cancelled: 1,
            }]
        );
        let page = s
            .list_tasks(TaskFilter {
                status: Some(omniq_core::TaskStatus::Success),
                queue: None,
                cursor: None,
                limit: 10,
            })
            .await
            .expect("list");
        let mut success = vec![ids[2].clone(), ids[4].clone(), ids[6].clone()];
        success.sort();
        assert_eq!(
            page.items
                .iter()
                .map(|t| t.id.to_string())
                .collect::<Vec<_>>(),
            success
        );

        let at = |us: i64| crate::convert::from_micros(us).expect("time");
        let claimed = s
            .claim(ClaimRequest {
                queues: vec!["default".to_string()],
                limit: 10,
                now: at(t0),
                lease: time::Duration::seconds(30),
            })
            .await
            .expect("claim");
        let got: Vec<String> = claimed.iter().map(|c| c.task.id.to_string()).collect();
        assert_eq!(got, vec![ids[1].clone(), ids[0].clone()]);
        for c in &claimed {
            s.complete_one(Completion {
                lease: c.lease_ref(),
                result: None,
                now: at(t0),
                next_run: None,
            })
            .await
            .expect("complete");
        }
        // Every finished task older than the cutoff goes, with or without a result; the
        // results removed are those of ids[2] and ids[5].
        assert_eq!(s.purge_results(at(t0 - 1)).await.expect("purge"), 2);
        let left = |s: SqliteStorage| async move {
            let page = s
                .list_tasks(TaskFilter {
                    status: None,
                    queue: None,
                    cursor: None,
                    limit: 10,
                })
                .await
                .expect("list");
            page.items
                .iter()
                .map(|t| t.id.to_string())
                .collect::<Vec<_>>()
        };
        let mut kept = vec![ids[0].clone(), ids[1].clone(), ids[6].clone()];
        kept.sort();
        assert_eq!(left(s.clone()).await, kept);
        assert_eq!(s.purge_results(at(t0 + 1)).await.expect("purge"), 3);
        assert!(left(s.clone()).await.is_empty());
        assert!(s.counts(None).await.expect("counts").is_empty());
        s.close().await.expect("close");
    }

    /// `next_due` over several priorities and queues is the earliest of them all.
    #[tokio::test]
    async fn next_due_is_the_earliest_over_priorities_and_queues() {
        use omniq_core::{Payload, Storage, Task};
        let s = SqliteStorage::in_memory().await.expect("storage");
        let base = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let mut tasks = Vec::new();
        for (queue, priority, secs) in [
            ("a", 9, 50),
            ("a", 3, 40),
            ("a", -2, 30),
            ("a", 3, 20),
            ("b", 0, 10),
            ("a", 9, 45),
        ] {
            let mut t = Task::new("tests.f", Payload(b"[]".to_vec()));
            t.queue = queue.into();
            t.priority = priority;
            t.schedule.eta = Some(base + time::Duration::seconds(secs));
            tasks.push(t);
        }
        s.enqueue(tasks).await.expect("enqueue");
        let due = |qs: &[&str]| {
            let qs: Vec<String> = qs.iter().map(|q| q.to_string()).collect();
            let s = s.clone();
            async move { s.next_due(&qs).await.expect("next_due") }
        };
        assert_eq!(due(&["a"]).await, Some(base + time::Duration::seconds(20)));
        assert_eq!(due(&["b"]).await, Some(base + time::Duration::seconds(10)));
        assert_eq!(
            due(&["a", "b"]).await,
            Some(base + time::Duration::seconds(10))
        );
        assert_eq!(due(&["c"]).await, None);
    }

    #[tokio::test]
    async fn hot_statements_never_scan_the_tasks_table() {
        let s = SqliteStorage::in_memory().await.expect("storage");
        let sql = &s.inner.sql;
        let mut checks: Vec<(String, String)> = vec![
            ("claim 1 queue".into(), sql.claim(1)),
            ("claim 3 queues".into(), sql.claim(3)),
            ("expire".into(), sql.expire(2)),
            ("get_task".into(), sql.get_task.clone()),
            ("claimed_rows".into(), sql.claimed_rows.clone()),
            ("find_unique".into(), sql.find_unique.clone()),
            ("next_due 1 queue".into(), sql.next_due(1)),
            ("next_due 2 queues".into(), sql.next_due(2)),
            ("purge bare".into(), sql.purge_bare_tasks.clone()),
            (
                "purge with results".into(),
                sql.purge_tasks_with_results.clone(),
            ),
        ];
        for i in [0, SHAPES.len() - 1] {
            for (what, parts) in [("complete", &sql.complete_parts), ("fail", &sql.fail_parts)] {
                for (part, text) in ["check", "results", "tasks"].iter().zip(parts.iter()) {
                    checks.push((format!("{what} {part}"), text[i].clone()));
                }
            }
            checks.push(("heartbeat".into(), sql.heartbeat[i].clone()));
        }
        for (what, text) in &checks {
            let lines = plan(&s, text).await;
            eprintln!("{what}: {lines:?}");
            assert_no_task_scan(what, &lines);
        }
        // Purge walks its two indexes (no index of all finished tasks is left).
        for (text, index) in [
            (&sql.purge_bare_tasks, "omniq_tasks_finished_bare"),
            (&sql.purge_tasks_with_results, "omniq_results_finished"),
        ] {
            let lines = plan(&s, text).await;
            assert!(
                lines.iter().any(|l| l.contains(index)),
                "purge uses {index}: {lines:#?}"
            );
        }
    }
}
