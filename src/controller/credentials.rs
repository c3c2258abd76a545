//! Credentials come from Secrets, read when used (never watched, so no other Secret enters the process).
//! A fresh look (a person's edit, a new object, a retry after a failure) always reads the Secret, so
//! replacing its content takes effect on the next change; the polls of work under way and resyncs
//! reuse a read made less than [`RecentCredentials::REUSE_FOR`] ago (on a busy API server the Secret
//! reads of every poll were a third of all requests). Errors name the Secret and the keys, never a value.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::atlas::Credentials;
use crate::kms::StaticAwsCredentials;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// `holds` names the keys this Secret needs, which differ between the Atlas and the AWS Secret.
    #[error("Secret {secret:?} not found in this namespace: create it with {holds}")]
    NotFound { secret: String, holds: &'static str },
    #[error("Secret {secret:?} is unusable: {problem}")]
    Malformed { secret: String, problem: String },
    #[error("reading Secret {secret:?} failed: {reason}")]
    Unreadable { secret: String, reason: String },
}

impl CredentialsError {
    /// Unreadable may pass (apiserver hiccup); the others need the user.
    pub fn is_transient(&self) -> bool {
        matches!(self, CredentialsError::Unreadable { .. })
    }
}

/// A credentials Secret that cannot be read: an error to retry while the API server is the problem
/// (when `retry` allows), else Stalled with `message`, since only a person can mend the Secret.
pub(crate) fn unreadable(
    error: CredentialsError,
    retry: bool,
    message: impl FnOnce(&CredentialsError) -> String,
) -> super::Result<super::Step> {
    if retry && error.is_transient() {
        return Err(super::Error::Credentials(error));
    }
    Ok(super::Step::stalled(
        crate::status::reasons::CREDENTIALS_INVALID,
        message(&error),
    ))
}

/// What the Atlas credentials Secret holds.
pub(crate) const ATLAS_KEYS: &str =
    "publicKey and privateKey (API key) or clientId and clientSecret (service account)";
/// What the KMS preflight's AWS credentials Secret holds.
pub(crate) const AWS_KEYS: &str = "accessKeyId and secretAccessKey (and sessionToken for temporary credentials) of an AWS principal that may describe the key";

async fn read_secret(api: &Api<Secret>, name: &str, holds: &'static str) -> Result<Secret, CredentialsError> {
    match api.get_opt(name).await {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(CredentialsError::NotFound {
            secret: name.to_string(),
            holds,
        }),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(CredentialsError::Malformed {
            secret: name.to_string(),
            problem: "the operator may not read it (RBAC)".into(),
        }),
        Err(e) => Err(CredentialsError::Unreadable {
            secret: name.to_string(),
            // Status reason only: an error body could in principle echo request data.
            reason: match e {
                kube::Error::Api(status) => format!("HTTP {}", status.code),
                _ => "the Kubernetes API did not answer".into(),
            },
        }),
    }
}

/// The value of `key`, trimmed: a trailing newline from `echo` or a file is the commonest mistake.
fn value(secret: &Secret, key: &str) -> Option<String> {
    let data = secret.data.as_ref()?.get(key)?;
    let text = String::from_utf8(data.0.clone()).ok()?;
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn has_key(secret: &Secret, key: &str) -> bool {
    secret.data.as_ref().is_some_and(|d| d.contains_key(key))
}

/// Atlas credentials read moments ago, by Secret (namespace, name). Only good reads are kept, and none
/// longer than [`Self::REUSE_FOR`]: each read drops the entries that outlived it.
#[derive(Default)]
pub struct RecentCredentials(Mutex<HashMap<(String, String), (Instant, Credentials)>>);

impl RecentCredentials {
    /// How long one read of a credentials Secret serves.
    pub const REUSE_FOR: Duration = Duration::from_secs(2);

    /// The Atlas credentials of Secret `name` in `namespace` (`api`'s): when `reuse` allows, as read
    /// less than [`Self::REUSE_FOR`] ago; otherwise read now.
    pub async fn atlas(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        name: &str,
        reuse: bool,
    ) -> Result<Credentials, CredentialsError> {
        let key = (namespace.to_string(), name.to_string());
        let recent = self.lock().get(&key).cloned();
        if let Some((_, creds)) = recent.filter(|(at, _)| reuse && at.elapsed() < Self::REUSE_FOR) {
            return Ok(creds);
        }
        let creds = atlas_credentials(api, name).await?;
        let mut recent = self.lock();
        recent.retain(|_, (at, _)| at.elapsed() < Self::REUSE_FOR);
        recent.insert(key, (Instant::now(), creds.clone()));
        Ok(creds)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Instant, Credentials)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Atlas credentials from a Secret with `publicKey`/`privateKey` or `clientId`/`clientSecret`.
pub async fn atlas_credentials(api: &Api<Secret>, name: &str) -> Result<Credentials, CredentialsError> {
    let secret = read_secret(api, name, ATLAS_KEYS).await?;
    atlas_credentials_from(&secret, name)
}

fn atlas_credentials_from(secret: &Secret, name: &str) -> Result<Credentials, CredentialsError> {
    let malformed = |problem: &str| CredentialsError::Malformed {
        secret: name.to_string(),
        problem: problem.to_string(),
    };
    let api_key = has_key(secret, "publicKey") || has_key(secret, "privateKey");
    let service_account = has_key(secret, "clientId") || has_key(secret, "clientSecret");
    match (api_key, service_account) {
        (true, true) => Err(malformed(
            "it holds both an API key (publicKey/privateKey) and a service account (clientId/clientSecret); keep one",
        )),
        (true, false) => match (value(secret, "publicKey"), value(secret, "privateKey")) {
            (Some(public), Some(private)) => Ok(Credentials::api_key(public, private)),
            _ => Err(malformed(
                "publicKey and privateKey must both be set and non-empty",
            )),
        },
        (false, true) => match (value(secret, "clientId"), value(secret, "clientSecret")) {
            (Some(id), Some(secret)) => Ok(Credentials::service_account(id, secret)),
            _ => Err(malformed(
                "clientId and clientSecret must both be set and non-empty",
            )),
        },
        (false, false) => Err(malformed(
            "it has none of the keys publicKey/privateKey (API key) or clientId/clientSecret (service account)",
        )),
    }
}

/// AWS credentials for the KMS preflight from a Secret with `accessKeyId`/`secretAccessKey`.
pub async fn aws_credentials(
    api: &Api<Secret>,
    name: &str,
) -> Result<StaticAwsCredentials, CredentialsError> {
    let secret = read_secret(api, name, AWS_KEYS).await?;
    match (value(&secret, "accessKeyId"), value(&secret, "secretAccessKey")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(StaticAwsCredentials {
            access_key_id,
            secret_access_key,
            session_token: value(&secret, "sessionToken"),
        }),
        _ => Err(CredentialsError::Malformed {
            secret: name.to_string(),
            problem: "accessKeyId and secretAccessKey must both be set and non-empty".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_secret_is_answered_with_the_keys_that_secret_needs() {
        let missing = |holds| CredentialsError::NotFound {
            secret: "creds".into(),
            holds,
        };
        let atlas = missing(ATLAS_KEYS).to_string();
        assert!(
            atlas.contains("publicKey and privateKey") && !atlas.contains("accessKeyId"),
            "{atlas}"
        );
        let aws = missing(AWS_KEYS).to_string();
        assert!(
            aws.contains("accessKeyId and secretAccessKey") && !aws.contains("publicKey"),
            "{aws}"
        );
    }

    #[test]
    fn api_keys_and_service_accounts_are_read_and_trimmed() {
        let creds =
            atlas_credentials_from(&secret(&[("publicKey", "pub\n"), ("privateKey", "priv")]), "s").unwrap();
        assert_eq!(creds, Credentials::api_key("pub", "priv"));
        let creds = atlas_credentials_from(
            &secret(&[("clientId", "mdb_sa_id_1"), ("clientSecret", "x")]),
            "s",
        )
        .unwrap();
        assert_eq!(creds, Credentials::service_account("mdb_sa_id_1", "x"));
    }

    #[test]
    fn malformed_secrets_say_what_is_wrong_without_values() {
        let cases = [
            secret(&[("user", "a"), ("password", "TOPSECRET")]),
            secret(&[("publicKey", "a"), ("privateKey", "  ")]),
            secret(&[("publicKey", "a"), ("clientSecret", "TOPSECRET")]),
            secret(&[("clientId", "a")]),
        ];
        for case in cases {
            let err = atlas_credentials_from(&case, "atlas").unwrap_err();
            assert!(matches!(err, CredentialsError::Malformed { .. }), "{err}");
            assert!(!err.to_string().contains("TOPSECRET"));
            assert!(err.to_string().contains("\"atlas\""));
        }
    }
}
