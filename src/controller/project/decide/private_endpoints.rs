//! Pure decisions about Atlas's Encryption at Rest private endpoints to AWS KMS: which regions want
//! one, which endpoints to create or delete, and how the pass waits for them.
//!
//! Order with the key PATCH: Atlas (and the Terraform provider's
//! `mongodbatlas_encryption_at_rest_private_endpoint`) make `requirePrivateNetworking: true` on the
//! project's encryption settings the prerequisite of creating an endpoint, so the PATCH goes first and
//! the endpoints follow; the project is Ready only once each is `ACTIVE`. Going back, the endpoints are
//! deleted first and the requirement (or encryption itself) is turned off only once they are gone:
//! Atlas refuses to turn encryption off while endpoints exist.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::messages;
use crate::atlas::{AtlasError, EarPrivateEndpoint, EncryptionAtRest, PrivateEndpointStatus};
use crate::aws::Region;
use crate::controller::{Step, patient_delay, waited_since};
use crate::crd::{AwsKmsSpec, KmsPrivateEndpointStatus, ProjectEncryptionStatus};
use crate::status::{self, Outcome, reasons};

/// The regions that get an endpoint: the key's, then the spec's others in their order, each once. An
/// entry that does not parse was refused by admission; one stored before is skipped.
pub fn endpoint_regions(spec: &AwsKmsSpec, key_region: Region) -> Vec<Region> {
    let mut regions = vec![key_region];
    for region in spec
        .private_endpoint_regions
        .iter()
        .filter_map(|r| Region::parse(r).ok())
    {
        if !regions.contains(&region) {
            regions.push(region);
        }
    }
    regions
}

/// Whether the endpoints must be read on a pass that wants none: Atlas still requires private
/// networking, or the last pass saw endpoints. Otherwise a converged project costs no read for them.
pub fn endpoints_may_remain(atlas: Option<&EncryptionAtRest>, previous: &ProjectEncryptionStatus) -> bool {
    let atlas_requires = atlas
        .and_then(|atlas| atlas.aws_kms.as_ref())
        .is_some_and(|k| k.require_private_networking == Some(true));
    atlas_requires || !previous.private_endpoints.is_empty()
}

/// Atlas refused to turn encryption off for endpoints the list no longer shows (gone since): look
/// again soon.
pub fn disable_refused_for_endpoints(error: &AtlasError) -> Step {
    Step::new(
        Outcome::progressing(
            reasons::AWAITING_PRIVATE_ENDPOINTS,
            messages::disable_refused(error),
        ),
        ENDPOINTS_FIRST_LOOK,
    )
}

/// The endpoint writes a pass makes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointWrites {
    /// Wanted regions without an endpoint (a `DELETING` one does not count; the new one waits for it).
    pub create: Vec<Region>,
    /// Endpoints in regions not wanted, not already being deleted.
    pub delete: Vec<EarPrivateEndpoint>,
}

pub fn endpoint_writes(wanted: &[Region], listed: &[EarPrivateEndpoint]) -> EndpointWrites {
    let deleting = |e: &EarPrivateEndpoint| e.status == PrivateEndpointStatus::Deleting;
    let create = wanted
        .iter()
        .filter(|region| !listed.iter().any(|e| e.region() == Some(**region)))
        .copied()
        .collect();
    let delete = listed
        .iter()
        .filter(|e| !deleting(e) && !e.region().is_some_and(|r| wanted.contains(&r)))
        .cloned()
        .collect();
    EndpointWrites { create, delete }
}

/// The endpoints as they stand once `writes` were made: the deleted ones `DELETING`, the created ones
/// as Atlas answered.
pub fn after_writes(
    mut listed: Vec<EarPrivateEndpoint>,
    deleted: &[String],
    created: Vec<EarPrivateEndpoint>,
) -> Vec<EarPrivateEndpoint> {
    for endpoint in listed.iter_mut().filter(|e| deleted.contains(&e.id)) {
        endpoint.status = PrivateEndpointStatus::Deleting;
    }
    listed.extend(created);
    listed
}

/// `status.privateEndpoints`: each endpoint as Atlas reports it, by region.
pub fn endpoint_statuses(endpoints: &[EarPrivateEndpoint]) -> Vec<KmsPrivateEndpointStatus> {
    let mut statuses: Vec<KmsPrivateEndpointStatus> = endpoints
        .iter()
        .map(|e| KmsPrivateEndpointStatus {
            region: e.region().map_or_else(
                || e.region_name.clone().unwrap_or_default(),
                |r| r.aws_name().to_string(),
            ),
            id: e.id.clone(),
            state: e.status.as_str().to_string(),
            error_message: e.error_message.clone(),
        })
        .collect();
    statuses.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
    statuses
}

/// The first look at endpoints Atlas is creating or deleting. Atlas takes minutes; the look after
/// grows with the wait (see [`patient_delay`]).
const ENDPOINTS_FIRST_LOOK: Duration = Duration::from_secs(5);

/// How the pass ends while the endpoints are not as wanted; `None` once every wanted region has an
/// `ACTIVE` endpoint and no other endpoint is left. A `FAILED` endpoint stalls with Atlas's message; any
/// other state (`INITIATING`, `PENDING_RECREATION`, `DELETING`, ...) is a wait.
pub fn endpoints_step(
    wanted: &[Region],
    endpoints: &[EarPrivateEndpoint],
    previous: &ProjectEncryptionStatus,
    now: Timestamp,
) -> Option<Step> {
    let is_wanted = |e: &&EarPrivateEndpoint| e.region().is_some_and(|r| wanted.contains(&r));
    if let Some(failed) = endpoints
        .iter()
        .filter(is_wanted)
        .find(|e| e.status == PrivateEndpointStatus::Failed)
    {
        return Some(Step::stalled(
            reasons::PRIVATE_ENDPOINT_FAILED,
            messages::private_endpoint_failed(failed),
        ));
    }
    let waiting: Vec<&EarPrivateEndpoint> = endpoints
        .iter()
        .filter(|e| !is_wanted(e) || e.status != PrivateEndpointStatus::Active)
        .collect();
    let missing = wanted
        .iter()
        .any(|region| !endpoints.iter().any(|e| e.region() == Some(*region)));
    if waiting.is_empty() && !missing {
        return None;
    }
    let since = status::find(&previous.conditions, reasons::READY)
        .filter(|c| c.reason == reasons::AWAITING_PRIVATE_ENDPOINTS)
        .map(|c| c.last_transition_time.0);
    let message = if wanted.is_empty() {
        messages::private_endpoints_deleting(&waiting)
    } else {
        messages::private_endpoints_pending(&waiting)
    };
    Some(Step::new(
        Outcome::progressing(reasons::AWAITING_PRIVATE_ENDPOINTS, message),
        patient_delay(waited_since(since, now), ENDPOINTS_FIRST_LOOK),
    ))
}

/// The step a key pass ends with: the key's verdict, unless the key is fine and the endpoints are not.
pub fn with_endpoints(validity: Step, endpoints: Option<Step>) -> Step {
    match endpoints {
        Some(endpoints) if validity.outcome.is_ready() => endpoints,
        _ => validity,
    }
}

/// Atlas refused to turn encryption off because private endpoints exist: delete them, not retry.
pub fn disable_blocked_by_endpoints(error: &AtlasError) -> bool {
    error.is_error_code("CANNOT_DISABLE_ENCRYPTION_AT_REST_DUE_TO_PRIVATE_ENDPOINTS")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    fn region(name: &str) -> Region {
        Region::parse(name).unwrap()
    }

    fn endpoint(id: &str, region: &str, status: PrivateEndpointStatus) -> EarPrivateEndpoint {
        EarPrivateEndpoint {
            id: id.into(),
            cloud_provider: Some("AWS".into()),
            region_name: Some(Region::parse(region).map_or(region, |r| r.atlas_name()).into()),
            status,
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn spec(regions: &[&str]) -> AwsKmsSpec {
        serde_json::from_value(serde_json::json!({
            "region": "eu-west-2",
            "privateEndpointRegions": regions,
        }))
        .unwrap()
    }

    use PrivateEndpointStatus::{Active, Deleting, Failed, Initiating, PendingRecreation};

    #[test]
    fn the_key_region_comes_first_and_each_region_once() {
        let key = region("eu-west-2");
        assert_eq!(endpoint_regions(&spec(&[]), key), vec![key]);
        assert_eq!(
            endpoint_regions(&spec(&["us-east-1", "eu-west-2", "us-east-1"]), key),
            vec![key, region("us-east-1")]
        );
    }

    /// A table row: name, wanted regions, endpoints listed, (regions created, ids deleted).
    type Case = (
        &'static str,
        Vec<Region>,
        Vec<EarPrivateEndpoint>,
        (Vec<Region>, Vec<&'static str>),
    );

    #[test]
    fn writes_create_the_missing_and_delete_the_unwanted() {
        let (eu, us) = (region("eu-west-2"), region("us-east-1"));
        let cases: Vec<Case> = vec![
            (
                "none yet: one per wanted region",
                vec![eu, us],
                vec![],
                (vec![eu, us], vec![]),
            ),
            (
                "each region has one, in any state: nothing to write",
                vec![eu, us],
                vec![
                    endpoint("a", "eu-west-2", Failed),
                    endpoint("b", "us-east-1", Initiating),
                ],
                (vec![], vec![]),
            ),
            (
                "a region removed from the spec: its endpoint is deleted",
                vec![eu],
                vec![
                    endpoint("a", "eu-west-2", Active),
                    endpoint("b", "us-east-1", Active),
                ],
                (vec![], vec!["b"]),
            ),
            (
                "none wanted: every one deleted, a deleting one left to finish",
                vec![],
                vec![
                    endpoint("a", "eu-west-2", Active),
                    endpoint("b", "us-east-1", Deleting),
                ],
                (vec![], vec!["a"]),
            ),
            (
                "a wanted region whose endpoint is being deleted waits for it to go",
                vec![eu],
                vec![endpoint("a", "eu-west-2", Deleting)],
                (vec![], vec![]),
            ),
        ];
        for (name, wanted, listed, (create, delete)) in cases {
            let writes = endpoint_writes(&wanted, &listed);
            assert_eq!(writes.create, create, "{name}");
            let deleted: Vec<&str> = writes.delete.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(deleted, delete, "{name}");
        }
    }

    #[test]
    fn after_writes_shows_deleted_as_deleting_and_the_created() {
        let created = endpoint("c", "us-east-1", Initiating);
        let endpoints = after_writes(
            vec![
                endpoint("a", "eu-west-2", Active),
                endpoint("b", "ap-south-1", Active),
            ],
            &["b".into()],
            vec![created.clone()],
        );
        assert_eq!(endpoints[1].status, Deleting);
        assert_eq!(endpoints[2], created);
        let statuses = endpoint_statuses(&endpoints);
        let regions: Vec<&str> = statuses.iter().map(|s| s.region.as_str()).collect();
        assert_eq!(regions, ["ap-south-1", "eu-west-2", "us-east-1"]);
        assert_eq!(statuses[0].state, "DELETING");
    }

    #[test]
    fn the_step_waits_stalls_or_lets_the_key_decide() {
        let (eu, us) = (region("eu-west-2"), region("us-east-1"));
        let previous = ProjectEncryptionStatus::default();
        let step = |wanted: &[Region], endpoints: &[EarPrivateEndpoint]| {
            endpoints_step(wanted, endpoints, &previous, now()).map(|s| s.outcome)
        };
        let all_active = [
            endpoint("a", "eu-west-2", Active),
            endpoint("b", "us-east-1", Active),
        ];
        assert_eq!(step(&[eu, us], &all_active), None, "every endpoint active");
        assert_eq!(step(&[], &[]), None, "none wanted, none left");

        let failed = EarPrivateEndpoint {
            error_message: Some("quota exceeded for VPC endpoints".into()),
            ..endpoint("b", "us-east-1", Failed)
        };
        let stalled = step(&[eu, us], &[all_active[0].clone(), failed]).unwrap();
        assert!(matches!(stalled, Outcome::Stalled { .. }), "{stalled:?}");
        assert_eq!(stalled.reason(), reasons::PRIVATE_ENDPOINT_FAILED);
        assert!(stalled.message().contains("quota exceeded for VPC endpoints"));
        assert!(stalled.message().contains("us-east-1"));

        for state in [Initiating, PendingRecreation, Deleting] {
            let waiting = step(&[eu], &[endpoint("a", "eu-west-2", state)]).unwrap();
            assert!(matches!(waiting, Outcome::Progressing { .. }), "{state:?}");
            assert_eq!(waiting.reason(), reasons::AWAITING_PRIVATE_ENDPOINTS);
            assert!(waiting.message().contains(state.as_str()), "{waiting:?}");
        }
        let missing = step(&[eu, us], &all_active[..1]).unwrap();
        assert_eq!(missing.reason(), reasons::AWAITING_PRIVATE_ENDPOINTS);
        let removing = step(&[], &[endpoint("a", "eu-west-2", Deleting)]).unwrap();
        assert_eq!(removing.reason(), reasons::AWAITING_PRIVATE_ENDPOINTS);
        assert!(removing.message().contains("deleting"), "{removing:?}");
        let unwanted_left = step(
            &[eu],
            &[all_active[0].clone(), endpoint("b", "us-east-1", Deleting)],
        );
        assert!(
            unwanted_left.is_some(),
            "an endpoint still being deleted is waited for"
        );
    }

    #[test]
    fn the_wait_grows_with_the_time_since_it_began() {
        let waiting = [endpoint("a", "eu-west-2", Initiating)];
        let eu = [region("eu-west-2")];
        let first = endpoints_step(&eu, &waiting, &ProjectEncryptionStatus::default(), now()).unwrap();
        assert_eq!(first.requeue, ENDPOINTS_FIRST_LOOK);
        let began = Condition {
            type_: reasons::READY.into(),
            status: "False".into(),
            reason: reasons::AWAITING_PRIVATE_ENDPOINTS.into(),
            message: String::new(),
            last_transition_time: Time(now().checked_sub(jiff_secs(400)).unwrap()),
            observed_generation: None,
        };
        let previous = ProjectEncryptionStatus {
            conditions: vec![began],
            ..Default::default()
        };
        let later = endpoints_step(&eu, &waiting, &previous, now()).unwrap();
        assert_eq!(later.requeue, Duration::from_secs(100));
    }

    fn jiff_secs(s: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_secs(s)
    }

    #[test]
    fn the_key_verdict_comes_first_unless_it_is_ready() {
        let ready = || {
            Step::new(
                Outcome::ready(reasons::RECONCILED, "ok"),
                Duration::from_secs(600),
            )
        };
        let waiting = || {
            Step::new(
                Outcome::progressing(reasons::AWAITING_PRIVATE_ENDPOINTS, "w"),
                Duration::from_secs(5),
            )
        };
        let invalid = || Step::stalled(reasons::KEY_INVALID, "bad");
        assert_eq!(
            with_endpoints(ready(), None).outcome.reason(),
            reasons::RECONCILED
        );
        assert_eq!(
            with_endpoints(ready(), Some(waiting())).outcome.reason(),
            reasons::AWAITING_PRIVATE_ENDPOINTS
        );
        assert_eq!(
            with_endpoints(invalid(), Some(waiting())).outcome.reason(),
            reasons::KEY_INVALID
        );
    }
}
