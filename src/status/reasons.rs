//! Every condition type and reason the operator writes, in one place. Reasons are CamelCase and stable:
//! alerts, Argo CD health checks and runbooks match on them.

// kstatus conditions: abnormal-true `Reconciling` and `Stalled`, plus `Ready`.
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

// Domain conditions of ProjectEncryption.
pub const ROLE_AUTHORIZED: &str = "RoleAuthorized";
pub const KEY_VALID: &str = "KeyValid";
pub const KEY_ROTATION_DUE: &str = "KeyRotationDue";
pub const DEGRADED: &str = "Degraded";
pub const MULTI_REGION_KEY: &str = "MultiRegionKey";
/// `managementPolicy: Observe`: the operator reads and plans, and writes nothing to Atlas.
pub const OBSERVING: &str = "Observing";
/// A retired key that snapshots still need is disabled or pending deletion in KMS.
pub const PREVIOUS_KEY_AT_RISK: &str = "PreviousKeyAtRisk";

// Domain conditions of ClusterEncryption.
pub const PROJECT_READY: &str = "ProjectReady";

// Condition reasons: README.md's troubleshooting table explains each (tests/readme_contract.rs).
pub const RECONCILED: &str = "Reconciled";
pub const ENCRYPTION_DISABLED: &str = "EncryptionDisabled";
pub const CREDENTIALS_INVALID: &str = "CredentialsInvalid";
pub const CREDENTIALS_REJECTED: &str = "CredentialsRejected";
pub const PROJECT_NOT_FOUND: &str = "ProjectNotFound";
pub const DUPLICATE_PROJECT: &str = "DuplicateProject";
pub const AWAITING_TRUST_POLICY: &str = "AwaitingTrustPolicy";
pub const AUTHORIZED: &str = "Authorized";
pub const ROLE_NOT_FOUND: &str = "RoleNotFound";
pub const ROLE_NOT_AUTHORIZED: &str = "RoleNotAuthorized";
pub const KEY_ASSIGNED: &str = "KeyAssigned";
pub const KEY_INVALID: &str = "KeyInvalid";
pub const KEY_REJECTED: &str = "KeyRejected";
pub const AWAITING_VALIDATION: &str = "AwaitingValidation";
pub const ROTATION_DUE: &str = "RotationDue";
pub const WITHIN_MAX_AGE: &str = "WithinMaxAge";
/// KMS rotates the key material automatically: `KeyRotationDue` stays False.
pub const ROTATED_BY_KMS: &str = "RotatedByKms";
pub const RETIRED_KEY_DISABLED: &str = "RetiredKeyDisabled";
pub const RETIRED_KEY_PENDING_DELETION: &str = "RetiredKeyPendingDeletion";
pub const RETIRED_KEYS_USABLE: &str = "RetiredKeysUsable";
pub const SINGLE_REGION_KEY: &str = "SingleRegionKey";
pub const IS_MULTI_REGION_KEY: &str = "MultiRegion";
pub const ROLE_SWITCH_NOT_ACKNOWLEDGED: &str = "RoleSwitchNotAcknowledged";
pub const CHANGES_PLANNED: &str = "ChangesPlanned";
pub const NO_CHANGES_PLANNED: &str = "NoChangesPlanned";
pub const DISABLE_BLOCKED_BY_CLUSTERS: &str = "DisableBlockedByClusters";
pub const ATLAS_UNAVAILABLE: &str = "AtlasUnavailable";
/// Atlas's TLS certificate was refused: a proxy or private CA the trust store does not hold.
pub const ATLAS_CERTIFICATE_UNTRUSTED: &str = "AtlasCertificateUntrusted";
pub const ATLAS_REFUSED: &str = "AtlasRefused";
pub const WAITING_FOR_PROJECT: &str = "WaitingForProject";
/// The cluster's project is Stalled: the person who mends the project also unblocks the cluster.
pub const PROJECT_STALLED: &str = "ProjectStalled";
pub const PROJECT_ENCRYPTION_NOT_FOUND: &str = "ProjectEncryptionNotFound";
pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
pub const UNSUPPORTED_TIER: &str = "UnsupportedTier";
pub const LEGACY_BACKUP: &str = "LegacyBackup";
pub const CLUSTER_PAUSED: &str = "ClusterPaused";
pub const CLUSTER_UPDATING: &str = "ClusterUpdating";
pub const PROJECT_DISABLING: &str = "ProjectDisabling";
pub const OTHER_PROVIDER_IN_USE: &str = "OtherProviderInUse";
/// Atlas's private endpoints to AWS KMS are being created (or deleted) and are not all as wanted yet.
pub const AWAITING_PRIVATE_ENDPOINTS: &str = "AwaitingPrivateEndpoints";
pub const PRIVATE_ENDPOINT_FAILED: &str = "PrivateEndpointFailed";

// Reasons of the KMS preflight (`KeyValid=False`, and the outcome).
pub const KEY_NOT_FOUND: &str = "KeyNotFound";
pub const KEY_DISABLED: &str = "KeyDisabled";
pub const KEY_PENDING_DELETION: &str = "KeyPendingDeletion";
pub const KEY_PENDING_IMPORT: &str = "KeyPendingImport";
pub const KEY_UNAVAILABLE: &str = "KeyUnavailable";
pub const KEY_NOT_SYMMETRIC: &str = "KeyNotSymmetric";
pub const KEY_REGION_MISMATCH: &str = "KeyRegionMismatch";
pub const KMS_ACCESS_DENIED: &str = "KmsAccessDenied";
pub const KMS_UNREACHABLE: &str = "KmsUnreachable";
pub const KEY_ARN_REQUIRED: &str = "KeyArnRequired";
pub const KMS_CERTIFICATE_UNTRUSTED: &str = "KmsCertificateUntrusted";

// Event reasons that are not condition reasons.
pub const ROLE_CREATED: &str = "RoleCreated";
pub const KEY_ROTATED: &str = "KeyRotated";
pub const DRIFT_CORRECTED: &str = "DriftCorrected";
pub const ROLE_ASSIGNED_TRUST_POLICY: &str = "TrustPolicyRequired";
pub const PROVIDER_SET: &str = "EncryptionProviderSet";
pub const PRIVATE_ENDPOINT_CREATED: &str = "PrivateEndpointCreated";
pub const PRIVATE_ENDPOINT_DELETED: &str = "PrivateEndpointDeleted";
pub const CONTROL_PLANE_CIDRS_CHANGED: &str = "ControlPlaneCidrsChanged";
