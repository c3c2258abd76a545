//! The Atlas Administration API v2 client: one connection pool, per-endpoint versioned media types,
//! authentication, pacing, retries and metrics. Every public method takes the [`Credentials`] first,
//! because one operator serves many projects, each with its own organization's key.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::{
    CachedToken, Credentials, DigestChallenge, NonceCache, TokenCache, TokenResponse, new_cnonce,
};
use super::error::{AtlasError, Result, bounded};
use super::lane::{self, Lane};
use super::limits::{BucketRef, Coverage, HELD_TOKENS, Learned, LearnedLimits, LimitsCache, PublishedSet};
use super::model::*;
use super::retry::{Backoff, BucketLimit, RateLimiter, parse_retry_after};
use super::write::Write;
use crate::aws::{Region, RoleArn};

/// Telemetry hook. `endpoint` is the path template (`/groups/{groupId}/clusters/{clusterName}`), never
/// the raw path, so label cardinality stays bounded. Called once per HTTP exchange, including Digest
/// challenges and retries; `status` is `None` when no answer arrived.
pub trait AtlasMetrics: Send + Sync {
    fn on_call(&self, endpoint: &'static str, method: &'static str, status: Option<u16>, duration: Duration);

    /// The client-side rate limiter (or a 429's Retry-After) held a call back.
    fn on_rate_limit_wait(&self, _endpoint: &'static str, _waited: Duration) {}

    /// A call is about to be retried; `reason` is `rate_limited`, `server_error` or `transport`.
    fn on_retry(&self, _endpoint: &'static str, _method: &'static str, _reason: &'static str) {}

    /// A credential's rate limits were read: `published` (pacing by them), `unpublished` (Atlas does not
    /// publish them to this key: the configured pace applies) or `failed` (unreadable for now).
    fn on_rate_limits_read(&self, _outcome: &'static str) {}
}

#[derive(Clone)]
pub struct AtlasClientConfig {
    /// `https://cloud.mongodb.com`; the `/api/atlas/v2` prefix is added per call.
    pub base_url: String,
    /// Per HTTP exchange.
    pub timeout: Duration,
    /// Calls per second per credential when Atlas does not publish its limits (`GET /rateLimits`), and
    /// for endpoints no published endpoint set covers.
    pub rate_per_second: f64,
    /// Calls of burst above `rate_per_second` (and `rate_ceiling`).
    pub burst: u32,
    /// When set, no credential sends faster than this, whatever Atlas publishes.
    pub rate_ceiling: Option<f64>,
    /// How often a credential's published limits are read again.
    pub rate_limits_refresh: Duration,
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// Total time a call may spend waiting between attempts; a longer Retry-After is returned to the
    /// caller as [`AtlasError::RateLimited`] to requeue instead of blocking a reconcile.
    pub max_retry_wait: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// `itemsPerPage` of list calls (Atlas allows 1–500).
    pub page_size: u32,
    pub user_agent: String,
    pub metrics: Option<Arc<dyn AtlasMetrics>>,
}

impl Default for AtlasClientConfig {
    fn default() -> Self {
        AtlasClientConfig {
            base_url: "https://cloud.mongodb.com".to_string(),
            timeout: Duration::from_secs(30),
            rate_per_second: 5.0,
            burst: 20,
            rate_ceiling: None,
            rate_limits_refresh: Duration::from_secs(3600),
            max_retries: 3,
            max_retry_wait: Duration::from_secs(60),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(10),
            page_size: 500,
            user_agent: concat!("atlas-encryption-operator/", env!("CARGO_PKG_VERSION")).to_string(),
            metrics: None,
        }
    }
}

impl fmt::Debug for AtlasClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtlasClientConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("rate_per_second", &self.rate_per_second)
            .field("burst", &self.burst)
            .field("rate_ceiling", &self.rate_ceiling)
            .field("rate_limits_refresh", &self.rate_limits_refresh)
            .field("max_retries", &self.max_retries)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("page_size", &self.page_size)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

/// One endpoint: method, path template (the metric label) and media-type version, as the official
/// specification versions it (`tests/official_spec.rs` checks each against it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    pub template: &'static str,
    pub version: &'static str,
}

impl Endpoint {
    const fn new(method: &'static str, template: &'static str, version: &'static str) -> Self {
        Endpoint {
            method,
            template,
            version,
        }
    }

    /// Only reads are retried on 5xx and broken connections: a write may have been applied already.
    fn idempotent(&self) -> bool {
        self.method == "GET"
    }

    fn http_method(&self) -> reqwest::Method {
        match self.method {
            "POST" => reqwest::Method::POST,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            _ => reqwest::Method::GET,
        }
    }
}

const V2023: &str = "2023-01-01";
const GET_GROUP: Endpoint = Endpoint::new("GET", "/groups/{groupId}", V2023);
const GET_GROUP_BY_NAME: Endpoint = Endpoint::new("GET", "/groups/byName/{groupName}", V2023);
const GET_EAR: Endpoint = Endpoint::new("GET", "/groups/{groupId}/encryptionAtRest", V2023);
pub(super) const PATCH_EAR: Endpoint = Endpoint::new("PATCH", "/groups/{groupId}/encryptionAtRest", V2023);
const LIST_ROLES: Endpoint = Endpoint::new("GET", "/groups/{groupId}/cloudProviderAccess", V2023);
pub(super) const CREATE_ROLE: Endpoint =
    Endpoint::new("POST", "/groups/{groupId}/cloudProviderAccess", V2023);
const GET_ROLE: Endpoint = Endpoint::new("GET", "/groups/{groupId}/cloudProviderAccess/{roleId}", V2023);
pub(super) const AUTHORIZE_ROLE: Endpoint =
    Endpoint::new("PATCH", "/groups/{groupId}/cloudProviderAccess/{roleId}", V2023);
pub(super) const DEAUTHORIZE_ROLE: Endpoint = Endpoint::new(
    "DELETE",
    "/groups/{groupId}/cloudProviderAccess/{cloudProvider}/{roleId}",
    V2023,
);
const LIST_CLUSTERS: Endpoint = Endpoint::new("GET", "/groups/{groupId}/clusters", "2024-08-05");
const GET_CLUSTER: Endpoint = Endpoint::new("GET", "/groups/{groupId}/clusters/{clusterName}", "2024-08-05");
pub(super) const PATCH_CLUSTER: Endpoint =
    Endpoint::new("PATCH", "/groups/{groupId}/clusters/{clusterName}", "2024-10-23");
const LIST_SNAPSHOTS: Endpoint = Endpoint::new(
    "GET",
    "/groups/{groupId}/clusters/{clusterName}/backup/snapshots",
    V2023,
);
const LIST_EAR_ENDPOINTS: Endpoint = Endpoint::new(
    "GET",
    "/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints",
    V2023,
);
pub(super) const CREATE_EAR_ENDPOINT: Endpoint = Endpoint::new(
    "POST",
    "/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints",
    V2023,
);
pub(super) const DELETE_EAR_ENDPOINT: Endpoint = Endpoint::new(
    "DELETE",
    "/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints/{endpointId}",
    V2023,
);
const LIST_SHARDED_SNAPSHOTS: Endpoint = Endpoint::new(
    "GET",
    "/groups/{groupId}/clusters/{clusterName}/backup/snapshots/shardedClusters",
    V2023,
);
const CONTROL_PLANE_IPS: Endpoint = Endpoint::new("GET", "/unauth/controlPlaneIPAddresses", "2023-11-15");
const LIST_RATE_LIMITS: Endpoint = Endpoint::new("GET", "/rateLimits", "2025-03-12");
const OAUTH_TOKEN: Endpoint = Endpoint::new("POST", "/api/oauth/token", "");

/// Every Atlas Administration API endpoint the client calls (the OAuth token endpoint is not one).
pub const ENDPOINTS: &[Endpoint] = &[
    GET_GROUP,
    GET_GROUP_BY_NAME,
    GET_EAR,
    PATCH_EAR,
    LIST_EAR_ENDPOINTS,
    CREATE_EAR_ENDPOINT,
    DELETE_EAR_ENDPOINT,
    LIST_ROLES,
    CREATE_ROLE,
    GET_ROLE,
    AUTHORIZE_ROLE,
    DEAUTHORIZE_ROLE,
    LIST_CLUSTERS,
    GET_CLUSTER,
    PATCH_CLUSTER,
    LIST_SNAPSHOTS,
    LIST_SHARDED_SNAPSHOTS,
    CONTROL_PLANE_IPS,
    LIST_RATE_LIMITS,
];

/// The limiter key of unauthenticated calls.
const ANONYMOUS: &str = "<unauthenticated>";

/// Clone freely: clones share the connection pool, rate limiter and auth caches.
#[derive(Clone)]
pub struct AtlasClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: AtlasClientConfig,
    backoff: Backoff,
    limiter: RateLimiter,
    limits: LimitsCache,
    nonces: NonceCache,
    tokens: TokenCache,
}

impl fmt::Debug for AtlasClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtlasClient")
            .field("base_url", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

struct RawResponse {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl AtlasClient {
    pub fn new(config: AtlasClientConfig) -> Result<AtlasClient> {
        let base = Url::parse(&config.base_url)
            .map_err(|e| AtlasError::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(AtlasError::Config(format!(
                "base_url {:?} is not an http(s) URL",
                config.base_url
            )));
        }
        if !(1..=500).contains(&config.page_size) {
            return Err(AtlasError::Config("page_size must be within 1..=500".to_string()));
        }
        // NaN fails this too.
        if !config.rate_per_second.is_finite() || config.rate_per_second <= 0.0 {
            return Err(AtlasError::Config("rate_per_second must be positive".to_string()));
        }
        if config.rate_ceiling.is_some_and(|c| !c.is_finite() || c <= 0.0) {
            return Err(AtlasError::Config("rate_ceiling must be positive".to_string()));
        }
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| AtlasError::Config(format!("HTTP client: {e}")))?;
        Ok(AtlasClient {
            inner: Arc::new(Inner {
                http,
                base,
                backoff: Backoff {
                    base: config.backoff_base,
                    cap: config.backoff_cap,
                },
                limiter: RateLimiter::default(),
                limits: LimitsCache::default(),
                nonces: NonceCache::default(),
                tokens: TokenCache::default(),
                config,
            }),
        })
    }

    pub fn config(&self) -> &AtlasClientConfig {
        &self.inner.config
    }

    // ----- projects -----

    pub async fn get_project(&self, creds: &Credentials, group_id: &str) -> Result<Group> {
        self.get(creds, &GET_GROUP, &["groups", group_id]).await
    }

    pub async fn get_project_by_name(&self, creds: &Credentials, name: &str) -> Result<Group> {
        self.get(creds, &GET_GROUP_BY_NAME, &["groups", "byName", name])
            .await
    }

    // ----- encryption at rest -----

    pub async fn get_encryption_at_rest(
        &self,
        creds: &Credentials,
        group_id: &str,
    ) -> Result<EncryptionAtRest> {
        self.get(creds, &GET_EAR, &["groups", group_id, "encryptionAtRest"])
            .await
    }

    /// Sends `{"awsKms": <patch>}` with only the patch's set fields.
    pub async fn update_encryption_at_rest(
        &self,
        creds: &Credentials,
        group_id: &str,
        patch: &AwsKmsPatch,
    ) -> Result<EncryptionAtRest> {
        let body = EncryptionAtRestPatch {
            aws_kms: Some(patch),
            ..Default::default()
        };
        self.patch_encryption_at_rest(creds, group_id, &body).await
    }

    /// Sends `{"awsKms": …, "enabledForSearchNodes": …}` with only the parts that are set.
    pub async fn patch_encryption_at_rest(
        &self,
        creds: &Credentials,
        group_id: &str,
        body: &EncryptionAtRestPatch<'_>,
    ) -> Result<EncryptionAtRest> {
        self.send(creds, &Write::patch_encryption_at_rest(group_id, body))
            .await
    }

    /// The project's AWS KMS private endpoints for Encryption at Rest, all pages (deleting ones too).
    pub async fn list_ear_private_endpoints(
        &self,
        creds: &Credentials,
        group_id: &str,
    ) -> Result<Vec<EarPrivateEndpoint>> {
        self.get_all(
            creds,
            &LIST_EAR_ENDPOINTS,
            &["groups", group_id, "encryptionAtRest", "AWS", "privateEndpoints"],
        )
        .await
    }

    /// Asks Atlas for an AWS KMS private endpoint in `region`; Atlas answers 202 `INITIATING`.
    pub async fn create_ear_private_endpoint(
        &self,
        creds: &Credentials,
        group_id: &str,
        region: Region,
    ) -> Result<EarPrivateEndpoint> {
        self.send(creds, &Write::create_ear_private_endpoint(group_id, region))
            .await
    }

    /// Asks Atlas to delete a private endpoint; it stays `DELETING` for a while, then is gone.
    pub async fn delete_ear_private_endpoint(
        &self,
        creds: &Credentials,
        group_id: &str,
        endpoint_id: &str,
    ) -> Result<()> {
        self.send_unanswered(creds, &Write::delete_ear_private_endpoint(group_id, endpoint_id))
            .await
    }

    // ----- cloud provider access -----

    /// The project's AWS IAM roles (Azure and GCP entries are dropped).
    pub async fn list_aws_roles(&self, creds: &Credentials, group_id: &str) -> Result<Vec<AwsIamRole>> {
        let roles: CloudProviderAccessRoles = self
            .get(creds, &LIST_ROLES, &["groups", group_id, "cloudProviderAccess"])
            .await?;
        Ok(roles.aws_iam_roles)
    }

    /// Creates an AWS role; the answer carries `atlasAWSAccountArn` and `atlasAssumedRoleExternalId`
    /// for the customer's trust policy.
    pub async fn create_aws_role(&self, creds: &Credentials, group_id: &str) -> Result<AwsIamRole> {
        self.send(creds, &Write::create_aws_role(group_id)).await
    }

    pub async fn get_aws_role(
        &self,
        creds: &Credentials,
        group_id: &str,
        role_id: &str,
    ) -> Result<AwsIamRole> {
        self.get(
            creds,
            &GET_ROLE,
            &["groups", group_id, "cloudProviderAccess", role_id],
        )
        .await
    }

    /// Expect `CANNOT_ASSUME_ROLE` for a while after the IAM trust policy changes; the caller retries.
    pub async fn authorize_aws_role(
        &self,
        creds: &Credentials,
        group_id: &str,
        role_id: &str,
        role_arn: &RoleArn,
    ) -> Result<AwsIamRole> {
        let write = Write::authorize_aws_role(group_id, role_id, role_arn);
        self.send(creds, &write).await
    }

    pub async fn deauthorize_aws_role(
        &self,
        creds: &Credentials,
        group_id: &str,
        role_id: &str,
    ) -> Result<()> {
        self.send_unanswered(creds, &Write::deauthorize_aws_role(group_id, role_id))
            .await
    }

    // ----- clusters -----

    pub async fn list_clusters(&self, creds: &Credentials, group_id: &str) -> Result<Vec<Cluster>> {
        self.get_all(creds, &LIST_CLUSTERS, &["groups", group_id, "clusters"])
            .await
    }

    pub async fn get_cluster(&self, creds: &Credentials, group_id: &str, name: &str) -> Result<Cluster> {
        self.get(creds, &GET_CLUSTER, &["groups", group_id, "clusters", name])
            .await
    }

    /// PATCHes only `{"encryptionAtRestProvider": ...}`; pass `Aws` or `None`.
    pub async fn set_cluster_encryption_provider(
        &self,
        creds: &Credentials,
        group_id: &str,
        name: &str,
        provider: EncryptionProvider,
    ) -> Result<Cluster> {
        let write = Write::set_cluster_encryption_provider(group_id, name, provider)?;
        self.send(creds, &write).await
    }

    /// Every replica-set snapshot of the cluster, all pages.
    pub async fn list_snapshots(
        &self,
        creds: &Credentials,
        group_id: &str,
        cluster: &str,
    ) -> Result<Vec<Snapshot>> {
        self.get_all(
            creds,
            &LIST_SNAPSHOTS,
            &["groups", group_id, "clusters", cluster, "backup", "snapshots"],
        )
        .await
    }

    /// Every sharded-cluster snapshot of the cluster, all pages. A sharded cluster's snapshots are not
    /// in the replica-set list, and they hold keys just the same.
    pub async fn list_sharded_snapshots(
        &self,
        creds: &Credentials,
        group_id: &str,
        cluster: &str,
    ) -> Result<Vec<Snapshot>> {
        self.get_all(
            creds,
            &LIST_SHARDED_SNAPSHOTS,
            &[
                "groups",
                group_id,
                "clusters",
                cluster,
                "backup",
                "snapshots",
                "shardedClusters",
            ],
        )
        .await
    }

    // ----- unauthenticated -----

    pub async fn control_plane_ip_addresses(&self) -> Result<ControlPlaneIpAddresses> {
        let url = self.url(&["unauth", "controlPlaneIPAddresses"], &[]);
        let body = self.execute(None, &CONTROL_PLANE_IPS, &url, None).await?;
        decode(&CONTROL_PLANE_IPS, &body)
    }

    // ----- plumbing -----

    /// Page `page_num` of a list, at the configured page size, with the total count asked for.
    fn page_url(&self, segments: &[&str], page_num: u32) -> Url {
        let query = [
            ("pageNum", page_num.to_string()),
            ("itemsPerPage", self.inner.config.page_size.to_string()),
            ("includeCount", "true".to_string()),
        ];
        self.url(segments, &query)
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.inner.base.clone();
        {
            // safe unwrap: `new` refused bases that cannot carry a path.
            let mut path = url.path_segments_mut().expect("base URL carries a path");
            path.pop_if_empty()
                .extend(["api", "atlas", "v2"])
                .extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    async fn get<T: DeserializeOwned>(
        &self,
        creds: &Credentials,
        ep: &Endpoint,
        segments: &[&str],
    ) -> Result<T> {
        let url = self.url(segments, &[]);
        let body = self.execute(Some(creds), ep, &url, None).await?;
        decode(ep, &body)
    }

    /// Sends `write` and decodes Atlas's answer.
    pub async fn send<T: DeserializeOwned>(&self, creds: &Credentials, write: &Write) -> Result<T> {
        let answer = self.send_write(creds, write).await?;
        decode(write.endpoint, &answer)
    }

    /// Sends `write` whose answer carries nothing to read (a DELETE).
    pub async fn send_unanswered(&self, creds: &Credentials, write: &Write) -> Result<()> {
        self.send_write(creds, write).await.map(drop)
    }

    async fn send_write(&self, creds: &Credentials, write: &Write) -> Result<Vec<u8>> {
        let segments: Vec<&str> = write.segments.iter().map(String::as_str).collect();
        let url = self.url(&segments, &[]);
        let payload = match &write.body {
            Some(body) => Some(
                serde_json::to_vec(body)
                    .map_err(|e| AtlasError::Config(format!("cannot encode the request body: {e}")))?,
            ),
            None => None,
        };
        self.execute(Some(creds), write.endpoint, &url, payload.as_deref())
            .await
    }

    /// Follows Atlas pagination until the last page (`links` with `rel: next`).
    async fn get_all<T: DeserializeOwned>(
        &self,
        creds: &Credentials,
        ep: &Endpoint,
        segments: &[&str],
    ) -> Result<Vec<T>> {
        // A bound on pages guards against a server whose `next` link never ends.
        const MAX_PAGES: u32 = 1000;
        let per_page = self.inner.config.page_size;
        let mut out = Vec::new();
        for page_num in 1..=MAX_PAGES {
            let url = self.page_url(segments, page_num);
            let body = self.execute(Some(creds), ep, &url, None).await?;
            let page: Page<T> = decode(ep, &body)?;
            if !collect_page(page, &mut out, per_page) {
                return Ok(out);
            }
        }
        // Every caller counts on the whole list (snapshots decide whether a key may be deleted): an
        // answer cut at the bound is an error, never a short list.
        Err(AtlasError::Config(format!(
            "{} {} listed more than {MAX_PAGES} pages; refusing a partial answer",
            ep.method, ep.template
        )))
    }

    /// One logical call: pacing, authentication, retries. Returns the success body.
    async fn execute(
        &self,
        creds: Option<&Credentials>,
        ep: &Endpoint,
        url: &Url,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let plan = self.pacing_plan(creds, ep, url).await?;
        self.execute_planned(creds, ep, url, body, &plan).await
    }

    /// [`Self::execute`] drawing from the given buckets.
    async fn execute_planned(
        &self,
        creds: Option<&Credentials>,
        ep: &Endpoint,
        url: &Url,
        body: Option<&[u8]>,
        plan: &[BucketRef],
    ) -> Result<Vec<u8>> {
        let cfg = &self.inner.config;
        let mut waited = Duration::ZERO;
        let mut attempt = 0u32;
        loop {
            let Some(reservations) = self.pace(plan, ep).await else {
                return Err(AtlasError::NoSpareBudget {
                    method: ep.method,
                    endpoint: ep.template,
                });
            };
            let (err, retry_in, reason) = match self.send_authenticated(creds, ep, url, body).await {
                Ok(resp) => {
                    self.observe_remaining(plan, &reservations, &resp.headers);
                    if (200..300).contains(&resp.status) {
                        return Ok(resp.body);
                    }
                    let retry_after = resp
                        .headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    if resp.status == 429 {
                        self.throttle(plan, &resp.headers, retry_after, ep);
                    }
                    let err = AtlasError::from_response(
                        ep.method,
                        ep.template,
                        resp.status,
                        &resp.body,
                        retry_after,
                    );
                    // A 429 was not processed, so even writes may go again; a 5xx write may have been.
                    let (retryable, reason) = match resp.status {
                        429 => (true, "rate_limited"),
                        500..=599 => (ep.idempotent() && resp.status != 501, "server_error"),
                        _ => (false, ""),
                    };
                    let wait = match retry_after {
                        Some(ra) => ra + self.inner.backoff.delay(0) / 4,
                        None => self.inner.backoff.delay(attempt),
                    };
                    (err, retryable.then_some(wait), reason)
                }
                Err(err) => {
                    // A write that may have been applied is not sent again.
                    let retryable = matches!(err, AtlasError::Transport { .. } | AtlasError::Timeout { .. })
                        && !err.write_outcome_unknown();
                    (
                        err,
                        retryable.then(|| self.inner.backoff.delay(attempt)),
                        "transport",
                    )
                }
            };
            match retry_in {
                Some(wait) if attempt < cfg.max_retries && waited + wait <= cfg.max_retry_wait => {
                    if let Some(m) = &cfg.metrics {
                        m.on_retry(ep.template, ep.method, reason);
                        if reason == "rate_limited" {
                            m.on_rate_limit_wait(ep.template, wait);
                        }
                    }
                    tracing::debug!(
                        endpoint = ep.template,
                        method = ep.method,
                        attempt,
                        ?wait,
                        reason,
                        "retrying Atlas call"
                    );
                    tokio::time::sleep(wait).await;
                    waited += wait;
                    attempt += 1;
                }
                _ => return Err(err),
            }
        }
    }

    /// Takes a token from every bucket of the plan and sleeps until the last is due. Returns each
    /// bucket's reservation number; `None` for a spare call that found no budget to spare.
    async fn pace(&self, plan: &[BucketRef], ep: &Endpoint) -> Option<Vec<u64>> {
        match lane::current() {
            Lane::Change => Some(self.pace_change(plan, ep).await),
            Lane::Routine => Some(self.pace_routine(plan, ep).await),
            Lane::Spare => self.pace_spare(plan),
        }
    }

    /// [`Self::pace`] for a spare call: a token above the reserve from every bucket now, or none taken
    /// at all beyond the first refusal.
    fn pace_spare(&self, plan: &[BucketRef]) -> Option<Vec<u64>> {
        plan.iter()
            .map(|bucket| {
                self.inner
                    .limiter
                    .take_above_reserve(&bucket.key, bucket.limit)
                    .ok()
            })
            .collect()
    }

    /// [`Self::pace`] for a change-driven call: a reservation in arrival order in every bucket.
    async fn pace_change(&self, plan: &[BucketRef], ep: &Endpoint) -> Vec<u64> {
        let mut wait = Duration::ZERO;
        let mut reservations = Vec::with_capacity(plan.len());
        for bucket in plan {
            let (w, number) = self.inner.limiter.reserve(&bucket.key, bucket.limit);
            wait = wait.max(w);
            reservations.push(number);
        }
        if !wait.is_zero() {
            if let Some(m) = &self.inner.config.metrics {
                m.on_rate_limit_wait(ep.template, wait);
            }
            tokio::time::sleep(wait).await;
        }
        reservations
    }

    /// [`Self::pace`] for a routine call: each bucket's token taken only above its reserve for
    /// change-driven calls, waiting (without reserving) until there is one.
    async fn pace_routine(&self, plan: &[BucketRef], ep: &Endpoint) -> Vec<u64> {
        let mut waited = Duration::ZERO;
        let mut reservations = Vec::with_capacity(plan.len());
        for bucket in plan {
            loop {
                match self.inner.limiter.take_above_reserve(&bucket.key, bucket.limit) {
                    Ok(number) => break reservations.push(number),
                    Err(wait) => {
                        waited += wait;
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        if !waited.is_zero()
            && let Some(m) = &self.inner.config.metrics
        {
            m.on_rate_limit_wait(ep.template, waited);
        }
        reservations
    }

    /// The published buckets of the plan an answer's `RateLimit-Limit` speaks of: those of that
    /// capacity, or, when none has it (an override Atlas applies to this project), all of them.
    fn reported<'a>(
        plan: &'a [BucketRef],
        headers: &HeaderMap,
    ) -> Vec<(usize, &'a BucketRef, &'a PublishedSet)> {
        let limit = header_number(headers, "ratelimit-limit");
        let published: Vec<_> = plan
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some((i, b, b.set.as_ref()?)))
            .collect();
        let by_capacity: Vec<_> = published
            .iter()
            .filter(|(_, _, set)| limit == Some(set.capacity))
            .cloned()
            .collect();
        if by_capacity.is_empty() {
            published
        } else {
            by_capacity
        }
    }

    /// Atlas's `RateLimit-Remaining` corrects our estimate of the published bucket it counts (less the
    /// tokens kept in hand). The configured pace is left alone: it is a guess by design.
    fn observe_remaining(&self, plan: &[BucketRef], reservations: &[u64], headers: &HeaderMap) {
        let Some(remaining) = header_number(headers, "ratelimit-remaining") else {
            return;
        };
        for (i, bucket, _) in Self::reported(plan, headers) {
            let in_hand = remaining.saturating_sub(HELD_TOKENS);
            self.inner
                .limiter
                .observed_remaining(&bucket.key, reservations[i], in_hand);
        }
    }

    /// A 429 slows only the bucket whose scope refused (the one of the capacity Atlas names), or the
    /// configured one when no published bucket covers the call.
    fn throttle(
        &self,
        plan: &[BucketRef],
        headers: &HeaderMap,
        retry_after: Option<Duration>,
        ep: &Endpoint,
    ) {
        let reported: Vec<(&BucketRef, Option<&PublishedSet>)> = match Self::reported(plan, headers) {
            r if r.is_empty() => plan.iter().map(|b| (b, None)).collect(),
            r => r.into_iter().map(|(_, b, set)| (b, Some(set))).collect(),
        };
        for (bucket, set) in reported {
            if let Some(pace) = self
                .inner
                .limiter
                .throttled(&bucket.key, bucket.limit, retry_after)
            {
                tracing::warn!(
                    calls_per_second = pace,
                    endpoint = ep.template,
                    endpoint_set = set.map_or("(configured pace)", |s| &*s.id),
                    scope = ?set.map(|s| s.scope),
                    "Atlas refused a call with 429: slowing the pace of the bucket that refused, \
                     regaining its limit over minutes without another 429"
                );
            }
        }
    }

    /// The reads per second the fleet's resyncs can count on: what Atlas publishes for the slowest
    /// credential (its organization- or key-wide read buckets), else the configured pace; never above
    /// the ceiling.
    pub fn sustained_read_rate(&self) -> f64 {
        let cfg = &self.inner.config;
        let rate = self
            .inner
            .limits
            .sustained_read_rate()
            .unwrap_or(cfg.rate_per_second);
        cfg.rate_ceiling.map_or(rate, |ceiling| rate.min(ceiling))
    }

    /// The configured bucket of a credential: its pace when Atlas publishes no limits (or none for
    /// this endpoint), never above the ceiling.
    fn configured_bucket(&self, identity: &str) -> BucketRef {
        let cfg = &self.inner.config;
        let rate = cfg
            .rate_ceiling
            .map_or(cfg.rate_per_second, |c| c.min(cfg.rate_per_second));
        BucketRef {
            key: format!("configured:{identity}"),
            limit: BucketLimit::new(f64::from(cfg.burst), rate),
            set: None,
        }
    }

    /// The buckets a call draws from: the published endpoint sets covering it (and the ceiling, when
    /// one is set), or the credential's configured pace.
    /// A read of the limits that failed the way every call of the credential would (an untrusted
    /// certificate, refused credentials) is the call's answer too: the call is not sent after it.
    async fn pacing_plan(
        &self,
        creds: Option<&Credentials>,
        ep: &Endpoint,
        url: &Url,
    ) -> Result<Vec<BucketRef>> {
        let Some(creds) = creds else {
            return Ok(vec![self.configured_bucket(ANONYMOUS)]);
        };
        let identity = creds.identity();
        let mut plan = match self.learned_limits(creds).await? {
            Some(coverage) => coverage.buckets(ep.method, ep.template, identity, group_of(url).as_deref()),
            None => vec![],
        };
        match self.inner.config.rate_ceiling {
            _ if plan.is_empty() => plan.push(self.configured_bucket(identity)),
            Some(ceiling) => plan.push(BucketRef {
                key: format!("ceiling:{identity}"),
                limit: BucketLimit::new(f64::from(self.inner.config.burst), ceiling),
                set: None,
            }),
            None => {}
        }
        Ok(plan)
    }

    /// The credential's published limits, read the first time it is used and again every refresh
    /// period; `None` while Atlas does not publish them to this credential.
    async fn learned_limits(&self, creds: &Credentials) -> Result<Option<Arc<Coverage>>> {
        /// A failed read (429, 5xx, no answer) is tried again this soon.
        const RETRY_FAILED_READ: Duration = Duration::from_secs(60);
        let slot = self.inner.limits.slot(creds.identity());
        let mut learned = slot.lock().await;
        let now = Instant::now();
        if let Some(l) = learned.as_ref()
            && now < l.refresh_at
        {
            return Ok(published(&l.learned));
        }
        let refresh = self.inner.config.rate_limits_refresh;
        let mut refusal = None;
        let (outcome, next) = match self.read_rate_limits(creds).await {
            Ok(sets) => {
                let coverage = Coverage::from_sets(&sets);
                if coverage.is_empty() {
                    (
                        "unpublished",
                        LearnedLimits {
                            learned: Learned::Unpublished,
                            refresh_at: now + refresh,
                        },
                    )
                } else {
                    let learned = Learned::Published(Arc::new(coverage));
                    (
                        "published",
                        LearnedLimits {
                            learned,
                            refresh_at: now + refresh,
                        },
                    )
                }
            }
            // An Atlas without the endpoint, or a key without the role to read it: ask again later.
            Err(e) if matches!(e.status(), Some(400 | 403 | 404 | 406 | 410)) => (
                "unpublished",
                LearnedLimits {
                    learned: Learned::Unpublished,
                    refresh_at: now + refresh,
                },
            ),
            // Unreadable for now: keep what was learnt before, if anything, and ask again soon.
            Err(e) => {
                if e.refuses_every_call() {
                    refusal = Some(e);
                }
                let learned = learned
                    .as_ref()
                    .map_or(Learned::Unpublished, |l| l.learned.clone());
                (
                    "failed",
                    LearnedLimits {
                        learned,
                        refresh_at: now + RETRY_FAILED_READ,
                    },
                )
            }
        };
        self.report_limits_read(outcome, &next.learned);
        let out = published(&next.learned);
        *learned = Some(next);
        match refusal {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn report_limits_read(&self, outcome: &'static str, learned: &Learned) {
        if let Some(m) = &self.inner.config.metrics {
            m.on_rate_limits_read(outcome);
        }
        let fallback = matches!(learned, Learned::Unpublished);
        if fallback
            && !self
                .inner
                .limits
                .fallback_logged
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                outcome,
                calls_per_second = self.configured_bucket(ANONYMOUS).limit.rate,
                "Atlas's rate limits (GET /api/atlas/v2/rateLimits) cannot be read with these credentials: \
                 pacing by the configured rate instead (logged once; see the atlas_rate_limit_reads metric)"
            );
        } else {
            tracing::debug!(outcome, "read Atlas's published rate limits");
        }
    }

    /// Every published endpoint set, paced by the credential's configured bucket.
    async fn read_rate_limits(&self, creds: &Credentials) -> Result<Vec<RateLimitEndpointSet>> {
        const MAX_PAGES: u32 = 20;
        let plan = [self.configured_bucket(creds.identity())];
        let per_page = self.inner.config.page_size;
        let mut out = Vec::new();
        for page_num in 1..=MAX_PAGES {
            let url = self.page_url(&["rateLimits"], page_num);
            let ep = &LIST_RATE_LIMITS;
            let body = self.execute_planned(Some(creds), ep, &url, None, &plan).await?;
            let page: Page<RateLimitEndpointSet> = decode(ep, &body)?;
            if !collect_page(page, &mut out, per_page) {
                break;
            }
        }
        Ok(out)
    }

    /// Sends with the right credentials, handling the Digest challenge round trip (and one stale nonce)
    /// or the bearer token (and one refresh after a 401).
    async fn send_authenticated(
        &self,
        creds: Option<&Credentials>,
        ep: &Endpoint,
        url: &Url,
        body: Option<&[u8]>,
    ) -> Result<RawResponse> {
        match creds {
            None => self.send_once(ep, url, body, None).await,
            Some(Credentials::ApiKey {
                public_key,
                private_key,
            }) => {
                let uri = &url[url::Position::BeforePath..];
                let sign = |challenge: &DigestChallenge, nc: u32| {
                    challenge.authorization(public_key, private_key, ep.method, uri, nc, &new_cnonce())
                };
                #[derive(PartialEq)]
                enum Sent {
                    Bare,
                    CachedNonce,
                    FreshNonce,
                }
                let (mut header, mut sent) = match self.inner.nonces.next(public_key) {
                    Some((challenge, nc)) => (Some(sign(&challenge, nc)), Sent::CachedNonce),
                    None => (None, Sent::Bare),
                };
                let mut stale_retried = false;
                loop {
                    let resp = self.send_once(ep, url, body, header.as_deref()).await?;
                    if resp.status != 401 {
                        return Ok(resp);
                    }
                    let offered = resp
                        .headers
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok());
                    let Some(challenge) = DigestChallenge::select(offered) else {
                        return Ok(resp);
                    };
                    let again = match sent {
                        Sent::Bare | Sent::CachedNonce => true,
                        Sent::FreshNonce if challenge.stale && !stale_retried => {
                            stale_retried = true;
                            true
                        }
                        Sent::FreshNonce => false,
                    };
                    if !again {
                        self.inner.nonces.forget(public_key);
                        return Ok(resp);
                    }
                    let nc = self.inner.nonces.store(public_key, challenge.clone());
                    header = Some(sign(&challenge, nc));
                    sent = Sent::FreshNonce;
                }
            }
            Some(sa @ Credentials::ServiceAccount { .. }) => {
                let (token, from_cache) = self.token(sa, false).await?;
                let resp = self
                    .send_once(ep, url, body, Some(&format!("Bearer {token}")))
                    .await?;
                if resp.status != 401 || !from_cache {
                    return Ok(resp);
                }
                // The cached token was revoked or expired early: mint a new one, once.
                let (token, _) = self.token(sa, true).await?;
                self.send_once(ep, url, body, Some(&format!("Bearer {token}")))
                    .await
            }
        }
    }

    /// A bearer token for the service account, and whether it came from the cache.
    async fn token(&self, creds: &Credentials, force_refresh: bool) -> Result<(String, bool)> {
        let Credentials::ServiceAccount {
            client_id,
            client_secret,
        } = creds
        else {
            return Err(AtlasError::Config(
                "a token needs service-account credentials".to_string(),
            ));
        };
        let slot = self.inner.tokens.slot(client_id);
        let mut cached = slot.lock().await;
        if !force_refresh
            && let Some(t) = cached.as_ref()
            && t.is_fresh(creds)
        {
            return Ok((t.token.clone(), true));
        }
        *cached = None;
        let ep = &OAUTH_TOKEN;
        let mut url = self.inner.base.clone();
        url.set_path("/api/oauth/token");
        let start = Instant::now();
        let sent = self
            .inner
            .http
            .post(url)
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic's base64, as the official
            // Atlas Go SDK (golang.org/x/oauth2) sends them; a no-op for unreserved characters.
            .basic_auth(form_encode(client_id), Some(form_encode(client_secret)))
            .header(ACCEPT, "application/json")
            .form(&[("grant_type", "client_credentials")])
            .timeout(self.inner.config.timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.record(ep, None, start);
                // The API call itself was never sent, so retrying it is safe whatever its method.
                return Err(match transport_error(ep, e, self.inner.config.timeout) {
                    AtlasError::Transport {
                        method,
                        endpoint,
                        message,
                        ..
                    } => AtlasError::Transport {
                        method,
                        endpoint,
                        message,
                        connect: true,
                    },
                    other => other,
                });
            }
        };
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        self.record(ep, Some(status), start);
        if status != 200 {
            #[derive(serde::Deserialize, Default)]
            #[serde(default)]
            struct OAuthError {
                error: Option<String>,
                error_description: Option<String>,
            }
            let oauth: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
            let error_code = oauth.error.unwrap_or_else(|| "UNKNOWN".to_string());
            let detail = bounded(
                &oauth
                    .error_description
                    .unwrap_or_else(|| format!("HTTP {status}")),
            );
            return Err(if matches!(status, 400 | 401 | 403) {
                AtlasError::Unauthorized {
                    method: ep.method,
                    endpoint: ep.template,
                    status,
                    error_code,
                    detail,
                }
            } else {
                AtlasError::Api {
                    method: ep.method,
                    endpoint: ep.template,
                    status,
                    error_code,
                    detail,
                    parameters: vec![],
                }
            });
        }
        let token: TokenResponse = decode(ep, &body)?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        let fresh = CachedToken::new(token.access_token, lifetime, creds);
        let out = fresh.token.clone();
        *cached = Some(fresh);
        Ok((out, false))
    }

    async fn send_once(
        &self,
        ep: &Endpoint,
        url: &Url,
        body: Option<&[u8]>,
        authorization: Option<&str>,
    ) -> Result<RawResponse> {
        let media = format!("application/vnd.atlas.{}+json", ep.version);
        let timeout = self.inner.config.timeout;
        let mut req = self
            .inner
            .http
            .request(ep.http_method(), url.clone())
            .header(ACCEPT, &media)
            .timeout(timeout);
        if let Some(b) = body {
            req = req.header(CONTENT_TYPE, &media).body(b.to_vec());
        }
        if let Some(a) = authorization {
            let mut value = HeaderValue::from_str(a).map_err(|_| {
                AtlasError::Config("credentials contain characters HTTP headers cannot carry".into())
            })?;
            value.set_sensitive(true);
            req = req.header(AUTHORIZATION, value);
        }
        let start = Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.record(ep, None, start);
                return Err(transport_error(ep, e, timeout));
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                self.record(ep, None, start);
                return Err(transport_error(ep, e, timeout));
            }
        };
        self.record(ep, Some(status), start);
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn record(&self, ep: &Endpoint, status: Option<u16>, start: Instant) {
        let elapsed = start.elapsed();
        tracing::debug!(
            endpoint = ep.template,
            method = ep.method,
            status,
            elapsed_ms = elapsed.as_millis() as u64,
            "atlas call"
        );
        if let Some(m) = &self.inner.config.metrics {
            m.on_call(ep.template, ep.method, status, elapsed);
        }
    }
}

fn published(learned: &Learned) -> Option<Arc<Coverage>> {
    match learned {
        Learned::Published(coverage) => Some(coverage.clone()),
        Learned::Unpublished => None,
    }
}

/// Adds a page's results to `out`; whether another page should be read.
fn collect_page<T>(page: Page<T>, out: &mut Vec<T>, per_page: u32) -> bool {
    let n = page.results.len();
    out.extend(page.results);
    let has_next = page.links.iter().any(|l| l.rel == "next");
    n > 0
        && (has_next
            || page.total_count.is_some_and(|t| (out.len() as u64) < t)
            || (page.links.is_empty() && page.total_count.is_none() && n == per_page as usize))
}

/// A numeric header such as `RateLimit-Remaining`.
fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The project a call's path names (`/groups/{groupId}/…`, or `/groups/byName/{name}`): the key of
/// Atlas's `GROUP`-scoped buckets.
fn group_of(url: &Url) -> Option<String> {
    let mut segments = url.path_segments()?.skip_while(|s| *s != "groups").skip(1);
    match segments.next()? {
        "byName" => segments.next().map(|name| format!("byName:{name}")),
        id => Some(id.to_string()),
    }
}

/// application/x-www-form-urlencoded, for the client id and secret in the token request's Basic header.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn decode<T: DeserializeOwned>(ep: &Endpoint, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| AtlasError::Decode {
        method: ep.method,
        endpoint: ep.template,
        status: 200,
        message: e.to_string(),
    })
}

/// reqwest's message plus its causes, without the URL (it adds nothing the endpoint label lacks).
fn transport_error(ep: &Endpoint, e: reqwest::Error, timeout: Duration) -> AtlasError {
    if e.is_timeout() {
        return AtlasError::Timeout {
            method: ep.method,
            endpoint: ep.template,
            timeout,
        };
    }
    let connect = e.is_connect();
    let untrusted = crate::tls::refused_certificate(&e);
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    if untrusted {
        return AtlasError::UntrustedCertificate {
            method: ep.method,
            endpoint: ep.template,
            message: bounded(&message),
        };
    }
    AtlasError::Transport {
        method: ep.method,
        endpoint: ep.template,
        message: bounded(&message),
        connect,
    }
}
