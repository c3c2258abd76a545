//! Kubernetes side of the test ground: clients, per-test namespaces and the project's CRDs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use serde::Deserialize;

use super::{FIELD_MANAGER, repo_root, testenv, unique_name};

/// Label on every namespace the tests create, so leftovers of a crashed run can be found:
/// `kubectl get ns -l app.kubernetes.io/managed-by=atlas-eo-tests`.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "atlas-eo-tests");
/// Label naming the test (prefix) that created a namespace.
pub const TEST_LABEL: &str = "atlas-eo-tests/test";

/// The admin (system:masters) client configuration of the test control plane.
pub async fn admin_config() -> Result<Config> {
    let path = &testenv().kubeconfig;
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))
}

/// An admin client of the test control plane. Build one per test: a client is bound to the
/// runtime it was made on, and every `#[tokio::test]` has its own.
pub async fn client() -> Result<Client> {
    Ok(Client::try_from(admin_config().await?)?)
}

/// A client that authenticates with a bearer token only (for example a ServiceAccount token
/// from the TokenRequest API), trusting the test CA.
pub async fn client_with_token(token: &str) -> Result<Client> {
    let mut config = admin_config().await?;
    config.auth_info = Default::default();
    config.auth_info.token = Some(token.to_owned().into());
    Ok(Client::try_from(config)?)
}

/// An admin client that impersonates `user` (e.g. `system:serviceaccount:ns:name`).
pub async fn client_impersonating(user: &str) -> Result<Client> {
    let mut config = admin_config().await?;
    config.auth_info.impersonate = Some(user.to_owned());
    Ok(Client::try_from(config)?)
}

/// A namespace owned by one test: created by [`TestNamespace::new`], deleted by
/// [`TestNamespace::cleanup`] or, failing that, when dropped (also when the test panics).
pub struct TestNamespace {
    name: String,
    config: Config,
    client: Client,
    deleted: bool,
}

impl TestNamespace {
    pub async fn new(test: &str) -> Result<Self> {
        let config = admin_config().await?;
        let client = Client::try_from(config.clone())?;
        let name = unique_name(test);
        let labels = BTreeMap::from([
            (MANAGED_BY_LABEL.0.to_owned(), MANAGED_BY_LABEL.1.to_owned()),
            (TEST_LABEL.to_owned(), label_value(test)),
        ]);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            name,
            config,
            client,
            deleted: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// `Api<K>` scoped to this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace without waiting for the controller manager to empty it.
    pub async fn cleanup(mut self) -> Result<()> {
        self.deleted = true;
        delete_namespace(&self.client, &self.name).await
    }

    /// Deletes the namespace and waits until it is gone, which needs the namespace controller.
    pub async fn delete_and_wait(mut self, timeout: Duration) -> Result<()> {
        self.deleted = true;
        let api = Api::<Namespace>::all(self.client.clone());
        let uid = api.get(&self.name).await?.metadata.uid.unwrap_or_default();
        delete_namespace(&self.client, &self.name).await?;
        tokio::time::timeout(
            timeout,
            await_condition(api, &self.name, conditions::is_deleted(&uid)),
        )
        .await
        .with_context(|| format!("namespace {} still present after {timeout:?}", self.name))??;
        Ok(())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Drop cannot await, and the test's runtime may be single-threaded or already shutting
        // down, so the delete runs on its own thread with its own runtime and client.
        let (name, config) = (self.name.clone(), self.config.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = Client::try_from(config)?;
                delete_namespace(&client, &name).await
            })
        })
        .join();
        if let Ok(Err(e)) = done {
            eprintln!("warning: could not delete test namespace {}: {e:#}", self.name);
        }
    }
}

async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting namespace {name}")),
    }
}

fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

/// Server-side applies every CRD in `<repo>/crds/*.yaml` and waits until each is Established.
/// Returns the names applied; an empty or missing `crds/` yields an empty list, not an error.
pub async fn install_crds(client: &Client) -> Result<Vec<String>> {
    let crds = read_crds(&repo_root().join("crds"))?;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::with_capacity(crds.len());
    for crd in crds {
        let name = crd.metadata.name.clone().context("CRD without metadata.name")?;
        api.patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        names.push(name);
    }
    for name in &names {
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not Established within 30s"))??;
    }
    Ok(names)
}

fn read_crds(dir: &Path) -> Result<Vec<CustomResourceDefinition>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let mut crds = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value =
                serde_yaml::Value::deserialize(doc).with_context(|| format!("parsing {}", path.display()))?;
            if value.is_null() {
                continue;
            }
            if value.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition") {
                bail!(
                    "{} holds a document that is not a CustomResourceDefinition",
                    path.display()
                );
            }
            crds.push(serde_yaml::from_value(value).with_context(|| format!("decoding {}", path.display()))?);
        }
    }
    Ok(crds)
}
