//! The Kubernetes side: the bench's objects, a watch that follows their progress (and counts every write
//! to them), and the crowded cluster of unrelated namespaces.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

pub const FIELD_MANAGER: &str = "atlas-eo-bench";
pub const CROWD_LABEL: &str = "atlas-eo-bench/crowd";

pub fn project_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "encryption.atlasops.dev",
        "v1alpha1",
        "ProjectEncryption",
    ))
}

pub fn cluster_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "encryption.atlasops.dev",
        "v1alpha1",
        "ClusterEncryption",
    ))
}

pub fn pe_name(i: u64) -> String {
    format!("p{i}")
}

pub fn ce_name(i: u64, j: u64) -> String {
    format!("p{i}-c{j}")
}

pub async fn ensure_namespace(client: &Client, name: &str, labels: Value) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&ns),
    )
    .await?;
    Ok(())
}

pub async fn apply(api: &Api<DynamicObject>, name: &str, object: &Value) -> Result<()> {
    for attempt in 0..5 {
        match api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 4 => {
                eprintln!("bench: apply {name}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!()
}

pub async fn apply_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let string_data: serde_json::Map<String, Value> =
        data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": string_data});
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    Ok(())
}

/// A reflector of one kind in one namespace, and the number of changes it saw after its initial list:
/// with nobody else writing to the bench's objects, every one of them is a write by the operator.
pub struct Watched {
    pub store: Store<DynamicObject>,
    pub writes: Arc<AtomicU64>,
    /// Told after every change the store took in, so a wait sees the moment it is met.
    changed: Arc<tokio::sync::Notify>,
}

pub async fn watch(client: &Client, ns: &str, resource: &ApiResource) -> Result<Watched> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let writes = Arc::new(AtomicU64::new(0));
    let counter = writes.clone();
    let changed = Arc::new(tokio::sync::Notify::new());
    let tell = changed.clone();
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.reflect(writer));
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) = event {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            tell.notify_one();
        }
    });
    store.wait_until_ready().await?;
    Ok(Watched {
        store,
        writes,
        changed,
    })
}

fn condition<'a>(object: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Ready=True for the object's current generation.
pub fn is_ready(object: &DynamicObject) -> bool {
    let generation = object.metadata.generation;
    let observed = object.data["status"]["observedGeneration"].as_i64();
    generation.is_some()
        && observed == generation
        && condition(object, "Ready").is_some_and(|c| c["status"] == "True")
}

pub fn is_stalled(object: &DynamicObject) -> bool {
    condition(object, "Stalled").is_some_and(|c| c["status"] == "True")
}

pub fn key_in_force(object: &DynamicObject) -> Option<&str> {
    object.data["status"]["key"]["customerMasterKeyId"].as_str()
}

/// The Atlas role's trust details once the operator has published them.
pub fn published_role(object: &DynamicObject) -> Option<(String, String)> {
    let role = &object.data["status"]["role"];
    Some((
        role["atlasAwsAccountArn"].as_str()?.to_string(),
        role["externalId"].as_str()?.to_string(),
    ))
}

/// Waits until `done(projects, clusters)` holds, printing progress every 10 s.
pub async fn wait_for<F>(
    what: &str,
    projects: &Watched,
    clusters: &Watched,
    timeout: Duration,
    done: F,
) -> Result<()>
where
    F: Fn(&[Arc<DynamicObject>], &[Arc<DynamicObject>]) -> (bool, String),
{
    // Checked when either store changes (so the time measured ends when the condition is met, not at
    // the next poll), at most every `SETTLE` (so a wave of thousands of changes costs the machine the
    // operator runs on little), and every `POLL` anyway, to print progress and time out.
    const SETTLE: Duration = Duration::from_millis(20);
    const POLL: Duration = Duration::from_millis(250);
    let start = std::time::Instant::now();
    let mut last_print = start;
    loop {
        let checked = tokio::time::Instant::now();
        let (ok, progress) = done(&projects.store.state(), &clusters.store.state());
        if ok {
            eprintln!(
                "bench: {what}: done in {:.1}s ({progress})",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            eprintln!("bench: {what}: {:.0}s: {progress}", start.elapsed().as_secs_f64());
            last_print = std::time::Instant::now();
        }
        if start.elapsed() > timeout {
            bail!("{what}: not done after {}s: {progress}", timeout.as_secs());
        }
        tokio::select! {
            _ = projects.changed.notified() => {}
            _ = clusters.changed.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        tokio::time::sleep_until(checked + SETTLE).await;
    }
}

/// Deletes a namespace and waits until it is gone (the operator, still running, lets go of its
/// objects: their deletionPolicy is Retain).
pub async fn delete_namespace(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if api.get_opt(name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("namespace {name} still there after {}s", timeout.as_secs())
}

/// Removes the operator's finalizer from everything left in `ns`, for when no operator runs any more.
pub async fn strip_finalizers(client: &Client, ns: &str) -> Result<()> {
    for resource in [cluster_resource(), project_resource()] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        let names: Vec<String> = api
            .list_metadata(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|o| o.name_any())
            .collect();
        futures::stream::iter(names)
            .map(|name| {
                let api = api.clone();
                async move {
                    let patch = json!({"metadata": {"finalizers": null}});
                    let _ = api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    }
    Ok(())
}

/// `namespaces` namespaces labelled [`CROWD_LABEL`], each with `per_namespace` objects (Secrets and
/// ConfigMaps alternately, 1 KiB each), created `parallel` at a time; existing ones are kept.
pub async fn ensure_crowd(
    client: &Client,
    namespaces: u64,
    per_namespace: u64,
    parallel: usize,
) -> Result<u64> {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let existing: HashMap<String, ()> = ns_api
        .list_metadata(&ListParams::default().labels(&format!("{CROWD_LABEL}=true")))
        .await?
        .items
        .into_iter()
        .map(|n| (n.name_any(), ()))
        .collect();
    let created = futures::stream::iter(0..namespaces)
        .map(|i| {
            let name = format!("aeo-crowd-{i}");
            let present = existing.contains_key(&name);
            fill_crowd_namespace(client.clone(), name, per_namespace, present)
        })
        .buffer_unordered(parallel)
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await?;
    Ok(created)
}

async fn fill_crowd_namespace(
    client: Client,
    name: String,
    per_namespace: u64,
    present: bool,
) -> Result<u64> {
    let last = format!("unrelated-{}", per_namespace.saturating_sub(1));
    if present {
        // Complete when its last object exists.
        let done = if per_namespace.saturating_sub(1).is_multiple_of(2) {
            Api::<Secret>::namespaced(client.clone(), &name)
                .get_opt(&last)
                .await?
                .is_some()
        } else {
            Api::<ConfigMap>::namespaced(client.clone(), &name)
                .get_opt(&last)
                .await?
                .is_some()
        };
        if done {
            return Ok(0);
        }
    }
    ensure_namespace(&client, &name, json!({CROWD_LABEL: "true"})).await?;
    let filler = "x".repeat(1024);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for j in 0..per_namespace {
        let object_name = format!("unrelated-{j}");
        if j.is_multiple_of(2) {
            let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": object_name},
                "stringData": {"payload": filler}});
            Api::<Secret>::namespaced(client.clone(), &name)
                .patch(&object_name, &pp, &Patch::Apply(&s))
                .await?;
        } else {
            let c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": object_name},
                "data": {"payload": filler}});
            Api::<ConfigMap>::namespaced(client.clone(), &name)
                .patch(&object_name, &pp, &Patch::Apply(&c))
                .await?;
        }
    }
    Ok(per_namespace)
}

/// Deletes the crowd's namespaces (`make bench-clean`).
pub async fn delete_crowd(client: &Client) -> Result<usize> {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = ns_api
        .list_metadata(&ListParams::default().labels(&format!("{CROWD_LABEL}=true")))
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    let n = names.len();
    futures::stream::iter(names)
        .map(|name| {
            let api = ns_api.clone();
            async move {
                let _ = api.delete(&name, &DeleteParams::background()).await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    Ok(n)
}
