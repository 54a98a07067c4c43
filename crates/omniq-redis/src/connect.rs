//! Connecting: the command pool, loading the scripts, calling them by SHA (loading
//! them again after `NOSCRIPT`, e.g. after a server restart), locator look-ups, the
//! wake-up subscriber, and closing.

use crate::config::{RedisConfig, Source, Topology};
use crate::convert::text;
use crate::error::{Error, Result, config};
use crate::scripts::{Keys, Scripts};
use crate::storage::{Inner, RedisStorage};
use fred::clients::Pool;
use fred::prelude::{
    Builder, ClientLike, Config as FredConfig, EventInterface, KeysInterface, LuaInterface,
    Options, PubsubInterface, ReconnectPolicy,
};
use fred::types::Value;
use fred::types::scripts::Script;
use omniq_core::{TaskId, Wake};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::broadcast;

/// Capacity of the wake-up channel; slow subscribers just miss hints.
const WAKE_CAPACITY: usize = 1024;

/// Reconnection: forever, 50 ms doubling up to 2 s between attempts.
fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 50, 2_000, 2)
}

fn fred_builder(fc: FredConfig, cfg: &RedisConfig) -> Builder {
    let mut b = Builder::from_config(fc);
    b.with_connection_config(|c| {
        c.connection_timeout = cfg.command_timeout.min(Duration::from_secs(5));
        c.internal_command_timeout = cfg.command_timeout;
        // A call in flight when a connection drops fails (Unavailable) instead of being
        // sent again behind the caller's back: the runtime decides about retries.
        c.max_command_attempts = 1;
    })
    .with_performance_config(|p| {
        p.default_command_timeout = cfg.command_timeout;
    })
    .set_policy(reconnect_policy());
    b
}

impl RedisStorage {
    pub(crate) async fn connect(cfg: RedisConfig, source: Source) -> Result<Self> {
        let (pool, owns_pool, fred_config) = match source {
            Source::Url => {
                let url = cfg.url.as_deref().ok_or_else(|| config("no Redis URL"))?;
                let fc = FredConfig::from_url(url).map_err(|e| {
                    config(format!(
                        "Redis URL {:?}: {}",
                        omniq_core::redact_credentials(url),
                        e.details()
                    ))
                })?;
                let pool = fred_builder(fc.clone(), &cfg).build_pool(cfg.pool_size)?;
                pool.init().await?;
                (pool, true, fc)
            }
            Source::Clients(clients) => {
                let pool = Pool::from_clients(clients)?;
                for c in pool.clients() {
                    if !c.is_connected() {
                        c.init().await?;
                    }
                }
                let fc = pool.next().client_config();
                (pool, false, fc)
            }
        };
        let topology = if fred_config.server.is_clustered() {
            Topology::Cluster
        } else {
            Topology::Standalone
        };
        let scripts = Scripts::new();
        for s in scripts.all() {
            s.load(pool.next()).await?;
        }
        let keys = Keys::new(&cfg.namespace);
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let (wake, _) = broadcast::channel(WAKE_CAPACITY);

        let subscriber = fred_builder(fred_config, &cfg).build_subscriber_client()?;
        subscriber.init().await?;
        let resubscriber = subscriber.manage_subscriptions();
        subscriber.subscribe(keys.channel.clone()).await?;
        let listener = tokio::spawn(listen(
            subscriber.message_rx(),
            wake.clone(),
            instance.clone(),
        ));

        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                owns_pool,
                topology,
                options: Options {
                    fail_fast: true,
                    timeout: Some(cfg.command_timeout),
                    ..Options::default()
                },
                keys,
                scripts,
                namespace: cfg.namespace,
                format: cfg.format,
                result_ttl_us: i64::try_from(cfg.result_ttl.whole_microseconds())
                    .unwrap_or(i64::MAX / 4),
                instance,
                closed: AtomicBool::new(false),
                held: std::sync::Mutex::new(std::collections::HashMap::new()),
                wake,
                subscriber,
                listener: std::sync::Mutex::new(vec![listener, resubscriber]),
            }),
        })
    }

    /// Calls a script by SHA; after `NOSCRIPT` (the server lost its script cache: a
    /// restart or failover) loads it again and retries once. `key` routes the call to
    /// the slot every key of the script shares.
    pub(crate) async fn eval(
        &self,
        script: &Script,
        key: String,
        args: Vec<Value>,
    ) -> Result<Value> {
        self.check_open()?;
        let client = self.inner.pool.next();
        let with = client.with_options(&self.inner.options);
        let sha = script.sha1().clone();
        match with
            .evalsha::<Value, _, _, _>(sha.clone(), key.clone(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                script.load(client).await?;
                Ok(with.evalsha(sha, key, args).await?)
            }
            other => Ok(other?),
        }
    }

    /// The queues of tasks, from their locators (`None`: no such task).
    pub(crate) async fn locate(&self, ids: &[TaskId]) -> Result<Vec<Option<String>>> {
        self.check_open()?;
        let client = self.inner.pool.next().with_options(&self.inner.options);
        let keys = &self.inner.keys;
        let gets = ids
            .iter()
            .map(|id| client.get::<Option<String>, _>(keys.locator(&id.to_string())));
        Ok(futures::future::try_join_all(gets).await?)
    }

    /// Runs plain commands on the pool with the storage's options.
    pub(crate) fn client(&self) -> Result<fred::clients::WithOptions<fred::clients::Client>> {
        self.check_open()?;
        Ok(self.inner.pool.next().with_options(&self.inner.options))
    }

    /// Sets (or, with `None`, removes) the expiry of locators on a cluster, where
    /// scripts cannot reach them. Best effort: a failure only delays their cleanup.
    pub(crate) async fn expire_locators(&self, ended: &[(String, i64)]) {
        if !self.cluster() || ended.is_empty() {
            return;
        }
        let Ok(client) = self.client() else { return };
        let keys = &self.inner.keys;
        let calls = ended
            .iter()
            .map(|(id, ms)| client.pexpire_at::<(), _>(keys.locator(id), *ms, None));
        if let Err(e) = futures::future::try_join_all(calls).await {
            tracing::warn!(target: "omniq::storage", backend = "redis", "setting locator expiry failed: {}", Error::from(e));
        }
    }

    pub(crate) async fn shutdown(&self) -> Result<()> {
        if self
            .inner
            .closed
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Ok(());
        }
        if let Ok(mut tasks) = self.inner.listener.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
        let quit = Duration::from_secs(2);
        let _ = tokio::time::timeout(quit, self.inner.subscriber.quit()).await;
        if self.inner.owns_pool {
            let _ = tokio::time::timeout(quit, self.inner.pool.quit()).await;
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.listener.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// Turns other instances' pub/sub messages (`instance|queue,…|id,…`) into wake-ups.
async fn listen(
    mut rx: broadcast::Receiver<fred::types::Message>,
    wake: broadcast::Sender<Wake>,
    instance: String,
) {
    loop {
        let msg = match rx.recv().await {
            Ok(m) => m,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        for w in parse_wake(&text(&msg.value), &instance) {
            let _ = wake.send(w);
        }
    }
}

/// The wake-ups in one message, unless this instance sent it.
pub(crate) fn parse_wake(message: &str, instance: &str) -> Vec<Wake> {
    let mut parts = message.splitn(3, '|');
    let (Some(from), Some(queues), Some(ids)) = (parts.next(), parts.next(), parts.next()) else {
        return Vec::new();
    };
    if from == instance {
        return Vec::new();
    }
    let work = queues
        .split(',')
        .filter(|q| !q.is_empty())
        .map(|q| Wake::Work {
            queue: q.to_string(),
        });
    let finished = ids
        .split(',')
        .filter_map(|id| id.parse::<TaskId>().ok())
        .map(|task_id| Wake::Finished { task_id });
    work.chain(finished).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_messages_parse_and_own_ones_are_skipped() {
        let id = TaskId::new();
        let msg = format!("other|a,b|{id}");
        assert_eq!(
            parse_wake(&msg, "me"),
            vec![
                Wake::Work { queue: "a".into() },
                Wake::Work { queue: "b".into() },
                Wake::Finished { task_id: id }
            ]
        );
        assert!(parse_wake(&msg, "other").is_empty());
        assert!(parse_wake("garbage", "me").is_empty());
    }
}
