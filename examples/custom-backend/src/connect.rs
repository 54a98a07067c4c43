//! The "server" several storages connect to, its namespaces, and the one way every
//! operation reaches a namespace's data: [`MemoryStorage::write`], a short critical
//! section that plays the part of a transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use omniq_core::broadcast;
use omniq_core::{StorageError, Wake};

use crate::error::Error;
use crate::state::Space;
use crate::{MemoryConfig, MemoryStorage};

/// How many wake-up hints a slow subscriber may fall behind before it misses some.
const WAKE_CAPACITY: usize = 1024;

/// One namespace: its data behind one lock, and its wake-up channel.
#[derive(Debug)]
pub(crate) struct Namespace {
    pub(crate) space: Mutex<Space>,
    pub(crate) wake: broadcast::Sender<Wake>,
}

#[derive(Debug, Default)]
struct ServerInner {
    namespaces: Mutex<HashMap<String, Arc<Namespace>>>,
    stopped: AtomicBool,
}

/// An in-process "database server": a set of namespaces that any number of
/// [`MemoryStorage`] handles connect to. Handles on the same namespace share its tasks
/// (and its wake-ups); different namespaces never see each other.
///
/// Cloning is cheap and yields a handle to the same server.
///
/// ```
/// use omniq_example_memory::{MemoryConfig, MemoryServer};
///
/// let server = MemoryServer::new();
/// let a = server.connect(MemoryConfig::new("tenant-a").unwrap()).unwrap();
/// let b = server.connect(MemoryConfig::new("tenant-b").unwrap()).unwrap();
/// assert_ne!(a.namespace(), b.namespace());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryServer {
    inner: Arc<ServerInner>,
}

impl MemoryServer {
    /// A new, empty server.
    pub fn new() -> Self {
        Self::default()
    }

    /// A storage on `config`'s namespace, creating the namespace on first use.
    ///
    /// Fails with [`StorageErrorKind::Unavailable`](omniq_core::StorageErrorKind) once
    /// the server is [stopped](Self::stop).
    pub fn connect(&self, config: MemoryConfig) -> Result<MemoryStorage, StorageError> {
        if self.is_stopped() {
            return Err(Error::ServerStopped.into());
        }
        let mut namespaces = self
            .inner
            .namespaces
            .lock()
            .map_err(|_| StorageError::from(Error::Poisoned))?;
        let ns = namespaces
            .entry(config.namespace().to_owned())
            .or_insert_with(|| {
                Arc::new(Namespace {
                    space: Mutex::default(),
                    wake: broadcast::channel(WAKE_CAPACITY).0,
                })
            });
        Ok(MemoryStorage {
            server: self.clone(),
            ns: Arc::clone(ns),
            config,
            closed: AtomicBool::new(false),
        })
    }

    /// Simulates the server going away: from now on every operation of every storage
    /// connected to it fails with `Unavailable`, and `connect` does too. Useful to test
    /// how the code above storage handles an outage (the conformance suite's "broken
    /// instance").
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }
}

impl MemoryStorage {
    /// Fails once this handle is closed or its server stopped. Operations that check
    /// their arguments call it first: after `close`, every call is `Closed`, whatever
    /// its arguments.
    pub(crate) fn check_open(&self) -> Result<(), Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if self.server.is_stopped() {
            return Err(Error::ServerStopped);
        }
        Ok(())
    }

    /// Locks the namespace for one operation, after checking that this handle is open
    /// and the server is up.
    fn lock(&self) -> Result<MutexGuard<'_, Space>, Error> {
        self.check_open()?;
        self.ns.space.lock().map_err(|_| Error::Poisoned)
    }

    /// Runs `f` on the namespace under its lock — all of it or, when `f` fails before
    /// changing anything, none of it — then, after the lock is released (the commit),
    /// sends the wake-ups `f` collected.
    pub(crate) fn write<R>(
        &self,
        f: impl FnOnce(&mut Space, &mut Vec<Wake>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut wakes = Vec::new();
        let r = {
            let mut space = self.lock()?;
            f(&mut space, &mut wakes)?
        };
        for wake in wakes {
            // No receiver is not an error: hints are optional.
            let _ = self.ns.wake.send(wake);
        }
        Ok(r)
    }

    /// Runs `f` on the namespace under its lock, for reads.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Space) -> R) -> Result<R, Error> {
        let space = self.lock()?;
        Ok(f(&space))
    }

    /// Marks this handle closed (other handles on the namespace are unaffected).
    pub(crate) fn close_handle(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// A receiver of this namespace's hints.
    pub(crate) fn wake_receiver(&self) -> broadcast::Receiver<Wake> {
        self.ns.wake.subscribe()
    }
}
