//! The user's path through `kubectl`: CRDs applied server-side, a valid ProjectEncryption accepted, an
//! invalid one refused with the message a user reads, the controller seeing the create through its watch
//! and writing status through the status subresource, and `kubectl get` showing the printer columns.
#![cfg(feature = "integration")]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::operator::{OperatorEnv, REGION, seed};

fn kubectl(env: &common::TestEnv, args: &[&str], stdin: Option<&str>) -> Output {
    let bin = env.dir.join("env");
    let text = std::fs::read_to_string(&bin).unwrap();
    let kubectl_dir = text
        .lines()
        .find_map(|l| l.strip_prefix("export TESTENV_BIN="))
        .map(|v| v.trim_matches('"').to_string())
        .expect("TESTENV_BIN in the env file");
    let mut command = Command::new(format!("{kubectl_dir}/kubectl"));
    command.env("KUBECONFIG", &env.kubeconfig).args(args);
    match stdin {
        None => command.output().unwrap(),
        Some(input) => {
            use std::io::Write;
            let mut child = command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn kubectl_applies_refuses_and_shows_what_the_controller_wrote() {
    let mut env = OperatorEnv::start("kubectl-smoke", &seed(&[("proj-kubectl", &[])]))
        .await
        .unwrap();
    let testenv = common::testenv();
    let crds = common::repo_root().join("crds");
    let applied = kubectl(
        testenv,
        &["apply", "--server-side", "-f", crds.to_str().unwrap()],
        None,
    );
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(text(&applied).contains("projectencryptions.encryption.atlasops.dev serverside-applied"));

    let key = env.create_key(REGION).await.unwrap();
    let ns = env.ns.name().to_string();
    let manifest = |name: &str, region: &str| {
        format!(
            "apiVersion: encryption.atlasops.dev/v1alpha1\nkind: ProjectEncryption\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  projectName: proj-kubectl\n  credentialsRef: {{name: atlas-credentials}}\n  kmsPreflight: {{enabled: false}}\n\
             \x20 awsKms:\n    customerMasterKeyId: {key}\n    region: {region}\n    roleArn: arn:aws:iam::123456789012:role/smoke\n"
        )
    };
    let refused = kubectl(
        testenv,
        &["apply", "--server-side", "-f", "-"],
        Some(&manifest("bad", "us-east-1")),
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("the region inside the key ARN differs from spec.awsKms.region"),
        "{}",
        text(&refused)
    );

    env.start_controller().await.unwrap();
    let accepted = kubectl(
        testenv,
        &["apply", "--server-side", "-f", "-"],
        Some(&manifest("good", REGION)),
    );
    assert!(accepted.status.success(), "{}", text(&accepted));
    // The controller saw the create and wrote status (the role handshake waits for a trust policy).
    env.wait_project("good", Duration::from_secs(60), "reconciled", |pe| {
        pe.status.as_ref().is_some_and(|s| s.role.is_some())
    })
    .await
    .unwrap();

    let table = kubectl(testenv, &["get", "pe", "-n", &ns], None);
    let table = text(&table);
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAME",
        "READY",
        "PROJECT",
        "ROLE",
        "KEY VALID",
        "KEY SINCE",
        "ROTATION DUE",
        "STATUS",
        "AGE",
    ] {
        assert!(header.contains(column), "{column} missing from {header}");
    }
    let row = table.lines().find(|l| l.starts_with("good")).unwrap_or_default();
    assert!(
        row.contains("proj-kubectl") && row.contains("AwaitingTrustPolicy"),
        "{table}"
    );

    let described = text(&kubectl(
        testenv,
        &["describe", "projectencryption", "good", "-n", &ns],
        None,
    ));
    assert!(
        described.contains("sts:ExternalId"),
        "describe shows the trust policy to create: {described}"
    );
    let waited = kubectl(
        testenv,
        &[
            "wait",
            "--for=condition=Reconciling",
            "pe/good",
            "-n",
            &ns,
            "--timeout=30s",
        ],
        None,
    );
    assert!(waited.status.success(), "{}", text(&waited));

    // `kubectl explain` serves the field documentation written in src/crd/ from the published schema.
    for (path, expected) in [
        ("projectencryption.spec.awsKms", "customerMasterKeyId"),
        ("projectencryption.spec.deletionPolicy", "Retain"),
        ("projectencryption.status.key", "rotationDueAt"),
        ("clusterencryption.spec", "clusterName"),
    ] {
        let explained = kubectl(testenv, &["explain", path], None);
        let explained = text(&explained);
        assert!(explained.contains("DESCRIPTION:"), "{path}: {explained}");
        assert!(
            explained.contains(expected),
            "{path} lacks {expected}: {explained}"
        );
    }
    env.finish().await;
}
