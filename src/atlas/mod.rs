//! MongoDB Atlas Administration API v2 client, limited to the endpoints Encryption at Rest with AWS KMS
//! needs. See [`AtlasClient`] for the call surface, and for the wire facts it relies on the official
//! OpenAPI specification (`scripts/atlas-spec.sh` prints the path of the pinned copy).
//!
//! Design: every call takes the project's [`Credentials`] first (one operator, many organizations);
//! connection pool, rate limiter, Digest nonces and OAuth tokens are shared by all clones of a client.

pub mod auth;
mod client;
pub mod error;
pub mod lane;
mod limits;
pub mod model;
pub mod retry;
mod write;

pub use auth::Credentials;
pub use client::{AtlasClient, AtlasClientConfig, AtlasMetrics, ENDPOINTS, Endpoint};
pub use error::{AtlasError, ErrorEnvelope};
pub use lane::Lane;
pub use model::{
    AwsIamRole, AwsKmsConfig, AwsKmsPatch, Cluster, ControlPlaneIpAddresses, EarPrivateEndpoint,
    EncryptionAtRest, EncryptionAtRestPatch, EncryptionProvider, FeatureUsage, Group, HardwareSpec,
    PrivateEndpointStatus, RateLimitEndpoint, RateLimitEndpointSet, RateLimitScope, RateLimitValue,
    RegionConfig, ReplicationSpec, Snapshot,
};
pub use write::Write;
