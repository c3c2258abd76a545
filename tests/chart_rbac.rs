//! The operator binary with exactly the Helm chart's ServiceAccount and RBAC on the real kube-apiserver
//! (`--authorization-mode=RBAC`). The chart is rendered with the pinned helm, its ServiceAccount,
//! (Cluster)Roles and bindings are applied (not its Deployment), a token for that ServiceAccount comes
//! from the TokenRequest API, and the operator runs with a kubeconfig holding only that token and the
//! environment the chart's Deployment would give it. It must take a ProjectEncryption and a
//! ClusterEncryption through the whole flow (Events, finalizers, a Lease when the chart turns leader
//! election on), and the API server must refuse that token every write the operator has no business
//! making. Both modes of the chart: cluster-wide (ClusterRole) and namespaced with two replicas.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use atlas_encryption_operator::crd::{ClusterEncryption, ProjectEncryption};
use common::chart::{self, ChartRbac};
use common::k8s::{TokenKubeconfig, admin_config, api_code, client_with_token, service_account_token};
use common::operator::{API_PRIVATE_KEY, OperatorEnv, condition, seed, wait_gone};
use common::process::{OperatorProcess, SpawnOptions};
use common::{TestNamespace, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const PE_CRD: &str = "projectencryptions.encryption.atlasops.dev";

/// The chart installed for one test: its RBAC applied in a release namespace of its own (`home`), the
/// operator running there with the ServiceAccount's token, and a client with that same token.
struct Installed {
    home: TestNamespace,
    rbac: ChartRbac,
    deployment: String,
    token: String,
    as_operator: Client,
    operator: OperatorProcess,
    _kubeconfig: TokenKubeconfig,
}

/// Renders the chart with `set` into a new release namespace, applies its RBAC, and starts the
/// operator binary as the chart's ServiceAccount against the test's atlas-sim and moto, with the
/// chart's environment and then `args`.
async fn install(env: &OperatorEnv, test: &str, set: &[&str], args: &[&str]) -> Result<Installed> {
    let home = TestNamespace::new(&format!("{test}-home")).await?;
    let release = unique_name("aeo");
    let rendered = chart::render(&release, home.name(), set)?;
    let deployment = rendered
        .deployment()?
        .metadata
        .name
        .context("Deployment without a name")?;
    let rbac = chart::apply_rbac(admin_config().await?, &rendered).await?;
    let (sa_ns, sa) = rbac.service_account.clone();
    let token = service_account_token(&env.client, &sa_ns, &sa, Duration::from_secs(3600)).await?;
    let kubeconfig = TokenKubeconfig::write(&token)?;
    let as_operator = client_with_token(&token).await?;

    // The RBAC authorizer reads through an informer: a fresh binding takes a moment to apply.
    let pes: Api<ProjectEncryption> = Api::namespaced(as_operator.clone(), env.ns.name());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match pes.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 403 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(e).context("the chart's RBAC does not let the operator list ProjectEncryptions");
            }
        }
    }

    let identity = unique_name("op");
    let options = SpawnOptions {
        kubeconfig: Some(kubeconfig.path().to_path_buf()),
        env: rendered.operator_env(&identity, home.name())?,
    };
    let mut operator = OperatorProcess::spawn_with(&identity, &env.sim().base_url(), args, options)?;
    operator.wait_ready(Duration::from_secs(30)).await?;
    Ok(Installed {
        home,
        rbac,
        deployment,
        token,
        as_operator,
        operator,
        _kubeconfig: kubeconfig,
    })
}

/// A ProjectEncryption through the whole handshake to Ready, a ClusterEncryption to Ready, the Events
/// of both steps, then both deleted with `deletionPolicy: Disable` (the operator turns encryption off and
/// removes its finalizers).
async fn full_flow(env: &OperatorEnv, project: &str) -> Result<()> {
    env.encrypt_project("payments", project).await?;
    // Disable on both, so the finalizers and the deletion's Atlas writes run under the chart's RBAC.
    env.projects()
        .patch(
            "payments",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"spec": {"deletionPolicy": "Disable"}})),
        )
        .await?;
    env.apply_cluster(
        "orders",
        json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": "Cluster0",
               "deletionPolicy": "Disable"}),
    )
    .await?;
    env.wait_cluster("orders", WAIT, "Ready", |ce: &ClusterEncryption| {
        ce.status
            .as_ref()
            .is_some_and(|s| condition(&s.conditions, "Ready").is_some_and(|(st, _)| st == "True"))
    })
    .await?;

    for (object, reasons) in [
        (
            "payments",
            &["RoleCreated", "TrustPolicyRequired", "Authorized"][..],
        ),
        ("orders", &["EncryptionProviderSet"][..]),
    ] {
        for reason in reasons {
            let events = env.wait_event(object, reason, Duration::from_secs(15)).await?;
            anyhow::ensure!(
                events.iter().any(|(r, _)| r == reason),
                "{object}: no {reason} Event published; recorded: {events:?}"
            );
        }
    }

    // Deleting needs the operator's finalizer patches and its Atlas writes (deletionPolicy Disable).
    let dp = DeleteParams::default();
    env.clusters().delete("orders", &dp).await?;
    wait_gone(&env.clusters(), "orders", WAIT).await?;
    env.projects().delete("payments", &dp).await?;
    wait_gone(&env.projects(), "payments", WAIT).await?;
    Ok(())
}

impl Installed {
    /// Fails the test with `error`, saying whether the operator is still running and how its log ends.
    fn fail(&mut self, error: anyhow::Error) -> ! {
        let state = match self.operator.check_running() {
            Ok(()) => format!("the operator still runs; log:\n{}", self.operator.log_tail()),
            Err(exited) => format!("{exited:#}"),
        };
        panic!("{error:#}\n{state}")
    }
}

/// What the operator's log must not hold: refusals by the API server, a lost Event, a secret.
fn assert_clean_log(installed: &Installed) {
    let log = installed.operator.log_text();
    assert!(
        !log.to_ascii_lowercase().contains("forbidden"),
        "the API server refused the operator something the chart should grant:\n{}",
        installed.operator.log_tail()
    );
    assert!(
        !log.contains("could not publish event"),
        "an Event was refused:\n{}",
        installed.operator.log_tail()
    );
    for (name, secret) in [
        ("the ServiceAccount token", installed.token.as_str()),
        ("the Atlas private key", API_PRIVATE_KEY),
        ("the AWS secret key", common::aws::AWS_SECRET_ACCESS_KEY),
    ] {
        assert!(!log.contains(secret), "{name} leaked into the operator's log");
    }
}

/// The answers the API server gives the operator's token, by what was attempted.
#[derive(Default)]
struct Probes(Vec<(String, Option<u16>)>);

impl Probes {
    fn record<T>(&mut self, what: impl Into<String>, result: kube::Result<T>) {
        self.0.push((what.into(), api_code(&result)));
    }

    /// Every probe was answered 403 Forbidden (not 404, not success: authorization comes first).
    fn assert_all_forbidden(&self) {
        let allowed: Vec<_> = self.0.iter().filter(|(_, code)| *code != Some(403)).collect();
        assert!(
            allowed.is_empty(),
            "the chart's RBAC lets the operator do more than it needs (want 403 for each): {allowed:?}"
        );
        eprintln!("{} writes and reads refused with 403", self.0.len());
    }
}

fn object<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a well-formed object")
}

/// Writes (and a few reads) the operator never makes, in both modes: each must be 403 Forbidden from
/// the real API server for the chart's token.
async fn probe_common(probes: &mut Probes, token: &Client, watched: &str, home: &str, deployment: &str) {
    let pp = PostParams::default();
    let dp = DeleteParams::default();
    let merge = PatchParams::default();

    let secrets: Api<Secret> = Api::namespaced(token.clone(), watched);
    let secret: Secret = object(json!({"metadata": {"name": "planted"}, "stringData": {"k": "v"}}));
    probes.record("create a Secret", secrets.create(&pp, &secret).await);
    probes.record(
        "patch the credentials Secret",
        secrets
            .patch(
                "atlas-credentials",
                &merge,
                &Patch::Merge(json!({"stringData": {"privateKey": "x"}})),
            )
            .await,
    );
    probes.record(
        "delete the credentials Secret",
        secrets.delete("atlas-credentials", &dp).await,
    );
    probes.record("list Secrets", secrets.list(&ListParams::default()).await);
    probes.record(
        "list Secrets in every namespace",
        Api::<Secret>::all(token.clone())
            .list(&ListParams::default().limit(1))
            .await,
    );

    probes.record(
        "delete the watched namespace",
        Api::<Namespace>::all(token.clone()).delete(watched, &dp).await,
    );
    probes.record(
        "scale its own Deployment",
        Api::<Deployment>::namespaced(token.clone(), home)
            .patch(
                deployment,
                &merge,
                &Patch::Merge(json!({"spec": {"replicas": 0}})),
            )
            .await,
    );
    let crds = Api::<CustomResourceDefinition>::all(token.clone());
    probes.record(
        "patch a CRD",
        crds.patch(
            PE_CRD,
            &merge,
            &Patch::Merge(json!({"metadata": {"labels": {"planted": "yes"}}})),
        )
        .await,
    );
    probes.record("delete a CRD", crds.delete(PE_CRD, &dp).await);

    let pes: Api<ProjectEncryption> = Api::namespaced(token.clone(), watched);
    let pe: ProjectEncryption = object(json!({
        "apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ProjectEncryption",
        "metadata": {"name": "planted"},
        "spec": {"projectName": "planted", "credentialsRef": {"name": "atlas-credentials"},
                 "awsKms": {"enabled": false, "region": "eu-west-2"}}}));
    probes.record("create a ProjectEncryption", pes.create(&pp, &pe).await);
    probes.record(
        "update (PUT) a ProjectEncryption",
        pes.replace("payments", &pp, &pe).await,
    );
    probes.record("delete a ProjectEncryption", pes.delete("payments", &dp).await);
    let ces: Api<ClusterEncryption> = Api::namespaced(token.clone(), watched);
    let ce: ClusterEncryption = object(json!({
        "apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ClusterEncryption",
        "metadata": {"name": "planted"},
        "spec": {"projectEncryptionRef": {"name": "payments"}, "clusterName": "planted"}}));
    probes.record("create a ClusterEncryption", ces.create(&pp, &ce).await);
    probes.record("delete a ClusterEncryption", ces.delete("orders", &dp).await);

    let grant = json!({
        "metadata": {"name": "planted"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": watched}]});
    probes.record(
        "bind cluster-admin in the namespace",
        Api::<RoleBinding>::namespaced(token.clone(), watched)
            .create(&pp, &object(grant.clone()))
            .await,
    );
    probes.record(
        "bind cluster-admin cluster-wide",
        Api::<ClusterRoleBinding>::all(token.clone())
            .create(&pp, &object(grant))
            .await,
    );
    probes.record(
        "mint a token for another ServiceAccount",
        Api::<ServiceAccount>::namespaced(token.clone(), watched)
            .create_token_request("default", &pp, &Default::default())
            .await,
    );
    probes.record(
        "create a Pod",
        Api::<Pod>::namespaced(token.clone(), watched)
            .create(
                &pp,
                &object(json!({"metadata": {"name": "planted"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}})),
            )
            .await,
    );
    probes.record(
        "patch a ConfigMap",
        Api::<ConfigMap>::namespaced(token.clone(), watched)
            .patch(
                "kube-root-ca.crt",
                &merge,
                &Patch::Merge(json!({"data": {"x": "y"}})),
            )
            .await,
    );
    probes.record(
        "create a core/v1 Event",
        Api::<Event>::namespaced(token.clone(), watched)
            .create(
                &pp,
                &object(json!({"metadata": {"name": "planted"}, "involvedObject": {"name": "x"}})),
            )
            .await,
    );
    probes.record(
        "delete an events.k8s.io Event",
        Api::<EventV1>::namespaced(token.clone(), watched)
            .delete("planted", &dp)
            .await,
    );
}

/// Default values (cluster-wide: one ClusterRole, no leader election). The operator is still told to
/// watch only the test's namespace: on the shared control plane it would otherwise reconcile other
/// tests' objects. The grant it runs with is the ClusterRole.
#[tokio::test]
async fn cluster_wide_chart_rbac_grants_the_full_flow_and_nothing_more() {
    let env = OperatorEnv::start("chart-cw", &seed(&[("proj-chart-cw", &["Cluster0:M10"])]))
        .await
        .unwrap();
    let watched = env.ns.name().to_string();
    let mut installed = install(&env, "chart-cw", &[], &["--watch-namespaces", &watched])
        .await
        .unwrap();

    if let Err(e) = full_flow(&env, "proj-chart-cw").await {
        installed.fail(e);
    }
    assert_clean_log(&installed);

    // What the operator does with the chart's empty WATCH_NAMESPACES (every namespace), which the
    // shared control plane cannot let it do for real: list both kinds cluster-wide.
    let token = &installed.as_operator;
    Api::<ProjectEncryption>::all(token.clone())
        .list(&ListParams::default().limit(1))
        .await
        .unwrap();
    Api::<ClusterEncryption>::all(token.clone())
        .list(&ListParams::default().limit(1))
        .await
        .unwrap();

    let mut probes = Probes::default();
    probe_common(
        &mut probes,
        &installed.as_operator,
        &watched,
        installed.home.name(),
        &installed.deployment,
    )
    .await;
    // No leader election in the default values, so no Lease either.
    let lease: Lease = object(json!({"metadata": {"name": "atlas-encryption-operator"}}));
    probes.record(
        "create a Lease",
        Api::<Lease>::namespaced(installed.as_operator.clone(), installed.home.name())
            .create(&PostParams::default(), &lease)
            .await,
    );
    probes.assert_all_forbidden();

    let status = installed
        .operator
        .terminate(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    installed.rbac.cleanup().await.unwrap();
    installed.home.cleanup().await.unwrap();
    env.finish().await;
}

/// `watchNamespaces: [<test ns>]` and two replicas: a Role and RoleBinding in the watched namespace
/// only, and leader election with the one Lease in the release namespace. The operator runs with the
/// chart's own WATCH_NAMESPACES and LEADER_ELECT* settings, holds and renews the Lease, hands it back on
/// SIGTERM, and cannot reach anything outside the watched namespace.
#[tokio::test]
async fn namespaced_ha_chart_rbac_grants_the_flow_and_the_lease_and_nothing_more() {
    let env = OperatorEnv::start("chart-ns", &seed(&[("proj-chart-ns", &["Cluster0:M10"])]))
        .await
        .unwrap();
    let watched = env.ns.name().to_string();
    let mut installed = install(
        &env,
        "chart-ns",
        &[&format!("watchNamespaces={{{watched}}}"), "replicaCount=2"],
        &[],
    )
    .await
    .unwrap();
    let home = installed.home.name().to_string();
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &home);
    let lease_name = "atlas-encryption-operator";
    let first = leases.get(lease_name).await.unwrap();
    let spec = first.spec.clone().unwrap();
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(installed.operator.identity.as_str()),
        "the operator holds the chart's Lease"
    );

    if let Err(e) = full_flow(&env, "proj-chart-ns").await {
        installed.fail(e);
    }
    assert_clean_log(&installed);
    let renewed = leases.get(lease_name).await.unwrap().spec.unwrap();
    assert_eq!(renewed.holder_identity, spec.holder_identity, "still the holder");
    assert!(
        renewed.renew_time.unwrap().0 > spec.renew_time.unwrap().0,
        "the Lease was renewed (update is granted)"
    );

    let token = installed.as_operator.clone();
    let mut probes = Probes::default();
    probe_common(&mut probes, &token, &watched, &home, &installed.deployment).await;
    // Nothing outside the watched namespace.
    for ns in [home.as_str(), "default"] {
        probes.record(
            format!("get a Secret in {ns}"),
            Api::<Secret>::namespaced(token.clone(), ns)
                .get("atlas-credentials")
                .await,
        );
        probes.record(
            format!("list ProjectEncryptions in {ns}"),
            Api::<ProjectEncryption>::namespaced(token.clone(), ns)
                .list(&ListParams::default())
                .await,
        );
    }
    probes.record(
        "list ProjectEncryptions in every namespace",
        Api::<ProjectEncryption>::all(token.clone())
            .list(&ListParams::default())
            .await,
    );
    // The one Lease, in its namespace: no other Lease, no delete, no Lease in the watched namespace.
    let home_leases: Api<Lease> = Api::namespaced(token.clone(), &home);
    let other: Lease = object(json!({"metadata": {"name": "someone-else"}}));
    probes.record(
        "update another Lease",
        home_leases
            .replace("someone-else", &PostParams::default(), &other)
            .await,
    );
    probes.record("get another Lease", home_leases.get("someone-else").await);
    probes.record(
        "delete its own Lease",
        home_leases.delete(lease_name, &DeleteParams::default()).await,
    );
    probes.record(
        "create a Lease in the watched namespace",
        Api::<Lease>::namespaced(token.clone(), &watched)
            .create(&PostParams::default(), &other)
            .await,
    );
    probes.assert_all_forbidden();

    let status = installed
        .operator
        .terminate(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let released = leases.get(lease_name).await.unwrap().spec.unwrap();
    assert_eq!(
        released.holder_identity, None,
        "the Lease is handed back on SIGTERM (update is granted)"
    );
    installed.rbac.cleanup().await.unwrap();
    installed.home.cleanup().await.unwrap();
    env.finish().await;
}
