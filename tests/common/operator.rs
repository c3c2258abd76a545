//! The operator on the real parts, per test: atlas-sim in-process (its AWS checks against moto), the
//! controller in-process watching only the test's own namespace, and moto clients to play the customer's
//! AWS account. Dropping [`OperatorEnv`] stops the controller and the simulator.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use atlas_encryption_operator::atlas::{AtlasClient, AtlasClientConfig, AwsIamRole, AwsKmsPatch};
use atlas_encryption_operator::aws::{KeyRef, Region, RoleArn};
use atlas_encryption_operator::controller::{self, ControllerConfig};
use atlas_encryption_operator::crd::{AtlasRoleStatus, ClusterEncryption, ProjectEncryption};
use atlas_encryption_operator::kms::{KmsPreflight, KmsPreflightConfig};
use atlas_sim::{CallRecord, SimConfig, SimHandle};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::{FIELD_MANAGER, TestNamespace};

pub const API_PUBLIC_KEY: &str = "test-public-key";
pub const API_PRIVATE_KEY: &str = "test-private-key-never-logged";
pub const CUSTOMER_ACCOUNT: &str = "123456789012";
pub const REGION: &str = "eu-west-2";

/// The AWS side of one ProjectEncryption.
pub struct Handshake {
    pub key: String,
    pub role_name: String,
    pub role_arn: String,
}

pub struct OperatorEnv {
    pub ns: TestNamespace,
    pub client: Client,
    pub sim: Option<SimHandle>,
    pub kms: aws_sdk_kms::Client,
    pub iam: aws_sdk_iam::Client,
    /// What the simulator was started with (its address once bound), so it can be restarted as it was.
    sim_config: SimConfig,
    /// Calls of simulators stopped by [`OperatorEnv::restart_sim`], oldest first.
    earlier_calls: Vec<CallRecord>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    controller: Option<tokio::task::JoinHandle<()>>,
}

/// A seed with one API key that reaches `projects`, each with the given clusters (`name:tier`).
pub fn seed(projects: &[(&str, &[&str])]) -> String {
    let mut yaml = format!(
        "apiKeys:\n  - {{publicKey: {API_PUBLIC_KEY}, privateKey: {API_PRIVATE_KEY}, projects: [{}]}}\nprojects:\n",
        projects.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
    );
    for (project, clusters) in projects {
        yaml.push_str(&format!("  - name: {project}\n    clusters:\n"));
        if clusters.is_empty() {
            yaml.push_str("      []\n");
        }
        for cluster in clusters.iter() {
            let (name, tier) = cluster.split_once(':').unwrap_or((cluster, "M10"));
            let provider = if matches!(tier, "M0" | "M2" | "M5") {
                "TENANT"
            } else {
                "AWS"
            };
            yaml.push_str(&format!(
                "      - {{name: {name}, instanceSize: {tier}, providerName: {provider}, regionName: EU_WEST_2, backupEnabled: true}}\n"
            ));
        }
    }
    yaml
}

/// A running operator and `project` (with `clusters`, see [`seed`]) with Encryption at Rest on with a new
/// key through a role another tool created and authorized, as Terraform leaves a project: the env, the
/// group id, the key and that role.
pub async fn switched_on_by_another_tool(
    test: &str,
    project: &str,
    clusters: &[&str],
) -> (OperatorEnv, String, String, AwsIamRole) {
    let mut env = OperatorEnv::start(test, &seed(&[(project, clusters)]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let group = env.group_id(project).await.unwrap();
    let key = env.create_key(REGION).await.unwrap();
    let terraform = env.authorized_atlas_role(&group, &key).await.unwrap();
    let (atlas, creds) = env.atlas();
    let enable = AwsKmsPatch::enable(
        &KeyRef::parse(&key).unwrap(),
        Region::parse(REGION).unwrap(),
        &terraform.role_id,
        false,
    );
    atlas
        .update_encryption_at_rest(&creds, &group, &enable)
        .await
        .unwrap();
    (env, group, key, terraform)
}

impl OperatorEnv {
    pub async fn start(test: &str, seed_yaml: &str) -> Result<Self> {
        Self::start_with(test, seed_yaml, |_| {}).await
    }

    /// [`OperatorEnv::start`] with the simulator's configuration adjusted first.
    pub async fn start_with(
        test: &str,
        seed_yaml: &str,
        adjust: impl FnOnce(&mut SimConfig),
    ) -> Result<Self> {
        super::testenv();
        super::capture_logs();
        let client = super::client().await?;
        super::install_crds(&client).await?;
        let ns = TestNamespace::new(test).await?;
        let mut sim_config = SimConfig {
            aws_endpoint: Some(super::moto_endpoint()),
            seed: Some(atlas_sim::Seed::from_yaml_str(seed_yaml)?),
            cluster_update_delay: Duration::from_secs(2),
            ..Default::default()
        };
        adjust(&mut sim_config);
        let sim = atlas_sim::spawn(sim_config.clone()).await?;
        sim_config.listen = sim.addr();
        let sdk = super::aws_sdk_config(REGION).await;
        let env = OperatorEnv {
            client: client.clone(),
            kms: aws_sdk_kms::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            ns,
            sim: Some(sim),
            sim_config,
            earlier_calls: Vec::new(),
            stop: None,
            controller: None,
        };
        env.apply_secret(
            "atlas-credentials",
            &[("publicKey", API_PUBLIC_KEY), ("privateKey", API_PRIVATE_KEY)],
        )
        .await?;
        Ok(env)
    }

    pub fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("simulator running")
    }

    /// Stops the simulator (it writes its state file, if it has one) and keeps it down for `down_for`,
    /// then starts it again on the same address from the same configuration: with a state file it
    /// comes back with the state it had, as Atlas does after an outage.
    pub async fn restart_sim(&mut self, down_for: Duration) -> Result<()> {
        if let Some(sim) = self.sim.take() {
            self.earlier_calls.extend(sim.calls());
            sim.shutdown().await;
        }
        tokio::time::sleep(down_for).await;
        self.sim = Some(atlas_sim::spawn(self.sim_config.clone()).await?);
        Ok(())
    }

    /// The operator binary in a process of its own, watching this test's namespace with `resync`,
    /// once it reports ready (caches synced).
    pub async fn start_operator_process(
        &self,
        identity: &str,
        resync: &str,
    ) -> Result<super::process::OperatorProcess> {
        let mut operator = super::process::OperatorProcess::spawn(
            &super::unique_name(identity),
            &self.sim().base_url(),
            &["--watch-namespaces", self.ns.name(), "--resync-period", resync],
        )?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        Ok(operator)
    }

    /// Every Atlas call the simulator logged, across restarts.
    pub fn all_calls(&self) -> Vec<CallRecord> {
        let mut calls = self.earlier_calls.clone();
        calls.extend(self.sim().calls());
        calls
    }

    /// Adds a fault rule to the simulator (the `POST /__sim/faults` body, as JSON).
    pub fn inject_fault(&self, spec: Value) -> Result<()> {
        let spec: atlas_sim::FaultSpec = serde_json::from_value(spec)?;
        self.sim().sim().faults.lock().add(spec);
        Ok(())
    }

    /// Starts the controller, watching only this test's namespace.
    pub async fn start_controller(&mut self) -> Result<()> {
        self.start_controller_with(|_| {}).await
    }

    /// [`OperatorEnv::start_controller`] with the Atlas client's configuration adjusted first.
    pub async fn start_controller_with(&mut self, adjust: impl FnOnce(&mut AtlasClientConfig)) -> Result<()> {
        self.start_controller_tuned(adjust, |_| {}).await
    }

    /// [`OperatorEnv::start_controller`] with the Atlas client's and the controllers' configuration
    /// adjusted first.
    pub async fn start_controller_tuned(
        &mut self,
        adjust: impl FnOnce(&mut AtlasClientConfig),
        tune: impl FnOnce(&mut ControllerConfig),
    ) -> Result<()> {
        let mut atlas = AtlasClientConfig {
            base_url: self.sim().base_url(),
            rate_per_second: 50.0,
            burst: 50,
            ..Default::default()
        };
        adjust(&mut atlas);
        let atlas = AtlasClient::new(atlas)?;
        let sdk = super::aws_sdk_config(REGION).await;
        let kms = KmsPreflight::with_sdk_config(
            sdk,
            KmsPreflightConfig {
                cache_ttl: Duration::ZERO,
                failure_ttl: Duration::ZERO,
                ..Default::default()
            },
        );
        let mut config = ControllerConfig {
            resync_period: Duration::from_secs(300),
            concurrency: 4,
            namespaces: vec![self.ns.name().to_string()],
            ..Default::default()
        };
        tune(&mut config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = stopped.map(|_| ()).shared();
        let client = self.client.clone();
        self.controller = Some(tokio::spawn(controller::run(
            client, atlas, kms, config, shutdown,
        )));
        self.stop = Some(stop);
        Ok(())
    }

    /// Stops the controller and the simulator; the namespace goes when dropped.
    pub async fn finish(mut self) {
        self.stop_controller().await;
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }

    pub async fn stop_controller(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.controller.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
    }

    pub async fn apply_secret(&self, name: &str, pairs: &[(&str, &str)]) -> Result<()> {
        let data: serde_json::Map<String, Value> =
            pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let secret =
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data});
        self.ns
            .api::<Secret>()
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(())
    }

    pub async fn apply_project(&self, name: &str, spec: Value) -> Result<ProjectEncryption> {
        let object = json!({
            "apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ProjectEncryption",
            "metadata": {"name": name}, "spec": spec,
        });
        Ok(self
            .projects()
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?)
    }

    pub async fn apply_cluster(&self, name: &str, spec: Value) -> Result<ClusterEncryption> {
        let object = json!({
            "apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ClusterEncryption",
            "metadata": {"name": name}, "spec": spec,
        });
        Ok(self
            .clusters()
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?)
    }

    pub fn projects(&self) -> Api<ProjectEncryption> {
        self.ns.api()
    }

    pub fn clusters(&self) -> Api<ClusterEncryption> {
        self.ns.api()
    }

    /// Polls until `check` accepts the object; on timeout, fails with the object's last status.
    pub async fn wait_project(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&ProjectEncryption) -> bool,
    ) -> Result<ProjectEncryption> {
        wait_for(&self.projects(), name, timeout, what, check).await
    }

    pub async fn wait_cluster(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&ClusterEncryption) -> bool,
    ) -> Result<ClusterEncryption> {
        wait_for(&self.clusters(), name, timeout, what, check).await
    }

    /// A new symmetric KMS key in moto; returns its ARN.
    pub async fn create_key(&self, region: &str) -> Result<String> {
        let sdk = super::aws_sdk_config(region).await;
        let key = aws_sdk_kms::Client::new(&sdk).create_key().send().await?;
        Ok(key
            .key_metadata()
            .context("key metadata")?
            .arn()
            .context("key arn")?
            .to_string())
    }

    /// An IAM role in moto with the KMS permissions on `key_arn`, trusting only `trusted_principal`.
    pub async fn create_role(
        &self,
        name: &str,
        trusted_principal: &str,
        external_id: &str,
        key_arn: &str,
    ) -> Result<String> {
        let trust = trust_policy(trusted_principal, external_id);
        let role = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await?;
        self.allow_keys(name, &[key_arn]).await?;
        Ok(role.role().context("role")?.arn().to_string())
    }

    /// Sets the IAM role's KMS permissions (Encrypt, Decrypt, DescribeKey) to exactly these keys.
    pub async fn allow_keys(&self, role_name: &str, key_arns: &[&str]) -> Result<()> {
        self.iam
            .put_role_policy()
            .role_name(role_name)
            .policy_name("atlas-kms")
            .policy_document(
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": key_arns}]})
                .to_string(),
            )
            .send()
            .await?;
        Ok(())
    }

    /// An Atlas role already authorized outside the operator, with an IAM role that trusts it and may use
    /// `key_arn`: what a team that set up Atlas by hand brings along.
    pub async fn authorized_atlas_role(&self, group_id: &str, key_arn: &str) -> Result<AwsIamRole> {
        let (atlas, creds) = self.atlas();
        let role = atlas.create_aws_role(&creds, group_id).await?;
        let role_arn = self
            .create_role(
                &super::unique_name("atlas-kms"),
                role.atlas_aws_account_arn
                    .as_deref()
                    .context("atlasAWSAccountArn")?,
                role.atlas_assumed_role_external_id
                    .as_deref()
                    .context("externalId")?,
                key_arn,
            )
            .await?;
        Ok(atlas
            .authorize_aws_role(&creds, group_id, &role.role_id, &RoleArn::parse(&role_arn)?)
            .await?)
    }

    /// What the customer does on reading `kubectl describe`: the IAM role trusts the Atlas principal
    /// with the external ID the ProjectEncryption's status shows.
    pub async fn trust_role(&self, role_name: &str, role: &AtlasRoleStatus) -> Result<()> {
        self.trust_atlas(
            role_name,
            role.atlas_aws_account_arn.as_deref().unwrap_or_default(),
            role.external_id.as_deref().unwrap_or_default(),
        )
        .await
    }

    /// A rotation as a user makes one: a new KMS key the role may use, named in the ProjectEncryption.
    /// Returns the new key's ARN.
    pub async fn rotate_key(&self, name: &str, project: &str, handshake: &Handshake) -> Result<String> {
        let new_key = self.create_key(REGION).await?;
        self.allow_keys(&handshake.role_name, &[&handshake.key, &new_key])
            .await?;
        self.apply_project(
            name,
            json!({"projectName": project, "credentialsRef": {"name": "atlas-credentials"},
                   "awsKms": {"customerMasterKeyId": new_key, "region": REGION, "roleArn": handshake.role_arn}}),
        )
        .await?;
        Ok(new_key)
    }

    /// What the user does after reading the status: trust Atlas's account with the external ID.
    pub async fn trust_atlas(&self, role_name: &str, atlas_arn: &str, external_id: &str) -> Result<()> {
        self.iam
            .update_assume_role_policy()
            .role_name(role_name)
            .policy_document(trust_policy(atlas_arn, external_id).to_string())
            .send()
            .await?;
        Ok(())
    }

    /// An Atlas client with the seeded API key, for out-of-band changes a person might make in Atlas.
    pub fn atlas(&self) -> (AtlasClient, atlas_encryption_operator::atlas::Credentials) {
        let client = AtlasClient::new(AtlasClientConfig {
            base_url: self.sim().base_url(),
            ..Default::default()
        })
        .expect("atlas client");
        (
            client,
            atlas_encryption_operator::atlas::Credentials::api_key(API_PUBLIC_KEY, API_PRIVATE_KEY),
        )
    }

    /// Changes a cluster behind the operator's back through the simulator's control API.
    pub async fn sim_patch_cluster(&self, group_id: &str, cluster: &str, body: Value) -> Result<()> {
        let url = format!(
            "{}/__sim/projects/{group_id}/clusters/{cluster}",
            self.sim().base_url()
        );
        let response = reqwest::Client::new().patch(url).json(&body).send().await?;
        if !response.status().is_success() {
            bail!(
                "sim control PATCH failed: {} {}",
                response.status(),
                response.text().await?
            );
        }
        Ok(())
    }

    /// A Cloud Backup snapshot taken now with the key in force (atlas-sim's control API); `body` as its
    /// README documents (`type`: `replicaSet` or `shardedCluster`).
    pub async fn take_snapshot(&self, group_id: &str, cluster: &str, body: Value) -> Result<()> {
        let url = format!(
            "{}/__sim/projects/{group_id}/clusters/{cluster}/snapshots",
            self.sim().base_url()
        );
        let response = reqwest::Client::new().post(url).json(&body).send().await?;
        if !response.status().is_success() {
            bail!("sim snapshot failed: {}", response.status());
        }
        Ok(())
    }

    /// What a user prepares before applying a ProjectEncryption: a KMS key and an IAM role with the KMS
    /// permissions that does not trust Atlas yet. Applies the ProjectEncryption for `project`.
    pub async fn begin_handshake(&self, name: &str, project: &str) -> Result<Handshake> {
        let key = self.create_key(REGION).await?;
        let role_name = super::unique_name("atlas-kms");
        let role_arn = self
            .create_role(
                &role_name,
                &format!("arn:aws:iam::{CUSTOMER_ACCOUNT}:root"),
                "nobody",
                &key,
            )
            .await?;
        self.apply_project(
            name,
            json!({"projectName": project, "credentialsRef": {"name": "atlas-credentials"},
                   "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
        )
        .await?;
        Ok(Handshake {
            key,
            role_name,
            role_arn,
        })
    }

    /// Brings a ProjectEncryption for `project` to Ready, as a user following `kubectl describe` would.
    pub async fn encrypt_project(&self, name: &str, project: &str) -> Result<Handshake> {
        let handshake = self.begin_handshake(name, project).await?;
        let role = self.wait_atlas_role(name).await?;
        self.trust_role(&handshake.role_name, &role).await?;
        self.wait_project(name, Duration::from_secs(90), "Ready", project_ready)
            .await?;
        Ok(handshake)
    }

    /// Waits until the ProjectEncryption shows the Atlas role and the external ID its IAM role must
    /// trust, as a user reading `kubectl describe` would, and returns that role.
    pub async fn wait_atlas_role(&self, name: &str) -> Result<AtlasRoleStatus> {
        let waiting = self
            .wait_project(name, Duration::from_secs(90), "awaiting trust", |pe| {
                pe.status
                    .as_ref()
                    .and_then(|s| s.role.as_ref())
                    .is_some_and(|r| r.external_id.is_some())
            })
            .await?;
        waiting.status.and_then(|s| s.role).context("role in status")
    }

    /// The Atlas project id of a project name.
    pub async fn group_id(&self, project: &str) -> Result<String> {
        let (atlas, creds) = self.atlas();
        Ok(atlas.get_project_by_name(&creds, project).await?.id)
    }

    /// Atlas calls other than reads (the writes the operator caused).
    pub fn atlas_writes(&self) -> Vec<CallRecord> {
        self.sim()
            .calls()
            .into_iter()
            .filter(|c| c.path.starts_with("/api/atlas/") && c.method != "GET")
            .collect()
    }

    pub fn atlas_calls(&self, method: &str, route_suffix: &str) -> usize {
        self.sim()
            .calls()
            .into_iter()
            .filter(|c| c.method == method && c.route.as_deref().is_some_and(|r| r.ends_with(route_suffix)))
            .count()
    }

    /// Reasons of the Events recorded for an object of this namespace.
    pub async fn event_reasons(&self, name: &str) -> Result<Vec<(String, String)>> {
        let events: Api<Event> = self.ns.api();
        let list = events.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect())
    }

    /// The object's Events once one with `reason` is recorded, or as they are when `timeout` runs
    /// out. The operator queues an Event and publishes it apart from the pass (after its status
    /// write), so a test that has just seen the status must give the Event a moment of its own.
    pub async fn wait_event(
        &self,
        name: &str,
        reason: &str,
        timeout: Duration,
    ) -> Result<Vec<(String, String)>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let events = self.event_reasons(name).await?;
            if events.iter().any(|(r, _)| r == reason) || tokio::time::Instant::now() >= deadline {
                return Ok(events);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for OperatorEnv {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.controller.take() {
            task.abort();
        }
    }
}

const LOOK_WAIT: Duration = Duration::from_secs(90);

/// Two looks at `name` (each started by an annotation), the second begun only once a pass has read
/// Atlas after the first: the controller never runs one object twice at once, so every write the first
/// look caused is in the call log by the time the second reads.
pub async fn look_twice(env: &OperatorEnv, name: &str) {
    let reads = || env.atlas_calls("GET", "/encryptionAtRest");
    for _ in 0..2 {
        let before = reads();
        env.projects()
            .patch(name, &Default::default(), &super::poke())
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + LOOK_WAIT;
        while reads() == before {
            assert!(tokio::time::Instant::now() < deadline, "no pass after the poke");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls until the object no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while api.get_opt(name).await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("{name} still exists after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Ready for the generation the object has now.
/// Ready for its current spec, with Atlas showing `provider` and IDLE.
pub fn cluster_converged(ce: &ClusterEncryption, provider: &str) -> bool {
    ce.status.as_ref().is_some_and(|s| {
        condition(&s.conditions, "Ready").is_some_and(|(st, _)| st == "True")
            && s.observed_generation == ce.metadata.generation
            && s.provider.as_deref() == Some(provider)
            && s.state_name.as_deref() == Some("IDLE")
    })
}

/// Writes Atlas accepted among `calls` for `method` on a route ending in `route_suffix`; a write Atlas
/// refused changed nothing.
pub fn accepted_writes(calls: &[CallRecord], method: &str, route_suffix: &str) -> usize {
    calls
        .iter()
        .filter(|c| {
            c.method == method
                && (200..300).contains(&c.status)
                && c.route.as_deref().is_some_and(|r| r.ends_with(route_suffix))
        })
        .count()
}

/// Ready, with `key` recorded as the key in force.
pub fn project_on_key(pe: &ProjectEncryption, key: &str) -> bool {
    project_ready(pe)
        && pe
            .status
            .as_ref()
            .and_then(|s| s.key.as_ref())
            .is_some_and(|k| k.customer_master_key_id == key)
}

pub fn project_ready(pe: &ProjectEncryption) -> bool {
    pe.status.as_ref().is_some_and(|s| {
        condition(&s.conditions, "Ready").is_some_and(|(st, _)| st == "True")
            && s.observed_generation == pe.metadata.generation
    })
}

pub fn trust_policy(principal: &str, external_id: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]})
}

pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&K) -> bool,
) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let object = api.get_opt(name).await?;
        if let Some(object) = &object
            && check(object)
        {
            return Ok(object.clone());
        }
        if tokio::time::Instant::now() > deadline {
            let dump = object
                .map(|o| serde_json::to_string_pretty(&serde_json::to_value(&o).unwrap()["status"]).unwrap())
                .unwrap_or_else(|| "<gone>".into());
            bail!("timed out after {timeout:?} waiting for {name} to be {what}; status: {dump}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The condition `type_` of an object's status conditions, as (status, reason).
pub fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}
