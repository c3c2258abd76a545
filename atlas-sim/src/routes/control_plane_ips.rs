//! `GET /unauth/controlPlaneIPAddresses` (no auth). The addresses are fixed documentation ranges
//! (RFC 5737), so nothing real is ever allowed by a policy built from them.

use axum::response::Response;
use serde_json::json;

use super::Wire;

pub async fn get_ips(wire: Wire) -> Response {
    wire.ok(json!({
        "inbound": {
            "aws": {"us-east-1": ["192.0.2.10/32", "192.0.2.11/32"], "eu-west-2": ["192.0.2.20/32"]},
            "azure": {"eastus2": ["198.51.100.10/32"]},
            "gcp": {"us-central1": ["203.0.113.10/32"]}
        },
        "outbound": {
            "aws": {"us-east-1": ["192.0.2.100/32", "192.0.2.101/32"], "eu-west-2": ["192.0.2.120/32"]},
            "azure": {"eastus2": ["198.51.100.100/32"]},
            "gcp": {"us-central1": ["203.0.113.100/32"]}
        }
    }))
}
