//! Tidy checks: the repository's references resolve inside the repository.
//!
//! Ordinary `#[test]`s (as in rust-analyzer's `xtask/src/tidy.rs`), so `cargo test
//! --workspace` — the README's test command — runs them:
//!
//! - every repository path a document names (`crates/…`, links) exists;
//! - every requirement ID cited anywhere is defined in `docs/requirements.md`, and
//!   user-facing rustdoc cites none (it states the rule instead);
//! - every crate root starts with a `//!` doc, and a library's shows an example.

use regex::Regex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    crate::workspace_root()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Files under `dir` (recursively) whose name ends with `ext`, skipping build output and
/// hidden directories.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The documents whose references must resolve: the README and everything in docs/.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut docs = vec![root.join("README.md")];
    docs.extend(files(&root.join("docs"), ".md"));
    docs
}

/// Directories a repository path in a document starts with.
const TOP_DIRS: &[&str] = &[
    "crates/",
    "conformance/",
    "xtask/",
    "docs/",
    ".ci/",
    "examples/",
];

#[test]
fn documents_name_only_paths_that_exist() {
    let root = root();
    let code = Regex::new(r"`([A-Za-z0-9_.\-/]+)`").expect("regex");
    let link = Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").expect("regex");
    let mut missing = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        let here = doc.parent().unwrap_or(&root).to_path_buf();
        for c in code.captures_iter(&text) {
            let p = &c[1];
            if TOP_DIRS.iter().any(|d| p.starts_with(d)) && !root.join(p).exists() {
                missing.push(format!("{}: `{p}`", doc.display()));
            }
        }
        for c in link.captures_iter(&text) {
            let p = &c[1];
            if p.contains("://") || p.starts_with("mailto:") {
                continue;
            }
            if !here.join(p).exists() {
                missing.push(format!("{}: link ({p})", doc.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documents name paths that do not exist:\n{}",
        missing.join("\n")
    );
}

/// A requirement ID: a letter of the requirement groups and a number.
fn id_regex() -> Regex {
    Regex::new(r"\b([MTRLBKS](?:[1-9]|1[0-9]))\b").expect("regex")
}

fn defined_ids() -> BTreeSet<String> {
    let text = read(&root().join("docs/requirements.md"));
    let row = Regex::new(r"(?m)^\| ([MTRLBKS]\d+) \|").expect("regex");
    row.captures_iter(&text).map(|c| c[1].to_string()).collect()
}

#[test]
fn cited_requirement_ids_are_defined() {
    let root = root();
    let defined = defined_ids();
    assert!(
        defined.len() > 40,
        "docs/requirements.md defines too few IDs"
    );
    let id = id_regex();
    let mut sources = files(&root.join("crates"), ".rs");
    sources.extend(files(&root.join("conformance"), ".rs"));
    sources.extend(files(&root.join("xtask"), ".rs"));
    sources.extend(documents());
    sources.push(root.join("CHANGELOG.md"));
    let mut undefined = Vec::new();
    for file in sources {
        if file.ends_with("docs/requirements.md") || file.ends_with("xtask/src/tidy.rs") {
            continue;
        }
        for (n, line) in read(&file).lines().enumerate() {
            for c in id.captures_iter(line) {
                if !defined.contains(&c[1]) {
                    undefined.push(format!("{}:{}: {}", file.display(), n + 1, &c[1]));
                }
            }
        }
    }
    assert!(
        undefined.is_empty(),
        "requirement IDs cited but not defined in docs/requirements.md:\n{}",
        undefined.join("\n")
    );
}

/// "S3" is also Amazon's object store: written "AWS S3" or "Amazon S3" it names the
/// product, not requirement S3.
fn names_a_product(line: &str, start: usize, token: &str) -> bool {
    token == "S3" && (line[..start].ends_with("AWS ") || line[..start].ends_with("Amazon "))
}

#[test]
fn rustdoc_cites_no_requirement_ids() {
    let root = root();
    let id = id_regex();
    let mut cited = Vec::new();
    for dir in ["crates", "conformance", "xtask"] {
        for file in files(&root.join(dir), ".rs") {
            // Tests may cite IDs; user-facing docs state the rule instead.
            if file.components().any(|c| c.as_os_str() == "tests") {
                continue;
            }
            if file.ends_with("xtask/src/tidy.rs") {
                continue;
            }
            for (n, line) in read(&file).lines().enumerate() {
                let t = line.trim_start();
                let cites = id
                    .find_iter(t)
                    .any(|m| !names_a_product(t, m.start(), m.as_str()));
                if (t.starts_with("///") || t.starts_with("//!")) && cites {
                    cited.push(format!("{}:{}: {t}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        cited.is_empty(),
        "rustdoc cites requirement IDs (state the rule instead; IDs belong in tests, the \
         conformance report and the CHANGELOG):\n{}",
        cited.join("\n")
    );
}

#[test]
fn every_crate_root_has_a_doc_with_an_example() {
    let root = root();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    crates.push(root.join("conformance"));
    crates.push(root.join("xtask"));
    let mut problems = Vec::new();
    for dir in crates.iter().filter(|d| d.join("Cargo.toml").is_file()) {
        let lib = dir.join("src/lib.rs");
        let main = dir.join("src/main.rs");
        let (file, is_lib) = if lib.is_file() {
            (lib, true)
        } else if main.is_file() {
            (main, false)
        } else {
            continue;
        };
        let text = read(&file);
        let doc: Vec<&str> = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .collect();
        if !doc.iter().any(|l| l.starts_with("//!")) {
            problems.push(format!("{}: no //! doc at the top", file.display()));
        } else if is_lib && !doc.iter().any(|l| l.contains("```")) {
            problems.push(format!(
                "{}: the crate doc shows no example",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `cargo package` of several workspace crates at once orders them by dependency; a
/// backend crate that dev-depends on the `omniq` facade (which depends on every backend)
/// makes a cycle and packaging fails with "no matching package named `omniq`". Backend
/// tests and examples use `omniq-runtime` instead.
#[test]
fn backend_crates_do_not_dev_depend_on_the_facade() {
    let facade = Regex::new(r"(?m)^omniq\s*(=|\.workspace)").unwrap();
    let dependency = Regex::new(r"(?m)^(omniq-[a-z]+)\s*(=|\.workspace)").unwrap();
    let crates = root().join("crates");
    // The crates the facade itself depends on.
    let facade_manifest = read(&crates.join("omniq").join("Cargo.toml"));
    let below: BTreeSet<String> = dependency
        .captures_iter(&facade_manifest)
        .map(|c| c[1].to_string())
        .collect();
    assert!(
        below.contains("omniq-core"),
        "no dependencies found in crates/omniq/Cargo.toml"
    );
    let mut offenders = Vec::new();
    for name in &below {
        let manifest = crates.join(name).join("Cargo.toml");
        if manifest.exists() && facade.is_match(&read(&manifest)) {
            offenders.push(name.clone());
        }
    }
    assert!(
        offenders.is_empty(),
        "these crates depend on the `omniq` facade, which depends on them: {offenders:?}"
    );
}
