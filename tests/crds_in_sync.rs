//! `crds/` must be exactly what `crdgen` writes from the Rust types, so the YAML users apply never
//! drifts from what the operator expects. Fix a failure with `make generate`.

mod common;

use std::collections::BTreeMap;

#[test]
fn crds_directory_matches_the_rust_types() {
    let dir = common::repo_root().join("crds");
    let on_disk: BTreeMap<String, String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    let generated: BTreeMap<String, String> = atlas_encryption_operator::crd::all_crds_yaml()
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "crds/ holds other files than crdgen writes: run `make generate`"
    );
    for (name, yaml) in &generated {
        assert!(
            on_disk[name] == *yaml,
            "crds/{name} is out of date: run `make generate`"
        );
    }
}

#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    for crd in atlas_encryption_operator::crd::definitions() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let conditions = &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(
            conditions["x-kubernetes-list-type"], "map",
            "{:?}",
            crd.metadata.name
        );
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .unwrap()
                .status
                .is_some()
        );
    }
}

/// The Helm chart ships the same CRDs, byte for byte, and the API reference is the one crdgen writes.
#[test]
fn chart_crds_and_api_reference_match_the_rust_types() {
    let root = common::repo_root();
    for (name, yaml) in atlas_encryption_operator::crd::all_crds_yaml().unwrap() {
        let path = root.join("charts/atlas-encryption-operator/crds").join(&name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == yaml,
            "{} is out of date: run `make generate`",
            path.display()
        );
    }
    let reference = std::fs::read_to_string(root.join("docs/api-reference.md")).unwrap_or_default();
    assert!(
        reference == atlas_encryption_operator::crd::reference::markdown(),
        "docs/api-reference.md is out of date: run `make generate`"
    );
}
