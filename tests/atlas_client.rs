//! The Atlas client against atlas-sim, in-process: every endpoint with both auth modes (Digest MD5 and
//! SHA-256, service account), errorCode mapping, 429/5xx handling, token refresh and secret hygiene.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atlas_encryption_operator::atlas::{
    AtlasClient, AtlasClientConfig, AtlasError, AtlasMetrics, AwsKmsPatch, Credentials, EncryptionProvider,
    Lane, PrivateEndpointStatus, lane,
};
use atlas_encryption_operator::aws::{KeyRef, Region, RoleArn};
use atlas_sim::{BucketConfig, Seed, SimConfig, SimHandle};
use serde_json::{Value, json};

const ALPHA: &str = "5f43a1b2c3d4e5f678901234";
const BETA: &str = "5f43a1b2c3d4e5f678905678";
const MISSING: &str = "5f43a1b2c3d4e5f678909999";

const PUB: &str = "PUBKEYALPHA";
const PRIV: &str = "priv-SECRET-a1b2c3d4-never-leak";
const PUB_BETA: &str = "PUBKEYBETA";
const PRIV_BETA: &str = "priv-SECRET-beta-never-leak";
const PUB_ALL: &str = "PUBKEYORGOWNER";
const PRIV_ALL: &str = "priv-SECRET-owner-never-leak";
const SA_ID: &str = "mdb_sa_id_0123456789abcdef01234567";
const SA_SECRET: &str = "mdb_sa_sk_SECRET-never-leak";

const KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/atlas-kms-access";

fn seed() -> Seed {
    Seed::from_yaml_str(&format!(
        r#"
apiKeys:
  - {{publicKey: {PUB}, privateKey: {PRIV}, projects: [alpha]}}
  - {{publicKey: {PUB_BETA}, privateKey: {PRIV_BETA}, projects: [beta]}}
  - {{publicKey: {PUB_ALL}, privateKey: {PRIV_ALL}, projects: ["*"]}}
serviceAccounts:
  - {{clientId: {SA_ID}, clientSecret: {SA_SECRET}, projects: [alpha]}}
projects:
  - name: alpha
    id: {ALPHA}
    clusters:
      - {{name: prod-1, instanceSize: M10, providerName: AWS, regionName: US_EAST_1, backupEnabled: true}}
      - {{name: prod-2, instanceSize: M30, providerName: AWS, regionName: US_EAST_1, backupEnabled: true}}
      - {{name: dev-1, instanceSize: M10, providerName: AWS, regionName: US_EAST_1, backupEnabled: false}}
      - {{name: free, instanceSize: M0, providerName: AWS, regionName: US_EAST_1, backupEnabled: false}}
      - {{name: prod-3, instanceSize: M20, providerName: AWS, regionName: US_EAST_1, backupEnabled: true}}
  - name: beta
    id: {BETA}
"#
    ))
    .expect("seed parses")
}

async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = SimConfig {
        seed: Some(seed()),
        cluster_update_delay: Duration::from_millis(50),
        ..Default::default()
    };
    f(&mut config);
    atlas_sim::spawn(config).await.expect("sim starts")
}

/// Counts calls per (endpoint template, status) through the metrics hook.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(&'static str, &'static str, Option<u16>)>>,
    retries: Mutex<Vec<&'static str>>,
    waits: Mutex<usize>,
    limit_reads: Mutex<Vec<&'static str>>,
}

impl AtlasMetrics for Recorder {
    fn on_call(&self, endpoint: &'static str, method: &'static str, status: Option<u16>, _: Duration) {
        self.calls.lock().unwrap().push((endpoint, method, status));
    }
    fn on_retry(&self, _: &'static str, _: &'static str, reason: &'static str) {
        self.retries.lock().unwrap().push(reason);
    }
    fn on_rate_limit_wait(&self, _: &'static str, _: Duration) {
        *self.waits.lock().unwrap() += 1;
    }
    fn on_rate_limits_read(&self, outcome: &'static str) {
        self.limit_reads.lock().unwrap().push(outcome);
    }
}

impl Recorder {
    fn count(&self, endpoint: &str, status: Option<u16>) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _, s)| *e == endpoint && *s == status)
            .count()
    }
}

fn client(sim: &SimHandle, f: impl FnOnce(&mut AtlasClientConfig)) -> (AtlasClient, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let mut config = AtlasClientConfig {
        base_url: sim.base_url(),
        timeout: Duration::from_secs(5),
        rate_per_second: 1000.0,
        burst: 1000,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        metrics: Some(recorder.clone()),
        ..Default::default()
    };
    f(&mut config);
    (AtlasClient::new(config).expect("client builds"), recorder)
}

/// The sim's call log without the client's reads of the rate limits (once per credential, before its
/// first call; this sim publishes none unless a test asks, so they answer 404).
fn project_calls(sim: &SimHandle) -> Vec<atlas_sim::CallRecord> {
    sim.calls()
        .into_iter()
        .filter(|c| c.route.as_deref() != Some("/api/atlas/v2/rateLimits"))
        .collect()
}

async fn control(sim: &SimHandle, method: reqwest::Method, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .expect("control API answers");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

async fn fault(sim: &SimHandle, spec: Value) {
    control(sim, reqwest::Method::POST, "/__sim/faults", spec).await;
}

fn api_key() -> Credentials {
    Credentials::api_key(PUB, PRIV)
}

fn service_account() -> Credentials {
    Credentials::service_account(SA_ID, SA_SECRET)
}

/// Polls `read` until it returns `want` (Atlas's state machines move on their own clock).
async fn wait_until<T, F, Fut>(read: F, want: T)
where
    T: PartialEq + std::fmt::Debug,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = read().await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {now:?}, waiting for {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The operator's whole call surface, in the order a first reconcile uses it.
async fn exercise_every_endpoint(sim: &SimHandle, atlas: &AtlasClient, creds: &Credentials) {
    let group = atlas.get_project(creds, ALPHA).await.unwrap();
    assert_eq!((group.id.as_str(), group.name.as_str()), (ALPHA, "alpha"));
    assert!(!group.org_id.is_empty());
    let by_name = atlas.get_project_by_name(creds, "alpha").await.unwrap();
    assert_eq!(by_name.id, ALPHA);

    let ear = atlas.get_encryption_at_rest(creds, ALPHA).await.unwrap();
    assert!(!ear.aws_enabled());

    let role = atlas.create_aws_role(creds, ALPHA).await.unwrap();
    assert_eq!(role.role_id.len(), 24);
    assert!(role.atlas_aws_account_arn.is_some() && role.atlas_assumed_role_external_id.is_some());
    assert!(!role.is_authorized());
    let listed = atlas.list_aws_roles(creds, ALPHA).await.unwrap();
    assert!(listed.iter().any(|r| r.role_id == role.role_id));

    let arn = RoleArn::parse(ROLE_ARN).unwrap();
    let authorized = atlas
        .authorize_aws_role(creds, ALPHA, &role.role_id, &arn)
        .await
        .unwrap();
    assert!(authorized.is_authorized(), "{authorized:?}");
    assert_eq!(authorized.role_arn(), Some(arn.clone()));
    let fetched = atlas.get_aws_role(creds, ALPHA, &role.role_id).await.unwrap();
    assert_eq!(fetched.iam_assumed_role_arn.as_deref(), Some(ROLE_ARN));

    let key = KeyRef::parse(KEY_ARN).unwrap();
    let region = Region::parse("us-east-1").unwrap();
    let patch = AwsKmsPatch::enable(&key, region, &role.role_id, false);
    let ear = atlas
        .update_encryption_at_rest(creds, ALPHA, &patch)
        .await
        .unwrap();
    let aws = ear.aws_kms.as_ref().unwrap();
    assert!(aws.is_enabled());
    assert!(aws.key().unwrap().same_key(&key));
    assert_eq!(aws.region(), Some(region));
    let partial = atlas
        .update_encryption_at_rest(
            creds,
            ALPHA,
            &AwsKmsPatch {
                require_private_networking: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        partial.aws_kms.unwrap().key().unwrap().same_key(&key),
        "a partial PATCH keeps the key"
    );

    // Private endpoints: created INITIATING, ACTIVE after Atlas's delay, DELETING, then gone.
    let endpoint = atlas
        .create_ear_private_endpoint(creds, ALPHA, region)
        .await
        .unwrap();
    assert_eq!(endpoint.status, PrivateEndpointStatus::Initiating);
    assert_eq!(endpoint.region(), Some(region));
    let endpoint_status = |id: String| async move {
        atlas
            .list_ear_private_endpoints(creds, ALPHA)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.id == id)
            .map(|e| e.status)
    };
    wait_until(
        || endpoint_status(endpoint.id.clone()),
        Some(PrivateEndpointStatus::Active),
    )
    .await;
    atlas
        .delete_ear_private_endpoint(creds, ALPHA, &endpoint.id)
        .await
        .unwrap();
    wait_until(|| endpoint_status(endpoint.id.clone()), None).await;

    let clusters = atlas.list_clusters(creds, ALPHA).await.unwrap();
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clusters.len(), 5, "{names:?}");
    let free = clusters.iter().find(|c| c.name == "free").unwrap();
    assert!(free.is_tenant() && !free.supports_customer_key());
    let prod = atlas.get_cluster(creds, ALPHA, "prod-1").await.unwrap();
    assert_eq!(prod.instance_sizes(), vec!["M10"]);
    assert!(prod.supports_customer_key() && prod.backup_enabled == Some(true));
    assert_eq!(prod.provider(), EncryptionProvider::None);

    let patched = atlas
        .set_cluster_encryption_provider(creds, ALPHA, "prod-1", EncryptionProvider::Aws)
        .await
        .unwrap();
    assert_eq!(patched.provider(), EncryptionProvider::Aws);

    control(
        sim,
        reqwest::Method::POST,
        &format!("/__sim/projects/{ALPHA}/clusters/prod-1/snapshots"),
        json!({}),
    )
    .await;
    let snapshots = atlas.list_snapshots(creds, ALPHA, "prod-1").await.unwrap();
    assert_eq!(snapshots.len(), 1);
    assert!(snapshots[0].created_at.is_some() && !snapshots[0].id.is_empty());
    // A sharded cluster's snapshots are listed apart from the replica set's, and hold keys too.
    control(
        sim,
        reqwest::Method::POST,
        &format!("/__sim/projects/{ALPHA}/clusters/prod-1/snapshots"),
        json!({"type": "shardedCluster"}),
    )
    .await;
    let sharded = atlas
        .list_sharded_snapshots(creds, ALPHA, "prod-1")
        .await
        .unwrap();
    assert_eq!(sharded.len(), 1, "{sharded:?}");
    assert_eq!(
        sharded[0].master_key_uuid.as_deref(),
        Some(key.key_id()),
        "a sharded snapshot names the key it was taken under"
    );
    assert_eq!(
        atlas.list_snapshots(creds, ALPHA, "prod-1").await.unwrap().len(),
        1
    );

    let off = atlas
        .set_cluster_encryption_provider(creds, ALPHA, "prod-1", EncryptionProvider::None)
        .await
        .unwrap();
    assert_eq!(off.provider(), EncryptionProvider::None);

    // A role in use cannot go; disable EAR first (waiting for the cluster change to settle).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match atlas
            .update_encryption_at_rest(creds, ALPHA, &AwsKmsPatch::disable())
            .await
        {
            Ok(ear) => {
                assert!(!ear.aws_enabled());
                break;
            }
            Err(e) if e.is_error_code("CANNOT_DISABLE_ENCRYPTION_AT_REST") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("disable: {e}"),
        }
    }
    atlas
        .deauthorize_aws_role(creds, ALPHA, &role.role_id)
        .await
        .unwrap();

    let ips = atlas.control_plane_ip_addresses().await.unwrap();
    assert!(!ips.outbound_aws_cidrs().is_empty());
}

/// The versions §13 prescribes, per route template, checked against what the sim saw.
fn assert_versions(sim: &SimHandle) {
    let expected: BTreeMap<(&str, &str), &str> = [
        (("GET", "/groups/{groupId}/clusters"), "2024-08-05"),
        (("GET", "/groups/{groupId}/clusters/{clusterName}"), "2024-08-05"),
        (
            ("PATCH", "/groups/{groupId}/clusters/{clusterName}"),
            "2024-10-23",
        ),
        (("GET", "/unauth/controlPlaneIPAddresses"), "2023-11-15"),
        (("GET", "/rateLimits"), "2025-03-12"),
    ]
    .into_iter()
    .collect();
    let calls = sim.calls();
    assert!(!calls.is_empty());
    for call in calls {
        let route = call
            .route
            .as_deref()
            .unwrap_or("?")
            .trim_start_matches("/api/atlas/v2");
        let want = expected
            .get(&(call.method.as_str(), route))
            .copied()
            .unwrap_or("2023-01-01");
        assert_eq!(call.version.as_deref(), Some(want), "{} {route}", call.method);
        assert_ne!(call.status, 406, "{} {route}", call.method);
        assert_ne!(call.status, 415, "{} {route}", call.method);
    }
}

#[tokio::test]
async fn every_endpoint_with_digest_md5() {
    let sim = sim_with(|_| {}).await;
    let (atlas, rec) = client(&sim, |_| {});
    exercise_every_endpoint(&sim, &atlas, &api_key()).await;
    assert_versions(&sim);
    let calls = sim.calls();
    assert!(
        calls
            .iter()
            .filter(|c| c.status != 401)
            .all(
                |c| c.route.as_deref() == Some("/api/atlas/v2/unauth/controlPlaneIPAddresses")
                    || c.principal.as_deref() == Some(&format!("apiKey:{PUB}"))
            )
    );
    // One challenge, then the cached nonce serves every later call.
    assert_eq!(calls.iter().filter(|c| c.status == 401).count(), 1, "{calls:#?}");
    assert!(rec.count("/groups/{groupId}/encryptionAtRest", Some(200)) >= 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn every_endpoint_with_digest_sha256() {
    let sim = sim_with(|c| c.digest_sha256_challenge = true).await;
    let (atlas, _) = client(&sim, |_| {});
    exercise_every_endpoint(&sim, &atlas, &api_key()).await;
    assert_versions(&sim);
    sim.shutdown().await;
}

#[tokio::test]
async fn every_endpoint_with_a_service_account() {
    let sim = sim_with(|_| {}).await;
    let (atlas, rec) = client(&sim, |_| {});
    exercise_every_endpoint(&sim, &atlas, &service_account()).await;
    assert_versions(&sim);
    let calls = sim.calls();
    assert!(calls.iter().all(|c| c.status != 401), "bearer needs no challenge");
    assert!(
        calls
            .iter()
            .filter(|c| c.route.as_deref() != Some("/api/atlas/v2/unauth/controlPlaneIPAddresses"))
            .all(|c| c.principal.as_deref() == Some(&format!("serviceAccount:{SA_ID}")))
    );
    assert_eq!(
        rec.count("/api/oauth/token", Some(200)),
        1,
        "one token serves every call"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn error_codes_are_mapped() {
    let sim = sim_with(|_| {}).await;
    let (atlas, _) = client(&sim, |_| {});
    for creds in [api_key(), service_account()] {
        let err = atlas.get_cluster(&creds, ALPHA, "nope").await.unwrap_err();
        assert_eq!(
            (err.status(), err.error_code()),
            (Some(404), Some("CLUSTER_NOT_FOUND")),
            "{err}"
        );
        assert!(err.is_not_found() && !err.is_transient());
        assert_eq!(err.category(), "atlas_not_found");

        // Access to alpha only: beta and unknown projects both look like NOT_IN_GROUP.
        for group in [BETA, MISSING] {
            let err = atlas.get_encryption_at_rest(&creds, group).await.unwrap_err();
            assert_eq!(
                (err.status(), err.error_code()),
                (Some(401), Some("NOT_IN_GROUP")),
                "{err}"
            );
            assert!(matches!(err, AtlasError::Api { .. }));
        }
    }
    let owner = Credentials::api_key(PUB_ALL, PRIV_ALL);
    let err = atlas.get_project(&owner, MISSING).await.unwrap_err();
    assert_eq!(err.error_code(), Some("GROUP_NOT_FOUND"), "{err}");
    let err = atlas
        .get_project_by_name(&owner, "no-such-project")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");

    let wrong_key = Credentials::api_key(PUB, "priv-SECRET-wrong-never-leak");
    let err = atlas.get_project(&wrong_key, ALPHA).await.unwrap_err();
    assert!(
        matches!(err, AtlasError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(err.category(), "atlas_unauthorized");
    let unknown_key = Credentials::api_key("NOSUCHKEY", "whatever-SECRET");
    assert!(matches!(
        atlas.get_project(&unknown_key, ALPHA).await,
        Err(AtlasError::Unauthorized { .. })
    ));
    let wrong_secret = Credentials::service_account(SA_ID, "mdb_sa_sk_SECRET-wrong");
    let err = atlas.get_project(&wrong_secret, ALPHA).await.unwrap_err();
    assert!(matches!(err, AtlasError::Unauthorized { .. }), "{err:?}");

    // Authorizing before the EAR role exists, and a first enable without a role.
    let err = atlas
        .authorize_aws_role(&api_key(), ALPHA, MISSING, &RoleArn::parse(ROLE_ARN).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let err = atlas
        .update_encryption_at_rest(
            &api_key(),
            ALPHA,
            &AwsKmsPatch {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.error_code().is_some_and(|c| c != "UNKNOWN"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_and_debug_output_never_leak_secrets() {
    let sim = sim_with(|_| {}).await;
    let (atlas, _) = client(&sim, |_| {});
    let creds = [
        Credentials::api_key(PUB, "priv-SECRET-wrong-never-leak"),
        Credentials::service_account(SA_ID, "mdb_sa_sk_SECRET-wrong"),
        api_key(),
        service_account(),
    ];
    let mut texts = vec![format!("{atlas:?}"), format!("{:?}", atlas.config())];
    for c in &creds {
        texts.push(format!("{c:?}"));
        for err in [
            atlas.get_project(c, ALPHA).await.err(),
            atlas.get_cluster(c, ALPHA, "nope").await.err(),
            atlas.get_encryption_at_rest(c, BETA).await.err(),
        ]
        .into_iter()
        .flatten()
        {
            texts.push(format!("{err:?}"));
            texts.push(format!("{err}"));
        }
    }
    fault(
        &sim,
        json!({"path": "/api/atlas/v2/groups/*", "kind": "drop", "count": 10}),
    )
    .await;
    for c in &creds[2..] {
        let err = atlas.get_project(c, ALPHA).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        texts.push(format!("{err:?}"));
    }
    assert!(texts.len() > 10);
    for text in &texts {
        assert!(!text.contains("SECRET"), "secret leaked: {text}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_retry_after_is_honoured_for_reads_and_writes() {
    let sim = sim_with(|_| {}).await;
    let (atlas, rec) = client(&sim, |_| {});
    let creds = api_key();
    atlas.get_project(&creds, ALPHA).await.unwrap(); // settle the Digest handshake first
    sim.clear_calls();

    fault(
        &sim,
        json!({"method": "GET", "path": "/api/atlas/v2/groups/*/encryptionAtRest",
        "kind": "rateLimit", "retryAfter": 1, "count": 1}),
    )
    .await;
    let start = Instant::now();
    atlas.get_encryption_at_rest(&creds, ALPHA).await.unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_secs(1), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "waited {elapsed:?}");
    let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![429, 200]);

    // The server did not process a 429'd write, so it is sent again.
    sim.clear_calls();
    fault(
        &sim,
        json!({"method": "PATCH", "path": "/api/atlas/v2/groups/*/clusters/*",
        "kind": "rateLimit", "retryAfter": 1, "count": 1}),
    )
    .await;
    let start = Instant::now();
    let err = atlas
        .set_cluster_encryption_provider(&creds, ALPHA, "prod-1", EncryptionProvider::Aws)
        .await
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        err.error_code(),
        Some("ENCRYPTION_AT_REST_NOT_ENABLED"),
        "the retry reached the handler: {err}"
    );
    let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![429, 400]);
    assert_eq!(
        rec.retries
            .lock()
            .unwrap()
            .iter()
            .filter(|r| **r == "rate_limited")
            .count(),
        2
    );
    sim.shutdown().await;
}

/// A budget ten times Atlas's real limit (another tool shares the organization, or the budget is set
/// too high): the client is refused a few times, slows its pace, and the rest of the work goes through
/// without a 429, where a fixed pace would be refused again after every Retry-After.
#[tokio::test]
async fn a_budget_above_the_organization_limit_settles_below_it() {
    let sim = sim_with(|c| {
        c.rate_limit.organization = Some(BucketConfig {
            capacity: 5,
            refill_rate: 5,
            refill_seconds: 1,
        });
    })
    .await;
    let (atlas, _) = client(&sim, |c| {
        c.rate_per_second = 50.0;
        c.burst = 5;
        c.max_retries = 10;
    });
    let creds = api_key();
    const CALLS: usize = 80;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..8).map(|_| {
        let (atlas, creds, next) = (atlas.clone(), creds.clone(), next.clone());
        async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < CALLS {
                atlas.get_encryption_at_rest(&creds, ALPHA).await.unwrap();
            }
        }
    });
    futures::future::join_all(workers).await;
    let statuses: Vec<u16> = sim
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/encryptionAtRest") && c.status != 401)
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), CALLS);
    let refused = statuses.iter().filter(|s| **s == 429).count();
    let last_half = &statuses[statuses.len() / 2..];
    let refused_late = last_half.iter().filter(|s| **s == 429).count();
    eprintln!(
        "{refused} refused in all, {refused_late} in the last {} calls",
        last_half.len()
    );
    assert!(
        refused > 0,
        "the budget must overrun the limit for this test to mean anything"
    );
    assert!(
        refused_late <= 2,
        "{refused_late} of the last {} calls refused: {statuses:?}",
        last_half.len()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn long_retry_after_is_returned_to_the_caller() {
    let sim = sim_with(|_| {}).await;
    let (atlas, _) = client(&sim, |c| c.max_retry_wait = Duration::from_secs(2));
    fault(
        &sim,
        json!({"path": "/api/atlas/v2/groups/*", "kind": "rateLimit", "retryAfter": 30, "count": 1}),
    )
    .await;
    let start = Instant::now();
    let err = atlas.get_project(&service_account(), ALPHA).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)), "{err:?}");
    assert_eq!(err.category(), "atlas_rate_limited");
    assert!(err.is_transient());
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_retry_reads_but_not_writes() {
    let sim = sim_with(|_| {}).await;
    let (atlas, rec) = client(&sim, |_| {});
    let creds = service_account();
    atlas.get_project(&creds, ALPHA).await.unwrap();
    sim.clear_calls();

    fault(&sim, json!({"method": "GET", "path": "/api/atlas/v2/groups/*/clusters", "kind": "status", "status": 500, "count": 2})).await;
    assert_eq!(atlas.list_clusters(&creds, ALPHA).await.unwrap().len(), 5);
    let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![500, 500, 200]);

    // Attempts are bounded.
    sim.clear_calls();
    fault(&sim, json!({"method": "GET", "path": "/api/atlas/v2/groups/*/clusters/*", "kind": "status", "status": 502})).await;
    let err = atlas.get_cluster(&creds, ALPHA, "prod-1").await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert!(err.is_transient());
    assert_eq!(sim.calls().len(), 4, "max_retries 3 = 4 attempts");
    control(&sim, reqwest::Method::DELETE, "/__sim/faults", json!({})).await;

    sim.clear_calls();
    fault(&sim, json!({"method": "PATCH", "path": "/api/atlas/v2/groups/*/encryptionAtRest", "kind": "status", "status": 500, "count": 1})).await;
    let err = atlas
        .update_encryption_at_rest(&creds, ALPHA, &AwsKmsPatch::disable())
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.error_code()),
        (Some(500), Some("UNEXPECTED_ERROR")),
        "{err}"
    );
    assert_eq!(
        sim.calls().len(),
        1,
        "a write that may have been applied is not repeated"
    );

    sim.clear_calls();
    fault(&sim, json!({"method": "PATCH", "path": "/api/atlas/v2/groups/*/encryptionAtRest", "kind": "drop", "count": 1})).await;
    let err = atlas
        .update_encryption_at_rest(&creds, ALPHA, &AwsKmsPatch::disable())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AtlasError::Transport { connect: false, .. }),
        "{err:?}"
    );
    assert_eq!(sim.calls().len(), 1);
    assert!(rec.retries.lock().unwrap().iter().all(|r| *r == "server_error"));
    sim.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_retried_even_for_writes() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recorder = Arc::new(Recorder::default());
    let atlas = AtlasClient::new(AtlasClientConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(20),
        max_retries: 2,
        metrics: Some(recorder.clone()),
        ..Default::default()
    })
    .unwrap();
    let err = atlas
        .update_encryption_at_rest(&api_key(), ALPHA, &AwsKmsPatch::disable())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AtlasError::Transport { connect: true, .. }),
        "{err:?}"
    );
    assert_eq!(err.category(), "atlas_unreachable");
    assert_eq!(recorder.count("/groups/{groupId}/encryptionAtRest", None), 3);
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_before_expiry() {
    let sim = sim_with(|c| c.token_ttl = Duration::from_secs(2)).await;
    let (atlas, rec) = client(&sim, |_| {});
    let creds = service_account();
    atlas.get_project(&creds, ALPHA).await.unwrap();
    atlas.get_project(&creds, ALPHA).await.unwrap();
    assert_eq!(rec.count("/api/oauth/token", Some(200)), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    atlas.get_project(&creds, ALPHA).await.unwrap();
    assert_eq!(
        rec.count("/api/oauth/token", Some(200)),
        2,
        "refreshed inside the margin"
    );
    assert!(
        project_calls(&sim).iter().all(|c| c.status == 200),
        "never sent an expired token"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rejected_cached_token_is_replaced_once() {
    let sim = sim_with(|_| {}).await;
    let (atlas, rec) = client(&sim, |_| {});
    let creds = service_account();
    atlas.get_project(&creds, ALPHA).await.unwrap();
    control(&sim, reqwest::Method::POST, "/__sim/tokens/expire", json!({})).await;
    atlas.get_project(&creds, ALPHA).await.unwrap();
    assert_eq!(rec.count("/api/oauth/token", Some(200)), 2);
    assert_eq!(rec.count("/groups/{groupId}", Some(401)), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn stale_digest_nonce_is_renewed() {
    let sim = sim_with(|c| c.nonce_ttl = Duration::from_millis(500)).await;
    let (atlas, _) = client(&sim, |_| {});
    let creds = api_key();
    atlas.get_project(&creds, ALPHA).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    atlas.get_project(&creds, ALPHA).await.unwrap();
    let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![401, 404, 200, 401, 200],
        "challenge (reading the rate limits first), none published, ok, stale, ok"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn lists_follow_every_page() {
    let sim = sim_with(|_| {}).await;
    let (atlas, _) = client(&sim, |c| c.page_size = 2);
    let creds = service_account();
    let clusters = atlas.list_clusters(&creds, ALPHA).await.unwrap();
    let mut names: Vec<String> = clusters.into_iter().map(|c| c.name).collect();
    names.sort();
    assert_eq!(names, ["dev-1", "free", "prod-1", "prod-2", "prod-3"]);
    let pages: Vec<String> = project_calls(&sim)
        .iter()
        .filter_map(|c| c.query.clone())
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages[2].contains("pageNum=3"), "{pages:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn client_side_limiter_paces_one_organization() {
    let sim = sim_with(|_| {}).await;
    let (atlas, _) = client(&sim, |c| {
        c.rate_per_second = 10.0;
        c.burst = 2;
    });
    let creds = service_account();
    let start = Instant::now();
    let calls = (0..6).map(|_| atlas.get_project(&creds, ALPHA));
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    // 2 at once, then 4 more at 10/s.
    assert!(
        start.elapsed() >= Duration::from_millis(380),
        "{:?}",
        start.elapsed()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn timeouts_retry_reads_but_not_writes() {
    let sim = sim_with(|_| {}).await;
    let (atlas, rec) = client(&sim, |c| c.timeout = Duration::from_millis(400));
    let creds = service_account();
    atlas.get_project(&creds, ALPHA).await.unwrap();
    sim.clear_calls();
    fault(&sim, json!({"method": "GET", "path": "/api/atlas/v2/groups/*/encryptionAtRest", "kind": "latency", "ms": 1500, "count": 1})).await;
    atlas.get_encryption_at_rest(&creds, ALPHA).await.unwrap();

    fault(&sim, json!({"method": "PATCH", "path": "/api/atlas/v2/groups/*/encryptionAtRest", "kind": "latency", "ms": 1500, "count": 1})).await;
    let err = atlas
        .update_encryption_at_rest(&creds, ALPHA, &AwsKmsPatch::disable())
        .await
        .unwrap_err();
    assert!(matches!(err, AtlasError::Timeout { .. }), "{err:?}");
    assert_eq!(err.category(), "atlas_timeout");
    // The sim drops a handler whose client went away, so count what the client sent instead.
    let sent = |method: &str, status: Option<u16>| {
        rec.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, m, s)| *e == "/groups/{groupId}/encryptionAtRest" && *m == method && *s == status)
            .count()
    };
    assert_eq!(
        (sent("GET", None), sent("GET", Some(200))),
        (1, 1),
        "the read timed out once, then succeeded"
    );
    assert_eq!(
        (sent("PATCH", None), sent("PATCH", Some(200))),
        (1, 0),
        "the write was not repeated"
    );
    sim.shutdown().await;
}

/// RFC 6749 §2.3.1: the token request's Basic credentials are form-urlencoded first, as the official Atlas
/// Go SDK (golang.org/x/oauth2) sends them; the simulator decodes them, so a secret with reserved characters
/// only works when the client encodes it.
#[tokio::test]
async fn service_account_secret_with_reserved_characters() {
    let sim = sim_with(|_| {}).await;
    let secret = "mdb_sa_sk_a+b/c=d e%f";
    sim.apply_seed(
        &Seed::from_yaml_str(&format!(
            r#"serviceAccounts: [{{clientId: mdb_sa_id_reserved, clientSecret: "{secret}", projects: [alpha]}}]"#
        ))
        .expect("seed parses"),
    )
    .expect("seed applies");
    let (atlas, _) = client(&sim, |_| {});
    let creds = Credentials::service_account("mdb_sa_id_reserved", secret);
    assert_eq!(atlas.get_project(&creds, ALPHA).await.unwrap().name, "alpha");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_control_plane_watch_reads_the_list_and_hears_atlas_change_it() {
    use atlas_encryption_operator::control_plane::{ControlPlaneWatch, outbound_aws_cidrs};
    let sim = sim_with(|_| {}).await;
    let (atlas, recorder) = client(&sim, |_| {});
    let watch = ControlPlaneWatch::default();
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn({
        let watch = watch.clone();
        async move {
            watch
                .run(atlas, Duration::from_millis(100), move |regions| {
                    tx.send(regions).unwrap();
                })
                .await
        }
    });
    let us_east_1 = Region::parse("us-east-1").unwrap();
    wait_until(|| async { watch.latest().is_some() }, true).await;
    let before = outbound_aws_cidrs(&watch.latest().unwrap(), us_east_1);
    assert!(!before.is_empty());

    let mut list = control(
        &sim,
        reqwest::Method::GET,
        "/__sim/controlPlaneIPAddresses",
        Value::Null,
    )
    .await;
    list["outbound"]["aws"]["us-east-1"] = json!(["192.0.2.250/32"]);
    control(&sim, reqwest::Method::PUT, "/__sim/controlPlaneIPAddresses", list).await;
    let changed = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("the change is heard")
        .unwrap();
    assert_eq!(changed, vec!["us-east-1"]);
    assert_eq!(
        outbound_aws_cidrs(&watch.latest().unwrap(), us_east_1),
        vec!["192.0.2.250/32"]
    );
    task.abort();
    let reads = recorder
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(endpoint, _, _)| endpoint.contains("controlPlaneIPAddresses"))
        .count();
    assert!(reads >= 2, "read at start and again each period: {reads}");
}

// ----- pacing by Atlas's published rate limits -----

fn bucket(capacity: u64, refill_rate: u64, refill_seconds: u64) -> Option<BucketConfig> {
    Some(BucketConfig {
        capacity,
        refill_rate,
        refill_seconds,
    })
}

/// A sim whose project (GROUP) and organization buckets are published at `/rateLimits`.
async fn sim_publishing(project: Option<BucketConfig>, organization: Option<BucketConfig>) -> SimHandle {
    sim_with(|c| {
        c.rate_limit.project = project;
        c.rate_limit.organization = organization;
        c.rate_limit.published = true;
    })
    .await
}

fn count(sim: &SimHandle, key: &str) -> u64 {
    sim.counters().get(key).copied().unwrap_or(0)
}

/// `workers` callers sharing `calls` reads of one project's encryption settings.
async fn read_ear_concurrently(atlas: &AtlasClient, creds: &Credentials, calls: usize, workers: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..workers).map(|_| {
        let (atlas, creds, next) = (atlas.clone(), creds.clone(), next.clone());
        async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < calls {
                atlas.get_encryption_at_rest(&creds, ALPHA).await.unwrap();
            }
        }
    });
    futures::future::join_all(workers).await;
}

/// Generous published limits: the client goes well past the configured 5/s, reads the limits once for
/// all its calls, and is never refused.
#[tokio::test]
async fn generous_published_limits_pace_past_the_configured_rate_without_a_429() {
    let sim = sim_publishing(bucket(20, 100, 1), bucket(50, 200, 1)).await;
    let (atlas, rec) = client(&sim, |c| {
        c.rate_per_second = 5.0;
        c.burst = 5;
    });
    const CALLS: usize = 60;
    let start = Instant::now();
    read_ear_concurrently(&atlas, &api_key(), CALLS, 8).await;
    let elapsed = start.elapsed();
    eprintln!("{CALLS} calls in {elapsed:?}");
    assert_eq!(count(&sim, "status 429"), 0);
    assert_eq!(count(&sim, "GET /api/atlas/v2/rateLimits 200"), 1, "read once");
    assert_eq!(*rec.limit_reads.lock().unwrap(), ["published"]);
    // At the configured 5/s the 55 calls past the burst would take 11 s.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    sim.shutdown().await;
}

/// Tight published limits, a configured rate 100 times above them: not one call is refused.
#[tokio::test]
async fn tight_published_limits_are_kept_without_a_429() {
    let sim = sim_publishing(bucket(5, 10, 1), None).await;
    let (atlas, _) = client(&sim, |_| {});
    read_ear_concurrently(&atlas, &api_key(), 30, 8).await;
    assert_eq!(
        count(&sim, "GET /api/atlas/v2/groups/{groupId}/encryptionAtRest 200"),
        30
    );
    assert_eq!(count(&sim, "status 429"), 0);
    sim.shutdown().await;
}

/// Another client drained most of the project's bucket: the first answer's `RateLimit-Remaining`
/// corrects this client's estimate (which starts full), so it waits instead of being refused.
#[tokio::test]
async fn remaining_corrects_an_estimate_that_started_full() {
    let sim = sim_publishing(bucket(10, 2, 1), None).await;
    let creds = api_key();
    let (other, _) = client(&sim, |_| {});
    for _ in 0..8 {
        other.get_encryption_at_rest(&creds, ALPHA).await.unwrap();
    }
    let (atlas, rec) = client(&sim, |_| {});
    for _ in 0..6 {
        atlas.get_encryption_at_rest(&creds, ALPHA).await.unwrap();
    }
    assert_eq!(count(&sim, "status 429"), 0);
    assert!(
        *rec.waits.lock().unwrap() >= 3,
        "paced by Atlas's count, not its own"
    );
    sim.shutdown().await;
}

/// A 429 from one project's bucket (Atlas names its capacity) holds and slows that project only: the
/// organization's bucket and the other project's go on at once.
#[tokio::test]
async fn a_429_from_a_project_bucket_slows_only_that_project() {
    let (project, organization) = (bucket(3, 1, 60), bucket(1000, 1000, 1));
    let sim = sim_with(|c| {
        c.rate_limit.project = project.clone();
        c.rate_limit.organization = organization.clone();
    })
    .await;
    let creds = Credentials::api_key(PUB_ALL, PRIV_ALL);
    // Another tool empties alpha's bucket before this client learns the limits.
    let (other_tool, _) = client(&sim, |_| {});
    for _ in 0..3 {
        other_tool.get_encryption_at_rest(&creds, ALPHA).await.unwrap();
    }
    let publish = json!({"project": project, "organization": organization, "published": true});
    control(&sim, reqwest::Method::PUT, "/__sim/rateLimits", publish).await;
    let (atlas, rec) = client(&sim, |c| c.max_retry_wait = Duration::from_secs(1));
    let refused = atlas.get_encryption_at_rest(&creds, ALPHA).await;
    assert!(
        matches!(refused, Err(AtlasError::RateLimited { .. })),
        "{refused:?}"
    );
    assert_eq!(count(&sim, "status 429"), 1);
    // Beta's own bucket allows two calls at once (one of its three tokens is kept in hand).
    for _ in 0..2 {
        atlas.get_encryption_at_rest(&creds, BETA).await.unwrap();
    }
    assert_eq!(*rec.waits.lock().unwrap(), 0, "beta was not held by alpha's 429");
    sim.shutdown().await;
}

/// Atlas without `/rateLimits` (404) or a key without the role (403): the configured pace applies, the
/// metric says so once, and the limits are not asked for again on every call.
#[tokio::test]
async fn unpublished_limits_fall_back_to_the_configured_pace() {
    for hidden_status in [404, 403] {
        let sim = sim_with(|c| {
            c.rate_limit.project = bucket(1000, 1000, 1);
            c.rate_limit.hidden_status = Some(hidden_status);
        })
        .await;
        let (atlas, rec) = client(&sim, |c| {
            c.rate_per_second = 10.0;
            c.burst = 2;
        });
        read_ear_concurrently(&atlas, &api_key(), 6, 6).await;
        assert_eq!(*rec.limit_reads.lock().unwrap(), ["unpublished"]);
        let reads = format!("GET /api/atlas/v2/rateLimits {hidden_status}");
        assert_eq!(count(&sim, &reads), 1);
        assert!(*rec.waits.lock().unwrap() >= 3, "2 at once, the rest at 10/s");
        sim.shutdown().await;
    }
}

/// The ceiling holds even when Atlas publishes more.
#[tokio::test]
async fn a_ceiling_caps_published_limits() {
    let sim = sim_publishing(bucket(1000, 1000, 1), None).await;
    let (atlas, rec) = client(&sim, |c| {
        c.rate_ceiling = Some(10.0);
        c.burst = 2;
    });
    read_ear_concurrently(&atlas, &api_key(), 6, 6).await;
    assert_eq!(*rec.limit_reads.lock().unwrap(), ["published"]);
    assert!(*rec.waits.lock().unwrap() >= 3);
    sim.shutdown().await;
}

/// Limits are read again once the refresh period has passed, not before.
#[tokio::test]
async fn limits_are_read_again_after_the_refresh_period() {
    let sim = sim_publishing(bucket(1000, 1000, 1), None).await;
    let (atlas, rec) = client(&sim, |c| c.rate_limits_refresh = Duration::from_millis(300));
    let creds = api_key();
    atlas.get_project(&creds, ALPHA).await.unwrap();
    atlas.get_project(&creds, ALPHA).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    atlas.get_project(&creds, ALPHA).await.unwrap();
    assert_eq!(*rec.limit_reads.lock().unwrap(), ["published", "published"]);
    assert_eq!(count(&sim, "GET /api/atlas/v2/rateLimits 200"), 2);
    sim.shutdown().await;
}

// ----- the priority lane -----

/// Where, in the order Atlas received them, a read of the project came among 16 reads of its encryption
/// settings in `earlier_lane` that started 300 ms before it, all drawing from one bucket of 5 refilled at
/// 4 calls/s. The later read is change-driven.
async fn position_of_the_later_read(earlier_lane: Lane) -> usize {
    let sim = sim_with(|_| {}).await;
    let (atlas, _) = client(&sim, |c| {
        c.rate_per_second = 4.0;
        c.burst = 5;
    });
    let creds = api_key();
    let routine = (0..16).map(|_| {
        let (atlas, creds) = (atlas.clone(), creds.clone());
        tokio::spawn(lane::within(earlier_lane, async move {
            atlas.get_encryption_at_rest(&creds, ALPHA).await.unwrap();
        }))
    });
    let routine: Vec<_> = routine.collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    atlas.get_project(&creds, ALPHA).await.unwrap();
    futures::future::join_all(routine).await;
    let reads: Vec<String> = project_calls(&sim).into_iter().map(|c| c.path).collect();
    sim.shutdown().await;
    assert_eq!(reads.len(), 17, "{reads:?}");
    reads
        .iter()
        .position(|p| !p.ends_with("/encryptionAtRest"))
        .unwrap()
}

/// A call a change asked for goes ahead of routine resync calls waiting before it when the bucket runs
/// short; behind change-driven calls it keeps its turn.
#[tokio::test]
async fn a_change_driven_call_goes_ahead_of_waiting_routine_calls() {
    let behind_routine = position_of_the_later_read(Lane::Routine).await;
    assert!(
        behind_routine < 12,
        "went ahead of the routine reads still waiting: position {behind_routine} of 17"
    );
    let behind_changes = position_of_the_later_read(Lane::Change).await;
    assert_eq!(behind_changes, 16, "in arrival order behind change-driven reads");
}

/// A spare call is sent only while the bucket holds more than its reserve for change-driven calls; with
/// the budget busy it is not sent at all (no wait, nothing reaches Atlas) and says so.
#[tokio::test]
async fn a_spare_call_is_sent_only_with_budget_to_spare() {
    let sim = sim_with(|_| {}).await;
    let (atlas, _) = client(&sim, |c| {
        c.rate_per_second = 0.5;
        c.burst = 5;
    });
    let creds = api_key();
    let spare = || lane::within(Lane::Spare, atlas.get_encryption_at_rest(&creds, ALPHA));
    spare().await.expect("a full bucket has budget to spare");
    // Change-driven calls take the bucket down to its reserve (a fifth of 5: one token) or below.
    for _ in 0..3 {
        atlas.get_project(&creds, ALPHA).await.unwrap();
    }
    let started = Instant::now();
    let refused = spare().await.unwrap_err();
    assert!(matches!(refused, AtlasError::NoSpareBudget { .. }), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(500), "not waited for");
    let reads: Vec<String> = project_calls(&sim).into_iter().map(|c| c.path).collect();
    assert_eq!(
        reads.iter().filter(|p| p.ends_with("/encryptionAtRest")).count(),
        1,
        "the refused spare call never reached Atlas: {reads:?}"
    );
    sim.shutdown().await;
}

/// The resync budget follows what Atlas publishes once it is read: the configured pace before, the
/// organization's read refill (not the per-project one) after, never above the ceiling.
#[tokio::test]
async fn the_sustained_read_rate_follows_the_published_organization_limit() {
    let sim = sim_publishing(bucket(20, 100, 1), bucket(50, 120, 1)).await;
    let (atlas, _) = client(&sim, |c| {
        c.rate_per_second = 5.0;
        c.burst = 5;
    });
    assert_eq!(atlas.sustained_read_rate(), 5.0, "nothing read yet");
    atlas.get_encryption_at_rest(&api_key(), ALPHA).await.unwrap();
    assert_eq!(
        atlas.sustained_read_rate(),
        120.0,
        "the organization bucket, not the project one"
    );
    let (capped, _) = client(&sim, |c| c.rate_ceiling = Some(30.0));
    capped.get_encryption_at_rest(&api_key(), ALPHA).await.unwrap();
    assert_eq!(capped.sustained_read_rate(), 30.0, "the ceiling holds");
    sim.shutdown().await;
}
