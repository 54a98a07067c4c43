//! The runner's report: a checklist on stdout and the JSON file.

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    /// Every expectation held.
    Passed,
    /// An expectation failed (or the case could not run when it had to).
    Failed,
    /// Not run: a capability, the broken instance or the service was missing.
    Skipped,
}

impl CaseStatus {
    /// `passed`, `failed` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// The checklist mark: ✓, ✗ or -.
    pub fn mark(self) -> &'static str {
        match self {
            Self::Passed => "✓",
            Self::Failed => "✗",
            Self::Skipped => "-",
        }
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One case's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseReport {
    /// The case id.
    pub id: String,
    /// The checklist line or contract sentence.
    pub checklist: String,
    /// Requirement IDs the case cites.
    pub requirements: Vec<String>,
    /// How it ended.
    pub status: CaseStatus,
    /// Why it failed or was skipped; always present, the empty string when passed (so
    /// every entry has the same keys).
    pub reason: String,
}

/// The whole report for one backend:
/// `{"backend": "...", "cases": [{"id", "checklist", "requirements", "status", "reason"}]}`.
///
/// Cases filtered out on the command line are not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The backend's name.
    pub backend: String,
    /// The cases that ran (or were skipped), in registry order.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// How many cases ended with `status`.
    pub fn count(&self, status: CaseStatus) -> usize {
        self.cases.iter().filter(|c| c.status == status).count()
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and enums cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Writes `<dir>/<backend>.json`, creating `dir`; returns the path.
    pub fn write_to_dir(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.json", self.backend));
        std::fs::write(&path, self.to_json() + "\n")?;
        Ok(path)
    }
}

impl fmt::Display for Report {
    /// The human checklist: one `✓`/`✗`/`-` line per case, then a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance checklist: {}", self.backend)?;
        for c in &self.cases {
            write!(
                f,
                "  {} {:<48} {} [{}]",
                c.status.mark(),
                c.id,
                c.checklist,
                c.requirements.join(", ")
            )?;
            if !c.reason.is_empty() {
                write!(f, " ({}: {})", c.status, c.reason)?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "{}: {} passed, {} failed, {} skipped",
            self.backend,
            self.count(CaseStatus::Passed),
            self.count(CaseStatus::Failed),
            self.count(CaseStatus::Skipped)
        )
    }
}
