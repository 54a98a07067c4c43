//! OmniQ's failure harness: `cargo xtask chaos` runs these scenarios against every
//! backend with real worker processes and real servers, and reports per backend and
//! scenario the tasks, the faults injected, and what must stay zero — tasks lost, runs
//! of one task overlapping under a live lease, and panics.
//!
//! The binary is both the orchestrator (`omniq-chaos run`) and the worker process it
//! spawns (`omniq-chaos worker`). Every scenario works in a namespace of its own and
//! deletes it at the end. What each scenario does and the figures of the last full run:
//! `docs/reliability.md`.

pub mod audit;
pub mod backend;
pub mod baddata;
pub mod faulty;
pub mod inproc;
pub mod procs;
pub mod raw;
pub mod report;
pub mod scenarios;
pub mod servers;
pub mod worker;

pub use faulty::FaultyStorage;
