//! atlas-encryption-operator: runs MongoDB Atlas Encryption at Rest with customer-managed AWS KMS keys
//! from two Kubernetes resources, `ProjectEncryption` and `ClusterEncryption`.
#![forbid(unsafe_code)]

pub mod atlas;
pub mod aws;
pub mod config;
pub mod control_plane;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod kms;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod ops;
pub mod status;
pub mod telemetry;
pub mod tls;
