//! The docs are the contract (K1): every case the suite runs is named in the `# Behavior`
//! docs of the `Storage` trait next to the rule it checks, and every case those docs name
//! exists. A backend author who fails a case finds its rule by searching the trait's docs
//! for the case id.

use std::collections::BTreeSet;

fn trait_docs() -> Option<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omniq-core/src/storage.rs"
    );
    std::fs::read_to_string(path).ok()
}

#[test]
fn every_case_is_named_next_to_its_rule_and_every_named_case_exists() {
    // Outside this repository (a packaged crate) there is no omniq-core source to read.
    let Some(text) = trait_docs() else {
        eprintln!("omniq-core's source is not next to this crate; nothing to check");
        return;
    };
    let docs: String = text
        .lines()
        .filter(|l| l.trim_start().starts_with("///"))
        .collect::<Vec<_>>()
        .join("\n");
    let ids: BTreeSet<&str> = omniq_conformance::cases().iter().map(|c| c.id).collect();
    let unnamed: Vec<&&str> = ids
        .iter()
        .filter(|id| {
            !docs
                .match_indices(**id)
                .any(|(i, _)| boundary(&docs, i, id.len()))
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "cases whose rule the Storage docs do not name (add `(case: <id>)` after the rule): {unnamed:?}"
    );
    // Every backticked snake_case name in a `(case: …)` / `(cases: …)` note is a case.
    let mut named = BTreeSet::new();
    for note in docs.split("(case").skip(1) {
        let note = note.split(')').next().unwrap_or_default();
        for part in note.split('`').skip(1).step_by(2) {
            named.insert(part.to_string());
        }
    }
    let dangling: Vec<&String> = named.iter().filter(|n| !ids.contains(n.as_str())).collect();
    assert!(
        dangling.is_empty(),
        "the Storage docs name cases that do not exist: {dangling:?}"
    );
}

/// True when `text[i..i + len]` is a whole word.
fn boundary(text: &str, i: usize, len: usize) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let before = text[..i].chars().next_back().is_none_or(|c| !word(c));
    let after = text[i + len..].chars().next().is_none_or(|c| !word(c));
    before && after
}
