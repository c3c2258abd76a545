//! The customer's AWS account in moto: one KMS key and one IAM role per project, and the trust policy
//! put on each role as soon as the operator publishes the Atlas role's external ID.

use anyhow::{Context as _, Result};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::config::Credentials;
use futures::{StreamExt, TryStreamExt};

pub const REGION: &str = "eu-west-2";

#[derive(Clone)]
pub struct Aws {
    pub kms: aws_sdk_kms::Client,
    pub iam: aws_sdk_iam::Client,
}

impl Aws {
    pub async fn new(endpoint: &str) -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "atlas-eo-bench",
            ))
            .load()
            .await;
        Aws {
            kms: aws_sdk_kms::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
        }
    }

    pub async fn create_key(&self, description: &str) -> Result<String> {
        let out = self.kms.create_key().description(description).send().await?;
        out.key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_string)
            .context("CreateKey answered without an ARN")
    }

    /// `n` keys, `parallel` requests at a time.
    pub async fn create_keys(&self, prefix: &str, n: u64, parallel: usize) -> Result<Vec<String>> {
        futures::stream::iter(0..n)
            .map(|i| async move { self.create_key(&format!("{prefix}-{i}")).await })
            .buffered(parallel)
            .try_collect()
            .await
    }

    /// An IAM role allowed to use every KMS key of the account (so rotations need no IAM change) and
    /// trusting only the account itself until Atlas's external ID is known.
    pub async fn create_role(&self, name: &str) -> Result<String> {
        let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]});
        let permissions = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}]});
        let role = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await?;
        self.iam
            .put_role_policy()
            .role_name(name)
            .policy_name("atlas-kms")
            .policy_document(permissions.to_string())
            .send()
            .await?;
        role.role()
            .map(|r| r.arn().to_string())
            .context("CreateRole answered without a role")
    }

    pub async fn create_roles(&self, prefix: &str, n: u64, parallel: usize) -> Result<Vec<String>> {
        futures::stream::iter(0..n)
            .map(|i| async move { self.create_role(&format!("{prefix}-{i}")).await })
            .buffered(parallel)
            .try_collect()
            .await
    }

    /// The customer's half of the handshake: trust Atlas's account with the role's external ID.
    pub async fn trust(&self, role_name: &str, atlas_arn: &str, external_id: &str) -> Result<()> {
        let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": atlas_arn}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]});
        self.iam
            .update_assume_role_policy()
            .role_name(role_name)
            .policy_document(policy.to_string())
            .send()
            .await?;
        Ok(())
    }
}
