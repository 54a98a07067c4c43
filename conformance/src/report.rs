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
    /// The report section: a checklist of the migration guide or a part of the contract.
    pub group: String,
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
/// `{"backend": "...", "cases": [{"id", "group", "checklist", "requirements", "status", "reason"}]}`.
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
    /// The human checklist, grouped like the migration guide's checklists: under each
    /// group one `✓`/`✗`/`-` line per case with its sentence, id and requirement IDs, and
    /// under a failed or skipped case the reason (the failing assertion); then a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance checklist: {}", self.backend)?;
        let mut group = None;
        for c in &self.cases {
            if group != Some(c.group.as_str()) {
                group = Some(c.group.as_str());
                writeln!(f)?;
                writeln!(
                    f,
                    "{}",
                    if c.group.is_empty() {
                        "Other"
                    } else {
                        &c.group
                    }
                )?;
            }
            writeln!(
                f,
                "  {} {}  ({}) [{}]",
                c.status.mark(),
                c.checklist,
                c.id,
                c.requirements.join(", ")
            )?;
            if !c.reason.is_empty() {
                for (i, line) in c.reason.lines().enumerate() {
                    let label = if i == 0 {
                        format!("{}: ", c.status)
                    } else {
                        String::new()
                    };
                    writeln!(f, "      {label}{line}")?;
                }
            }
        }
        writeln!(f)?;
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
