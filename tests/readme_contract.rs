//! The README's troubleshooting table is where a person lands from `kubectl describe`, an Argo CD health
//! message or an alert: it must explain every condition reason the operator can write, and nothing that
//! no longer exists. Reasons are read from the constants in the sources, so a new one fails this test
//! until it is documented.

mod common;

use std::collections::BTreeSet;

/// The string values of `pub const NAME: &str = "Value";` lines in `text`.
fn const_values(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("pub const ")?;
            let (_, value) = rest.split_once(": &str = \"")?;
            Some(value.strip_suffix("\";")?.to_string())
        })
        .collect()
}

fn read(relative: &str) -> String {
    let path = common::repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The section of `text` from the line starting with `from` up to the next line starting with `to`.
fn section<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("no line starting {from:?}"));
    let rest = &text[start..];
    let end = rest[from.len()..].find(to).map_or(rest.len(), |i| i + from.len());
    &rest[..end]
}

fn condition_reasons() -> BTreeSet<String> {
    let status = read("src/status/reasons.rs");
    const_values(section(&status, "// Condition reasons", "// Event reasons"))
}

/// The backquoted names in the first column of the README's troubleshooting table.
fn documented_reasons() -> BTreeSet<String> {
    let readme = read("README.md");
    section(&readme, "Troubleshooting by reason", "\n## ")
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let first_column = line.split('|').nth(1).unwrap_or_default();
            first_column
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_troubleshooting_table_explains_every_condition_reason() {
    let reasons = condition_reasons();
    assert!(
        reasons.len() > 40,
        "found only {} reasons: has src/status/reasons.rs changed shape? {reasons:?}",
        reasons.len()
    );
    for known in ["KeyInvalid", "UnsupportedTier", "KeyNotFound", "ProjectStalled"] {
        assert!(reasons.contains(known), "{known} not read from the sources");
    }
    let documented = documented_reasons();
    let missing: Vec<_> = reasons.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "README.md's troubleshooting table lacks {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&reasons).collect();
    assert!(
        stale.is_empty(),
        "README.md's troubleshooting table lists reasons the operator never writes: {stale:?}"
    );
}
