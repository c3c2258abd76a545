//! ClusterEncryption driver.

use std::sync::Arc;

use kube::runtime::controller::Action;

use super::{Context, Result};
use crate::crd::ClusterEncryption;

pub async fn reconcile(_ce: Arc<ClusterEncryption>, _ctx: Arc<Context>) -> Result<Action> {
    Ok(Action::await_change())
}
