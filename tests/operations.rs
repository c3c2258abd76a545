//! The operator process as users run it (the release binary's code, in its own process): operations
//! endpoints, JSON logs, SIGTERM, a namespace list, and leader election between two replicas. Runs on
//! the real kube-apiserver, atlas-sim and moto.
#![cfg(feature = "integration")]

mod common;

use std::time::{Duration, Instant};

use atlas_encryption_operator::crd::ProjectEncryption;
use common::operator::{API_PRIVATE_KEY, OperatorEnv, condition, project_ready, seed};
use common::process::OperatorProcess;
use common::{TestNamespace, unique_name};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

/// One replica without leader election: health, readiness after the caches sync, every metric family
/// with real values, JSON logs naming the object and its Atlas project, no secret in them, and a clean
/// exit on SIGTERM.
#[tokio::test]
async fn one_replica_serves_health_metrics_and_structured_logs() {
    let env = OperatorEnv::start("ops-one", &seed(&[("proj-ops", &["Cluster0:M10"])]))
        .await
        .unwrap();
    let ns = env.ns.name().to_string();
    let mut operator = OperatorProcess::spawn(
        &unique_name("op"),
        &env.sim().base_url(),
        &["--watch-namespaces", &ns, "--resync-period", "5m"],
    )
    .unwrap();

    let health = operator.health;
    let (code, body) = operator
        .first_answer(health, "/healthz", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));
    let ready = operator.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert!(ready.contains("caches synced"), "{ready}");
    let idle = operator.metrics_text().await.unwrap();
    assert!(
        idle.lines().any(|l| {
            l.strip_prefix("atlas_encryption_operator_resync_period_seconds ")
                .and_then(|v| v.trim().parse::<f64>().ok())
                == Some(300.0)
        }),
        "the period in force is exported before any object exists: {idle}"
    );

    env.encrypt_project("payments", "proj-ops").await.unwrap();
    let pe = env.projects().get("payments").await.unwrap();
    let project_id = pe.status.as_ref().unwrap().project_id.clone().unwrap();
    env.apply_cluster(
        "cluster0",
        json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": "Cluster0"}),
    )
    .await
    .unwrap();
    env.wait_cluster("cluster0", WAIT, "cluster Ready", |ce| {
        ce.status
            .as_ref()
            .is_some_and(|s| condition(&s.conditions, "Ready").is_some_and(|(st, _)| st == "True"))
    })
    .await
    .unwrap();

    let labels = format!(r#"{{namespace="{ns}",name="payments",project_id="{project_id}"}}"#);
    let text = operator.metrics_text().await.unwrap();
    let sample = |series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    };
    let p = "atlas_encryption_operator";
    assert!(
        sample(&format!(
            r#"{p}_reconciles_total{{kind="ProjectEncryption",result="success"}}"#
        ))
        .unwrap()
            >= 2.0,
        "{text}"
    );
    assert!(
        sample(&format!(
            r#"{p}_reconciles_total{{kind="ClusterEncryption",result="success"}}"#
        ))
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(&format!(
            r#"{p}_reconcile_duration_seconds_count{{kind="ProjectEncryption"}}"#
        ))
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        sample(&format!(
            r#"{p}_atlas_requests_total{{endpoint="/groups/{{groupId}}/cloudProviderAccess",method="POST",status="200"}}"#
        )),
        Some(1.0),
        "one role created: {text}"
    );
    assert!(
        sample(&format!(
            r#"{p}_atlas_requests_total{{endpoint="/groups/{{groupId}}/encryptionAtRest",method="PATCH",status="200"}}"#
        ))
        .is_some()
    );
    assert!(sample(&format!(r#"{p}_kms_preflight_total{{result="ok"}}"#)).unwrap() >= 1.0);
    let age = sample(&format!("{p}_key_age_seconds{labels}")).expect("key age gauge");
    assert!((0.0..600.0).contains(&age), "key age {age}");
    assert_eq!(sample(&format!("{p}_key_valid{labels}")), Some(1.0));
    assert_eq!(sample(&format!("{p}_key_rotation_due{labels}")), Some(0.0));
    assert_eq!(sample(&format!("{p}_leader")), Some(1.0));
    // A handful of objects at the default 5 calls/s: the configured 5 min stands.
    assert_eq!(sample(&format!("{p}_resync_period_seconds")), Some(300.0));
    assert!(text.contains(&format!("# TYPE {p}_atlas_rate_limit_waits counter")));

    // Every line logged inside a reconcile names the object and, once known, its Atlas project.
    let lines = operator.log_json();
    let in_reconcile: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "reconcile")
        .collect();
    assert!(
        !in_reconcile.is_empty(),
        "no reconcile log lines:\n{}",
        operator.log_tail()
    );
    for line in &in_reconcile {
        let object = line["span"]["object"].as_str().unwrap_or_default();
        assert!(object.starts_with(&format!("{ns}/")), "{line}");
        assert!(line["span"]["kind"].is_string(), "{line}");
    }
    assert!(
        in_reconcile
            .iter()
            .any(|l| l["span"]["object"] == format!("{ns}/payments").as_str()),
        "the object named in the reconcile span"
    );
    assert!(
        in_reconcile
            .iter()
            .any(|l| l["span"]["project_id"] == project_id.as_str()),
        "project id in the reconcile span"
    );
    let log = operator.log_text();
    assert!(
        !log.contains(API_PRIVATE_KEY),
        "the Atlas private key leaked into the log"
    );
    assert!(
        !log.contains(common::aws::AWS_SECRET_ACCESS_KEY),
        "the AWS secret leaked into the log"
    );

    let status = operator.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "SIGTERM ends the process cleanly: {status}");
    env.finish().await;
}

/// `--watch-namespaces a,b` reconciles in both listed namespaces and leaves a third alone.
#[tokio::test]
async fn a_namespace_list_is_watched_and_nothing_else() {
    let env = OperatorEnv::start(
        "ops-ns",
        &seed(&[("proj-a", &[]), ("proj-b", &[]), ("proj-c", &[])]),
    )
    .await
    .unwrap();
    let second = TestNamespace::new("ops-ns-b").await.unwrap();
    let unwatched = TestNamespace::new("ops-ns-c").await.unwrap();
    let watched = format!("{},{}", env.ns.name(), second.name());
    let mut operator = OperatorProcess::spawn(
        &unique_name("op"),
        &env.sim().base_url(),
        &["--watch-namespaces", &watched],
    )
    .unwrap();
    operator.wait_ready(Duration::from_secs(30)).await.unwrap();

    // Projects in the other two namespaces, with keys and roles set up for real; the role does not
    // trust Atlas yet, so a watched project must reach AwaitingTrustPolicy.
    for ns in [&second, &unwatched] {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "atlas-credentials"},
            "stringData": {"publicKey": common::operator::API_PUBLIC_KEY, "privateKey": API_PRIVATE_KEY}});
        ns.api::<Secret>()
            .patch(
                "atlas-credentials",
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&secret),
            )
            .await
            .unwrap();
    }
    let key = env.create_key(common::operator::REGION).await.unwrap();
    let role_arn = env
        .create_role(
            &unique_name("atlas-kms"),
            "arn:aws:iam::123456789012:root",
            "nobody",
            &key,
        )
        .await
        .unwrap();
    let spec = |project: &str| {
        json!({"projectName": project, "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"customerMasterKeyId": key, "region": common::operator::REGION, "roleArn": role_arn}})
    };
    let apply = |api: Api<ProjectEncryption>, project: &str| {
        let object = json!({"apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ProjectEncryption",
            "metadata": {"name": "team"}, "spec": spec(project)});
        async move {
            api.patch(
                "team",
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap()
        }
    };
    apply(env.projects(), "proj-a").await;
    apply(second.api(), "proj-b").await;
    apply(unwatched.api(), "proj-c").await;

    for api in [env.projects(), second.api::<ProjectEncryption>()] {
        common::operator::wait_for(
            &api,
            "team",
            WAIT,
            "handshake started",
            |pe: &ProjectEncryption| pe.status.as_ref().is_some_and(|s| s.role.is_some()),
        )
        .await
        .unwrap();
    }
    // The watched ones have had their whole first pass; the unwatched one has had the same time.
    let untouched = unwatched.api::<ProjectEncryption>().get("team").await.unwrap();
    assert!(
        untouched.status.is_none(),
        "an unwatched namespace was reconciled"
    );
    assert!(
        untouched.metadata.finalizers.is_none(),
        "an unwatched object got a finalizer"
    );
    operator.check_running().unwrap();
    operator.kill();
    for ns in [second, unwatched] {
        for pe in ns
            .api::<ProjectEncryption>()
            .list(&Default::default())
            .await
            .unwrap()
        {
            let _ = ns
                .api::<ProjectEncryption>()
                .patch(
                    &pe.metadata.name.unwrap(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
        ns.cleanup().await.unwrap();
    }
    env.finish().await;
}

/// Flags for a replica watching `ns` with a short-lived Lease in `ns`, so takeovers happen in seconds.
fn leader_election_args(ns: &str, lease: &str) -> Vec<String> {
    [
        "--watch-namespaces",
        ns,
        "--leader-elect",
        "true",
        "--leader-election-namespace",
        ns,
        "--leader-election-lease-name",
        lease,
        "--leader-election-lease-duration",
        "6s",
        "--leader-election-renew-deadline",
        "4s",
        "--leader-election-retry-period",
        "1s",
    ]
    .map(str::to_string)
    .to_vec()
}

fn lease_holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

/// Two replicas with leader election: one leads and alone calls Atlas; killed with SIGKILL, the other
/// takes over after the lease expires and finishes the work; at no moment do both write. SIGTERM hands
/// the Lease back at once.
#[tokio::test]
async fn two_replicas_elect_one_leader_which_alone_writes_and_a_standby_takes_over() {
    let env = OperatorEnv::start("ops-ha", &seed(&[("proj-ha", &[])]))
        .await
        .unwrap();
    let ns = env.ns.name().to_string();
    let lease_name = unique_name("lease");
    let args = leader_election_args(&ns, &lease_name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let leases: Api<Lease> = env.ns.api();
    let a_name = unique_name("replica-a");
    let b_name = unique_name("replica-b");
    let mut a = OperatorProcess::spawn(&a_name, &env.sim().base_url(), &args).unwrap();
    a.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        lease_holder(&leases.get(&lease_name).await.unwrap()).as_deref(),
        Some(a_name.as_str())
    );
    let mut b = OperatorProcess::spawn(&b_name, &env.sim().base_url(), &args).unwrap();
    let standby = b.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert!(
        standby.contains("standing by") && standby.contains(&a_name),
        "{standby}"
    );
    assert_eq!(
        b.sample("atlas_encryption_operator_leader").await.unwrap(),
        Some(0.0)
    );
    assert_eq!(
        a.sample("atlas_encryption_operator_leader").await.unwrap(),
        Some(1.0)
    );

    // A leads the handshake up to the trust policy.
    let handshake = env.begin_handshake("payments", "proj-ha").await.unwrap();
    let role = env.wait_atlas_role("payments").await.unwrap();

    // The leader dies without a word; the work is finished by the standby.
    a.kill();
    let killed_at = chrono::Utc::now();
    env.trust_role(&handshake.role_name, &role).await.unwrap();
    let started = Instant::now();
    env.wait_project("payments", WAIT, "Ready under the new leader", project_ready)
        .await
        .unwrap();
    let takeover = started.elapsed();
    assert_eq!(
        lease_holder(&leases.get(&lease_name).await.unwrap()).as_deref(),
        Some(b_name.as_str())
    );
    assert_eq!(
        b.sample("atlas_encryption_operator_leader").await.unwrap(),
        Some(1.0)
    );

    // The call log, by the caller's name: every Atlas call came from the replica leading at the time.
    let calls: Vec<_> = env
        .sim()
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/api/atlas/"))
        .collect();
    let by =
        |who: &str, c: &atlas_sim::CallRecord| c.user_agent.as_deref().is_some_and(|ua| ua.contains(who));
    assert!(calls.iter().any(|c| by(&a_name, c)), "A made the first calls");
    assert!(
        calls.iter().all(|c| by(&a_name, c) || by(&b_name, c)),
        "only the two replicas called"
    );
    let last_a = calls
        .iter()
        .filter(|c| by(&a_name, c))
        .map(|c| c.timestamp)
        .max()
        .unwrap();
    let first_b = calls
        .iter()
        .filter(|c| by(&b_name, c))
        .map(|c| c.timestamp)
        .min()
        .unwrap();
    assert!(last_a <= killed_at, "A called Atlas after it was killed");
    assert!(first_b > last_a, "B called Atlas while A still led");
    let writes_by_b = calls
        .iter()
        .filter(|c| by(&b_name, c) && c.method != "GET")
        .count();
    assert!(writes_by_b >= 2, "B authorized the role and assigned the key");
    assert_eq!(
        env.atlas_calls("POST", "/cloudProviderAccess"),
        1,
        "one Atlas role across both leaders"
    );
    eprintln!("takeover to Ready after SIGKILL of the leader: {takeover:?}");

    // A clean stop hands the Lease back, so a successor would not wait for it to expire.
    let status = b.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{status}");
    let released = leases.get(&lease_name).await.unwrap();
    assert_eq!(lease_holder(&released), None, "the Lease is released on SIGTERM");
    env.finish().await;
}

/// A leader that finds the Lease taken (here: overwritten by hand, as a partition would let another
/// replica do) stops at once, exits non-zero for the kubelet to restart it, and makes no Atlas call
/// after it noticed.
#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_at_once() {
    let env = OperatorEnv::start("ops-lost", &seed(&[("proj-lost", &[])]))
        .await
        .unwrap();
    let ns = env.ns.name().to_string();
    let lease_name = unique_name("lease");
    let me = unique_name("replica");
    let mut leader = OperatorProcess::spawn(
        &me,
        &env.sim().base_url(),
        &leader_election_args(&ns, &lease_name)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    leader.wait_ready(Duration::from_secs(30)).await.unwrap();
    env.begin_handshake("payments", "proj-lost").await.unwrap();
    env.wait_project("payments", WAIT, "handshake started", |pe| {
        pe.status.as_ref().is_some_and(|s| s.role.is_some())
    })
    .await
    .unwrap();

    let leases: Api<Lease> = env.ns.api();
    let taken = json!({"spec": {"holderIdentity": "intruder", "renewTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                                "leaseDurationSeconds": 3600}});
    leases
        .patch(&lease_name, &PatchParams::default(), &Patch::Merge(&taken))
        .await
        .unwrap();
    let taken_at = chrono::Utc::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    let exited = loop {
        if let Err(e) = leader.check_running() {
            break e.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the leader kept running without its Lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !exited.contains("exit status: 0"),
        "a lost lease is not a clean exit: {exited}"
    );
    assert!(
        leader.log_text().contains("lost leadership"),
        "the log says why: {}",
        leader.log_tail()
    );
    // One renew period of grace: a call already under way when the Lease changed may finish.
    let late = env
        .sim()
        .calls()
        .into_iter()
        .filter(|c| c.timestamp > taken_at + chrono::Duration::seconds(2))
        .count();
    assert_eq!(late, 0, "Atlas calls after the Lease was lost");
    let lease = leases.get(&lease_name).await.unwrap();
    assert_eq!(
        lease_holder(&lease).as_deref(),
        Some("intruder"),
        "the loser does not fight back"
    );
    env.finish().await;
}

/// Two Deployments split one fleet by label (`--watch-label-selector`), each leader-elected with its own
/// Lease: each ProjectEncryption is reconciled by exactly one of them, and one in neither shard by none.
#[tokio::test]
async fn two_shards_split_the_fleet_without_overlap() {
    let env = OperatorEnv::start(
        "ops-shards",
        &seed(&[
            ("proj-shard-a", &[]),
            ("proj-shard-b", &[]),
            ("proj-unsharded", &[]),
        ]),
    )
    .await
    .unwrap();
    let ns = env.ns.name().to_string();
    let mut replicas = Vec::new();
    for shard in ["a", "b"] {
        let mut args = leader_election_args(&ns, &unique_name(&format!("lease-{shard}")));
        args.extend([
            "--watch-label-selector".to_string(),
            format!("test.shard={shard}"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = unique_name(&format!("shard-{shard}"));
        let mut replica = OperatorProcess::spawn(&name, &env.sim().base_url(), &args).unwrap();
        replica.wait_ready(Duration::from_secs(30)).await.unwrap();
        replicas.push((shard, name, replica));
    }

    let mut handshakes = Vec::new();
    for (object, project, shard) in [
        ("one", "proj-shard-a", Some("a")),
        ("two", "proj-shard-b", Some("b")),
        ("three", "proj-unsharded", None),
    ] {
        let handshake = env.begin_handshake(object, project).await.unwrap();
        if let Some(shard) = shard {
            let labels = json!({"metadata": {"labels": {"test.shard": shard}}});
            env.projects()
                .patch(object, &PatchParams::default(), &Patch::Merge(&labels))
                .await
                .unwrap();
        }
        handshakes.push((object, project, shard, handshake));
    }
    for (object, _, shard, handshake) in &handshakes {
        if shard.is_some() {
            let role = env.wait_atlas_role(object).await.unwrap();
            env.trust_role(&handshake.role_name, &role).await.unwrap();
        }
    }
    for (object, _, shard, _) in &handshakes {
        if shard.is_some() {
            env.wait_project(object, WAIT, "Ready in its shard", project_ready)
                .await
                .unwrap();
        }
    }

    // The call log, by the caller's name: each project's Atlas calls came from its shard's replica only.
    let calls = env.sim().calls();
    let by =
        |who: &str, c: &atlas_sim::CallRecord| c.user_agent.as_deref().is_some_and(|ua| ua.contains(who));
    for (_, project, shard, _) in &handshakes {
        let group = env.group_id(project).await.unwrap();
        let of_project: Vec<_> = calls.iter().filter(|c| c.path.contains(&group)).collect();
        match shard {
            Some(shard) => {
                assert!(!of_project.is_empty(), "{project} was reconciled");
                for (other, name, _) in &replicas {
                    let expected = other == shard;
                    assert_eq!(
                        of_project.iter().all(|c| by(name, c)),
                        expected,
                        "{project} (shard {shard}) and replica {other}"
                    );
                }
            }
            None => assert!(of_project.is_empty(), "{project} is in no shard: {of_project:?}"),
        }
    }
    let unsharded = env.projects().get("three").await.unwrap();
    assert!(
        unsharded.status.is_none(),
        "no replica wrote the unsharded object's status"
    );
    for (_, _, replica) in &mut replicas {
        assert!(
            replica
                .terminate(Duration::from_secs(20))
                .await
                .unwrap()
                .success()
        );
    }
    env.finish().await;
}
