//! What makes a reconcile fail (and back off) rather than end with a condition.

use std::time::Duration;

use super::CredentialsError;
use crate::atlas::AtlasError;

/// Failures of a reconcile that are not a condition of the object itself: these requeue with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Atlas(#[from] AtlasError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("object has no namespace or name")]
    InvalidObject,
}

impl Error {
    /// A static label for metrics and Event reasons; never the error's text.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesError",
            Error::Atlas(e) => e.category(),
            Error::Credentials(_) => "CredentialsUnreadable",
            Error::InvalidObject => "InvalidObject",
        }
    }

    /// The least wait before this object is looked at again: what Atlas asked for, or, after a write
    /// whose answer was lost, [`UNKNOWN_WRITE_SETTLE`].
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Atlas(e) if e.write_outcome_unknown() => {
                Some(e.retry_after().unwrap_or_default().max(UNKNOWN_WRITE_SETTLE))
            }
            Error::Atlas(e) => e.retry_after(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a write whose answer was lost (timed out, or the connection broke after it was sent) is
/// given to take effect before the object is read again. Atlas finishes what it received; a read at
/// once could show the state from before the write and send it a second time.
const UNKNOWN_WRITE_SETTLE: Duration = Duration::from_secs(5);
