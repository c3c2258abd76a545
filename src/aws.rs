//! AWS identifiers as users write them and as Atlas spells them: regions, KMS key references and IAM
//! role ARNs. Pure parsing and normalisation, so that the desired state and Atlas's state compare equal
//! whenever they mean the same thing (an update loop starts from exactly such a mismatch).

use std::fmt;

/// AWS regions Atlas can hold a KMS key in, as `(AWS name, Atlas enum)`.
///
/// The Atlas side is the "AWS Regions" enum of `AWSKMSConfiguration.region` in the Admin API v2 spec,
/// minus `GLOBAL`, which is not a region a KMS key lives in.
pub const REGIONS: &[(&str, &str)] = &[
    ("us-gov-west-1", "US_GOV_WEST_1"),
    ("us-gov-east-1", "US_GOV_EAST_1"),
    ("us-east-1", "US_EAST_1"),
    ("us-east-2", "US_EAST_2"),
    ("us-west-1", "US_WEST_1"),
    ("us-west-2", "US_WEST_2"),
    ("ca-central-1", "CA_CENTRAL_1"),
    ("ca-west-1", "CA_WEST_1"),
    ("eu-north-1", "EU_NORTH_1"),
    ("eu-west-1", "EU_WEST_1"),
    ("eu-west-2", "EU_WEST_2"),
    ("eu-west-3", "EU_WEST_3"),
    ("eu-central-1", "EU_CENTRAL_1"),
    ("eu-central-2", "EU_CENTRAL_2"),
    ("eu-south-1", "EU_SOUTH_1"),
    ("eu-south-2", "EU_SOUTH_2"),
    ("ap-east-1", "AP_EAST_1"),
    ("ap-east-2", "AP_EAST_2"),
    ("ap-northeast-1", "AP_NORTHEAST_1"),
    ("ap-northeast-2", "AP_NORTHEAST_2"),
    ("ap-northeast-3", "AP_NORTHEAST_3"),
    ("ap-southeast-1", "AP_SOUTHEAST_1"),
    ("ap-southeast-2", "AP_SOUTHEAST_2"),
    ("ap-southeast-3", "AP_SOUTHEAST_3"),
    ("ap-southeast-4", "AP_SOUTHEAST_4"),
    ("ap-southeast-5", "AP_SOUTHEAST_5"),
    ("ap-southeast-6", "AP_SOUTHEAST_6"),
    ("ap-southeast-7", "AP_SOUTHEAST_7"),
    ("ap-south-1", "AP_SOUTH_1"),
    ("ap-south-2", "AP_SOUTH_2"),
    ("sa-east-1", "SA_EAST_1"),
    ("cn-north-1", "CN_NORTH_1"),
    ("cn-northwest-1", "CN_NORTHWEST_1"),
    ("me-south-1", "ME_SOUTH_1"),
    ("me-central-1", "ME_CENTRAL_1"),
    ("af-south-1", "AF_SOUTH_1"),
    ("il-central-1", "IL_CENTRAL_1"),
    ("mx-central-1", "MX_CENTRAL_1"),
];

/// An AWS region Atlas supports for KMS keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    aws: &'static str,
    atlas: &'static str,
}

impl Region {
    /// Accepts the AWS spelling (`eu-west-2`) or Atlas's (`EU_WEST_2`).
    pub fn parse(value: &str) -> Result<Self, IdError> {
        REGIONS
            .iter()
            .find(|(aws, atlas)| value == *aws || value == *atlas)
            .map(|&(aws, atlas)| Region { aws, atlas })
            .ok_or_else(|| IdError::UnknownRegion(truncate(value)))
    }

    pub fn aws_name(&self) -> &'static str {
        self.aws
    }

    pub fn atlas_name(&self) -> &'static str {
        self.atlas
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.aws)
    }
}

/// How a user named their KMS key. Atlas accepts a bare key id only for a key in the account of the
/// authorized role; across accounts it needs the full ARN, so the two forms are kept apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRef {
    Arn(KeyArn),
    /// A key id: a UUID, or `mrk-` + 32 hex characters for a multi-Region key.
    Id(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyArn {
    pub partition: String,
    pub region: Region,
    pub account: String,
    pub key_id: String,
}

impl KeyArn {
    pub fn is_multi_region(&self) -> bool {
        self.key_id.starts_with("mrk-")
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:kms:{}:{}:key/{}",
            self.partition,
            self.region.aws_name(),
            self.account,
            self.key_id
        )
    }
}

impl KeyRef {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.starts_with("arn:") {
            return parse_key_arn(value).map(KeyRef::Arn);
        }
        if is_key_id(value) {
            return Ok(KeyRef::Id(value.to_ascii_lowercase()));
        }
        Err(IdError::MalformedKey(truncate(value)))
    }

    /// The key id alone, whichever form was written.
    pub fn key_id(&self) -> &str {
        match self {
            KeyRef::Arn(arn) => &arn.key_id,
            KeyRef::Id(id) => id,
        }
    }

    pub fn is_multi_region(&self) -> bool {
        self.key_id().starts_with("mrk-")
    }

    /// True when both name the same key. A bare id matches an ARN with that id: Atlas may echo back
    /// either form, and treating them as different would patch the key on every reconcile.
    pub fn same_key(&self, other: &KeyRef) -> bool {
        match (self, other) {
            (KeyRef::Arn(a), KeyRef::Arn(b)) => a == b,
            _ => self.key_id() == other.key_id(),
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Arn(arn) => arn.fmt(f),
            KeyRef::Id(id) => f.write_str(id),
        }
    }
}

/// The fields of an ARN whose partition and account are well-formed.
struct Arn<'a> {
    partition: &'a str,
    service: &'a str,
    region: &'a str,
    account: &'a str,
    resource: &'a str,
}

impl<'a> Arn<'a> {
    fn split(value: &'a str) -> Option<Self> {
        let mut parts = value.splitn(6, ':');
        let ("arn", partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        ) else {
            return None;
        };
        (is_partition(partition) && is_account(account)).then_some(Arn {
            partition,
            service,
            region,
            account,
            resource,
        })
    }
}

fn parse_key_arn(value: &str) -> Result<KeyArn, IdError> {
    let malformed = || IdError::MalformedKey(truncate(value));
    let Some(Arn {
        partition,
        service: "kms",
        region,
        account,
        resource,
    }) = Arn::split(value)
    else {
        return Err(malformed());
    };
    if resource.starts_with("alias/") {
        return Err(IdError::KeyAlias(truncate(value)));
    }
    let key_id = resource.strip_prefix("key/").ok_or_else(malformed)?;
    if !is_key_id(key_id) {
        return Err(malformed());
    }
    Ok(KeyArn {
        partition: partition.to_string(),
        region: Region::parse(region)?,
        account: account.to_string(),
        key_id: key_id.to_ascii_lowercase(),
    })
}

/// An IAM role ARN, the role Atlas assumes to reach the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoleArn {
    pub partition: String,
    pub account: String,
    /// The role name with its path, e.g. `service-role/atlas-kms`.
    pub name: String,
}

impl RoleArn {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let malformed = || IdError::MalformedRole(truncate(value));
        let Some(Arn {
            partition,
            service: "iam",
            region: "",
            account,
            resource,
        }) = Arn::split(value)
        else {
            return Err(malformed());
        };
        let name = resource.strip_prefix("role/").ok_or_else(malformed)?;
        let valid_name = !name.is_empty()
            && name.len() <= 512
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
            && !name.ends_with('/');
        if !valid_name {
            return Err(malformed());
        }
        Ok(RoleArn {
            partition: partition.to_string(),
            account: account.to_string(),
            name: name.to_string(),
        })
    }

    /// The role name without its path, as IAM's GetRole wants it.
    pub fn role_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:iam::{}:role/{}",
            self.partition, self.account, self.name
        )
    }
}

fn is_partition(value: &str) -> bool {
    matches!(value, "aws" | "aws-cn" | "aws-us-gov")
}

fn is_account(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

fn is_key_id(value: &str) -> bool {
    let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = value.strip_prefix("mrk-") {
        return rest.len() == 32 && is_hex(rest);
    }
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| is_hex(g))
}

/// Identifiers come from users; an error repeats at most this much of one so a pasted secret or a huge
/// value cannot flood a status message.
const MAX_ECHO: usize = 128;

fn truncate(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "unknown AWS region {0:?}: write an AWS region name such as \"eu-west-2\" that Atlas supports for KMS"
    )]
    UnknownRegion(String),
    #[error(
        "malformed KMS key {0:?}: write the full key ARN \"arn:aws:kms:<region>:<account>:key/<key-id>\" or a key id"
    )]
    MalformedKey(String),
    #[error("KMS key {0:?} is an alias: Atlas needs the key ARN or key id, not an alias")]
    KeyAlias(String),
    #[error("malformed IAM role ARN {0:?}: write \"arn:aws:iam::<12-digit account>:role/<name>\"")]
    MalformedRole(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn region_accepts_both_spellings_and_maps_between_them() {
        let aws = Region::parse("eu-west-2").unwrap();
        let atlas = Region::parse("EU_WEST_2").unwrap();
        assert_eq!(aws, atlas);
        assert_eq!(aws.atlas_name(), "EU_WEST_2");
        assert_eq!(atlas.aws_name(), "eu-west-2");
    }

    #[test]
    fn region_table_is_consistent() {
        for (aws, atlas) in REGIONS {
            assert_eq!(aws.to_uppercase().replace('-', "_"), *atlas);
        }
        assert_eq!(REGIONS.len(), 38, "the Atlas enum has 39 values, GLOBAL excluded");
    }

    #[test]
    fn unknown_regions_are_refused() {
        for bad in ["", "eu-west-9", "EU-WEST-2", "GLOBAL", "eu_west_2"] {
            assert!(
                matches!(Region::parse(bad), Err(IdError::UnknownRegion(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_arn_parses_and_round_trips() {
        let text = format!("arn:aws:kms:eu-west-2:111122223333:key/{KEY_ID}");
        let KeyRef::Arn(arn) = KeyRef::parse(&text).unwrap() else {
            panic!("expected an ARN")
        };
        assert_eq!(arn.region.atlas_name(), "EU_WEST_2");
        assert_eq!(arn.account, "111122223333");
        assert_eq!(arn.key_id, KEY_ID);
        assert!(!arn.is_multi_region());
        assert_eq!(arn.to_string(), text);
    }

    #[test]
    fn multi_region_keys_are_recognised() {
        let id = format!("mrk-{}", "a".repeat(32));
        assert!(KeyRef::parse(&id).unwrap().is_multi_region());
        let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
        assert!(KeyRef::parse(&arn).unwrap().is_multi_region());
    }

    #[test]
    fn malformed_keys_are_refused_with_what_to_write() {
        for bad in [
            "",
            "not-a-key",
            "arn:aws:kms:eu-west-2:1111:key/1234",
            "arn:aws:s3:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-west-2:111122223333:1234abcd-12ab-34cd-56ef-1234567890ab",
            "1234abcd-12ab-34cd-56ef-1234567890",
            "mrk-123",
        ] {
            let err = KeyRef::parse(bad).unwrap_err();
            assert!(err.to_string().contains("full key ARN"), "{bad}: {err}");
        }
        let alias = KeyRef::parse("arn:aws:kms:eu-west-2:111122223333:alias/atlas").unwrap_err();
        assert!(matches!(alias, IdError::KeyAlias(_)));
        let region = KeyRef::parse(&format!("arn:aws:kms:mars-1:111122223333:key/{KEY_ID}")).unwrap_err();
        assert!(matches!(region, IdError::UnknownRegion(_)));
    }

    #[test]
    fn same_key_matches_id_against_arn_case_insensitively() {
        let arn = KeyRef::parse(&format!("arn:aws:kms:eu-west-2:111122223333:key/{KEY_ID}")).unwrap();
        let id = KeyRef::parse(&KEY_ID.to_uppercase()).unwrap();
        assert!(arn.same_key(&id));
        let other = KeyRef::parse("1234abcd-12ab-34cd-56ef-1234567890ac").unwrap();
        assert!(!arn.same_key(&other));
        let other_account =
            KeyRef::parse(&format!("arn:aws:kms:eu-west-2:999922223333:key/{KEY_ID}")).unwrap();
        assert!(
            !arn.same_key(&other_account),
            "same id in another account is another key"
        );
    }

    #[test]
    fn role_arn_parses_with_paths() {
        let role = RoleArn::parse("arn:aws:iam::111122223333:role/service-role/atlas-kms").unwrap();
        assert_eq!(role.account, "111122223333");
        assert_eq!(role.role_name(), "atlas-kms");
        assert_eq!(
            role.to_string(),
            "arn:aws:iam::111122223333:role/service-role/atlas-kms"
        );
        for bad in [
            "arn:aws:iam::111122223333:user/bob",
            "arn:aws:iam:eu-west-2:111122223333:role/x",
            "arn:aws:iam::11112222333:role/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/bad name",
        ] {
            assert!(
                matches!(RoleArn::parse(bad), Err(IdError::MalformedRole(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn long_input_is_truncated_in_errors() {
        let err = KeyRef::parse(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(err.len() < 400, "{}", err.len());
    }
}
