//! The IAM policies the customer's role needs, as the trust instructions quote them.

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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

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
}
