//! Status snapshots: the e2e tests write the whole object (apiVersion, kind, metadata with generation,
//! spec, status) at the moments they already wait for, together with the verdicts kstatus and Argo CD
//! must reach on it. `make test-health` then runs the real kstatus library (tests/kstatus) and the
//! shipped Argo CD Lua health check (config/argocd/health.lua) over every file and fails on a mismatch.
//!
//! Files go to `$STATUS_SNAPSHOT_DIR`, else `<$CARGO_TARGET_DIR or <repo>/target>/status-snapshots`, as
//! `<test>-<label>.json`:
//!
//! ```json
//! {"test": "pe-fresh", "label": "ready",
//!  "expect": {"kstatus": "Current", "argocd": "Healthy"},
//!  "object": {"apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ProjectEncryption", ...}}
//! ```

use std::fs;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use super::repo_root;

/// The verdicts a snapshot must get: kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute`, what
/// Flux and kpt use) and Argo CD with `config/argocd/health.lua` installed. Each variant is one pair, so a
/// call stays one line; the file spells both out and each checker is held to its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `Ready=True` for the current generation: kstatus `Current`, Argo CD `Healthy`.
    Ready,
    /// Work under way, an expected wait, or a generation not observed yet: `InProgress` / `Progressing`.
    InProgress,
    /// A person must act (`Stalled=True`): `Failed` / `Degraded`.
    Failed,
    /// Created, not yet seen by the operator (no status): kstatus `Current` (it assumes an object
    /// without conditions is done), Argo CD `Progressing` ("Waiting for the operator").
    NoStatus,
    /// `managementPolicy: Observe` with writes planned (`Ready=True`, reason `ChangesPlanned`): kstatus
    /// `Current` (the operator is done with it), Argo CD `Suspended` (a person must approve the plan).
    Suspended,
    /// Has a deletionTimestamp: kstatus `Terminating`, Argo CD `Progressing` ("Pending deletion",
    /// decided by Argo CD before any health script runs).
    Deleting,
}

impl Expect {
    /// (kstatus, Argo CD) as the checkers spell them.
    pub fn verdicts(self) -> (&'static str, &'static str) {
        match self {
            Expect::Ready => ("Current", "Healthy"),
            Expect::InProgress => ("InProgress", "Progressing"),
            Expect::Failed => ("Failed", "Degraded"),
            Expect::NoStatus => ("Current", "Progressing"),
            Expect::Suspended => ("Current", "Suspended"),
            Expect::Deleting => ("Terminating", "Progressing"),
        }
    }
}

/// The directory snapshots are written to (created on first use).
pub fn dir() -> PathBuf {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { repo_root().join(p) })
    };
    from_env("STATUS_SNAPSHOT_DIR").unwrap_or_else(|| {
        from_env("CARGO_TARGET_DIR")
            .unwrap_or_else(|| repo_root().join("target"))
            .join("status-snapshots")
    })
}

/// Writes `object` as `<test>-<label>.json` with the verdicts expected on it, and returns the path.
///
/// Call it right after a wait returned the object, with the object the wait returned: a re-read could
/// already show a later state. A failure to write fails the test, so a run can never silently produce
/// fewer snapshots than `make test-health` expects.
pub fn capture<K: Serialize>(test: &str, label: &str, object: &K, expect: Expect) -> PathBuf {
    let object = serde_json::to_value(object).expect("object serializes");
    for field in ["apiVersion", "kind", "metadata"] {
        assert!(
            object.get(field).is_some(),
            "snapshot {test}-{label}: object has no {field}"
        );
    }
    let wrapper = wrap(test, label, object, expect);
    let dir = dir();
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(file_name(test, label));
    // Write then rename: a reader (or a parallel test) never sees half a file.
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    let text = serde_json::to_string_pretty(&wrapper).expect("snapshot serializes");
    fs::write(&tmp, text + "\n").unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
    path
}

fn wrap(test: &str, label: &str, object: Value, expect: Expect) -> Value {
    let (kstatus, argocd) = expect.verdicts();
    json!({
        "test": test,
        "label": label,
        "expect": {"kstatus": kstatus, "argocd": argocd},
        "object": object,
    })
}

/// `<test>-<label>.json`, with anything but `[A-Za-z0-9._-]` replaced so a reason or a name is safe.
fn file_name(test: &str, label: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}-{}.json", clean(test), clean(label))
}
