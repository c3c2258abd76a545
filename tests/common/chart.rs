//! The Helm chart on the test ground: rendered by the pinned helm (`scripts/helm.sh`, built once
//! per machine and cached), and its ServiceAccount and RBAC applied for real with the admin client.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Config};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{FIELD_MANAGER, repo_root};

pub const CHART: &str = "charts/atlas-encryption-operator";

/// The path of the pinned helm binary; the first call may build it (see `scripts/helm.sh`).
pub fn helm() -> Result<PathBuf> {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = HELM.get() {
        return Ok(path.clone());
    }
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/helm.sh"))
        .output()
        .context("running scripts/helm.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/helm.sh failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    Ok(HELM.get_or_init(|| path).clone())
}

/// The objects `helm template` renders, as JSON.
pub struct Rendered {
    pub docs: Vec<Value>,
}

/// `helm template <release> <chart> --namespace <namespace> --set <each of set>`.
pub fn render(release: &str, namespace: &str, set: &[&str]) -> Result<Rendered> {
    let mut command = Command::new(helm()?);
    command
        .args(["template", release])
        .arg(repo_root().join(CHART))
        .args(["--namespace", namespace]);
    for value in set {
        command.args(["--set", value]);
    }
    let out = command.output().context("running helm template")?;
    if !out.status.success() {
        bail!(
            "helm template failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).context("parsing helm template's output")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(Rendered { docs })
}

impl Rendered {
    pub fn of_kind<K: DeserializeOwned>(&self, kind: &str) -> Result<Vec<K>> {
        self.docs
            .iter()
            .filter(|d| d["kind"] == kind)
            .map(|d| serde_json::from_value(d.clone()).with_context(|| format!("decoding a rendered {kind}")))
            .collect()
    }

    pub fn one<K: DeserializeOwned>(&self, kind: &str) -> Result<K> {
        let mut all = self.of_kind::<K>(kind)?;
        if all.len() != 1 {
            bail!("the chart rendered {} {kind} objects, expected one", all.len());
        }
        Ok(all.remove(0))
    }

    pub fn deployment(&self) -> Result<Deployment> {
        self.one("Deployment")
    }

    /// The operator container's environment as the kubelet would give it to a pod named `pod` in
    /// `namespace`: plain values, and the downward-API fields the chart uses.
    pub fn operator_env(&self, pod: &str, namespace: &str) -> Result<Vec<(String, String)>> {
        let deployment = self.deployment()?;
        let pod_spec = deployment
            .spec
            .and_then(|s| s.template.spec)
            .context("Deployment without a pod spec")?;
        let container = pod_spec
            .containers
            .into_iter()
            .find(|c| c.name == "operator")
            .context("no operator container")?;
        let mut env = Vec::new();
        for var in container.env.unwrap_or_default() {
            let value = match (var.value, var.value_from) {
                (Some(value), None) => value,
                (None, Some(from)) => match from.field_ref.map(|f| f.field_path).as_deref() {
                    Some("metadata.name") => pod.to_string(),
                    Some("metadata.namespace") => namespace.to_string(),
                    other => bail!("{}: valueFrom {other:?} is not modelled by the tests", var.name),
                },
                (None, None) => String::new(),
                (Some(_), Some(_)) => bail!("{}: both value and valueFrom", var.name),
            };
            env.push((var.name, value));
        }
        Ok(env)
    }
}

/// The chart's ServiceAccount, (Cluster)Roles and bindings as applied to the test control plane.
/// The namespaced ones go with their namespaces; the cluster-scoped ones are deleted by
/// [`ChartRbac::cleanup`] or, failing that, when dropped.
pub struct ChartRbac {
    /// Namespace and name of the ServiceAccount the Deployment runs as.
    pub service_account: (String, String),
    cluster_roles: Vec<String>,
    cluster_role_bindings: Vec<String>,
    config: Config,
    deleted: bool,
}

/// Server-side applies every ServiceAccount, ClusterRole, ClusterRoleBinding, Role and RoleBinding
/// the chart rendered (nothing else: no Deployment, no Service). Fails when the Deployment's
/// ServiceAccount is not among them.
pub async fn apply_rbac(config: Config, rendered: &Rendered) -> Result<ChartRbac> {
    let client = Client::try_from(config.clone())?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut rbac = ChartRbac {
        service_account: Default::default(),
        cluster_roles: Vec::new(),
        cluster_role_bindings: Vec::new(),
        config,
        deleted: false,
    };
    let mut accounts = Vec::new();
    for sa in rendered.of_kind::<ServiceAccount>("ServiceAccount")? {
        let (ns, name) = namespaced(&sa.metadata)?;
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .patch(&name, &pp, &Patch::Apply(&sa))
            .await
            .with_context(|| format!("applying ServiceAccount {ns}/{name}"))?;
        accounts.push((ns, name));
    }
    for role in rendered.of_kind::<ClusterRole>("ClusterRole")? {
        let name = role.metadata.name.clone().context("ClusterRole without a name")?;
        rbac.cluster_roles.push(name.clone());
        Api::<ClusterRole>::all(client.clone())
            .patch(&name, &pp, &Patch::Apply(&role))
            .await
            .with_context(|| format!("applying ClusterRole {name}"))?;
    }
    for binding in rendered.of_kind::<ClusterRoleBinding>("ClusterRoleBinding")? {
        let name = binding
            .metadata
            .name
            .clone()
            .context("ClusterRoleBinding without a name")?;
        rbac.cluster_role_bindings.push(name.clone());
        Api::<ClusterRoleBinding>::all(client.clone())
            .patch(&name, &pp, &Patch::Apply(&binding))
            .await
            .with_context(|| format!("applying ClusterRoleBinding {name}"))?;
    }
    for role in rendered.of_kind::<Role>("Role")? {
        let (ns, name) = namespaced(&role.metadata)?;
        Api::<Role>::namespaced(client.clone(), &ns)
            .patch(&name, &pp, &Patch::Apply(&role))
            .await
            .with_context(|| format!("applying Role {ns}/{name}"))?;
    }
    for binding in rendered.of_kind::<RoleBinding>("RoleBinding")? {
        let (ns, name) = namespaced(&binding.metadata)?;
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .patch(&name, &pp, &Patch::Apply(&binding))
            .await
            .with_context(|| format!("applying RoleBinding {ns}/{name}"))?;
    }
    let deployment = rendered.deployment()?;
    let runs_as = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.service_account_name)
        .context("the Deployment names no ServiceAccount")?;
    let ns = deployment
        .metadata
        .namespace
        .context("Deployment without a namespace")?;
    rbac.service_account = accounts
        .into_iter()
        .find(|(n, name)| *n == ns && *name == runs_as)
        .with_context(|| format!("the chart renders no ServiceAccount {ns}/{runs_as} for its Deployment"))?;
    Ok(rbac)
}

fn namespaced(meta: &kube::api::ObjectMeta) -> Result<(String, String)> {
    Ok((
        meta.namespace
            .clone()
            .context("rendered object without a namespace")?,
        meta.name.clone().context("rendered object without a name")?,
    ))
}

impl ChartRbac {
    pub async fn cleanup(mut self) -> Result<()> {
        self.deleted = true;
        delete_cluster_scoped(
            Client::try_from(self.config.clone())?,
            std::mem::take(&mut self.cluster_roles),
            std::mem::take(&mut self.cluster_role_bindings),
        )
        .await
    }
}

impl Drop for ChartRbac {
    fn drop(&mut self) {
        if self.deleted || (self.cluster_roles.is_empty() && self.cluster_role_bindings.is_empty()) {
            return;
        }
        let roles = std::mem::take(&mut self.cluster_roles);
        let bindings = std::mem::take(&mut self.cluster_role_bindings);
        super::k8s::cleanup_on_thread(
            self.config.clone(),
            format!("ClusterRoles {roles:?} and ClusterRoleBindings {bindings:?}"),
            move |client| delete_cluster_scoped(client, roles, bindings),
        );
    }
}

async fn delete_cluster_scoped(client: Client, roles: Vec<String>, bindings: Vec<String>) -> Result<()> {
    for name in bindings {
        ignore_not_found(
            Api::<ClusterRoleBinding>::all(client.clone())
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop),
        )
        .with_context(|| format!("deleting ClusterRoleBinding {name}"))?;
    }
    for name in roles {
        ignore_not_found(
            Api::<ClusterRole>::all(client.clone())
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop),
        )
        .with_context(|| format!("deleting ClusterRole {name}"))?;
    }
    Ok(())
}

fn ignore_not_found(result: kube::Result<()>) -> kube::Result<()> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}
