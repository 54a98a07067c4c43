//! OmniQ's failure harness: `cargo xtask chaos` runs these scenarios against every
//! backend with real worker processes and real servers, and reports per backend and
//! scenario the tasks, the faults injected, and what must stay zero — tasks lost, runs
//! of one task overlapping under a live lease, and panics.
//!
//! The binary is both the orchestrator (`omniq-chaos run`) and the worker process it
//! spawns (`omniq-chaos worker`). Every scenario works in a namespace of its own and
//! deletes it at the end. What each scenario does and the figures of the last full run:
//! `docs/reliability.md`.
//!
//! The audit reads the run log every process appends to:
//!
//! ```
//! // Two runs of one task: the second began after the first one's lease (ending at
//! // t = 3 s) expired, its worker killed at t = 1 s — a redelivery, not a double run.
//! let log = "claim 0 1 t 1 1 3000000\nstart 1 1 t 1\nkill 1000000 1\n\
//!            claim 3000001 2 t 2 2 6000000\nstart 3000002 2 t 2\nend 3100000 2 t 2\n";
//! let facts = omniq_chaos::audit::analyze_text(log);
//! assert_eq!((facts.runs, facts.rerun_tasks, facts.double_live), (2, 1, 0));
//! ```

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
