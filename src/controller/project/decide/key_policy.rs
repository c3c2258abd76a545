//! Atlas's control-plane CIDRs as a key policy needs them: the statement a `KeyInvalid` verdict carries
//! (a key policy that restricts `aws:SourceIp` is a usual cause), and when a change of them is told.

use super::messages;
use crate::atlas::AwsIamRole;
use crate::aws::{Region, RoleArn};
use crate::control_plane::key_policy_statement;
use crate::crd::ProjectEncryptionStatus;
use crate::status::{DesiredCondition, reasons};

/// `KeyValid` as decided, with the ready-to-paste statement that allows exactly `cidrs` (the key
/// region's control-plane CIDRs) when the key is invalid and both the CIDRs and the IAM role are known.
/// The Ready and Stalled messages stay short; `kubectl describe` shows this condition whole.
pub fn with_key_policy_statement(
    key_valid: DesiredCondition,
    role: &AwsIamRole,
    cidrs: Option<&[String]>,
) -> DesiredCondition {
    let role_arn = role
        .iam_assumed_role_arn
        .as_deref()
        .and_then(|arn| RoleArn::parse(arn).ok());
    match (role_arn, cidrs) {
        (Some(role_arn), Some(cidrs)) if key_valid.reason == reasons::KEY_INVALID && !cidrs.is_empty() => {
            let statement = key_policy_statement(&role_arn, cidrs);
            let message = messages::with_key_policy_statement(&key_valid.message, &statement);
            key_valid.saying(message)
        }
        _ => key_valid,
    }
}

/// The CIDRs of the key's region read this pass, when they differ from those the status recorded for
/// the same region: a key policy that allows the recorded ones must change. Nothing recorded (a first
/// pass, encryption off before) or a key moved to another region is no change to tell.
pub fn control_plane_changed<'a>(
    previous: &ProjectEncryptionStatus,
    region: Region,
    read: Option<&'a [String]>,
) -> Option<&'a [String]> {
    let recorded = &previous.control_plane_cidrs;
    let same_region = previous
        .key
        .as_ref()
        .is_some_and(|k| k.region == region.aws_name());
    read.filter(|read| same_region && !recorded.is_empty() && *read != recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::condition;

    const ROLE: &str = "arn:aws:iam::111122223333:role/atlas-kms";

    fn role(arn: Option<&str>) -> AwsIamRole {
        AwsIamRole {
            iam_assumed_role_arn: arn.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_change_is_told_only_against_a_list_recorded_for_the_same_region() {
        let list = |cidrs: &[&str]| cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let (old, new) = (list(&["192.0.2.7/32"]), list(&["192.0.2.8/32"]));
        let eu = Region::parse("eu-west-2").unwrap();
        let recorded = |cidrs: &[String], region: &str| ProjectEncryptionStatus {
            control_plane_cidrs: cidrs.to_vec(),
            key: Some(crate::crd::KeyStatus {
                customer_master_key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
                region: region.into(),
                since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                rotation_due_at: None,
                valid: None,
                multi_region: None,
                material_since: None,
                age_source: None,
            }),
            ..Default::default()
        };
        let before = recorded(&old, "eu-west-2");
        assert_eq!(control_plane_changed(&before, eu, Some(&new)), Some(&new[..]));
        assert_eq!(
            control_plane_changed(&before, eu, Some(&[])),
            Some(&[][..]),
            "all gone"
        );
        assert_eq!(control_plane_changed(&before, eu, Some(&old)), None, "unchanged");
        assert_eq!(control_plane_changed(&before, eu, None), None, "not read yet");
        let nothing = recorded(&[], "eu-west-2");
        assert_eq!(
            control_plane_changed(&nothing, eu, Some(&new)),
            None,
            "nothing recorded"
        );
        let moved = recorded(&old, "us-east-1");
        assert_eq!(
            control_plane_changed(&moved, eu, Some(&new)),
            None,
            "the key moved region"
        );
    }

    #[test]
    fn an_invalid_key_carries_the_statement_for_exactly_the_known_cidrs() {
        let invalid = || {
            condition(reasons::KEY_VALID)
                .false_because(reasons::KEY_INVALID)
                .saying("Atlas reports key k invalid")
        };
        let cidrs = vec!["192.0.2.7/32".to_string(), "198.51.100.0/28".to_string()];
        let with = with_key_policy_statement(invalid(), &role(Some(ROLE)), Some(&cidrs));
        let statement = key_policy_statement(&RoleArn::parse(ROLE).unwrap(), &cidrs);
        assert!(
            with.message.starts_with("Atlas reports key k invalid"),
            "{}",
            with.message
        );
        assert!(with.message.contains(&statement.to_string()), "{}", with.message);
        assert_eq!(with.reason, reasons::KEY_INVALID);

        let cases = [
            ("CIDRs not read yet", invalid(), role(Some(ROLE)), None),
            (
                "no CIDRs in the region",
                invalid(),
                role(Some(ROLE)),
                Some(vec![]),
            ),
            ("role unknown", invalid(), role(None), Some(cidrs.clone())),
            (
                "key valid",
                condition(reasons::KEY_VALID).true_because(reasons::KEY_ASSIGNED),
                role(Some(ROLE)),
                Some(cidrs.clone()),
            ),
        ];
        for (name, key_valid, role, cidrs) in cases {
            let unchanged = key_valid.clone();
            assert_eq!(
                with_key_policy_statement(key_valid, &role, cidrs.as_deref()),
                unchanged,
                "{name}"
            );
        }
    }
}
