//! The cleanup finalizer, added and removed with patches guarded by the resourceVersion.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Result;

/// Adds the cleanup finalizer with a JSON patch guarded by the resourceVersion, so it never clobbers a
/// concurrent change. Returns the object to carry on with: this one when the finalizer is there, the
/// patched one when it was just added (the pass goes on at once rather than wait for the watch to
/// bring the change back), or `None` when the patch lost to a newer version of the object: the cache
/// lagging behind our own earlier patch, or a person's edit. The watch is delivering that version,
/// and it starts the next pass; this is no failure to back off from.
pub async fn ensure_finalizer<K>(api: &Api<K>, object: Arc<K>) -> Result<Option<Arc<K>>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if object.finalizers().iter().any(|f| f == crate::crd::FINALIZER) {
        return Ok(Some(object));
    }
    let mut finalizers = object.finalizers().to_vec();
    finalizers.push(crate::crd::FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()},
    });
    match api
        .patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(patched) => Ok(Some(Arc::new(patched))),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_finalizer<K>(api: &Api<K>, object: &K) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let finalizers: Vec<&String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != crate::crd::FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()},
    });
    match api
        .patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: the finalizer's work is done.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
