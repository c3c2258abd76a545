//! TLS to Atlas and to AWS is verified, with no way to turn it off. The test ground's kube-apiserver
//! serves HTTPS with a certificate from the test ground's own CA (`<testenv>/pki/ca.crt`), which is in
//! no system trust store: a stand-in for a man in the middle with a certificate for the right address.
//! The Atlas client, the KMS preflight and the operator binary are pointed at it; each must refuse
//! the certificate before any HTTP request is sent, and say so. A client that trusts that CA reaches
//! the same URL and gets an HTTP answer, so the refusal is the certificate's and nothing else's.
#![cfg(feature = "integration")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atlas_encryption_operator::atlas::{
    AtlasClient, AtlasClientConfig, AtlasError, AtlasMetrics, Credentials,
};
use atlas_encryption_operator::aws::{KeyRef, Region};
use atlas_encryption_operator::kms::{KmsPreflight, KmsPreflightConfig, PreflightFailure};
use common::k8s::{apiserver_url, testenv_ca};
use common::operator::{API_PRIVATE_KEY, API_PUBLIC_KEY, OperatorEnv, REGION, condition, seed};
use common::process::{OperatorProcess, SpawnOptions};
use common::unique_name;

/// What rustls says about a certificate no trusted CA issued.
const UNKNOWN_ISSUER: &str = "UnknownIssuer";

/// Every HTTP exchange the Atlas client reports: endpoint, method and the status (`None`: no answer).
#[derive(Default)]
struct Exchanges(Mutex<Vec<(&'static str, &'static str, Option<u16>)>>);

impl AtlasMetrics for Exchanges {
    fn on_call(&self, endpoint: &'static str, method: &'static str, status: Option<u16>, _: Duration) {
        self.0.lock().unwrap().push((endpoint, method, status));
    }
}

fn atlas_client(base_url: &str, exchanges: Arc<Exchanges>) -> AtlasClient {
    AtlasClient::new(AtlasClientConfig {
        base_url: base_url.to_string(),
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        metrics: Some(exchanges),
        ..Default::default()
    })
    .expect("atlas client")
}

/// The test CA is what makes the apiserver's certificate good: with it, the same URL answers HTTP.
async fn answer_when_the_ca_is_trusted(url: &str) -> u16 {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(testenv_ca()).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .expect("the apiserver answers a client that trusts its CA")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_atlas_client_refuses_a_certificate_from_an_unknown_ca_before_sending_anything() {
    let base = apiserver_url().unwrap();
    let control = answer_when_the_ca_is_trusted(&format!("{base}/api/atlas/v2/groups/byName/payments")).await;
    assert!(
        (400..500).contains(&control),
        "control: HTTP {control} from the apiserver"
    );

    for (kind, creds) in [
        ("API key", Credentials::api_key(API_PUBLIC_KEY, API_PRIVATE_KEY)),
        (
            "service account",
            Credentials::service_account("mdb_sa_id_tls", "mdb_sa_sk_never-sent"),
        ),
    ] {
        let exchanges = Arc::new(Exchanges::default());
        let client = atlas_client(&base, exchanges.clone());
        let error = client
            .get_project_by_name(&creds, "payments")
            .await
            .expect_err("an unverified certificate must fail the call");
        eprintln!("{kind}: {error}");
        match &error {
            AtlasError::UntrustedCertificate { message, .. } => {
                assert!(
                    message.contains("invalid peer certificate") && message.contains(UNKNOWN_ISSUER),
                    "{kind}: the error says the certificate is not trusted: {message}"
                );
            }
            other => panic!("{kind}: expected an untrusted certificate, got {other:?}"),
        }
        assert_eq!(error.status(), None, "{kind}: no HTTP status");
        assert_eq!(error.category(), "atlas_certificate_untrusted");
        assert!(!error.is_transient(), "{kind}: retrying cannot help");
        assert!(
            !error.to_string().contains(API_PRIVATE_KEY) && !error.to_string().contains("never-sent"),
            "{kind}: no secret in the error"
        );
        let exchanges = exchanges.0.lock().unwrap().clone();
        assert_eq!(
            exchanges.len(),
            1,
            "{kind}: one attempt, not retried: {exchanges:?}"
        );
        assert!(
            exchanges.iter().all(|(_, _, status)| status.is_none()),
            "{kind}: no attempt got an HTTP answer: {exchanges:?}"
        );
        eprintln!("{kind}: {} attempts, none answered", exchanges.len());
    }

    // The unauthenticated call (Atlas's control-plane IPs) goes through the same client.
    let exchanges = Arc::new(Exchanges::default());
    let error = atlas_client(&base, exchanges.clone())
        .control_plane_ip_addresses()
        .await
        .expect_err("unverified");
    assert!(
        matches!(&error, AtlasError::UntrustedCertificate { message, .. } if message.contains(UNKNOWN_ISSUER)),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_kms_preflight_refuses_a_certificate_from_an_unknown_ca() {
    let base = apiserver_url().unwrap();
    let control = answer_when_the_ca_is_trusted(&format!("{base}/")).await;
    assert!(
        (400..500).contains(&control),
        "control: HTTP {control} from the apiserver"
    );
    let region = Region::parse(REGION).unwrap();
    let sdk = common::aws_sdk_config(REGION).await;
    let env = OperatorEnv::start("tls-kms", &seed(&[])).await.unwrap();
    let key = KeyRef::parse(&env.create_key(REGION).await.unwrap()).unwrap();
    let config = |endpoint: String| KmsPreflightConfig {
        endpoint_url: Some(endpoint),
        cache_ttl: Duration::ZERO,
        failure_ttl: Duration::ZERO,
        ..Default::default()
    };

    // Control: the same preflight, key and credentials against moto.
    let report = KmsPreflight::with_sdk_config(sdk.clone(), config(common::moto_endpoint()))
        .check(&key, &region, None)
        .await
        .expect("the key is fine in moto");
    assert!(report.checked);

    let started = Instant::now();
    let failure = KmsPreflight::with_sdk_config(sdk, config(base))
        .check(&key, &region, None)
        .await
        .expect_err("an unverified certificate must fail the preflight");
    eprintln!("after {:?}: {failure}", started.elapsed());
    let PreflightFailure::KmsCertificateUntrusted { detail, .. } = &failure else {
        panic!("expected KmsCertificateUntrusted, got {failure:?}");
    };
    assert!(
        detail.contains("dispatch failure") && detail.contains(UNKNOWN_ISSUER),
        "the detail says the request was never sent and why: {detail}"
    );
    assert!(
        !detail.contains("service error") && !detail.contains("status code"),
        "no HTTP answer: {detail}"
    );
    assert!(
        !failure.is_transient(),
        "a trust store to mend, not an outage to wait out"
    );
    assert_eq!(failure.reason(), "KmsCertificateUntrusted");
    assert!(failure.message().contains("trustedCA.configMap"), "{failure}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "fails fast: {:?}",
        started.elapsed()
    );
    env.finish().await;
}

/// The `atlas_requests_total` samples of an operator's metrics.
async fn atlas_answers(operator: &OperatorProcess) -> Vec<String> {
    let text = operator.metrics_text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("atlas_encryption_operator_atlas_requests_total{"))
        .map(str::to_string)
        .collect()
}

/// The operator binary with `--atlas-base-url` at the apiserver: the ProjectEncryption reports the
/// refused certificate in its status, the log says so, every Atlas exchange ended without an HTTP
/// answer, and nothing came out of it in Atlas.
#[tokio::test]
async fn the_operator_reports_an_untrusted_atlas_certificate_and_never_reaches_atlas() {
    let env = OperatorEnv::start("tls-op", &seed(&[("proj-tls", &[])]))
        .await
        .unwrap();
    let base = apiserver_url().unwrap();
    let ns = env.ns.name().to_string();
    let mut operator =
        OperatorProcess::spawn(&unique_name("op"), &base, &["--watch-namespaces", &ns]).unwrap();
    operator.wait_ready(Duration::from_secs(30)).await.unwrap();
    env.begin_handshake("payments", "proj-tls").await.unwrap();

    let pe = env
        .wait_project(
            "payments",
            Duration::from_secs(60),
            "reporting the certificate",
            |pe| {
                pe.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.message.contains(UNKNOWN_ISSUER))
                })
            },
        )
        .await
        .unwrap();
    let status = pe.status.unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    eprintln!("Ready: {} {}: {}", ready.status, ready.reason, ready.message);
    assert_eq!(
        condition(&status.conditions, "Ready"),
        Some(("False".into(), "AtlasCertificateUntrusted".into()))
    );
    assert!(
        ready.message.contains("not trusted")
            && ready.message.contains("invalid peer certificate")
            && ready.message.contains("trustedCA"),
        "what is wrong and what to do: {}",
        ready.message
    );
    assert_eq!(
        condition(&status.conditions, "Stalled").map(|(st, _)| st),
        Some("True".into()),
        "kstatus: failed, not progressing forever"
    );
    assert_ne!(
        condition(&status.conditions, "Reconciling").map(|(st, _)| st),
        Some("True".into())
    );
    let events = env
        .wait_event("payments", "AtlasCertificateUntrusted", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        events.iter().any(|(r, _)| r == "AtlasCertificateUntrusted"),
        "a Warning Event: {events:?}"
    );
    assert!(status.role.is_none(), "no Atlas role came of it");

    let said = operator.log_json().into_iter().any(|l| {
        l["level"] == "WARN"
            && l["message"] == "reconcile stalled"
            && l["category"] == "atlas_certificate_untrusted"
            && l["error"]
                .as_str()
                .is_some_and(|e| e.contains("invalid peer certificate: UnknownIssuer"))
    });
    assert!(said, "the log says why:\n{}", operator.log_tail());
    let answered = atlas_answers(&operator).await;
    assert!(!answered.is_empty(), "Atlas exchanges are counted");
    assert!(
        answered.iter().all(|l| l.contains(r#"status="none""#)),
        "no Atlas exchange got an HTTP answer: {answered:?}"
    );
    assert!(!operator.log_text().contains(API_PRIVATE_KEY));
    operator.terminate(Duration::from_secs(20)).await.unwrap();

    // Control: the same binary with the test CA in its trust store (SSL_CERT_FILE, read by
    // rustls-native-certs) gets HTTP answers from the same URL. Trusting a private CA is done
    // there, not by turning verification off.
    let options = SpawnOptions {
        env: vec![(
            "SSL_CERT_FILE".into(),
            testenv_ca().to_string_lossy().into_owned(),
        )],
        ..Default::default()
    };
    let mut trusting =
        OperatorProcess::spawn_with(&unique_name("op"), &base, &["--watch-namespaces", &ns], options)
            .unwrap();
    trusting.wait_ready(Duration::from_secs(30)).await.unwrap();
    let pe = env
        .wait_project("payments", Duration::from_secs(60), "past TLS", |pe| {
            pe.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && !c.message.contains(UNKNOWN_ISSUER))
            })
        })
        .await
        .unwrap();
    let ready = pe
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    eprintln!(
        "with the CA trusted: Ready {} {}: {}",
        ready.status, ready.reason, ready.message
    );
    let answered = atlas_answers(&trusting).await;
    assert!(
        answered.iter().any(|l| l.contains(r#"status="403""#)) && ready.message.contains("HTTP 403"),
        "with the CA trusted the apiserver answers HTTP (403 to an anonymous request): {answered:?}"
    );
    trusting.terminate(Duration::from_secs(20)).await.unwrap();
    // The operator left its finalizer: take it off so the namespace can go.
    env.projects()
        .patch(
            "payments",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    env.finish().await;
}
