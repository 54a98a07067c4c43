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
const MIGRATIONS: &[(i32, &str)] = &[
    (
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
    ),
    (
        2,
        r#"
ALTER TABLE {s}.tasks ADD COLUMN IF NOT EXISTS cron text;
"#,
    ),
    (
        3,
        r#"
ALTER TABLE {s}.tasks ADD COLUMN IF NOT EXISTS runs bigint NOT NULL DEFAULT 0;
"#,
    ),
];

/// The latest schema version this crate knows.
pub(crate) const LATEST_VERSION: i32 = 3;

/// The schema name as a quoted identifier.
pub(crate) fn quoted(ns: &str) -> String {
    format!("\"{ns}\"")
}

/// Applies pending migrations in one transaction, then creates the namespace's
/// functions this crate calls that are missing. A transaction-scoped advisory lock
/// keyed by the schema name serializes processes that start at once, so the losers
/// wait, then see the winner's version row (and functions) and apply nothing.
pub(crate) async fn migrate(conn: &mut PgConnection, ns: &str, sql: &Sql) -> Result<()> {
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
    let names: Vec<&str> = sql.functions.iter().map(|f| f.name.as_str()).collect();
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = $1 AND p.proname = ANY($2)",
    )
    .bind(ns)
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    for f in &sql.functions {
        if !existing.contains(&f.name) {
            sqlx::Executor::execute(&mut *tx, f.create.as_str()).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A hot statement run inside a PL/pgSQL function, so that its plan is made once per
/// connection instead of on every call.
///
/// PL/pgSQL caches the plans of a function's statements per connection; the function's
/// own settings (`SET` clauses, in force only while it runs) make that plan the generic
/// one (`plan_cache_mode = force_generic_plan`) and keep it on the indexes whatever the
/// table held when it was made (`enable_seqscan = off`: a plan made on a fresh, empty
/// table would otherwise scan it, and stay cached after it holds millions of rows).
/// Nothing else the connection runs sees these settings.
///
/// The name ends in a digest of the definition, so a function is never replaced: a
/// process finds the one whose text it was built with (creating it when missing), and
/// processes of an older or newer omniq-postgres sharing the namespace during a rolling
/// upgrade keep calling their own.
#[derive(Debug)]
pub(crate) struct Function {
    /// What it runs: `claim`, `next_due`, `heartbeat`, … (read by the plan tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) what: &'static str,
    /// Unquoted, `<what>_<16 hex digits>`.
    pub(crate) name: String,
    /// The statement it runs (read by the plan tests, for `EXPLAIN`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) body: String,
    /// `CREATE FUNCTION …`.
    pub(crate) create: String,
}

impl Function {
    /// `body` (a statement with parameters `$1…` of the types `args`) as a function
    /// returning its rows (`returns` = `TABLE (…)`, the statement's columns and types),
    /// nothing (`void`: a statement without rows) or its one value (any other
    /// `returns`), and the statement that calls it.
    fn wrap(
        s: &str,
        what: &'static str,
        args: &[&str],
        returns: &str,
        body: String,
    ) -> (String, Self) {
        let rows = returns.starts_with("TABLE");
        let run = if rows {
            format!("RETURN QUERY {body};")
        } else if returns == "void" {
            format!("{body};")
        } else {
            format!("RETURN ({body});")
        };
        let definition = format!(
            "({}) RETURNS {returns} LANGUAGE plpgsql VOLATILE \
             SET plan_cache_mode = force_generic_plan SET enable_seqscan = off \
             AS $omniq$\n#variable_conflict use_column\nBEGIN\n{run}\nEND\n$omniq$",
            args.join(", ")
        );
        let name = format!("{what}_{:016x}", fnv1a(definition.as_bytes()));
        let create = format!("CREATE FUNCTION {s}.{name}{definition}");
        let params = args
            .iter()
            .enumerate()
            .map(|(i, a)| format!("${}::{a}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let call = if rows {
            format!("SELECT * FROM {s}.{name}({params})")
        } else {
            format!("SELECT {s}.{name}({params})")
        };
        (
            call,
            Self {
                what,
                name,
                body,
                create,
            },
        )
    }
}

/// FNV-1a, 64 bits: a digest that stays the same across builds, platforms and Rust
/// releases (std's hasher does not promise to). Names functions and long channels.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Columns of a task row with their types, in the order
/// [`crate::convert::task_from_row`] reads them.
const TASK_COLUMNS: [(&str, &str); 23] = [
    ("id", "uuid"),
    ("func_path", "text"),
    ("args", "bytea"),
    ("queue", "text"),
    ("priority", "int4"),
    ("status", "text"),
    ("eta", "timestamptz"),
    ("interval_us", "int8"),
    ("max_retries", "int8"),
    ("timeout_us", "int8"),
    ("attempts", "int8"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("last_attempt_at", "timestamptz"),
    ("error", "bytea"),
    ("unique_key", "text"),
    ("lease_token", "int8"),
    ("lease_until", "timestamptz"),
    ("run_at", "timestamptz"),
    ("seq", "int8"),
    ("backoff", "text"),
    ("cron", "text"),
    ("runs", "int8"),
];

/// The task columns, each prefixed with `alias`.
fn task_columns(alias: &str) -> String {
    TASK_COLUMNS
        .iter()
        .map(|(c, _)| format!("{alias}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The claim function's result columns: a task row and `notified`.
fn claim_row() -> String {
    TASK_COLUMNS
        .iter()
        .map(|(c, t)| format!("{c} {t}"))
        .chain(["notified int8".to_string()])
        .collect::<Vec<_>>()
        .join(", ")
}

/// Columns of a result row, in the order [`crate::convert::result_from_row`] reads them.
pub(crate) const RESULT_COLUMNS: &str =
    "task_id, status, result, error, finished_at, attempts, last_attempt_at";

/// Finished task ids per notification: 200 × 33 bytes stays far below the 8000-byte
/// payload limit.
pub(crate) const FINISHED_PER_NOTIFY: usize = 200;

// origin (16 hex digits) + " f " + the ids (32 hex digits and a comma each).
const _: () = assert!(16 + 3 + FINISHED_PER_NOTIFY * 33 < 8000);

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
            "(SELECT count(*) FROM (SELECT pg_notify({chan}::text, {origin}::text || ' w ' || w.queue) \
             FROM (SELECT DISTINCT queue FROM ({work}) w0) w) wn)"
        ));
    }
    if let Some(finished) = finished {
        parts.push(format!(
            "(SELECT count(*) FROM (SELECT pg_notify({chan}::text, {origin}::text || ' f ' || \
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

/// A join answering `k.known`, for an input row `i` the update did not apply to,
/// whether the task exists (LeaseLost) or not (NotFound): a primary-key probe, skipped
/// (one-time filter) for applied rows; `OFFSET 0` keeps it a per-row probe instead of
/// a join the planner could turn into a scan.
fn known_sql(t: &str) -> String {
    format!(
        "LEFT JOIN LATERAL (SELECT true AS known FROM {t} x \
         WHERE x.id = i.id AND u.ord IS NULL OFFSET 0) k ON true"
    )
}

/// All SQL text of one namespace, built once.
#[derive(Debug)]
pub(crate) struct Sql {
    /// `$1…$20` task arrays, `$21` channel, `$22` origin → `id, notified`.
    pub(crate) insert: String,
    /// The same for a batch without unique keys: `$1…$20` task arrays, `$21` channel,
    /// `$22` origin, `$23` the batch's distinct queues → no rows.
    pub(crate) insert_plain: String,
    /// `COPY … FROM STDIN (FORMAT binary)` of the same twenty columns, in the order
    /// of the insert's arrays.
    pub(crate) copy_in: String,
    /// `$1` channel, `$2` origin, `$3` queues → one `Work` notification per queue.
    pub(crate) notify_work: String,
    /// `$1` queues, `$2` keys → `ord, id` of the live holders.
    pub(crate) find_unique: String,
    /// `$1` queues, `$2` now, `$3` limit, `$4` until, `$5` channel, `$6` origin.
    pub(crate) claim: String,
    /// `$1` queues → the earliest due instant.
    pub(crate) next_due: String,
    /// The functions that the enqueue inserts, the claim, `next_due` and the lease
    /// writes call, created by [`migrate`] when missing.
    pub(crate) functions: Vec<Function>,
    /// `$1` ids, `$2` tokens, `$3` until → `ord, cancel_requested, known`.
    pub(crate) heartbeat: String,
    /// `$1` ids, `$2` tokens → `ord, applied, known`.
    pub(crate) start: String,
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
        let known = known_sql(&t);

        let input = "unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], \
                 $5::int4[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::int8[], \
                 $10::int8[], $11::int8[], $12::int8[], $13::timestamptz[], $14::timestamptz[], \
                 $15::timestamptz[], $16::bytea[], $17::text[], $18::text[], $19::text[], \
                 $20::int8[]) \
               WITH ORDINALITY AS i(id, func_path, args, queue, priority, status, eta, run_at, \
                 interval_us, max_retries, timeout_us, attempts, created_at, updated_at, \
                 last_attempt_at, error, unique_key, backoff, cron, runs, ord)";
        let insert = format!(
            "WITH i AS (SELECT * FROM {input}), \
             ins AS (INSERT INTO {t} (id, func_path, args, queue, priority, status, eta, run_at, \
                 interval_us, max_retries, timeout_us, attempts, created_at, updated_at, \
                 last_attempt_at, error, unique_key, backoff, cron, runs) \
               SELECT id, func_path, args, queue, priority, status, eta, run_at, interval_us, \
                 max_retries, timeout_us, attempts, created_at, updated_at, last_attempt_at, \
                 error, unique_key, backoff, cron, runs FROM i ORDER BY ord \
               ON CONFLICT (queue, unique_key) \
                 WHERE unique_key IS NOT NULL AND status IN ('pending', 'running') DO NOTHING \
               RETURNING id, queue) \
             SELECT id, {} AS notified FROM ins",
            notify_sql("$21", "$22", Some("SELECT queue FROM ins"), None)
        );
        // A batch without unique keys cannot meet the ON CONFLICT arbiter (only a key
        // can), so it is a plain INSERT: no speculative insertion per row, no rows back
        // (all of them are stored, or the statement fails). The wake-ups go to the
        // batch's distinct queues (`$23`), from a one-time filter evaluated once.
        let insert_plain = format!(
            "INSERT INTO {t} (id, func_path, args, queue, priority, status, eta, run_at, \
                 interval_us, max_retries, timeout_us, attempts, created_at, updated_at, \
                 last_attempt_at, error, unique_key, backoff, cron, runs) \
             SELECT id, func_path, args, queue, priority, status, eta, run_at, interval_us, \
                 max_retries, timeout_us, attempts, created_at, updated_at, last_attempt_at, \
                 error, unique_key, backoff, cron, runs FROM {input} \
             WHERE (SELECT count(*) FROM (SELECT pg_notify($21::text, $22::text || ' w ' || \
                 w.queue) FROM unnest($23::text[]) AS w(queue)) wn) >= 0 \
             ORDER BY ord"
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
                   AND t.run_at <= $2::timestamptz ORDER BY t.priority DESC, t.run_at, t.seq \
                   LIMIT $3::int8 FOR UPDATE SKIP LOCKED) p \
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
                   THEN NULL ELSE $4::timestamptz END, \
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

        // The earliest pending eta without an index of its own: a loose walk of the
        // claim index, one probe per distinct priority of the queue (the first entry
        // of each priority is its earliest), plus the first entry of the lease index.
        let next_due = format!(
            "SELECT min(x.at) FROM unnest($1::text[]) AS q(queue) CROSS JOIN LATERAL ( \
               SELECT (WITH RECURSIVE p(priority) AS ( \
                   (SELECT t.priority FROM {t} t WHERE t.status = 'pending' \
                     AND t.queue = q.queue ORDER BY t.priority DESC LIMIT 1) \
                   UNION ALL \
                   SELECT (SELECT t.priority FROM {t} t WHERE t.status = 'pending' \
                     AND t.queue = q.queue AND t.priority < p.priority \
                     ORDER BY t.priority DESC LIMIT 1) FROM p WHERE p.priority IS NOT NULL) \
                 SELECT min((SELECT t.run_at FROM {t} t WHERE t.status = 'pending' \
                   AND t.queue = q.queue AND t.priority = p.priority \
                   ORDER BY t.run_at LIMIT 1)) FROM p WHERE p.priority IS NOT NULL) AS at \
               UNION ALL \
               SELECT * FROM (SELECT t.lease_until FROM {t} t WHERE t.lease_until IS NOT NULL \
                 AND t.queue = q.queue ORDER BY t.lease_until LIMIT 1) l \
             ) x"
        );

        // Lease writes: lock the items' rows first, each by a primary-key probe under the
        // fencing condition (`l`: a LATERAL with FOR UPDATE is never flattened into a
        // join, so it stays an index lookup whatever the statistics say), then update
        // exactly those rows. Rows are locked in id order, so concurrent lease writes
        // over overlapping tasks (a heartbeat and a completion) queue behind each other
        // instead of deadlocking. `l` also keeps what the run looked like before the
        // update (attempts, start) for its result row.
        let locked = |cols: &str| {
            format!(
                "l AS MATERIALIZED (SELECT s.*, x.* \
                   FROM (SELECT * FROM i ORDER BY id) s CROSS JOIN LATERAL ( \
                   SELECT t.attempts AS run_attempts, t.last_attempt_at AS run_started{cols} \
                   FROM {t} t WHERE t.id = s.id AND t.status = 'running' \
                   AND t.lease_token = s.token FOR UPDATE) x)"
            )
        };
        let targets = "t.id = ANY (ARRAY(SELECT id FROM l)) AND t.id = l.id";

        let heartbeat = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int8[]) \
                 WITH ORDINALITY AS i(id, token, ord)), \
             {}, \
             u AS (UPDATE {t} t SET lease_until = $3::timestamptz FROM l WHERE {targets} \
                 RETURNING l.ord, t.cancel_requested) \
             SELECT i.ord, u.cancel_requested, k.known \
             FROM i LEFT JOIN u ON u.ord = i.ord {known} ORDER BY i.ord",
            locked("")
        );

        let start = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int8[]) \
                 WITH ORDINALITY AS i(id, token, ord)), \
             {}, \
             u AS (UPDATE {t} t SET runs = t.runs + 1 FROM l WHERE {targets} \
                 RETURNING l.ord) \
             SELECT i.ord, u.ord IS NOT NULL AS applied, k.known \
             FROM i LEFT JOIN u ON u.ord = i.ord {known} ORDER BY i.ord",
            locked("")
        );

        let again = "l.next_run IS NOT NULL AND NOT t.cancel_requested";
        let complete = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], \
                 $4::timestamptz[], $5::timestamptz[]) \
                 WITH ORDINALITY AS i(id, token, result, now, next_run, ord)), \
             {}, \
             u AS (UPDATE {t} t SET \
                 status = CASE WHEN {again} THEN 'pending' ELSE 'success' END, \
                 eta = CASE WHEN {again} THEN l.next_run ELSE t.eta END, \
                 run_at = CASE WHEN {again} THEN l.next_run ELSE t.run_at END, \
                 attempts = CASE WHEN {again} THEN 0 ELSE t.attempts END, \
                 runs = CASE WHEN {again} THEN 0 ELSE t.runs END, \
                 error = NULL, lease_until = NULL, updated_at = l.now \
               FROM l WHERE {targets} \
               RETURNING l.ord, t.id, t.queue, t.status, l.result, l.now, l.run_attempts, \
                 l.run_started), \
             res AS (INSERT INTO {r} ({RESULT_COLUMNS}) \
               SELECT id, 'success', result, NULL, now, run_attempts, run_started FROM u \
               {UPSERT_RESULT}) \
             SELECT i.ord, u.status, u.queue, k.known, {} AS notified \
             FROM i LEFT JOIN u ON u.ord = i.ord {known} ORDER BY i.ord",
            locked(""),
            notify_sql(
                "$6",
                "$7",
                Some("SELECT queue FROM u WHERE status = 'pending'"),
                Some("SELECT id FROM u")
            )
        );

        // Actions: 0 retry at, 1 next run at, 2 fail, 3 defer at (the claim's attempt not
        // counted). A task whose cancellation was requested ends Cancelled whatever the
        // action.
        let fail = format!(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], \
                 $4::timestamptz[], $5::int2[], $6::timestamptz[]) \
                 WITH ORDINALITY AS i(id, token, error, now, action, at, ord)), \
             {}, \
             u AS (UPDATE {t} t SET \
                 status = CASE WHEN t.cancel_requested THEN 'cancelled' \
                   WHEN l.action = 2 THEN 'failed' ELSE 'pending' END, \
                 eta = CASE WHEN NOT t.cancel_requested AND l.action <> 2 \
                   THEN l.at ELSE t.eta END, \
                 run_at = CASE WHEN NOT t.cancel_requested AND l.action <> 2 \
                   THEN l.at ELSE t.run_at END, \
                 attempts = CASE WHEN l.action = 3 THEN greatest(t.attempts - 1, 0) \
                   WHEN NOT t.cancel_requested AND l.action = 1 THEN 0 ELSE t.attempts END, \
                 runs = CASE WHEN NOT t.cancel_requested AND l.action = 1 THEN 0 \
                   ELSE t.runs END, \
                 error = l.error, lease_until = NULL, updated_at = l.now \
               FROM l WHERE {targets} \
               RETURNING l.ord, t.id, t.queue, t.status, l.error, l.now, l.action, \
                 l.run_attempts, l.run_started), \
             res AS (INSERT INTO {r} ({RESULT_COLUMNS}) \
               SELECT id, CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'failed' END, \
                 NULL, error, now, \
                 CASE WHEN action = 3 THEN greatest(run_attempts - 1, 0) ELSE run_attempts END, \
                 run_started FROM u \
               WHERE status = 'cancelled' OR action IN (1, 2) {UPSERT_RESULT}) \
             SELECT i.ord, u.status, u.queue, k.known, {} AS notified \
             FROM i LEFT JOIN u ON u.ord = i.ord {known} ORDER BY i.ord",
            locked(""),
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
             {}, \
             u AS (UPDATE {t} t SET \
                 status = CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'pending' END, \
                 lease_until = NULL, attempts = greatest(t.attempts - 1, 0), updated_at = $3::timestamptz \
               FROM l WHERE {targets} \
               RETURNING l.ord, t.id, t.queue, t.status, t.error, t.attempts, \
                 t.last_attempt_at), \
             res AS (INSERT INTO {r} ({RESULT_COLUMNS}) \
               SELECT id, 'cancelled', NULL, error, $3, attempts, last_attempt_at FROM u \
               WHERE status = 'cancelled' {UPSERT_RESULT}) \
             SELECT i.ord, u.status, u.queue, k.known, {} AS notified \
             FROM i LEFT JOIN u ON u.ord = i.ord {known} ORDER BY i.ord",
            locked(""),
            notify_sql(
                "$4",
                "$5",
                Some("SELECT queue FROM u WHERE status = 'pending'"),
                Some("SELECT id FROM u WHERE status = 'cancelled'")
            )
        );

        // A large batch without unique keys streams in as binary COPY rows (the heap
        // takes them a page at a time), then sends its wake-ups in the same transaction.
        let copy_in = format!(
            "COPY {t} (id, func_path, args, queue, priority, status, eta, run_at, \
                 interval_us, max_retries, timeout_us, attempts, created_at, updated_at, \
                 last_attempt_at, error, unique_key, backoff, cron, runs) \
             FROM STDIN (FORMAT binary)"
        );
        // The statements that run once per enqueue, fetch or lease write, however small
        // the batch, run inside functions whose plans are made once per connection (see
        // `Function`); each returns its statement's rows as they are.
        let lease_row = "ord int8, status text, queue text, known bool, notified int8";
        let task_arrays = [
            "uuid[]",
            "text[]",
            "bytea[]",
            "text[]",
            "int4[]",
            "text[]",
            "timestamptz[]",
            "timestamptz[]",
            "int8[]",
            "int8[]",
            "int8[]",
            "int8[]",
            "timestamptz[]",
            "timestamptz[]",
            "timestamptz[]",
            "bytea[]",
            "text[]",
            "text[]",
            "text[]",
            "int8[]",
            "text",
            "text",
        ];
        let mut functions = Vec::new();
        let mut wrap = |what, args: &[&str], returns: &str, body| {
            let (call, f) = Function::wrap(&s, what, args, returns, body);
            functions.push(f);
            call
        };
        let insert = wrap(
            "insert",
            &task_arrays,
            "TABLE (id uuid, notified int8)",
            insert,
        );
        let plain_args: Vec<&str> = task_arrays.iter().copied().chain(["text[]"]).collect();
        let insert_plain = wrap("insert_plain", &plain_args, "void", insert_plain);
        let claim = wrap(
            "claim",
            &[
                "text[]",
                "timestamptz",
                "int8",
                "timestamptz",
                "text",
                "text",
            ],
            &format!("TABLE ({})", claim_row()),
            claim,
        );
        let next_due = wrap("next_due", &["text[]"], "timestamptz", next_due);
        let heartbeat = wrap(
            "heartbeat",
            &["uuid[]", "int8[]", "timestamptz"],
            "TABLE (ord int8, cancel_requested bool, known bool)",
            heartbeat,
        );
        let start = wrap(
            "start",
            &["uuid[]", "int8[]"],
            "TABLE (ord int8, applied bool, known bool)",
            start,
        );
        let complete = wrap(
            "complete",
            &[
                "uuid[]",
                "int8[]",
                "bytea[]",
                "timestamptz[]",
                "timestamptz[]",
                "text",
                "text",
            ],
            &format!("TABLE ({lease_row})"),
            complete,
        );
        let fail = wrap(
            "fail",
            &[
                "uuid[]",
                "int8[]",
                "bytea[]",
                "timestamptz[]",
                "int2[]",
                "timestamptz[]",
                "text",
                "text",
            ],
            &format!("TABLE ({lease_row})"),
            fail,
        );
        let release = wrap(
            "release",
            &["uuid[]", "int8[]", "timestamptz", "text", "text"],
            &format!("TABLE ({lease_row})"),
            release,
        );

        Self {
            insert,
            insert_plain,
            copy_in,
            notify_work: format!(
                "SELECT {}",
                notify_sql("$1", "$2", Some("SELECT unnest($3::text[]) AS queue"), None)
            ),
            find_unique: format!(
                "SELECT i.ord, t.id FROM unnest($1::text[], $2::text[]) \
                   WITH ORDINALITY AS i(queue, key, ord) \
                 JOIN {t} t ON t.queue = i.queue AND t.unique_key = i.key \
                 WHERE t.unique_key IS NOT NULL AND t.status IN ('pending', 'running')"
            ),
            claim,
            next_due,
            functions,
            heartbeat,
            start,
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
                 cancel_requested = false, runs = 0, updated_at = $3 WHERE id = $1"
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
                "DELETE FROM {r} WHERE task_id = ANY (ARRAY(SELECT task_id FROM {r} \
                 WHERE finished_at < $1 ORDER BY finished_at LIMIT $2))"
            ),
            purge_tasks: format!(
                "DELETE FROM {t} WHERE id = ANY (ARRAY(SELECT id FROM {t} \
                 WHERE status IN ('success', 'failed', 'cancelled') AND updated_at < $1 \
                 ORDER BY updated_at LIMIT $2))"
            ),
            // The background sweep skips rows another process is deleting right now.
            sweep_results: format!(
                "DELETE FROM {r} WHERE task_id = ANY (ARRAY(SELECT task_id FROM {r} \
                 WHERE finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
            ),
            sweep_tasks: format!(
                "DELETE FROM {t} WHERE id = ANY (ARRAY(SELECT id FROM {t} \
                 WHERE status IN ('success', 'failed', 'cancelled') AND updated_at < $1 \
                 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
            ),
            tasks: t,
        }
    }

    /// The function for `what`.
    #[cfg(test)]
    pub(crate) fn function(&self, what: &str) -> &Function {
        self.functions
            .iter()
            .find(|f| f.what == what)
            .unwrap_or_else(|| panic!("no function for {what}"))
    }

    /// The statement the function for `what` runs.
    #[cfg(test)]
    pub(crate) fn body(&self, what: &str) -> &str {
        &self.function(what).body
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

    // Function and long channel names are digests: they must not change between
    // releases built alike (processes of both share a namespace). The FNV-1a test vectors.
    #[test]
    fn the_digest_is_fnv_1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn identifiers_are_quoted_with_the_namespace() {
        let sql = Sql::new("my-app.v1");
        assert!(sql.get_task.contains("\"my-app.v1\".tasks"));
        assert!(sql.body("claim").contains("FOR UPDATE SKIP LOCKED"));
        assert_eq!(LATEST_VERSION as usize, MIGRATIONS.len());
    }

    // The query plans of the hot statements, on a table large enough for the planner
    // to care, with fresh statistics: each must walk its index, none may scan a table.
    use crate::convert::PgTime;
    use crate::test_support::Fresh;
    use omniq_core::{ClaimRequest, Completion, Payload, Storage, Task};
    use sqlx::Row;
    use time::{Duration, OffsetDateTime};

    fn assert_uses(what: &str, plan: &str, indexes: &[&str]) {
        for index in indexes {
            assert!(
                plan.contains(&format!("using {index}"))
                    || plan.contains(&format!("Bitmap Index Scan on {index}")),
                "{what} does not use {index}:\n{plan}"
            );
        }
        for table in ["tasks", "results"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{what} scans the {table} table:\n{plan}"
            );
        }
    }

    async fn explain(
        conn: &mut sqlx::PgConnection,
        q: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> String {
        let rows = q.fetch_all(&mut *conn).await.expect("explain");
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The generic plan (what a prepared statement settles on after five runs).
    async fn generic(conn: &mut sqlx::PgConnection, sql: &str, params: usize) -> String {
        generic_with(conn, sql, params, "").await
    }

    /// The generic plan made with `settings` (`SET …;` statements) in force.
    async fn generic_with(
        conn: &mut sqlx::PgConnection,
        sql: &str,
        params: usize,
        settings: &str,
    ) -> String {
        sqlx::Executor::execute(&mut *conn, "DEALLOCATE ALL")
            .await
            .expect("deallocate");
        sqlx::Executor::execute(&mut *conn, format!("PREPARE probe AS {sql}").as_str())
            .await
            .expect("prepare");
        sqlx::Executor::execute(
            &mut *conn,
            format!("SET plan_cache_mode = force_generic_plan; {settings}").as_str(),
        )
        .await
        .expect("set");
        let nulls = vec!["NULL"; params].join(", ");
        let text = format!("EXPLAIN EXECUTE probe({nulls})");
        // Unprepared: the next call deallocates every prepared statement.
        let plan = explain(conn, sqlx::query(&text).persistent(false)).await;
        sqlx::Executor::execute(&mut *conn, "RESET ALL; DEALLOCATE probe")
            .await
            .expect("reset");
        plan
    }

    /// The functions' names and settings in the namespace, by name.
    async fn functions_in(conn: &mut sqlx::PgConnection, ns: &str) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT p.proname::text, array_to_string(p.proconfig, ',') FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 \
             ORDER BY p.proname",
        )
        // Unprepared: `generic` deallocates every prepared statement of the connection.
        .persistent(false)
        .bind(ns)
        .fetch_all(&mut *conn)
        .await
        .expect("functions")
    }

    // The enqueue inserts, the claim, `next_due` and the lease writes run inside
    // functions whose plans are made once per connection: generic plans, made under
    // `enable_seqscan = off`. Made on an empty table (a fresh deployment), such a plan
    // must still walk the indexes, because it stays cached while the table grows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_functions_cache_plans_that_walk_the_indexes_from_an_empty_table() {
        let fresh = Fresh::new("functions").await;
        let ns = &fresh.ns;
        let sql = Sql::new(ns);
        let mut conn = fresh.storage.pool().acquire().await.expect("connection");
        sqlx::Executor::execute(
            &mut *conn,
            format!(r#"ANALYZE "{ns}".tasks, "{ns}".results"#).as_str(),
        )
        .await
        .expect("analyze");

        // Created at connect, with the settings that make their cached plans safe.
        let found = functions_in(&mut conn, ns).await;
        let mut expected: Vec<&str> = sql.functions.iter().map(|f| f.name.as_str()).collect();
        expected.sort_unstable();
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected);
        for (name, config) in &found {
            assert!(
                config.contains("plan_cache_mode=force_generic_plan")
                    && config.contains("enable_seqscan=off"),
                "{name} runs with {config:?}"
            );
        }
        for f in &sql.functions {
            let calls = [
                &sql.insert,
                &sql.insert_plain,
                &sql.claim,
                &sql.next_due,
                &sql.heartbeat,
                &sql.start,
                &sql.complete,
                &sql.fail,
                &sql.release,
            ];
            assert!(
                calls.iter().any(|c| c.contains(&format!(".{}(", f.name))),
                "nothing calls {}",
                f.name
            );
        }

        // The settings hold inside the functions only: the connection that ran one
        // keeps its own.
        let due: Option<PgTime> = sqlx::query_scalar(&sql.next_due)
            .bind(vec!["q".to_string()])
            .fetch_one(&mut *conn)
            .await
            .expect("next_due");
        assert!(due.is_none());
        for (setting, value) in [
            ("enable_seqscan", "on"),
            ("plan_cache_mode", "force_custom_plan"),
        ] {
            let shown: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .persistent(false)
                .fetch_one(&mut *conn)
                .await
                .expect("show");
            assert_eq!(shown, value, "{setting} after a function call");
        }

        let settings = "SET enable_seqscan = off;";
        let mut plans = Vec::new();
        for (what, params, indexes) in [
            ("insert", 22, &[][..]),
            ("insert_plain", 23, &[][..]),
            (
                "claim",
                6,
                &["tasks_claim", "tasks_lease", "tasks_pkey"][..],
            ),
            ("next_due", 1, &["tasks_claim", "tasks_lease"][..]),
            ("heartbeat", 3, &["tasks_pkey"][..]),
            ("start", 2, &["tasks_pkey"][..]),
            ("complete", 7, &["tasks_pkey"][..]),
            ("fail", 8, &["tasks_pkey"][..]),
            ("release", 5, &["tasks_pkey"][..]),
        ] {
            let plan = generic_with(&mut conn, sql.body(what), params, settings).await;
            plans.push((what, plan, indexes));
        }
        assert_eq!(plans.len(), sql.functions.len());
        for (what, plan, indexes) in &plans {
            eprintln!("{what} (generic plan, empty table):\n{plan}\n");
            assert_uses(what, plan, indexes);
        }
        // Without the setting, the claim's generic plan on an empty table scans it: the
        // reason the function carries it.
        let unsafe_plan = generic(&mut conn, sql.body("claim"), 6).await;
        assert!(
            unsafe_plan.contains("Seq Scan on tasks"),
            "the claim's generic plan on an empty table no longer scans it; \
             the function's enable_seqscan = off may be unneeded:\n{unsafe_plan}"
        );
    }

    // A process finds its functions by name and creates only the missing ones: starting
    // again changes nothing, a dropped function comes back, and a function of another
    // omniq-postgres release (another digest) stays for the processes that call it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connecting_creates_missing_functions_and_keeps_other_releases() {
        let fresh = Fresh::new("fnupgrade").await;
        let ns = &fresh.ns;
        let sql = Sql::new(ns);
        let mut conn = fresh.storage.pool().acquire().await.expect("connection");
        let before = functions_in(&mut conn, ns).await;
        assert_eq!(before.len(), sql.functions.len());

        // An older release's claim function, and this release's next_due gone.
        let claim = sql.function("claim");
        let older = claim
            .create
            .replacen(&claim.name, "claim_00000000000000ff", 1);
        sqlx::Executor::execute(&mut *conn, older.as_str())
            .await
            .expect("older function");
        sqlx::Executor::execute(
            &mut *conn,
            format!(r#"DROP FUNCTION "{ns}".{}"#, sql.function("next_due").name).as_str(),
        )
        .await
        .expect("drop");

        let again = crate::PostgresStorage::builder()
            .url(&crate::test_support::url())
            .namespace(ns)
            .build()
            .await
            .expect("second start");
        let after = functions_in(&mut conn, ns).await;
        let names: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
        let mut expected: Vec<&str> = sql.functions.iter().map(|f| f.name.as_str()).collect();
        expected.push("claim_00000000000000ff");
        expected.sort_unstable();
        assert_eq!(names, expected);

        // They work: a task enqueued is found due, claimed and completed through them.
        let now = OffsetDateTime::now_utc();
        again
            .enqueue(vec![Task::new("f", Payload(b"[]".to_vec()))])
            .await
            .expect("enqueue");
        let due = again
            .next_due(&["default".to_string()])
            .await
            .expect("next_due");
        assert!(due.is_some_and(|d| d <= now + Duration::seconds(1)));
        let claimed = again
            .claim(ClaimRequest {
                queues: vec!["default".into()],
                limit: 5,
                now: now + Duration::seconds(1),
                lease: Duration::seconds(30),
            })
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        let outcomes = again
            .complete(vec![Completion {
                lease: claimed[0].lease_ref(),
                result: None,
                now: now + Duration::seconds(1),
                next_run: None,
            }])
            .await
            .expect("complete");
        assert_eq!(outcomes, vec![omniq_core::Outcome::Ok]);
        again.close().await.expect("close");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hot_statements_use_their_indexes() {
        let fresh = Fresh::new("explain").await;
        let s = &fresh.storage;
        let now = OffsetDateTime::now_utc();
        for queue in ["q0", "q1", "q2"] {
            let mut rest: Vec<Task> = (0..10_000)
                .map(|i| {
                    let mut t = Task::new("f", Payload(b"[]".to_vec()));
                    t.queue = queue.into();
                    t.priority = i % 3;
                    t
                })
                .collect();
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(crate::MAX_BATCH));
                s.enqueue(rest).await.expect("enqueue");
                rest = tail;
            }
        }
        let req = ClaimRequest {
            queues: vec!["q0".into()],
            limit: 3000,
            now: now + Duration::seconds(1),
            lease: Duration::seconds(30),
        };
        let claimed = s.claim(req).await.expect("claim");
        assert_eq!(claimed.len(), 3000);
        let done: Vec<Completion> = claimed[..2000]
            .iter()
            .map(|c| Completion {
                lease: c.lease_ref(),
                result: None,
                now,
                next_run: None,
            })
            .collect();
        s.complete(done).await.expect("complete");
        let mut conn = s.pool().acquire().await.expect("connection");
        let ns = &fresh.ns;
        sqlx::Executor::execute(
            &mut *conn,
            format!(r#"ANALYZE "{ns}".tasks, "{ns}".results"#).as_str(),
        )
        .await
        .expect("analyze");

        let sql = Sql::new(ns);
        let running: Vec<uuid::Uuid> = claimed[2000..2256].iter().map(|c| c.task.id.0).collect();
        let tokens: Vec<i64> = claimed[2000..2256]
            .iter()
            .map(|c| c.lease.token.0)
            .collect();
        let t = PgTime::of(now + Duration::minutes(1));
        let ts: Vec<PgTime> = vec![t; running.len()];
        let none_t: Vec<Option<PgTime>> = vec![None; running.len()];
        let none_b: Vec<Option<Vec<u8>>> = vec![None; running.len()];
        let errs: Vec<Vec<u8>> = vec![b"e".to_vec(); running.len()];
        let acts: Vec<i16> = vec![0; running.len()];
        let queues = vec!["q0".to_string(), "q1".to_string()];

        let custom = [
            (
                "claim",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.body("claim")))
                        .bind(&queues)
                        .bind(t)
                        .bind(100_i64)
                        .bind(t)
                        .bind("c")
                        .bind("o"),
                )
                .await,
                &["tasks_claim", "tasks_lease", "tasks_pkey"][..],
            ),
            (
                "complete",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.body("complete")))
                        .bind(&running)
                        .bind(&tokens)
                        .bind(&none_b)
                        .bind(&ts)
                        .bind(&none_t)
                        .bind("c")
                        .bind("o"),
                )
                .await,
                &["tasks_pkey"][..],
            ),
            (
                "fail",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.body("fail")))
                        .bind(&running)
                        .bind(&tokens)
                        .bind(&errs)
                        .bind(&ts)
                        .bind(&acts)
                        .bind(&none_t)
                        .bind("c")
                        .bind("o"),
                )
                .await,
                &["tasks_pkey"][..],
            ),
            (
                "heartbeat",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.body("heartbeat")))
                        .bind(&running)
                        .bind(&tokens)
                        .bind(t),
                )
                .await,
                &["tasks_pkey"][..],
            ),
            (
                "release",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.body("release")))
                        .bind(&running)
                        .bind(&tokens)
                        .bind(t)
                        .bind("c")
                        .bind("o"),
                )
                .await,
                &["tasks_pkey"][..],
            ),
            (
                "next_due",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.body("next_due"))).bind(&queues),
                )
                .await,
                &["tasks_claim", "tasks_lease"][..],
            ),
            (
                "find_unique",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.find_unique))
                        .bind(&queues)
                        .bind(&queues),
                )
                .await,
                &["tasks_unique"][..],
            ),
            (
                "sweep results",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.sweep_results))
                        .bind(t)
                        .bind(10_000_i64),
                )
                .await,
                &["results_finished", "results_pkey"][..],
            ),
            (
                "sweep tasks",
                explain(
                    &mut conn,
                    sqlx::query(&format!("EXPLAIN {}", sql.sweep_tasks))
                        .bind(t)
                        .bind(10_000_i64),
                )
                .await,
                &["tasks_finished", "tasks_pkey"][..],
            ),
        ];
        for (what, plan, indexes) in &custom {
            eprintln!("{what} (custom plan):\n{plan}\n");
            assert_uses(what, plan, indexes);
        }
        let generic_plans = [
            (
                "claim",
                generic(&mut conn, sql.body("claim"), 6).await,
                &["tasks_claim", "tasks_lease", "tasks_pkey"][..],
            ),
            (
                "complete",
                generic(&mut conn, sql.body("complete"), 7).await,
                &["tasks_pkey"][..],
            ),
            (
                "fail",
                generic(&mut conn, sql.body("fail"), 8).await,
                &["tasks_pkey"][..],
            ),
            (
                "heartbeat",
                generic(&mut conn, sql.body("heartbeat"), 3).await,
                &["tasks_pkey"][..],
            ),
            (
                "release",
                generic(&mut conn, sql.body("release"), 5).await,
                &["tasks_pkey"][..],
            ),
            (
                "next_due",
                generic(&mut conn, sql.body("next_due"), 1).await,
                &["tasks_claim", "tasks_lease"][..],
            ),
        ];
        for (what, plan, indexes) in &generic_plans {
            eprintln!("{what} (generic plan):\n{plan}\n");
            assert_uses(what, plan, indexes);
        }
    }
}
