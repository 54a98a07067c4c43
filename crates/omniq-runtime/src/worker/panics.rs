//! Where a handler panicked. A panic payload carries only the message; the location (and
//! a backtrace, when `RUST_BACKTRACE` asks for one) is only known to the panic hook. The
//! first pool that starts chains a hook, once per process, that notes them in a
//! thread-local; the executor reads it on the same thread right after catching the panic.
//! The previous hook (the default message on stderr, or the application's own) still runs.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::sync::Once;

/// Where the last panic on this thread happened.
pub(super) struct PanicSite {
    /// `file:line:column`.
    pub(super) location: Option<String>,
    /// The captured backtrace, when enabled by `RUST_BACKTRACE` / `RUST_LIB_BACKTRACE`.
    pub(super) backtrace: Option<String>,
}

thread_local! {
    static LAST: RefCell<Option<PanicSite>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Chains the recording hook in front of the current one (once per process).
pub(super) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let bt = Backtrace::capture();
            let backtrace = (bt.status() == BacktraceStatus::Captured).then(|| bt.to_string());
            LAST.with(|last| {
                *last.borrow_mut() = Some(PanicSite {
                    location,
                    backtrace,
                })
            });
            previous(info);
        }));
    });
}

/// Takes what the hook recorded for the last panic on this thread.
pub(super) fn take() -> Option<PanicSite> {
    LAST.with(|last| last.borrow_mut().take())
}

/// The TaskError of a caught panic: the payload's message, and in the traceback the
/// message, the location and the backtrace when there is one.
pub(super) fn task_error(
    payload: &(dyn std::any::Any + Send),
    site: Option<PanicSite>,
) -> omniq_core::TaskError {
    let mut err = omniq_core::TaskError::from_panic(payload);
    if let Some(site) = site {
        let mut traceback = err.traceback.take().unwrap_or_default();
        if let Some(location) = &site.location {
            traceback.push_str(&format!("\n  at {location}"));
            err.context.insert(
                "panic_location".into(),
                serde_json::Value::String(location.clone()),
            );
        }
        if let Some(bt) = site.backtrace {
            traceback.push_str("\n\nstack backtrace:\n");
            traceback.push_str(&bt);
        }
        err.traceback = Some(traceback);
    }
    err
}
