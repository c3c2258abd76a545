//! The operator's public API: the `ProjectEncryption` and `ClusterEncryption` custom resources.
//!
//! Everything a user can get wrong at admission is refused here by CEL rules with a message that says
//! what to write instead; `crdgen` turns these types into `crds/`, which is never edited by hand.

mod cluster_encryption;
mod project_encryption;
pub mod reference;

pub use cluster_encryption::*;
pub use project_encryption::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "encryption.atlasops.dev";
pub const VERSION: &str = "v1alpha1";
/// The field manager of every write the operator makes, so `managedFields` show who owns what.
pub const FIELD_MANAGER: &str = "atlas-encryption-operator";
/// Held while Atlas may still hold state this object governs; removed once `deletionPolicy` is carried out.
pub const FINALIZER: &str = "encryption.atlasops.dev/cleanup";

/// What happens in Atlas when the Kubernetes object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave Atlas as it is: encryption stays on. The safe default, since turning encryption off is a
    /// data-protection change nobody should make by deleting YAML.
    #[default]
    Retain,
    /// Turn encryption at rest off in Atlas before the object goes away.
    Disable,
}

/// Whether the operator writes to Atlas, or only reads and publishes what it would write.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Make Atlas match the spec.
    #[default]
    Manage,
    /// Read Atlas and KMS and list in `status.plannedChanges` each Atlas write `Manage` would make,
    /// making none: how a team reviews what adopting an existing project would change.
    Observe,
}

/// One Atlas write the operator would make under `managementPolicy: Manage`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PlannedChange {
    /// The HTTP method: `POST`, `PATCH` or `DELETE`.
    pub method: String,
    /// The Atlas Administration API path, e.g. `/api/atlas/v2/groups/{id}/encryptionAtRest`.
    pub path: String,
    /// Each field the write sets, by its dotted path in the request body, with the value it would send.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub fields: std::collections::BTreeMap<String, String>,
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the object, in the namespace of the referring resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Conditions are a map keyed by `type`, so server-side apply merges them by type rather than
/// replacing the whole list.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    if let Some(object) = schema.as_object_mut() {
        object.insert("x-kubernetes-list-type".into(), "map".into());
        object.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    }
    schema
}

/// CEL list of the AWS region names Atlas supports for KMS keys, built from [`crate::aws::REGIONS`]
/// so the admission rule and the operator's parser cannot disagree.
pub fn cel_region_list() -> String {
    let names: Vec<String> = crate::aws::REGIONS
        .iter()
        .map(|(aws, _)| format!("'{aws}'"))
        .collect();
    format!("[{}]", names.join(", "))
}

/// The operator's CRDs, as `crds/`, the chart and the API reference carry them.
pub fn definitions() -> [CustomResourceDefinition; 2] {
    use kube::CustomResourceExt;
    [ProjectEncryption::crd(), ClusterEncryption::crd()].map(unwrap_descriptions)
}

/// Doc comments are wrapped at the source's line width, and those line breaks would reach `kubectl
/// explain`, which wraps again at the terminal's width and leaves half-empty lines. Lines of a
/// paragraph are joined; blank lines and list items keep their breaks.
fn unwrap_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(text) if key == "description" => {
                            *text = unwrap_paragraphs(text);
                        }
                        _ => walk(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD serializes");
    walk(&mut value);
    serde_json::from_value(value).expect("only descriptions changed")
}

fn unwrap_paragraphs(text: &str) -> String {
    let list_item = |line: &str| {
        line.starts_with("- ")
            || line.starts_with("* ")
            || line
                .split_once(". ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut out = String::with_capacity(text.len());
    let mut in_paragraph = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if in_paragraph && !trimmed.is_empty() && !list_item(trimmed) {
            out.push(' ');
            out.push_str(trimmed);
        } else {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(line);
        }
        in_paragraph = !trimmed.is_empty();
    }
    out
}

/// Every CRD of the operator as `(file name, YAML)`, with the header that marks the file as generated.
pub fn all_crds_yaml() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    definitions()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default());
            let yaml = serde_yaml::to_string(&crd)?;
            Ok((
                file,
                format!("# Generated by `make generate` (crdgen) from src/crd/. Do not edit.\n{yaml}"),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraph_lines_are_joined_and_blank_lines_and_lists_kept() {
        assert_eq!(
            unwrap_paragraphs(
                "Turns on encryption with a customer-managed\nAWS KMS key.\n\nSecond paragraph\n  continued."
            ),
            "Turns on encryption with a customer-managed AWS KMS key.\n\nSecond paragraph continued."
        );
        assert_eq!(
            unwrap_paragraphs(
                "Either:\n- an API key\n  (publicKey, privateKey)\n- a service account\n1. first"
            ),
            "Either:\n- an API key (publicKey, privateKey)\n- a service account\n1. first"
        );
        assert_eq!(unwrap_paragraphs("one line"), "one line");
    }

    #[test]
    fn no_description_of_the_generated_crds_breaks_a_line_inside_a_paragraph() {
        for crd in definitions() {
            assert_eq!(
                unwrap_descriptions(crd.clone()),
                crd,
                "{:?}: a description still holds a line break inside a paragraph",
                crd.metadata.name
            );
        }
        let [project, _] = definitions();
        let schema = serde_json::to_value(&project.spec.versions[0].schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["description"];
        assert!(
            spec.as_str()
                .unwrap()
                .contains("with a customer-managed AWS KMS key"),
            "{spec}"
        );
    }
}
