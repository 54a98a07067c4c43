//! Middleware: one way to wrap every run of a worker pool — timing, tracing, metrics, an
//! auth context, limits. A [`Middleware`] gets the run's [`TaskCtx`] and the rest of the
//! chain as [`Next`]; it may act before, call `next.run().await`, act after, or answer
//! without running the handler. Add them with
//! [`AsyncWorkerPool::layer`](crate::AsyncWorkerPool::layer); the first added is the
//! outermost.
//!
//! The run's timeout starts when the handler itself starts, so time a middleware spends
//! waiting (for a concurrency permit, a rate-limit token) does not count against it.
//!
//! ```
//! use omniq_runtime::middleware::{Middleware, Next, RunOutput};
//! use omniq_runtime::{TaskCtx, async_trait};
//!
//! /// Logs how long each run of each handler took.
//! struct Timing;
//!
//! #[async_trait]
//! impl Middleware for Timing {
//!     async fn around(&self, ctx: &TaskCtx, next: Next) -> RunOutput {
//!         let start = std::time::Instant::now();
//!         let out = next.run().await;
//!         println!("{} took {:?} (ok: {})", ctx.func_path, start.elapsed(), out.is_ok());
//!         out
//!     }
//! }
//! ```
//!
//! Built in: [`ConcurrencyLimit`] (at most N runs at once per handler or queue) and
//! [`RateLimit`] (at most N starts per second per handler or queue).

use crate::handler::TaskCtx;
use futures::future::BoxFuture;
use omniq_core::{Payload, TaskError, async_trait};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What a run produced: the handler's encoded output, or the error it failed with.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput(pub(crate) Result<Option<Payload>, TaskError>);

impl RunOutput {
    /// A failed run, without calling the handler (e.g. a denied permission).
    pub fn failed(error: TaskError) -> Self {
        Self(Err(error))
    }

    /// True when the run succeeded.
    pub fn is_ok(&self) -> bool {
        self.0.is_ok()
    }

    /// The error of a failed run.
    pub fn error(&self) -> Option<&TaskError> {
        self.0.as_ref().err()
    }
}

/// The rest of the chain: the middlewares after this one, then the handler.
pub struct Next {
    pub(crate) chain: Arc<[Arc<dyn Middleware>]>,
    pub(crate) index: usize,
    pub(crate) ctx: TaskCtx,
    pub(crate) handler: Box<dyn FnOnce() -> BoxFuture<'static, RunOutput> + Send>,
}

impl Next {
    /// Runs the rest of the chain and the handler.
    pub async fn run(self) -> RunOutput {
        match self.chain.get(self.index).cloned() {
            Some(m) => {
                let ctx = self.ctx.clone();
                let next = Next {
                    index: self.index + 1,
                    ..self
                };
                m.around(&ctx, next).await
            }
            None => (self.handler)().await,
        }
    }
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field(
                "remaining",
                &(self.chain.len() - self.index.min(self.chain.len())),
            )
            .field("task", &self.ctx.task_id)
            .finish()
    }
}

/// Wraps every run of a pool (see the [module docs](self)).
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Runs around one task run; call `next.run().await` to continue.
    async fn around(&self, ctx: &TaskCtx, next: Next) -> RunOutput;
}

/// A shared middleware (keep a clone to read what it gathered).
#[async_trait]
impl<M: Middleware> Middleware for Arc<M> {
    async fn around(&self, ctx: &TaskCtx, next: Next) -> RunOutput {
        (**self).around(ctx, next).await
    }
}

/// Which runs a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Handler(String),
    Queue(String),
}

fn keys(ctx: &TaskCtx) -> [Key; 2] {
    [
        Key::Handler(ctx.func_path.clone()),
        Key::Queue(ctx.queue.clone()),
    ]
}

/// At most N runs at once of a handler, or of a queue (on this pool). A run over the
/// limit waits for a permit inside its run slot, before its timeout starts.
///
/// ```
/// use omniq_runtime::middleware::ConcurrencyLimit;
/// let limit = ConcurrencyLimit::new().handler("emails.send", 2).queue("reports", 1);
/// # let _ = limit;
/// ```
#[derive(Debug, Default)]
pub struct ConcurrencyLimit {
    limits: HashMap<Key, Arc<Semaphore>>,
}

impl ConcurrencyLimit {
    /// No limits yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` (≥ 1) runs of handler `name` at once.
    pub fn handler(mut self, name: impl Into<String>, n: usize) -> Self {
        self.limits.insert(
            Key::Handler(name.into()),
            Arc::new(Semaphore::new(n.max(1))),
        );
        self
    }

    /// At most `n` (≥ 1) runs of tasks of `queue` at once.
    pub fn queue(mut self, queue: impl Into<String>, n: usize) -> Self {
        self.limits
            .insert(Key::Queue(queue.into()), Arc::new(Semaphore::new(n.max(1))));
        self
    }
}

#[async_trait]
impl Middleware for ConcurrencyLimit {
    async fn around(&self, ctx: &TaskCtx, next: Next) -> RunOutput {
        let mut permits = Vec::new();
        for key in keys(ctx) {
            if let Some(sem) = self.limits.get(&key) {
                // The semaphores are never closed, so acquiring cannot fail.
                if let Ok(p) = Arc::clone(sem).acquire_owned().await {
                    permits.push(p);
                }
            }
        }
        let out = next.run().await;
        drop(permits);
        out
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

/// At most N starts a second of a handler, or of a queue (on this pool; a token bucket
/// with a burst of one second's worth). A run over the rate waits inside its run slot,
/// before its timeout starts.
///
/// ```
/// use omniq_runtime::middleware::RateLimit;
/// let limit = RateLimit::new().handler("api.call", 10.0).queue("bulk", 100.0);
/// # let _ = limit;
/// ```
#[derive(Debug, Default)]
pub struct RateLimit {
    buckets: HashMap<Key, Bucket>,
}

impl RateLimit {
    /// No limits yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `per_second` (> 0) starts a second of handler `name`.
    pub fn handler(mut self, name: impl Into<String>, per_second: f64) -> Self {
        let rate = per_second.max(f64::MIN_POSITIVE);
        self.buckets
            .insert(Key::Handler(name.into()), Bucket::new(rate, rate.max(1.0)));
        self
    }

    /// At most `per_second` (> 0) starts a second of tasks of `queue`.
    pub fn queue(mut self, queue: impl Into<String>, per_second: f64) -> Self {
        let rate = per_second.max(f64::MIN_POSITIVE);
        self.buckets
            .insert(Key::Queue(queue.into()), Bucket::new(rate, rate.max(1.0)));
        self
    }
}

#[async_trait]
impl Middleware for RateLimit {
    async fn around(&self, ctx: &TaskCtx, next: Next) -> RunOutput {
        for key in keys(ctx) {
            if let Some(bucket) = self.buckets.get(&key) {
                while let Err(wait) = bucket.take() {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        next.run().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_says_how_long_to_wait() {
        let b = Bucket::new(2.0, 2.0);
        assert!(b.take().is_ok());
        assert!(b.take().is_ok());
        let wait = b.take().expect_err("empty");
        // One token takes half a second at 2/s (minus the microseconds that passed).
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::from_millis(400),
            "{wait:?}"
        );
    }
}
