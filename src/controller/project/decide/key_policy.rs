//! Atlas's control-plane CIDRs as a key policy needs them: the statement a `KeyInvalid` verdict carries
//! (a key policy that restricts `aws:SourceIp` is a usual cause), and when a change of them is told.

use super::messages;
use crate::atlas::AwsIamRole;
use crate::aws::RoleArn;
use crate::control_plane::key_policy_statement;
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

/// The CIDRs of the key's region read this pass, when they differ from those the status recorded: a
/// key policy that allows the recorded ones must change. Nothing recorded (a first pass, encryption off
/// before) is no change to tell.
pub fn control_plane_changed<'a>(recorded: &[String], read: Option<&'a [String]>) -> Option<&'a [String]> {
    read.filter(|read| !recorded.is_empty() && *read != recorded)
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
    fn a_change_is_told_only_against_a_recorded_list() {
        let list = |cidrs: &[&str]| cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let (old, new) = (list(&["192.0.2.7/32"]), list(&["192.0.2.8/32"]));
        assert_eq!(control_plane_changed(&old, Some(&new)), Some(&new[..]));
        assert_eq!(control_plane_changed(&old, Some(&[])), Some(&[][..]), "all gone");
        assert_eq!(control_plane_changed(&old, Some(&old)), None, "unchanged");
        assert_eq!(control_plane_changed(&old, None), None, "not read yet");
        assert_eq!(
            control_plane_changed(&[], Some(&new)),
            None,
            "nothing recorded before"
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
