//! The Helm chart configures the operator through environment variables: every one it sets must be a
//! variable the binary reads, so a renamed flag cannot leave the chart silently setting nothing.

mod common;

use atlas_encryption_operator::config::Config;
use clap::CommandFactory;

/// Variables the chart may set that are read by libraries, not by the operator's own flags: the AWS SDK
/// (region) and rustls-native-certs (the trust store, for `trustedCA`).
const READ_BY_LIBRARIES: &[&str] = &["AWS_REGION", "SSL_CERT_FILE", "SSL_CERT_DIR"];

#[test]
fn every_env_var_the_chart_sets_is_a_flag_of_the_operator() {
    let template = common::repo_root().join("charts/atlas-encryption-operator/templates/deployment.yaml");
    let template = std::fs::read_to_string(&template).expect("the chart's deployment template");
    let known: Vec<String> = Config::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    let set: Vec<&str> = template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- name: "))
        .map(str::trim)
        .filter(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .collect();
    assert!(set.len() >= 10, "found too few env vars in the template: {set:?}");
    for name in set {
        assert!(
            known.iter().any(|k| k == name) || READ_BY_LIBRARIES.contains(&name),
            "the chart sets {name}, which the operator does not read (flags read: {known:?})"
        );
    }
}
