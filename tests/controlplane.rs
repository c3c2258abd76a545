//! The test ground itself: the real kube-apiserver does what an operator relies on, and moto answers
//! the AWS SDK. If these fail, every other integration test's verdict is meaningless.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aws_sdk_kms::types::{KeySpec, KeyState};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;

use common::k8s::{api_code, client_impersonating, client_with_token, service_account_token};
use common::{FIELD_MANAGER, TestNamespace};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn apiserver_reports_pinned_version() -> Result<()> {
    let client = common::client().await?;
    let version = client.apiserver_version().await?;
    assert_eq!(version.git_version, "v1.35.4");
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "35"));
    Ok(())
}

#[tokio::test]
async fn configmap_apply_conflict_and_watch() -> Result<()> {
    let ns = TestNamespace::new("configmap-apply").await?;
    let cms: Api<ConfigMap> = ns.api();
    let apply = |value: &str| {
        Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "demo" },
            "data": { "key": value },
        }))
    };

    let applied = cms
        .patch("demo", &PatchParams::apply(FIELD_MANAGER), &apply("one"))
        .await?;
    assert_eq!(
        applied
            .data
            .as_ref()
            .and_then(|d| d.get("key"))
            .map(String::as_str),
        Some("one")
    );
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&(FIELD_MANAGER.to_owned(), "Apply".to_owned())),
        "server-side apply not recorded: {managers:?}"
    );

    // Optimistic concurrency: an update carrying an outdated resourceVersion must be refused.
    let stale = applied.clone();
    let mut fresh = applied.clone();
    fresh
        .data
        .get_or_insert_default()
        .insert("key".into(), "two".into());
    let updated = cms.replace("demo", &PostParams::default(), &fresh).await?;
    assert_ne!(updated.metadata.resource_version, stale.metadata.resource_version);
    let mut late = stale;
    late.data
        .get_or_insert_default()
        .insert("key".into(), "three".into());
    let result = cms.replace("demo", &PostParams::default(), &late).await;
    assert_eq!(
        api_code(&result),
        Some(409),
        "stale update was not a conflict: {result:?}"
    );

    // Server-side apply field ownership: another manager may not take a field without force.
    let result = cms
        .patch("demo", &PatchParams::apply("someone-else"), &apply("four"))
        .await;
    assert_eq!(
        api_code(&result),
        Some(409),
        "field-manager conflict expected: {result:?}"
    );

    // A watch from the current resourceVersion sees the next change.
    let rv = cms
        .get("demo")
        .await?
        .metadata
        .resource_version
        .context("no resourceVersion")?;
    let mut events = cms
        .watch(
            &WatchParams::default().fields("metadata.name=demo").timeout(60),
            &rv,
        )
        .await?
        .boxed();
    cms.patch("demo", &PatchParams::apply(FIELD_MANAGER).force(), &apply("five"))
        .await?;
    let seen = tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = events.try_next().await? {
            match event {
                WatchEvent::Modified(cm) => return Ok(cm),
                WatchEvent::Error(e) => bail!("watch error: {e:?}"),
                _ => {}
            }
        }
        bail!("watch ended without a Modified event")
    })
    .await
    .context("no watch event in time")??;
    assert_eq!(
        seen.data.as_ref().and_then(|d| d.get("key")).map(String::as_str),
        Some("five")
    );

    ns.cleanup().await
}

#[tokio::test]
async fn lease_and_event_can_be_written() -> Result<()> {
    let ns = TestNamespace::new("lease-event").await?;

    let leases: Api<Lease> = ns.api();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "atlas-eo-leader" },
        "spec": {
            "holderIdentity": "test-holder",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": "2026-01-01T00:00:05.000000Z",
        },
    }))?;
    let created = leases.create(&PostParams::default(), &lease).await?;
    let spec = created.spec.context("lease without spec")?;
    assert_eq!(spec.holder_identity.as_deref(), Some("test-holder"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    let again = leases.create(&PostParams::default(), &lease).await;
    assert_eq!(
        api_code(&again),
        Some(409),
        "duplicate lease must be AlreadyExists: {again:?}"
    );

    // The recorder the operator uses writes events.k8s.io/v1 Events.
    let cm: ConfigMap = ns
        .api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "subject" } }))?,
        )
        .await?;
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: cm.metadata.name.clone(),
        namespace: Some(ns.name().to_owned()),
        uid: cm.metadata.uid.clone(),
        ..Default::default()
    };
    let recorder = Recorder::new(
        ns.client(),
        Reporter {
            controller: "atlas-eo-tests".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "TestReason".into(),
                note: Some("written by the control-plane test".into()),
                action: "Testing".into(),
                secondary: None,
            },
            &reference,
        )
        .await?;
    let events = ns.api::<EventV1>().list(&ListParams::default()).await?;
    let found = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("TestReason"))
        .context("published event not listed")?;
    assert_eq!(
        found.regarding.as_ref().and_then(|r| r.uid.clone()),
        cm.metadata.uid
    );
    assert_eq!(found.reporting_controller.as_deref(), Some("atlas-eo-tests"));

    ns.cleanup().await
}

#[tokio::test]
async fn service_account_token_is_bound_by_rbac() -> Result<()> {
    let ns = TestNamespace::new("sa-rbac").await?;
    let sas: Api<ServiceAccount> = ns.api();
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "operator" } }))?,
    )
    .await?;
    let user = format!("system:serviceaccount:{}:operator", ns.name());

    let token = service_account_token(&ns.client(), ns.name(), "operator", Duration::from_secs(600)).await?;

    let as_token: Api<Secret> = Api::namespaced(client_with_token(&token).await?, ns.name());
    let as_impersonated: Api<Secret> = Api::namespaced(client_impersonating(&user).await?, ns.name());
    let denied = as_token.list(&ListParams::default()).await;
    assert_eq!(
        api_code(&denied),
        Some(403),
        "token must be forbidden before RBAC: {denied:?}"
    );
    let denied = as_impersonated.list(&ListParams::default()).await;
    assert_eq!(
        api_code(&denied),
        Some(403),
        "impersonation must be forbidden before RBAC: {denied:?}"
    );

    ns.api::<Role>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "read-secrets" },
                "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"] }],
            }))?,
        )
        .await?;
    ns.api::<RoleBinding>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "operator-reads-secrets" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets" },
                "subjects": [{ "kind": "ServiceAccount", "name": "operator", "namespace": ns.name() }],
            }))?,
        )
        .await?;

    // The RBAC authorizer reads through an informer, so a fresh binding takes a moment to apply.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match as_token.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 403 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("token still cannot list secrets after the RoleBinding"),
        }
    }
    as_impersonated.list(&ListParams::default()).await?;
    // The grant is exactly list/get on secrets: writing stays forbidden.
    let write = as_token
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "nope" } }))?,
        )
        .await;
    assert_eq!(
        api_code(&write),
        Some(403),
        "create must stay forbidden: {write:?}"
    );

    ns.cleanup().await
}

#[tokio::test]
async fn controller_manager_collects_garbage_and_finalizes_namespaces() -> Result<()> {
    let ns = TestNamespace::new("gc").await?;
    let cms: Api<ConfigMap> = ns.api();
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "owner" } }))?,
        )
        .await?;
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": {
            "name": "dependent",
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": owner.metadata.uid.clone().context("owner without uid")?,
            }],
        } }))?,
    )
    .await?;
    cms.delete("owner", &DeleteParams::background()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while cms.get_opt("dependent").await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("dependent ConfigMap not garbage-collected within 60s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The namespace only disappears once the namespace controller has emptied it.
    ns.delete_and_wait(Duration::from_secs(60)).await
}

#[tokio::test]
async fn crds_install_and_become_established() -> Result<()> {
    let client = common::client().await?;
    let names = common::install_crds(&client).await?;
    // Installing twice must be a no-op for server-side apply with the same manager.
    assert_eq!(common::install_crds(&client).await?, names);
    Ok(())
}

#[tokio::test]
async fn moto_kms_key_lifecycle() -> Result<()> {
    let kms = aws_sdk_kms::Client::new(&common::aws_sdk_config("us-east-1").await);

    let created = kms
        .create_key()
        .description("atlas-eo control-plane test")
        .send()
        .await?
        .key_metadata
        .context("CreateKey without metadata")?;
    let key_id = created.key_id().to_owned();
    assert!(!key_id.is_empty());
    assert!(
        created
            .arn()
            .is_some_and(|a| a.starts_with("arn:aws:kms:us-east-1:")),
        "{created:?}"
    );

    let described = kms
        .describe_key()
        .key_id(&key_id)
        .send()
        .await?
        .key_metadata
        .context("DescribeKey without metadata")?;
    assert_eq!(described.key_spec(), Some(&KeySpec::SymmetricDefault));
    assert_eq!(described.key_state(), Some(&KeyState::Enabled));
    assert!(described.enabled());

    kms.disable_key().key_id(&key_id).send().await?;
    let disabled = kms
        .describe_key()
        .key_id(&key_id)
        .send()
        .await?
        .key_metadata
        .context("DescribeKey without metadata")?;
    assert_eq!(disabled.key_state(), Some(&KeyState::Disabled));
    assert!(!disabled.enabled());

    // An unknown key must surface as the modelled NotFoundException, not a transport error.
    let missing = kms
        .describe_key()
        .key_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await;
    let err = missing.expect_err("describing an unknown key must fail");
    assert!(
        err.as_service_error().is_some_and(|e| e.is_not_found_exception()),
        "unexpected error: {err:?}"
    );
    Ok(())
}
