//! A write to Atlas, described before it is sent. The client sends exactly this description, and
//! `managementPolicy: Observe` publishes exactly this description instead of sending it, so a plan and
//! the writes made once the plan is approved cannot drift apart.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::client::{
    AUTHORIZE_ROLE, CREATE_EAR_ENDPOINT, CREATE_ROLE, DEAUTHORIZE_ROLE, DELETE_EAR_ENDPOINT, Endpoint,
    PATCH_CLUSTER, PATCH_EAR,
};
use super::error::AtlasError;
use super::model::{
    AuthorizeRoleRequest, ClusterProviderPatch, CreateRoleRequest, EarPrivateEndpointRequest,
    EncryptionAtRestPatch, EncryptionProvider,
};
use crate::aws::{Region, RoleArn};

/// One Atlas write: its endpoint, the path segments under `/api/atlas/v2`, and its JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub(super) endpoint: &'static Endpoint,
    pub(super) segments: Vec<String>,
    pub(super) body: Option<Value>,
}

impl Write {
    /// `PATCH /groups/{groupId}/encryptionAtRest` with only the set parts of `body`.
    pub fn patch_encryption_at_rest(group_id: &str, body: &EncryptionAtRestPatch<'_>) -> Write {
        Write::new(&PATCH_EAR, &[group_id, "encryptionAtRest"], Some(json(body)))
    }

    /// `POST /groups/{groupId}/cloudProviderAccess`: a new AWS role with a fresh external ID.
    pub fn create_aws_role(group_id: &str) -> Write {
        let body = CreateRoleRequest { provider_name: "AWS" };
        Write::new(
            &CREATE_ROLE,
            &[group_id, "cloudProviderAccess"],
            Some(json(&body)),
        )
    }

    /// `PATCH /groups/{groupId}/cloudProviderAccess/{roleId}` with the IAM role Atlas is to assume.
    pub fn authorize_aws_role(group_id: &str, role_id: &str, role_arn: &RoleArn) -> Write {
        let arn = role_arn.to_string();
        let body = AuthorizeRoleRequest {
            provider_name: "AWS",
            iam_assumed_role_arn: &arn,
        };
        let segments = [group_id, "cloudProviderAccess", role_id];
        Write::new(&AUTHORIZE_ROLE, &segments, Some(json(&body)))
    }

    pub fn deauthorize_aws_role(group_id: &str, role_id: &str) -> Write {
        let segments = [group_id, "cloudProviderAccess", "AWS", role_id];
        Write::new(&DEAUTHORIZE_ROLE, &segments, None)
    }

    /// `POST …/encryptionAtRest/AWS/privateEndpoints` for `region`.
    pub fn create_ear_private_endpoint(group_id: &str, region: Region) -> Write {
        let body = EarPrivateEndpointRequest {
            region_name: region.atlas_name(),
        };
        let segments = [group_id, "encryptionAtRest", "AWS", "privateEndpoints"];
        Write::new(&CREATE_EAR_ENDPOINT, &segments, Some(json(&body)))
    }

    pub fn delete_ear_private_endpoint(group_id: &str, endpoint_id: &str) -> Write {
        let segments = [
            group_id,
            "encryptionAtRest",
            "AWS",
            "privateEndpoints",
            endpoint_id,
        ];
        Write::new(&DELETE_EAR_ENDPOINT, &segments, None)
    }

    /// `PATCH /groups/{groupId}/clusters/{clusterName}` with only `encryptionAtRestProvider`.
    pub fn set_cluster_encryption_provider(
        group_id: &str,
        cluster: &str,
        provider: EncryptionProvider,
    ) -> Result<Write, AtlasError> {
        if provider == EncryptionProvider::Unknown {
            return Err(AtlasError::Config(
                "cannot set an unknown encryption provider".to_string(),
            ));
        }
        let body = ClusterProviderPatch {
            encryption_at_rest_provider: provider,
        };
        let segments = [group_id, "clusters", cluster];
        Ok(Write::new(&PATCH_CLUSTER, &segments, Some(json(&body))))
    }

    fn new(endpoint: &'static Endpoint, segments: &[&str], body: Option<Value>) -> Write {
        Write {
            endpoint,
            segments: std::iter::once("groups")
                .chain(segments.iter().copied())
                .map(str::to_string)
                .collect(),
            body,
        }
    }

    pub fn method(&self) -> &'static str {
        self.endpoint.method
    }

    /// The path as a person reads it: `/api/atlas/v2/groups/…`, names unescaped.
    pub fn path(&self) -> String {
        format!("/api/atlas/v2/{}", self.segments.join("/"))
    }

    /// Each field the body sets, by its dotted path (`awsKms.roleId`), with its value as JSON text
    /// (strings unquoted). A body-less write (a DELETE) sets none.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let mut fields = BTreeMap::new();
        if let Some(body) = &self.body {
            flatten(String::new(), body, &mut fields);
        }
        fields
    }
}

fn flatten(prefix: String, value: &Value, into: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(path, member, into);
            }
        }
        Value::String(text) => {
            into.insert(prefix, text.clone());
        }
        other => {
            into.insert(prefix, other.to_string());
        }
    }
}

/// The request types are plain structs of strings, booleans and enums of strings: they always encode.
fn json<B: Serialize>(body: &B) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atlas::AwsKmsPatch;
    use crate::aws::KeyRef;

    #[test]
    fn an_encryption_patch_lists_exactly_the_fields_it_sends() {
        let key =
            KeyRef::parse("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
                .unwrap();
        let kms = AwsKmsPatch {
            role_id: Some("65f0c0ffee0000000000abcd".into()),
            ..AwsKmsPatch::rotate_key(&key)
        };
        let body = EncryptionAtRestPatch {
            aws_kms: Some(&kms),
            enabled_for_search_nodes: Some(true),
        };
        let write = Write::patch_encryption_at_rest("65f0c0ffee00000000000001", &body);
        assert_eq!(write.method(), "PATCH");
        assert_eq!(
            write.path(),
            "/api/atlas/v2/groups/65f0c0ffee00000000000001/encryptionAtRest"
        );
        let fields = write.fields();
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            [
                "awsKms.customerMasterKeyID",
                "awsKms.roleId",
                "enabledForSearchNodes"
            ]
        );
        assert_eq!(fields["enabledForSearchNodes"], "true");
        assert_eq!(fields["awsKms.roleId"], "65f0c0ffee0000000000abcd");
    }

    #[test]
    fn a_delete_has_a_path_and_no_fields() {
        let write =
            Write::delete_ear_private_endpoint("65f0c0ffee00000000000001", "65f0c0ffee0000000000beef");
        assert_eq!(write.method(), "DELETE");
        assert!(
            write
                .path()
                .ends_with("/encryptionAtRest/AWS/privateEndpoints/65f0c0ffee0000000000beef")
        );
        assert!(write.fields().is_empty());
    }

    #[test]
    fn an_unknown_provider_is_refused_before_anything_is_described() {
        let refused = Write::set_cluster_encryption_provider("g", "c", EncryptionProvider::Unknown);
        assert!(matches!(refused, Err(AtlasError::Config(_))));
        let aws = Write::set_cluster_encryption_provider("g", "c", EncryptionProvider::Aws).unwrap();
        assert_eq!(aws.fields()["encryptionAtRestProvider"], "AWS");
    }
}
