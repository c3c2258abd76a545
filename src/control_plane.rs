//! Atlas's control-plane IP addresses: the sources Atlas calls AWS KMS from. A key policy (or VPC
//! endpoint policy) restricted with `aws:SourceIp` works only while it allows them, and Atlas changes
//! the list over time. The operator reads it once for all projects (`GET
//! /unauth/controlPlaneIPAddresses` is unauthenticated, so it has the client's anonymous budget of its
//! own) and again every refresh period; everything here but [`ControlPlaneWatch::run`] is pure.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::atlas::{AtlasClient, ControlPlaneIpAddresses};
use crate::aws::{Region, RoleArn};

/// How often the list is read again: Atlas announces changes well ahead, so hourly is plenty.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(3600);

/// The outbound AWS CIDRs Atlas uses in one region (the region of a key), sorted and deduplicated.
pub fn outbound_aws_cidrs(addresses: &ControlPlaneIpAddresses, region: Region) -> Vec<String> {
    let mut cidrs: Vec<String> = addresses
        .outbound
        .aws
        .get(region.aws_name())
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    cidrs.sort_unstable();
    cidrs.dedup();
    cidrs
}

/// The AWS regions whose outbound CIDRs differ between two reads.
pub fn changed_regions(before: &ControlPlaneIpAddresses, after: &ControlPlaneIpAddresses) -> Vec<String> {
    let normalized = |a: &ControlPlaneIpAddresses| -> BTreeMap<String, Vec<String>> {
        a.outbound
            .aws
            .iter()
            .map(|(region, cidrs)| {
                let mut cidrs = cidrs.clone();
                cidrs.sort_unstable();
                cidrs.dedup();
                (region.clone(), cidrs)
            })
            .collect()
    };
    let (before, after) = (normalized(before), normalized(after));
    let mut regions: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|r| before.get(*r) != after.get(*r))
        .cloned()
        .collect();
    regions.sort_unstable();
    regions.dedup();
    regions
}

/// A key-policy statement, ready to paste, that lets the IAM role Atlas assumes use the key from
/// exactly Atlas's control-plane CIDRs. A key policy that restricts `aws:SourceIp` needs it.
pub fn key_policy_statement(role: &RoleArn, cidrs: &[String]) -> Value {
    json!({
        "Sid": "AllowMongoDBAtlasControlPlane",
        "Effect": "Allow",
        "Principal": {"AWS": role.to_string()},
        "Action": ["kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"],
        "Resource": "*",
        "Condition": {"IpAddress": {"aws:SourceIp": cidrs}},
    })
}

/// What the last successful read said, shared by every reconcile.
#[derive(Clone, Debug)]
pub struct ControlPlaneWatch {
    latest: Arc<RwLock<Option<Arc<ControlPlaneIpAddresses>>>>,
    /// The count of reads that changed some region's CIDRs: what wakes the reconcilers (see
    /// [`ControlPlaneWatch::changes`]).
    revision: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for ControlPlaneWatch {
    fn default() -> Self {
        ControlPlaneWatch {
            latest: Arc::default(),
            revision: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl ControlPlaneWatch {
    /// The addresses of the last successful read; `None` until the first one.
    pub fn latest(&self) -> Option<Arc<ControlPlaneIpAddresses>> {
        self.latest.read().expect("never poisoned").clone()
    }

    /// The outbound CIDRs in `region` as last read; `None` before the first read.
    pub fn outbound_cidrs(&self, region: Region) -> Option<Vec<String>> {
        let addresses = self.latest()?;
        Some(outbound_aws_cidrs(&addresses, region))
    }

    /// Yields once for each later read that changes some region's CIDRs (never for the first read).
    pub fn changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let revisions = self.revision.subscribe();
        futures::stream::unfold(revisions, |mut revisions| async move {
            revisions.changed().await.ok().map(|()| ((), revisions))
        })
    }

    /// Stores a read and returns the AWS regions whose CIDRs changed since the previous one (none on
    /// the first read: nothing was promised before it).
    pub fn store(&self, addresses: ControlPlaneIpAddresses) -> Vec<String> {
        let mut latest = self.latest.write().expect("never poisoned");
        let changed = latest
            .as_deref()
            .map(|before| changed_regions(before, &addresses))
            .unwrap_or_default();
        *latest = Some(Arc::new(addresses));
        drop(latest);
        if !changed.is_empty() {
            self.revision.send_modify(|revision| *revision += 1);
        }
        changed
    }

    /// Reads the list now and then every `period`, forever; `on_change` hears the regions that changed.
    /// A failed read keeps the previous list and is tried again at the next period.
    pub async fn run(&self, atlas: AtlasClient, period: Duration, on_change: impl Fn(Vec<String>)) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match atlas.control_plane_ip_addresses().await {
                Ok(addresses) => {
                    let changed = self.store(addresses);
                    if !changed.is_empty() {
                        tracing::info!(regions = ?changed, "Atlas's control-plane IP addresses changed");
                        on_change(changed);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reading Atlas's control-plane IP addresses failed; keeping the last list")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(us_east_1: &[&str], eu_west_2: &[&str]) -> ControlPlaneIpAddresses {
        serde_json::from_value(json!({
            "inbound": {"aws": {"us-east-1": ["198.51.100.1/32"]}},
            "outbound": {"aws": {"us-east-1": us_east_1, "eu-west-2": eu_west_2}},
        }))
        .unwrap()
    }

    #[test]
    fn outbound_cidrs_are_the_key_regions_only_sorted_and_unique() {
        let a = addresses(
            &["192.0.2.2/32", "192.0.2.1/32", "192.0.2.2/32"],
            &["192.0.2.9/32"],
        );
        let region = Region::parse("us-east-1").unwrap();
        assert_eq!(
            outbound_aws_cidrs(&a, region),
            vec!["192.0.2.1/32", "192.0.2.2/32"]
        );
        assert!(outbound_aws_cidrs(&a, Region::parse("ap-south-1").unwrap()).is_empty());
    }

    #[test]
    fn a_change_names_only_the_regions_that_changed() {
        let before = addresses(&["192.0.2.1/32", "192.0.2.2/32"], &["192.0.2.9/32"]);
        let reordered = addresses(&["192.0.2.2/32", "192.0.2.1/32"], &["192.0.2.9/32"]);
        assert!(
            changed_regions(&before, &reordered).is_empty(),
            "order is not a change"
        );
        let moved = addresses(&["192.0.2.1/32", "192.0.2.3/32"], &["192.0.2.9/32"]);
        assert_eq!(changed_regions(&before, &moved), vec!["us-east-1"]);
        let mut gone = before.clone();
        gone.outbound.aws.remove("eu-west-2");
        assert_eq!(changed_regions(&before, &gone), vec!["eu-west-2"]);
    }

    #[test]
    fn the_watch_reports_changes_after_the_first_read() {
        let watch = ControlPlaneWatch::default();
        assert!(watch.latest().is_none());
        assert!(watch.store(addresses(&["192.0.2.1/32"], &[])).is_empty());
        assert!(watch.store(addresses(&["192.0.2.1/32"], &[])).is_empty());
        assert_eq!(watch.store(addresses(&["192.0.2.7/32"], &[])), vec!["us-east-1"]);
        assert_eq!(
            outbound_aws_cidrs(&watch.latest().unwrap(), Region::parse("us-east-1").unwrap()),
            vec!["192.0.2.7/32"]
        );
    }

    #[tokio::test]
    async fn the_changes_stream_yields_once_per_read_that_changed_something() {
        use futures::StreamExt;
        let watch = ControlPlaneWatch::default();
        let mut changes = Box::pin(watch.changes());
        watch.store(addresses(&["192.0.2.1/32"], &[]));
        watch.store(addresses(&["192.0.2.1/32"], &[]));
        assert!(
            futures::poll!(changes.next()).is_pending(),
            "neither the first read nor an unchanged one is a change"
        );
        watch.store(addresses(&["192.0.2.7/32"], &[]));
        assert_eq!(changes.next().await, Some(()));
        assert!(futures::poll!(changes.next()).is_pending());
        assert_eq!(
            watch.outbound_cidrs(Region::parse("us-east-1").unwrap()),
            Some(vec!["192.0.2.7/32".to_string()])
        );
    }

    #[test]
    fn the_key_policy_statement_allows_exactly_the_cidrs_for_the_role() {
        let role = RoleArn::parse("arn:aws:iam::123456789012:role/atlas-kms").unwrap();
        let cidrs = vec!["192.0.2.1/32".to_string(), "192.0.2.2/32".to_string()];
        let statement = key_policy_statement(&role, &cidrs);
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(
            statement["Principal"]["AWS"],
            "arn:aws:iam::123456789012:role/atlas-kms"
        );
        assert_eq!(
            statement["Condition"]["IpAddress"]["aws:SourceIp"],
            json!(["192.0.2.1/32", "192.0.2.2/32"])
        );
        assert_eq!(
            statement["Action"],
            json!(["kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"])
        );
    }
}
