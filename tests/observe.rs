//! `managementPolicy: Observe` (issue #17), on the real parts: kube-apiserver, atlas-sim and moto. The
//! operator reads and plans and writes nothing; switching to `Manage` makes exactly the planned writes.
//! Atlas's state comes from atlas-sim, the writes from its call log.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use atlas_encryption_operator::crd::{ClusterEncryption, PlannedChange, ProjectEncryption};
use common::operator::{
    OperatorEnv, REGION, condition, project_on_key, project_ready, switched_on_by_another_tool,
};
use common::snapshots::{self, Expect};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn reason_of(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<String> {
    condition(conditions, type_).map(|(_, reason)| reason)
}

fn project_reason(pe: &ProjectEncryption, type_: &str) -> Option<String> {
    pe.status.as_ref().and_then(|s| reason_of(&s.conditions, type_))
}

/// `project` with Encryption at Rest on through a role another tool authorized, as Terraform leaves
/// it: the env, the group id, the key in force and that role's IAM role ARN.
async fn adopted(test: &str, project: &str, clusters: &[&str]) -> (OperatorEnv, String, String, String) {
    let (env, group, key, terraform) = switched_on_by_another_tool(test, project, clusters).await;
    (env, group, key, terraform.iam_assumed_role_arn.unwrap())
}

fn spec(project: &str, key: &str, role_arn: &str, policy: &str) -> Value {
    json!({"projectName": project, "credentialsRef": {"name": "atlas-credentials"},
           "managementPolicy": policy,
           "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}})
}

async fn set_policy(env: &OperatorEnv, name: &str, policy: &str) {
    let patch = json!({"spec": {"managementPolicy": policy}});
    env.projects()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Each write of the call log as (method, path), in order.
fn writes(env: &OperatorEnv) -> Vec<(String, String)> {
    env.atlas_writes()
        .into_iter()
        .filter(|c| (200..300).contains(&c.status))
        .map(|c| (c.method, c.path))
        .collect()
}

fn as_writes(planned: &[PlannedChange]) -> Vec<(String, String)> {
    planned
        .iter()
        .map(|p| (p.method.clone(), p.path.clone()))
        .collect()
}

/// A project another tool switched on, observed with a new key and search nodes asked for: one PATCH
/// planned with exactly the fields that change, none made, Ready (`ChangesPlanned`: Current for
/// kstatus, Suspended for Argo CD). Switching to Manage makes exactly that PATCH and Atlas ends as planned.
#[tokio::test]
async fn observe_plans_a_key_change_and_manage_makes_exactly_that_write() {
    let (env, group, old_key, role_arn) = adopted("observe-key", "proj-observe", &[]).await;
    let new_key = env.create_key(REGION).await.unwrap();
    let role_name = role_arn.rsplit('/').next().unwrap();
    env.allow_keys(role_name, &[&old_key, &new_key]).await.unwrap();
    env.sim().clear_calls();
    let mut wanted = spec("proj-observe", &new_key, &role_arn, "Observe");
    wanted["searchNodes"] = json!({"enabled": true});
    env.apply_project("payments", wanted).await.unwrap();
    let observed = env
        .wait_project("payments", WAIT, "ChangesPlanned", |pe| {
            project_reason(pe, "Observing").as_deref() == Some("ChangesPlanned")
                && pe.status.as_ref().and_then(|s| s.observed_generation) == pe.metadata.generation
        })
        .await
        .unwrap();
    snapshots::capture("pe-observe", "changes-planned", &observed, Expect::Suspended);
    assert!(
        env.atlas_writes().is_empty(),
        "no write while observing: {:?}",
        env.atlas_writes()
    );

    let status = observed.status.clone().unwrap();
    assert_eq!(status.planned_changes.len(), 1, "{:?}", status.planned_changes);
    let plan = &status.planned_changes[0];
    assert_eq!(plan.method, "PATCH");
    assert_eq!(
        plan.path,
        format!("/api/atlas/v2/groups/{group}/encryptionAtRest")
    );
    let fields: Vec<&str> = plan.fields.keys().map(String::as_str).collect();
    // The key changes; a key PATCH always names the role it is to be used with (the one the other tool
    // authorized for the same IAM role, reused), so the role list need not be read before it.
    assert_eq!(
        fields,
        [
            "awsKms.customerMasterKeyID",
            "awsKms.roleId",
            "enabledForSearchNodes"
        ],
        "only what changes, and the role"
    );
    assert_eq!(plan.fields["awsKms.customerMasterKeyID"], new_key);
    let (atlas, creds) = env.atlas();
    let roles = atlas.list_aws_roles(&creds, &group).await.unwrap();
    let reused = roles
        .iter()
        .find(|r| r.iam_assumed_role_arn.as_deref() == Some(role_arn.as_str()))
        .unwrap();
    assert_eq!(plan.fields["awsKms.roleId"], reused.role_id);
    assert_eq!(plan.fields["enabledForSearchNodes"], "true");
    let ready = condition(&status.conditions, "Ready").unwrap();
    assert_eq!(
        ready,
        ("True".to_string(), "ChangesPlanned".to_string()),
        "kstatus and Flux move on"
    );
    for abnormal in ["Reconciling", "Stalled"] {
        let (holds, _) = condition(&status.conditions, abnormal).unwrap_or(("False".into(), String::new()));
        assert_eq!(holds, "False", "{abnormal} while observing");
    }
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone();
    assert!(message.contains("managementPolicy: Manage"), "{message}");

    let before = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert_ne!(
        before.aws_kms.unwrap().customer_master_key_id.as_deref(),
        Some(new_key.as_str())
    );

    set_policy(&env, "payments", "Manage").await;
    let managed = env
        .wait_project("payments", WAIT, "Ready on the new key", |pe| {
            project_on_key(pe, &new_key)
        })
        .await
        .unwrap();
    assert_eq!(
        writes(&env),
        as_writes(&status.planned_changes),
        "exactly the planned writes"
    );
    let after = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert_eq!(
        after.aws_kms.unwrap().customer_master_key_id.as_deref(),
        Some(new_key.as_str())
    );
    assert_eq!(after.enabled_for_search_nodes, Some(true));
    let status = managed.status.unwrap();
    assert!(status.planned_changes.is_empty(), "no plan once managing");
    assert!(
        reason_of(&status.conditions, "Observing").is_none(),
        "{:?}",
        status.conditions
    );
    env.finish().await;
}

/// A project whose Atlas settings already match is Ready while observed, and its cluster's provider
/// PATCH is planned, not made. Deleting an observed `Disable` object writes nothing either.
#[tokio::test]
async fn an_observed_projects_cluster_plans_its_toggle_and_deletion_writes_nothing() {
    let (env, group, key, role_arn) = adopted("observe-cluster", "proj-obs-c", &["Cluster0"]).await;
    env.sim().clear_calls();
    let mut wanted = spec("proj-obs-c", &key, &role_arn, "Observe");
    wanted["deletionPolicy"] = json!("Disable");
    env.apply_project("payments", wanted).await.unwrap();
    let observed = env
        .wait_project("payments", WAIT, "Ready while observing", project_ready)
        .await
        .unwrap();
    let status = observed.status.unwrap();
    assert_eq!(
        reason_of(&status.conditions, "Observing").as_deref(),
        Some("NoChangesPlanned")
    );
    assert!(status.planned_changes.is_empty());

    let cluster = json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": "Cluster0",
                         "deletionPolicy": "Disable"});
    env.apply_cluster("cluster0", cluster).await.unwrap();
    let planned = env
        .wait_cluster(
            "cluster0",
            WAIT,
            "the toggle planned",
            |ce: &ClusterEncryption| ce.status.as_ref().is_some_and(|s| !s.planned_changes.is_empty()),
        )
        .await
        .unwrap();
    let cluster_status = planned.status.unwrap();
    let plan = &cluster_status.planned_changes;
    assert_eq!(
        as_writes(plan),
        [(
            "PATCH".to_string(),
            format!("/api/atlas/v2/groups/{group}/clusters/Cluster0")
        )]
    );
    assert_eq!(plan[0].fields["encryptionAtRestProvider"], "AWS");
    assert_eq!(
        reason_of(&cluster_status.conditions, "Ready").as_deref(),
        Some("ChangesPlanned")
    );
    assert!(env.atlas_writes().is_empty(), "{:?}", env.atlas_writes());

    env.clusters()
        .delete("cluster0", &Default::default())
        .await
        .unwrap();
    env.projects()
        .delete("payments", &Default::default())
        .await
        .unwrap();
    common::operator::wait_gone(&env.clusters(), "cluster0", WAIT)
        .await
        .unwrap();
    common::operator::wait_gone(&env.projects(), "payments", WAIT)
        .await
        .unwrap();
    assert!(
        env.atlas_writes().is_empty(),
        "deletion while observing wrote: {:?}",
        env.atlas_writes()
    );
    let (atlas, creds) = env.atlas();
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert!(ear.aws_enabled(), "encryption stays on");
    env.finish().await;
}

/// Private networking asked of an observed project: the PATCH that requires it and the endpoint it then
/// needs are both planned (the endpoint's POST follows from the plan's own PATCH), nothing is made, and
/// Manage makes exactly those two writes in that order.
#[tokio::test]
async fn observe_plans_private_networking_and_its_endpoint() {
    let (env, group, key, role_arn) = adopted("observe-private", "proj-obs-pn", &[]).await;
    env.sim().clear_calls();
    let mut wanted = spec("proj-obs-pn", &key, &role_arn, "Observe");
    wanted["awsKms"]["requirePrivateNetworking"] = json!(true);
    env.apply_project("payments", wanted).await.unwrap();
    let observed = env
        .wait_project("payments", WAIT, "ChangesPlanned", |pe| {
            project_reason(pe, "Observing").as_deref() == Some("ChangesPlanned")
        })
        .await
        .unwrap();
    assert!(env.atlas_writes().is_empty(), "{:?}", env.atlas_writes());
    let plan = observed.status.unwrap().planned_changes;
    assert_eq!(
        as_writes(&plan),
        [
            (
                "PATCH".to_string(),
                format!("/api/atlas/v2/groups/{group}/encryptionAtRest")
            ),
            (
                "POST".to_string(),
                format!("/api/atlas/v2/groups/{group}/encryptionAtRest/AWS/privateEndpoints")
            ),
        ]
    );
    assert_eq!(plan[0].fields["awsKms.requirePrivateNetworking"], "true");
    assert_eq!(plan[1].fields["regionName"], "EU_WEST_2");

    set_policy(&env, "payments", "Manage").await;
    env.wait_project("payments", WAIT, "the endpoint created", |pe| {
        pe.status
            .as_ref()
            .is_some_and(|s| !s.private_endpoints.is_empty())
    })
    .await
    .unwrap();
    assert_eq!(writes(&env), as_writes(&plan), "exactly the planned writes");
    env.finish().await;
}
