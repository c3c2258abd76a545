//! AWS SDK wiring for moto, the AWS emulator of the test ground.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::Credentials;

/// moto's base URL: `$MOTO_ENDPOINT` when set (a shell that sourced the env file), else the one
/// the test ground recorded.
pub fn moto_endpoint() -> String {
    match std::env::var("MOTO_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => super::testenv().moto_endpoint.clone(),
    }
}

/// The AWS secret key every test client and operator is given (moto accepts any); distinctive, so the
/// secret scan can look for it.
pub const AWS_SECRET_ACCESS_KEY: &str = "testing-aws-secret-never-logged";

/// An SDK config that sends every service to moto with static credentials, so nothing on the
/// machine (profiles, IMDS, env credentials) can leak into a test or make it reach real AWS.
pub async fn aws_sdk_config(region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto_endpoint())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(
            "testing",
            AWS_SECRET_ACCESS_KEY,
            None,
            None,
            "atlas-eo-tests",
        ))
        .load()
        .await
}
