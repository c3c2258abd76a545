//! Pure decisions of the ProjectEncryption reconciler: given the desired spec and what Atlas reports,
//! which single next step to take. No I/O here, so every branch is unit-tested; the driver in
//! `project.rs` only fetches, calls these, and carries out the answer.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::atlas::{AwsIamRole, AwsKmsConfig, AwsKmsPatch};
use crate::aws::{KeyRef, Region, RoleArn};
use crate::crd::AtlasRoleStatus;

/// What to do about the Atlas cloud-provider-access role.
#[derive(Clone, Debug, PartialEq)]
pub enum RoleStep {
    /// This role is authorized for the IAM role we want: use it.
    Use(AwsIamRole),
    /// Authorize this role with the IAM role ARN (the trust policy may not be in place yet).
    Authorize { role: AwsIamRole, role_arn: RoleArn },
    /// No usable role exists: create one.
    Create,
    /// The user named an Atlas role that does not exist.
    NamedRoleMissing { role_id: String },
    /// The user named an Atlas role that is not authorized, and gave no IAM role to authorize it with.
    NamedRoleUnauthorized { role_id: String },
}

/// Chooses the role, preferring in order: the role the user named, the one recorded in status (so a
/// restart never creates a second), one already authorized for `roleArn`, and an unauthorized unused
/// role (left behind when the operator stopped between creating a role and recording it).
pub fn role_step(
    atlas_role_id: Option<&str>,
    role_arn: Option<&RoleArn>,
    recorded_role_id: Option<&str>,
    roles: &[AwsIamRole],
) -> RoleStep {
    let find = |id: &str| roles.iter().find(|r| r.role_id == id).cloned();
    let wanted = |role: AwsIamRole| match role_arn {
        Some(arn) if role.role_arn().as_ref() != Some(arn) => RoleStep::Authorize {
            role,
            role_arn: arn.clone(),
        },
        _ if role.is_authorized() => RoleStep::Use(role),
        _ => RoleStep::NamedRoleUnauthorized {
            role_id: role.role_id.clone(),
        },
    };

    if let Some(id) = atlas_role_id {
        return match find(id) {
            Some(role) => wanted(role),
            None => RoleStep::NamedRoleMissing {
                role_id: id.to_string(),
            },
        };
    }
    let Some(arn) = role_arn else {
        // Admission requires roleArn or atlasRoleId whenever a role is needed.
        return RoleStep::Create;
    };
    if let Some(role) = recorded_role_id.and_then(find) {
        return wanted(role);
    }
    if let Some(role) = roles
        .iter()
        .find(|r| r.is_authorized() && r.role_arn().as_ref() == Some(arn))
    {
        return RoleStep::Use(role.clone());
    }
    let orphan = roles
        .iter()
        .filter(|r| !r.is_authorized() && r.feature_usages.is_empty())
        .max_by_key(|r| r.created_date);
    match orphan {
        Some(role) => RoleStep::Authorize {
            role: role.clone(),
            role_arn: arn.clone(),
        },
        None => RoleStep::Create,
    }
}

/// The role recorded in status, when it can be used without listing Atlas's roles: it is authorized for
/// the IAM role the spec names (or is the Atlas role the spec names), and Atlas, just read, reports the
/// key in force valid, which it cannot be without a working role. Anything else lists the roles.
pub fn recorded_role_in_use(
    atlas_role_id: Option<&str>,
    role_arn: Option<&RoleArn>,
    recorded: Option<&AtlasRoleStatus>,
    atlas_reports_valid: bool,
) -> Option<AwsIamRole> {
    let recorded = recorded.filter(|r| r.authorized && r.authorized_at.is_some() && atlas_reports_valid)?;
    let matches = match (atlas_role_id, role_arn) {
        (Some(id), _) => id == recorded.role_id,
        (None, Some(arn)) => recorded.iam_role_arn.as_deref() == Some(arn.to_string().as_str()),
        (None, None) => false,
    };
    matches.then(|| AwsIamRole {
        role_id: recorded.role_id.clone(),
        atlas_aws_account_arn: recorded.atlas_aws_account_arn.clone(),
        atlas_assumed_role_external_id: recorded.external_id.clone(),
        iam_assumed_role_arn: recorded.iam_role_arn.clone(),
        authorized_date: recorded
            .authorized_at
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0)),
        ..Default::default()
    })
}

/// The role recorded in status that this operator created and is waiting to see trusted, with the IAM
/// role to authorize it for: no Atlas role named in the spec, a `roleArn`, and the recorded role not
/// authorized. Such a role can only need authorizing, so the pass tries that first without listing.
pub fn pending_authorization(
    atlas_role_id: Option<&str>,
    role_arn: Option<&RoleArn>,
    recorded: Option<&AtlasRoleStatus>,
) -> Option<(AwsIamRole, RoleArn)> {
    let (None, Some(arn), Some(recorded)) = (atlas_role_id, role_arn, recorded) else {
        return None;
    };
    (!recorded.authorized).then(|| {
        (
            AwsIamRole {
                role_id: recorded.role_id.clone(),
                atlas_aws_account_arn: recorded.atlas_aws_account_arn.clone(),
                atlas_assumed_role_external_id: recorded.external_id.clone(),
                ..Default::default()
            },
            arn.clone(),
        )
    })
}

/// The share of the Atlas rate budget that re-reading converged objects may take. The rest stays free
/// for changes, so a large fleet converging or rotating is never starved by its own resyncs.
pub const RESYNC_BUDGET_SHARE: f64 = 0.25;

/// How often each converged object is re-read from Atlas: the configured period, stretched when
/// `objects` reads per period (one per converged object) would take more than
/// [`RESYNC_BUDGET_SHARE`] of `rate_per_second`. At 6,000 objects and 100 calls/s a 60 s resync would
/// be the whole budget; it becomes 240 s.
pub fn resync_period(configured: Duration, objects: usize, rate_per_second: f64) -> Duration {
    let floor = objects as f64 / (RESYNC_BUDGET_SHARE * rate_per_second);
    if floor.is_finite() && floor > configured.as_secs_f64() {
        Duration::from_secs(floor.ceil() as u64)
    } else {
        configured
    }
}

/// Per object, when its next look is due and a fingerprint of what could make an earlier look worth
/// it. A reconcile's own status write comes back as a watch event; answering it with the rest of the
/// wait instead of a second pass over Atlas halves the calls of every change and keeps a converged
/// object quiet until its resync. A change to the fingerprint (spec, labels, annotations, or for a
/// cluster its project's state) opens the gate at once.
#[derive(Default)]
pub struct WakeGate {
    entries: Mutex<HashMap<String, GateEntry>>,
}

#[derive(Clone, Copy, Debug)]
struct GateEntry {
    fingerprint: u64,
    due: Instant,
    failures: u32,
}

impl WakeGate {
    /// How long the object still has to wait, or `None` when it should be reconciled now.
    pub fn wait(&self, key: &str, fingerprint: u64, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(key)?;
        (entry.fingerprint == fingerprint && entry.due > now).then(|| entry.due - now)
    }

    /// A reconcile finished and wants the next look after `after`.
    pub fn finished(&self, key: &str, fingerprint: u64, now: Instant, after: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(
            key.to_string(),
            GateEntry {
                fingerprint,
                due: now + after,
                failures: 0,
            },
        );
    }

    /// A reconcile failed: quiet for [`failure_backoff`] (the controller's own backoff), at least
    /// `retry_after`. Returns the delay.
    pub fn failed(
        &self,
        key: &str,
        fingerprint: u64,
        now: Instant,
        retry_after: Option<Duration>,
    ) -> Duration {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let failures = entries
            .get(key)
            .map(|e| e.failures)
            .unwrap_or(0)
            .saturating_add(1);
        let delay = failure_backoff(failures).max(retry_after.unwrap_or_default());
        entries.insert(
            key.to_string(),
            GateEntry {
                fingerprint,
                due: now + delay,
                failures,
            },
        );
        delay
    }

    pub fn forget(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The wait after an object's `failures`-th reconcile failure in a row: 1 s doubling to 5 min. The
/// errors that get here are transient (a person's part is a Stalled status, not an error), and most
/// clear within seconds (a dropped connection, an Atlas 503, an API server restart), so the first
/// retries come soon; the doubling keeps a long outage cheap.
pub fn failure_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(9);
    Duration::from_secs((1u64 << doublings).min(300))
}

/// A stable fingerprint of anything hashable.
pub fn fingerprint(value: impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// `clustersUsingKey` without reading Atlas: the managed clusters as their ClusterEncryptions last saw
/// them (name, uses the key), plus the unmanaged names of the last list. Sorted, so it is stable.
pub fn clusters_using_key(previous: &[String], managed: &[(String, bool)]) -> Vec<String> {
    let mut using: Vec<String> = previous
        .iter()
        .filter(|name| !managed.iter().any(|(m, _)| m == *name))
        .cloned()
        .chain(managed.iter().filter(|(_, uses)| *uses).map(|(m, _)| m.clone()))
        .collect();
    using.sort();
    using.dedup();
    using
}

/// What the desired key assignment needs from Atlas.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyStep {
    /// Atlas already has it.
    InPlace,
    /// Send this PATCH. `rotation` is set when it replaces a key that was in force.
    Patch { patch: AwsKmsPatch, rotation: bool },
}

/// Compares the desired key with Atlas's `awsKms`. `roleId` is write-only in Atlas, so whether the role
/// changed is judged against the role the operator last assigned (`assigned_role_id`).
pub fn key_step(
    key: &KeyRef,
    region: Region,
    role_id: &str,
    require_private_networking: bool,
    atlas: Option<&AwsKmsConfig>,
    assigned_role_id: Option<&str>,
) -> KeyStep {
    let Some(current) = atlas.filter(|c| c.is_enabled()) else {
        return KeyStep::Patch {
            patch: AwsKmsPatch::enable(key, region, role_id, require_private_networking),
            rotation: false,
        };
    };
    let mut patch = AwsKmsPatch::default();
    let current_key = current.key();
    let key_changed = !current_key.as_ref().is_some_and(|k| k.same_key(key));
    if key_changed {
        patch.customer_master_key_id = Some(key.to_string());
    }
    if current.region() != Some(region) {
        patch.region = Some(region);
    }
    if assigned_role_id.is_some_and(|assigned| assigned != role_id) {
        patch.role_id = Some(role_id.to_string());
    }
    if current.require_private_networking.unwrap_or(false) != require_private_networking {
        patch.require_private_networking = Some(require_private_networking);
    }
    if patch.is_empty() {
        return KeyStep::InPlace;
    }
    // A key change alone is a rotation; when the region changes too, Atlas needs the role with it.
    if patch.region.is_some() && patch.role_id.is_none() {
        patch.role_id = Some(role_id.to_string());
    }
    KeyStep::Patch {
        patch,
        rotation: key_changed && current_key.is_some(),
    }
}

/// The trust policy the customer's IAM role needs so Atlas can assume it.
pub fn trust_policy(atlas_aws_account_arn: &str, external_id: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": atlas_aws_account_arn},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }],
    })
}

/// The permissions the customer's IAM role needs on the key.
pub fn permission_policy(key_arn: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"],
            "Resource": [key_arn],
        }],
    })
}

/// Go-style durations as the CRD admits them (`2160h`, `720h30m`, `90m`, `1.5h`).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn resync_period_stretches_only_when_resyncs_would_crowd_the_budget() {
        let minute = Duration::from_secs(60);
        // 600 objects a minute at 100/s is 10/s: a tenth of the budget, the period stands.
        assert_eq!(resync_period(minute, 600, 100.0), minute);
        // 6,000 a minute would be the whole budget: a quarter of it allows one per 240 s.
        assert_eq!(resync_period(minute, 6_000, 100.0), Duration::from_secs(240));
        // The default 10 min at the default 5/s serves 750 objects; 3,000 need 40 min.
        assert_eq!(
            resync_period(Duration::from_secs(600), 750, 5.0),
            Duration::from_secs(600)
        );
        assert_eq!(
            resync_period(Duration::from_secs(600), 3_000, 5.0),
            Duration::from_secs(2_400)
        );
        assert_eq!(resync_period(minute, 0, 100.0), minute);
    }

    const ARN: &str = "arn:aws:iam::123456789012:role/atlas-kms";
    const KEY: &str = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn role(id: &str, authorized_for: Option<&str>, created: i64) -> AwsIamRole {
        AwsIamRole {
            role_id: id.to_string(),
            iam_assumed_role_arn: authorized_for.map(str::to_string),
            authorized_date: authorized_for.map(|_| Utc.timestamp_opt(created + 10, 0).unwrap()),
            created_date: Some(Utc.timestamp_opt(created, 0).unwrap()),
            ..Default::default()
        }
    }

    fn arn() -> RoleArn {
        RoleArn::parse(ARN).unwrap()
    }

    fn recorded(authorized: bool) -> AtlasRoleStatus {
        AtlasRoleStatus {
            role_id: "r1".into(),
            atlas_aws_account_arn: Some("arn:aws:iam::536727724300:root".into()),
            external_id: Some("ext".into()),
            iam_role_arn: Some(ARN.into()),
            authorized,
            authorized_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            )),
        }
    }

    #[test]
    fn the_recorded_role_is_reused_only_while_authorized_for_the_spec_and_the_key_valid() {
        let ok = recorded(true);
        let role = recorded_role_in_use(None, Some(&arn()), Some(&ok), true).unwrap();
        assert_eq!(role.role_id, "r1");
        assert_eq!(role.iam_assumed_role_arn.as_deref(), Some(ARN));
        assert!(role.is_authorized());
        assert_eq!(
            role_step(None, Some(&arn()), Some("r1"), std::slice::from_ref(&role)),
            RoleStep::Use(role.clone())
        );
        assert!(recorded_role_in_use(None, Some(&arn()), Some(&ok), false).is_none());
        assert!(recorded_role_in_use(None, Some(&arn()), Some(&recorded(false)), true).is_none());
        assert!(recorded_role_in_use(None, Some(&arn()), None, true).is_none());
        let other = RoleArn::parse("arn:aws:iam::123456789012:role/other").unwrap();
        assert!(recorded_role_in_use(None, Some(&other), Some(&ok), true).is_none());
        assert!(recorded_role_in_use(Some("r1"), None, Some(&ok), true).is_some());
        assert!(recorded_role_in_use(Some("r2"), None, Some(&ok), true).is_none());
    }

    #[test]
    fn only_our_unauthorized_recorded_role_is_authorized_without_a_list() {
        let (role, role_arn) = pending_authorization(None, Some(&arn()), Some(&recorded(false))).unwrap();
        assert_eq!(role.role_id, "r1");
        assert_eq!(role.atlas_assumed_role_external_id.as_deref(), Some("ext"));
        assert!(!role.is_authorized());
        assert_eq!(role_arn, arn());
        // The same role listed from Atlas would be authorized for the spec's IAM role too.
        assert_eq!(
            role_step(None, Some(&arn()), Some("r1"), std::slice::from_ref(&role)),
            RoleStep::Authorize {
                role: role.clone(),
                role_arn: arn()
            }
        );
        assert!(pending_authorization(None, Some(&arn()), Some(&recorded(true))).is_none());
        assert!(pending_authorization(None, Some(&arn()), None).is_none());
        assert!(pending_authorization(None, None, Some(&recorded(false))).is_none());
        assert!(
            pending_authorization(Some("r1"), Some(&arn()), Some(&recorded(false))).is_none(),
            "a role the user named is checked against Atlas's list"
        );
    }

    #[test]
    fn clusters_using_key_follows_managed_clusters_and_keeps_unmanaged_ones() {
        let previous = vec!["legacy".to_string(), "b".to_string()];
        let managed = vec![
            ("b".to_string(), false),
            ("a".to_string(), true),
            ("c".to_string(), true),
        ];
        assert_eq!(clusters_using_key(&previous, &managed), vec!["a", "c", "legacy"]);
        assert!(clusters_using_key(&[], &[]).is_empty());
    }

    #[test]
    fn the_wake_gate_holds_own_status_writes_until_due_and_opens_on_change() {
        let gate = WakeGate::default();
        let t0 = Instant::now();
        assert_eq!(gate.wait("a", 1, t0), None);
        gate.finished("a", 1, t0, Duration::from_secs(60));
        assert_eq!(
            gate.wait("a", 1, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(
            gate.wait("a", 2, t0 + Duration::from_secs(10)),
            None,
            "spec changed"
        );
        assert_eq!(gate.wait("a", 1, t0 + Duration::from_secs(60)), None, "due");
        assert_eq!(gate.wait("b", 1, t0), None);
        gate.forget("a");
        assert_eq!(gate.wait("a", 1, t0), None);
    }

    #[test]
    fn failures_back_off_from_one_second_doubling_to_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| failure_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(failure_backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn the_wake_gate_backs_off_failures_and_honours_retry_after() {
        let gate = WakeGate::default();
        let t0 = Instant::now();
        assert_eq!(gate.failed("a", 1, t0, None), Duration::from_secs(1));
        assert_eq!(gate.failed("a", 1, t0, None), Duration::from_secs(2));
        assert_eq!(gate.failed("a", 1, t0, None), Duration::from_secs(4));
        assert_eq!(
            gate.failed("a", 1, t0, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        for _ in 0..10 {
            gate.failed("a", 1, t0, None);
        }
        assert_eq!(gate.failed("a", 1, t0, None), Duration::from_secs(300));
        gate.finished("a", 1, t0, Duration::from_secs(1));
        assert_eq!(
            gate.failed("a", 1, t0, None),
            Duration::from_secs(1),
            "success resets"
        );
        assert_eq!(fingerprint(("x", 1)), fingerprint(("x", 1)));
        assert_ne!(fingerprint(("x", 1)), fingerprint(("x", 2)));
    }

    #[test]
    fn creates_a_role_only_when_none_is_usable() {
        assert_eq!(role_step(None, Some(&arn()), None, &[]), RoleStep::Create);
        let in_use = AwsIamRole {
            feature_usages: vec![crate::atlas::FeatureUsage {
                feature_type: "EXPORT_SNAPSHOT".into(),
                feature_id: None,
            }],
            ..role("a", None, 1)
        };
        assert_eq!(role_step(None, Some(&arn()), None, &[in_use]), RoleStep::Create);
    }

    #[test]
    fn the_recorded_role_wins_so_a_restart_never_creates_a_second() {
        let roles = [role("old", None, 1), role("mine", None, 2)];
        match role_step(None, Some(&arn()), Some("old"), &roles) {
            RoleStep::Authorize { role, .. } => assert_eq!(role.role_id, "old"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_orphaned_unauthorized_role_is_reused_instead_of_creating_another() {
        let roles = [role("first", None, 1), role("latest", None, 5)];
        match role_step(None, Some(&arn()), None, &roles) {
            RoleStep::Authorize { role, role_arn } => {
                assert_eq!(role.role_id, "latest");
                assert_eq!(role_arn, arn());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_role_authorized_for_the_wanted_arn_is_used_without_a_write() {
        let roles = [
            role("other", Some("arn:aws:iam::123456789012:role/other"), 1),
            role("r", Some(ARN), 2),
        ];
        assert!(matches!(role_step(None, Some(&arn()), None, &roles), RoleStep::Use(r) if r.role_id == "r"));
        assert!(matches!(
            role_step(None, Some(&arn()), Some("r"), &roles),
            RoleStep::Use(_)
        ));
    }

    #[test]
    fn a_named_role_is_adopted_as_is() {
        let roles = [role("named", Some("arn:aws:iam::123456789012:role/other"), 1)];
        assert!(matches!(
            role_step(Some("named"), None, None, &roles),
            RoleStep::Use(_)
        ));
        assert_eq!(
            role_step(Some("gone"), None, None, &roles),
            RoleStep::NamedRoleMissing {
                role_id: "gone".into()
            }
        );
        let unauthorized = [role("named", None, 1)];
        assert_eq!(
            role_step(Some("named"), None, None, &unauthorized),
            RoleStep::NamedRoleUnauthorized {
                role_id: "named".into()
            }
        );
        assert!(matches!(
            role_step(Some("named"), Some(&arn()), None, &unauthorized),
            RoleStep::Authorize { .. }
        ));
    }

    fn atlas(key: &str, region: &str) -> AwsKmsConfig {
        AwsKmsConfig {
            enabled: Some(true),
            customer_master_key_id: Some(key.into()),
            region: Some(region.into()),
            valid: Some(true),
            ..Default::default()
        }
    }

    fn key(text: &str) -> KeyRef {
        KeyRef::parse(text).unwrap()
    }

    fn region() -> Region {
        Region::parse("eu-west-2").unwrap()
    }

    #[test]
    fn first_enable_sends_the_whole_object() {
        let step = key_step(&key(KEY), region(), "r1", false, None, None);
        let KeyStep::Patch { patch, rotation } = step else {
            panic!()
        };
        assert!(!rotation);
        assert_eq!(patch, AwsKmsPatch::enable(&key(KEY), region(), "r1", false));
        let disabled = AwsKmsConfig {
            enabled: Some(false),
            ..Default::default()
        };
        assert!(matches!(
            key_step(&key(KEY), region(), "r1", false, Some(&disabled), None),
            KeyStep::Patch { .. }
        ));
    }

    #[test]
    fn equal_state_in_other_spellings_needs_no_write() {
        // Atlas echoes the Atlas region enum and may hold the bare key id: neither is a difference.
        let current = atlas("1234ABCD-12ab-34cd-56ef-1234567890ab", "EU_WEST_2");
        assert_eq!(
            key_step(&key(KEY), region(), "r1", false, Some(&current), Some("r1")),
            KeyStep::InPlace
        );
    }

    #[test]
    fn a_new_key_is_a_rotation_sending_only_the_key() {
        let current = atlas(KEY, "EU_WEST_2");
        let new_key = key("arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ff");
        let KeyStep::Patch { patch, rotation } =
            key_step(&new_key, region(), "r1", false, Some(&current), Some("r1"))
        else {
            panic!()
        };
        assert!(rotation);
        assert_eq!(patch, AwsKmsPatch::rotate_key(&new_key));
    }

    #[test]
    fn role_and_networking_changes_are_patched_alone() {
        let current = atlas(KEY, "EU_WEST_2");
        let KeyStep::Patch { patch, rotation } =
            key_step(&key(KEY), region(), "r2", true, Some(&current), Some("r1"))
        else {
            panic!()
        };
        assert!(!rotation);
        assert_eq!(patch.role_id.as_deref(), Some("r2"));
        assert_eq!(patch.require_private_networking, Some(true));
        assert!(patch.customer_master_key_id.is_none());
    }

    #[test]
    fn policies_name_the_principal_external_id_and_key() {
        let trust = trust_policy("arn:aws:iam::536727724300:root", "ext-1");
        assert_eq!(
            trust["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::536727724300:root"
        );
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
            "ext-1"
        );
        let perms = permission_policy(KEY);
        assert_eq!(perms["Statement"][0]["Resource"][0], KEY);
        assert_eq!(perms["Statement"][0]["Action"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn durations_parse_like_the_admission_rule_admits() {
        assert_eq!(parse_duration("2160h").unwrap().as_secs(), 2160 * 3600);
        assert_eq!(parse_duration("720h30m").unwrap().as_secs(), 720 * 3600 + 1800);
        assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5400);
        for bad in ["", "90 days", "h", "10x"] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
    }
}
