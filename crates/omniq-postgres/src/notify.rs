//! Wake-ups: the in-process broadcast behind `subscribe()`, and the one LISTEN
//! connection per storage that feeds it other processes' NOTIFYs.
//!
//! Statements send `pg_notify(channel, "<origin> w <queue>")` for work and
//! `"<origin> f <id>,<id>,…"` (ids as 32 hex digits) for finished runs; PostgreSQL
//! delivers them when the transaction commits. A storage hands its own hints to its
//! subscribers directly after the commit, so its listener skips payloads carrying its
//! own origin; `enqueue_tx` sends an empty origin, because only the caller knows when
//! its transaction commits — the storage then learns it from its own listener.
//!
//! The listener reconnects with back-off (100 ms doubling to 5 s). Notifications sent
//! while it was away are lost (sqlx's `PgListener` cannot replay them), so after every
//! reconnect it sends a `Work` hint for every queue this storage has claimed from:
//! workers re-check at once instead of waiting for their poll. Hints are only hints.

use omniq_core::{TaskId, Wake};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// Capacity of the wake-up channel; slow subscribers just miss hints.
const WAKE_CAPACITY: usize = 1024;
/// At most this many queue names are remembered for the hints after a reconnect.
const KNOWN_QUEUES: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The channel of a namespace: `omniq_<namespace>`, or, when that would exceed
/// PostgreSQL's 63-byte identifiers, a prefix of it plus a hash of the whole name.
pub(crate) fn channel_name(ns: &str) -> String {
    let full = format!("omniq_{ns}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: stable across builds and platforms.
    let hash = crate::schema::fnv1a(ns.as_bytes());
    format!("omniq_{}_{hash:016x}", ns.get(..40).unwrap_or(ns))
}

/// A fresh random origin tag (16 hex digits) for one storage instance.
fn new_origin() -> String {
    let id = uuid::Uuid::new_v4().as_u128();
    format!("{:016x}", (id >> 64) as u64 ^ id as u64)
}

/// The hints a NOTIFY payload carries, unless it came from `own` origin.
pub(crate) fn parse_payload(payload: &str, own: &str) -> Vec<Wake> {
    let mut parts = payload.splitn(3, ' ');
    let (Some(origin), Some(kind), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Vec::new();
    };
    if !origin.is_empty() && origin == own {
        return Vec::new();
    }
    match kind {
        "w" if omniq_core::validate_name("queue", data).is_ok() => vec![Wake::Work {
            queue: data.to_string(),
        }],
        "f" => data
            .split(',')
            .filter_map(|id| uuid::Uuid::try_parse(id).ok())
            .map(|id| Wake::Finished {
                task_id: TaskId(id),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The wake-up side of a storage: local broadcast, NOTIFY channel and origin, and the
/// listener task.
pub(crate) struct Notifier {
    wake: broadcast::Sender<Wake>,
    pub(crate) channel: String,
    pub(crate) origin: String,
    known: Arc<Mutex<HashSet<String>>>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    pub(crate) fn new(ns: &str) -> Self {
        let (wake, _) = broadcast::channel(WAKE_CAPACITY);
        Self {
            wake,
            channel: channel_name(ns),
            origin: new_origin(),
            known: Arc::default(),
            listener: Mutex::new(None),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Wake> {
        self.wake.subscribe()
    }

    /// Hands a hint to this process's subscribers.
    pub(crate) fn local(&self, wake: Wake) {
        // No receivers is fine: wake-ups are hints.
        let _ = self.wake.send(wake);
    }

    /// Remembers the queues workers claim from, for the hints after a reconnect.
    pub(crate) fn note_queues(&self, queues: &[String]) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        for q in queues {
            if known.len() >= KNOWN_QUEUES {
                break;
            }
            if !known.contains(q) {
                known.insert(q.clone());
            }
        }
    }

    /// Starts the LISTEN connection and waits (up to `wait`) until it listens, so hints
    /// sent after the storage is built are not missed. If it cannot connect yet, it
    /// keeps trying in the background.
    pub(crate) async fn start(&self, options: PgConnectOptions, wait: Duration) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(listen_loop(
            options,
            self.channel.clone(),
            self.origin.clone(),
            self.wake.clone(),
            Arc::clone(&self.known),
            ready_tx,
        ));
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        let _ = tokio::time::timeout(wait, ready_rx).await;
    }

    /// Stops the listener (idempotent).
    pub(crate) fn stop(&self) {
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

async fn connect_listener(options: &PgConnectOptions, channel: &str) -> sqlx::Result<PgListener> {
    // A pool of one just for this connection, so LISTEN never takes one from the
    // storage's pool and a dead connection is replaced by a fresh one.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(BACKOFF_MAX)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

async fn listen_loop(
    options: PgConnectOptions,
    channel: String,
    origin: String,
    wake: broadcast::Sender<Wake>,
    known: Arc<Mutex<HashSet<String>>>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = BACKOFF_MIN;
    let mut connected_before = false;
    let resync = |why: &str| {
        tracing::info!(target: "omniq::storage", backend = "postgres", channel = %channel, "LISTEN {why}; waking workers to re-check their queues");
        let queues: Vec<String> = known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        for queue in queues {
            let _ = wake.send(Wake::Work { queue });
        }
    };
    loop {
        match connect_listener(&options, &channel).await {
            Ok(mut listener) => {
                backoff = BACKOFF_MIN;
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                if connected_before {
                    resync("reconnected");
                }
                connected_before = true;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => {
                            for w in parse_payload(n.payload(), &origin) {
                                let _ = wake.send(w);
                            }
                        }
                        // The connection dropped and sqlx reconnected and re-listened:
                        // what was sent meanwhile is lost.
                        Ok(None) => resync("connection was lost and re-established"),
                        Err(e) => {
                            tracing::warn!(target: "omniq::storage", backend = "postgres", "LISTEN connection failed ({}); reconnecting, workers poll meanwhile", omniq_core::redact_credentials(&e.to_string()));
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(target: "omniq::storage", backend = "postgres", "cannot LISTEN ({}); retrying in {} ms, workers poll meanwhile", omniq_core::redact_credentials(&e.to_string()), backoff.as_millis());
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_postgres_identifiers() {
        assert_eq!(channel_name("omniq"), "omniq_omniq");
        let long = "n".repeat(63);
        let a = channel_name(&long);
        assert!(a.len() <= 63, "{a}");
        let mut other = long.clone();
        other.replace_range(62.., "m");
        assert_ne!(
            a,
            channel_name(&other),
            "different namespaces, different channels"
        );
    }

    #[test]
    fn payloads_parse_and_own_hints_are_skipped() {
        let id = TaskId::new();
        let hex = id.0.simple().to_string();
        assert_eq!(
            parse_payload("abc w emails", "mine"),
            vec![Wake::Work {
                queue: "emails".into()
            }]
        );
        assert!(parse_payload("mine w emails", "mine").is_empty());
        // An empty origin (enqueue_tx) is delivered to everyone.
        assert_eq!(parse_payload(" w emails", "mine").len(), 1);
        assert_eq!(
            parse_payload(&format!("abc f {hex},{hex}"), "mine"),
            vec![
                Wake::Finished { task_id: id },
                Wake::Finished { task_id: id }
            ]
        );
        assert!(parse_payload("garbage", "mine").is_empty());
        assert!(parse_payload("abc w bad queue", "mine").is_empty());
    }
}
