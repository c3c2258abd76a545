//! Kubernetes side of the test ground: clients, per-test namespaces and the project's CRDs.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use serde::Deserialize;

use super::{FIELD_MANAGER, repo_root, testenv, testenv_dir, unique_name};

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

/// The test kube-apiserver's URL, `https://127.0.0.1:<port>`, from the admin kubeconfig.
pub fn apiserver_url() -> Result<String> {
    let admin = &testenv().kubeconfig;
    Kubeconfig::read_from(admin)
        .with_context(|| format!("reading {}", admin.display()))?
        .clusters
        .into_iter()
        .find_map(|c| c.cluster.and_then(|c| c.server))
        .with_context(|| format!("{} names no server", admin.display()))
}

/// The test ground's own CA (PEM), which signed the kube-apiserver's serving certificate. It is in
/// no system trust store.
pub fn testenv_ca() -> PathBuf {
    testenv_dir().join("pki/ca.crt")
}

/// The HTTP status the API server answered a failed call with (`None` on success, or when no
/// answer came).
pub fn api_code<T>(result: &kube::Result<T>) -> Option<u16> {
    match result {
        Err(kube::Error::Api(status)) => Some(status.code),
        _ => None,
    }
}

/// A token for the ServiceAccount `namespace/name` from the TokenRequest API, valid for `ttl`.
pub async fn service_account_token(
    client: &Client,
    namespace: &str,
    name: &str,
    ttl: Duration,
) -> Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(i64::try_from(ttl.as_secs())?),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {namespace}/{name}"))?
        .status
        .context("TokenRequest without status")?
        .token;
    if token.is_empty() {
        bail!("empty token for ServiceAccount {namespace}/{name}");
    }
    Ok(token)
}

/// A kubeconfig file for the test control plane that authenticates with a bearer token alone and
/// trusts the test ground's CA (`<testenv>/pki/ca.crt`): what a pod with that ServiceAccount's
/// token has. Readable by the owner only, and removed when dropped.
pub struct TokenKubeconfig {
    path: PathBuf,
}

impl TokenKubeconfig {
    pub fn write(token: &str) -> Result<Self> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;

        let server = apiserver_url()?;
        let ca = testenv_ca();
        let text = serde_yaml::to_string(&serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "testenv", "cluster": {"server": server, "certificate-authority": ca}}],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [{"name": "token", "context": {"cluster": "testenv", "user": "token"}}],
            "current-context": "token",
        }))?;
        let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique_name("token")));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(text.as_bytes())?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TokenKubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs an async clean-up from a `Drop`: Drop cannot await, and the test's runtime may be
/// single-threaded or already shutting down, so it runs on its own thread with its own runtime and
/// a client made from `config`. Failures are printed, not raised.
pub fn cleanup_on_thread<F, Fut>(config: Config, what: String, f: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>>,
{
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async { f(Client::try_from(config)?).await })
    })
    .join();
    if let Ok(Err(e)) = done {
        eprintln!("warning: could not delete {what}: {e:#}");
    }
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
        let name = self.name.clone();
        cleanup_on_thread(
            self.config.clone(),
            format!("test namespace {name}"),
            move |client| async move { delete_namespace(&client, &name).await },
        );
    }
}

/// Takes the operator's finalizer off every object left in the namespace. The test's operator has
/// stopped by now, so an object that kept it would hold the namespace `Terminating` for good, and the
/// namespace controller would retry it in the background of every later run against the same API
/// server (125 such namespaces kept it, etcd and the controller manager at 80% of a core, skewing
/// the bench).
async fn release_finalizers(client: &Client, name: &str) -> Result<()> {
    use atlas_encryption_operator::crd::{ClusterEncryption, ProjectEncryption};
    use kube::api::{ApiResource, DynamicObject, ListParams};

    let release = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
    for resource in [
        ApiResource::erase::<ProjectEncryption>(&()),
        ApiResource::erase::<ClusterEncryption>(&()),
    ] {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), name, &resource);
        for object in api.list(&ListParams::default()).await?.items {
            let Some(object_name) = object
                .metadata
                .name
                .filter(|_| object.metadata.finalizers.is_some())
            else {
                continue;
            };
            match api.patch(&object_name, &PatchParams::default(), &release).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e).with_context(|| format!("releasing {object_name}")),
            }
        }
    }
    Ok(())
}

/// Keeps what the namespace holds for the secret scan before it goes: its Events, the operator's
/// objects with their status, and the values of its Secrets (the credentials the scan looks for).
async fn archive_namespace(client: &Client, name: &str) -> Result<()> {
    use atlas_encryption_operator::crd::{ClusterEncryption, ProjectEncryption};
    use k8s_openapi::api::core::v1::{Event, Secret};
    use kube::api::{ApiResource, DynamicObject, ListParams};

    let lp = ListParams::default();
    let events = Api::<Event>::namespaced(client.clone(), name).list(&lp).await?;
    let mut objects = Vec::new();
    for resource in [
        ApiResource::erase::<ProjectEncryption>(&()),
        ApiResource::erase::<ClusterEncryption>(&()),
    ] {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), name, &resource);
        objects.extend(api.list(&lp).await?.items);
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), name).list(&lp).await?;
    let values: Vec<serde_json::Value> = secrets
        .items
        .iter()
        .flat_map(|s| s.data.iter().flatten())
        .filter_map(|(k, v)| {
            Some(serde_json::json!({"key": k, "value": String::from_utf8(v.0.clone()).ok()?}))
        })
        .collect();
    let dir = super::evidence_dir("namespaces");
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&serde_json::json!({"events": events.items, "objects": objects}))?,
    )?;
    std::fs::write(
        dir.join(format!("{name}.secrets.json")),
        serde_json::to_vec(&values)?,
    )?;
    Ok(())
}

async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    if let Err(e) = archive_namespace(client, name).await {
        eprintln!("warning: could not archive namespace {name} for the secret scan: {e:#}");
    }
    if let Err(e) = release_finalizers(client, name).await {
        eprintln!("warning: could not release the finalizers in namespace {name}: {e:#}");
    }
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
