//! The secret scan of everything the integration suite produced: the operator's logs at debug level
//! (the binary's and the in-process controllers'), and every test namespace's Events and the status of
//! its objects as they were when the namespace was deleted. None may contain a credential the suite
//! used: API private keys, service-account client secrets, AWS secret keys, in clear or in base64.
//!
//! Ignored in a plain run: it reads what the other test binaries left in `$TESTENV_DIR/e2e`, so
//! `make test-integration` runs it after them with `--ignored`.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use common::aws::AWS_SECRET_ACCESS_KEY;
use common::operator::API_PRIVATE_KEY;

/// A Secret key names a credential when its name says so; public keys and client ids are identifiers.
fn is_credential(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["private", "secret", "password", "token"]
        .iter()
        .any(|word| key.contains(word))
}

fn files(kind: &str, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(common::evidence_dir(kind))
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep));
    out.sort();
    out
}

#[test]
#[ignore = "reads what the rest of the integration suite produced; run by make test-integration"]
fn nothing_the_suite_produced_contains_a_secret() {
    // The credentials: every credential value the test namespaces held, and the ones passed to the
    // operator outside Secrets. Values shorter than 8 characters (test cases of "empty" or "x") would
    // match anywhere and prove nothing.
    let mut secrets = BTreeSet::from([API_PRIVATE_KEY.to_string(), AWS_SECRET_ACCESS_KEY.to_string()]);
    let secret_files = files("namespaces", |n| n.ends_with(".secrets.json"));
    for path in &secret_files {
        let values: Vec<serde_json::Value> = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        for entry in values {
            let (Some(key), Some(value)) = (entry["key"].as_str(), entry["value"].as_str()) else {
                continue;
            };
            if is_credential(key) && value.trim().len() >= 8 {
                secrets.insert(value.to_string());
            }
        }
    }
    let needles: Vec<(String, String)> = secrets
        .iter()
        .flat_map(|s| {
            [
                (s.clone(), s.clone()),
                (s.clone(), base64::engine::general_purpose::STANDARD.encode(s)),
            ]
        })
        .collect();

    let logs = files("logs", |n| n.ends_with(".log"));
    let archives = files("namespaces", |n| {
        n.ends_with(".json") && !n.ends_with(".secrets.json")
    });
    let (mut bytes, mut debug_lines, mut events, mut objects) = (0usize, 0usize, 0usize, 0usize);
    let mut found = Vec::new();
    for path in logs.iter().chain(&archives) {
        let text = String::from_utf8_lossy(&fs::read(path).unwrap()).into_owned();
        bytes += text.len();
        debug_lines += text.matches(r#""level":"DEBUG""#).count();
        if archives.contains(path) {
            let archive: serde_json::Value = serde_json::from_str(&text).unwrap();
            events += archive["events"].as_array().map_or(0, Vec::len);
            objects += archive["objects"].as_array().map_or(0, Vec::len);
        }
        for (secret, needle) in &needles {
            if text.contains(needle.as_str()) {
                let shown: String = secret.chars().take(4).collect();
                found.push(format!("{}: {shown}…", path.display()));
            }
        }
    }
    eprintln!(
        "secret scan: {} credentials (and their base64) in {} log files and {} namespace archives, {:.1} MiB, {debug_lines} debug lines, {events} Events, {objects} objects: {} found",
        secrets.len(),
        logs.len(),
        archives.len(),
        bytes as f64 / (1024.0 * 1024.0),
        found.len()
    );
    // A scan of nothing proves nothing: the suite must have left debug logs, Events and objects.
    assert!(
        debug_lines > 0 && events > 0 && objects > 0 && secrets.len() > 2,
        "the evidence directory {} holds too little to scan; run the integration suite first",
        common::evidence_dir("").display()
    );
    assert!(found.is_empty(), "credentials found:\n{}", found.join("\n"));
}
