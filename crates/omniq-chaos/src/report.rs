//! The report: a table on standard output, and Markdown or JSON in a file.

use crate::scenarios::Row;
use std::fmt::Write;

/// The table's header and rows, aligned.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<9} {:<17} {:>8} {:>7} {:>5} {:>7} {:>7} {:>8} {:>8}",
        "backend", "scenario", "tasks", "faults", "lost", "double", "panics", "runs", "seconds"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<9} {:<17} {:>8} {:>7} {:>5} {:>7} {:>7} {:>8} {:>8.1}{}",
            r.backend,
            r.scenario,
            r.tasks,
            r.faults,
            r.lost,
            r.double,
            r.panics,
            r.runs,
            r.seconds,
            if r.ok() { "" } else { "  FAILED" }
        );
    }
    s
}

/// The rows as a Markdown table, notes below.
pub fn markdown(rows: &[Row], command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Command: `{command}`\n");
    let _ = writeln!(
        s,
        "| backend | scenario | tasks | faults injected | lost | double runs under a live lease | panics | runs | seconds |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            r.backend, r.scenario, r.tasks, r.faults, r.lost, r.double, r.panics, r.runs, r.seconds
        );
    }
    let _ = writeln!(s, "\nNotes:\n");
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        let _ = writeln!(s, "- {} / {}: {}", r.backend, r.scenario, r.note);
    }
    s
}
