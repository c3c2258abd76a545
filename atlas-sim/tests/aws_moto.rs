//! The AWS-backed rules, against moto: `CANNOT_ASSUME_ROLE` until the customer's role trusts the sim's Atlas
//! account with the external id, permission and key-state failures on PATCH, and `valid` turning false when
//! the key is disabled or scheduled for deletion. Skipped loudly without MOTO_ENDPOINT; fails instead when
//! ATLAS_SIM_REQUIRE_MOTO=1.

mod support;

use serde_json::{Value, json};
use support::*;

fn g(p: &str) -> String {
    format!("/groups/{GID}{p}")
}

fn trust(atlas_arn: &str, external_id: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": atlas_arn},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]})
    .to_string()
}

fn allow(actions: &[&str], resource: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}).to_string()
}

// moto's key-state calls want the bare key id, not the ARN.
fn kid(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

async fn new_key(kms: &aws_sdk_kms::Client) -> String {
    kms.create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

fn ear(role_id: &str, key: &str, region: &str) -> Value {
    json!({"awsKms": {"enabled": true, "customerMasterKeyID": key, "region": region, "roleId": role_id, "requirePrivateNetworking": false}})
}

#[tokio::test]
async fn validity_comes_from_aws() {
    let Some(endpoint) = moto() else { return };
    let sim = start(Some(endpoint.clone())).await;
    let base = sim.base_url();
    let c = Client::digest(&base, "pub1", "priv1", Alg::Md5);

    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let kms = aws_sdk_kms::Client::new(&conf);
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let role_name = format!("atlas-kms-{suffix}");
    let role_arn = format!("arn:aws:iam::123456789012:role/{role_name}");

    let role = c
        .post(&g("/cloudProviderAccess"), json!({"providerName": "AWS"}))
        .await;
    let role_id = role.ok()["roleId"].as_str().unwrap().to_string();
    let atlas_arn = role.body["atlasAWSAccountArn"].as_str().unwrap().to_string();
    let ext = role.body["atlasAssumedRoleExternalId"]
        .as_str()
        .unwrap()
        .to_string();
    let role_path = g(&format!("/cloudProviderAccess/{role_id}"));
    let authorize = || {
        c.patch(
            &role_path,
            json!({"providerName": "AWS", "iamAssumedRoleArn": role_arn}),
        )
    };

    // No such IAM role yet, then a role that trusts the wrong external id, then the right trust.
    let r = authorize().await;
    r.expect(400, "CANNOT_ASSUME_ROLE");
    assert_eq!(r.body["parameters"], json!([role_arn]));
    iam.create_role()
        .role_name(&role_name)
        .assume_role_policy_document(trust(&atlas_arn, "not-the-external-id"))
        .send()
        .await
        .unwrap();
    authorize().await.expect(400, "CANNOT_ASSUME_ROLE");
    iam.update_assume_role_policy()
        .role_name(&role_name)
        .policy_document(trust("arn:aws:iam::111111111111:root", &ext))
        .send()
        .await
        .unwrap();
    authorize().await.expect(400, "CANNOT_ASSUME_ROLE");
    iam.update_assume_role_policy()
        .role_name(&role_name)
        .policy_document(trust(&atlas_arn, &ext))
        .send()
        .await
        .unwrap();
    authorize().await.ok();

    // Permissions: none, then partial, then enough (inline policy on the key ARN).
    let key1 = new_key(&kms).await;
    c.patch(&g("/encryptionAtRest"), ear(&role_id, &key1, "US_EAST_1"))
        .await
        .expect(400, "NO_PERMISSION_TO_ENCRYPT_DECRYPT");
    iam.put_role_policy()
        .role_name(&role_name)
        .policy_name("kms")
        .policy_document(allow(&["kms:Encrypt", "kms:Decrypt"], &key1))
        .send()
        .await
        .unwrap();
    c.patch(&g("/encryptionAtRest"), ear(&role_id, &key1, "US_EAST_1"))
        .await
        .expect(400, "NO_PERMISSION_TO_ENCRYPT_DECRYPT");
    iam.put_role_policy()
        .role_name(&role_name)
        .policy_name("kms")
        .policy_document(allow(&["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], &key1))
        .send()
        .await
        .unwrap();
    // Wrong region for the key, and a key that doesn't exist.
    c.patch(&g("/encryptionAtRest"), ear(&role_id, &key1, "EU_WEST_1"))
        .await
        .expect(404, "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND");
    c.patch(
        &g("/encryptionAtRest"),
        ear(&role_id, "3234abcd-12ab-34cd-56ef-1234567890ab", "US_EAST_1"),
    )
    .await
    .expect(404, "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND");
    let on = c
        .patch(&g("/encryptionAtRest"), ear(&role_id, &key1, "US_EAST_1"))
        .await;
    assert_eq!(on.ok()["awsKms"]["valid"], true);
    c.patch(
        &g("/clusters/Cluster0"),
        json!({"encryptionAtRestProvider": "AWS"}),
    )
    .await
    .ok();

    // Key state changes made in AWS show up as valid=false on the next read.
    let key1_id = key1.rsplit('/').next().unwrap().to_string();
    kms.disable_key().key_id(&key1_id).send().await.unwrap();
    assert_eq!(
        c.get(&g("/encryptionAtRest")).await.ok()["awsKms"]["valid"],
        false
    );
    kms.enable_key().key_id(&key1_id).send().await.unwrap();
    assert_eq!(c.get(&g("/encryptionAtRest")).await.ok()["awsKms"]["valid"], true);

    // Rotating to a disabled key or one pending deletion is refused; the managed policy grants kms:* on *.
    let pol = iam
        .create_policy()
        .policy_name(format!("kms-all-{suffix}"))
        .policy_document(allow(&["kms:*"], "*"))
        .send()
        .await
        .unwrap();
    iam.attach_role_policy()
        .role_name(&role_name)
        .policy_arn(pol.policy().unwrap().arn().unwrap())
        .send()
        .await
        .unwrap();
    let key2 = new_key(&kms).await;
    kms.disable_key().key_id(kid(&key2)).send().await.unwrap();
    c.patch(
        &g("/encryptionAtRest"),
        json!({"awsKms": {"customerMasterKeyID": key2}}),
    )
    .await
    .expect(400, "AWS_KMS_CUSTOMER_MASTER_KEY_NOT_ENABLED");
    let key3 = new_key(&kms).await;
    kms.schedule_key_deletion()
        .key_id(kid(&key3))
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    c.patch(
        &g("/encryptionAtRest"),
        json!({"awsKms": {"customerMasterKeyID": key3}}),
    )
    .await
    .expect(400, "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_DELETION");

    // A snapshot, a rotation, another snapshot: each remembers its key.
    control(
        &base,
        reqwest::Method::POST,
        &format!("/projects/{GID}/clusters/Cluster0/snapshots"),
        Some(json!({})),
    )
    .await;
    let key4 = new_key(&kms).await;
    let rot = c
        .patch(
            &g("/encryptionAtRest"),
            json!({"awsKms": {"customerMasterKeyID": key4}}),
        )
        .await;
    assert_eq!(rot.ok()["awsKms"]["valid"], true);
    control(
        &base,
        reqwest::Method::POST,
        &format!("/projects/{GID}/clusters/Cluster0/snapshots"),
        Some(json!({})),
    )
    .await;
    let snaps = c.get(&g("/clusters/Cluster0/backup/snapshots")).await;
    let uuids: Vec<&str> = snaps.ok()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["masterKeyUUID"].as_str().unwrap())
        .collect();
    assert_eq!(uuids, [key1_id.as_str(), key4.rsplit('/').next().unwrap()]);
    let (_, hist) = control(
        &base,
        reqwest::Method::GET,
        &format!("/projects/{GID}/keyHistory"),
        None,
    )
    .await;
    let actions: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["enabled", "rotated"]);

    // Scheduling the key in force for deletion, or breaking the trust, makes the config invalid.
    kms.schedule_key_deletion()
        .key_id(kid(&key4))
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.get(&g("/encryptionAtRest")).await.ok()["awsKms"]["valid"],
        false
    );
    kms.cancel_key_deletion().key_id(kid(&key4)).send().await.unwrap();
    kms.enable_key().key_id(kid(&key4)).send().await.unwrap();
    assert_eq!(c.get(&g("/encryptionAtRest")).await.ok()["awsKms"]["valid"], true);
    iam.update_assume_role_policy()
        .role_name(&role_name)
        .policy_document(trust(&atlas_arn, "rotated-away"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.get(&g("/encryptionAtRest")).await.ok()["awsKms"]["valid"],
        false
    );
    // An invalid configuration can't be put on another cluster.
    c.patch(
        &g("/clusters/Legacy0"),
        json!({"encryptionAtRestProvider": "AWS"}),
    )
    .await
    .expect(400, "CANNOT_USE_ENCRYPTION_AT_REST_BACKUP_TYPE");
    sim.shutdown().await;
}
