//! The conformance suite's self-test: its `tests/` run omniq-conformance against the
//! SQLite backend and against deliberately faulty wrappers of it, and check that every
//! fault is caught, that skips are reported as skips, that the macro expands to one test
//! per case, and that every case is named next to its rule in the `Storage` docs.
//!
//! ```
//! // Nothing to call: run `cargo test -p omniq-conformance-selftest`.
//! ```
