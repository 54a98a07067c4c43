//! `conformance_tests!` expands into one `#[test]` per case; here it runs the whole
//! suite against in-memory SQLite, which also shows the suite passes on a correct
//! backend.

mod common;

omniq_conformance::conformance_tests!(common::MemoryFactory::default());
