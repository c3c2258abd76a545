//! `GET /unauth/controlPlaneIPAddresses` (no auth). Atlas changes this list over time, so it is state:
//! tests replace it with `PUT /__sim/controlPlaneIPAddresses`. The defaults are documentation ranges
//! (RFC 5737), so nothing real is ever allowed by a policy built from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Wire;
use crate::Sim;

/// Region → CIDRs, per cloud provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderCidrs {
    pub aws: BTreeMap<String, Vec<String>>,
    pub azure: BTreeMap<String, Vec<String>>,
    pub gcp: BTreeMap<String, Vec<String>>,
}

/// The `ControlPlaneIPAddresses` object of the official specification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneIps {
    pub inbound: ProviderCidrs,
    pub outbound: ProviderCidrs,
}

fn cidrs(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    entries
        .iter()
        .map(|(region, list)| (region.to_string(), list.iter().map(|c| c.to_string()).collect()))
        .collect()
}

impl Default for ControlPlaneIps {
    fn default() -> Self {
        ControlPlaneIps {
            inbound: ProviderCidrs {
                aws: cidrs(&[
                    ("us-east-1", &["192.0.2.10/32", "192.0.2.11/32"]),
                    ("eu-west-2", &["192.0.2.20/32"]),
                ]),
                azure: cidrs(&[("eastus2", &["198.51.100.10/32"])]),
                gcp: cidrs(&[("us-central1", &["203.0.113.10/32"])]),
            },
            outbound: ProviderCidrs {
                aws: cidrs(&[
                    ("us-east-1", &["192.0.2.100/32", "192.0.2.101/32"]),
                    ("eu-west-2", &["192.0.2.120/32"]),
                ]),
                azure: cidrs(&[("eastus2", &["198.51.100.100/32"])]),
                gcp: cidrs(&[("us-central1", &["203.0.113.100/32"])]),
            },
        }
    }
}

impl ControlPlaneIps {
    /// Every entry must be an IPv4 or IPv6 CIDR: a malformed one would only break the client under test.
    pub fn validate(&self) -> Result<(), String> {
        for side in [&self.inbound, &self.outbound] {
            for list in [&side.aws, &side.azure, &side.gcp]
                .into_iter()
                .flat_map(|m| m.values())
            {
                for c in list {
                    let (ip, bits) = c.split_once('/').ok_or_else(|| format!("{c} is not a CIDR"))?;
                    let ip: std::net::IpAddr = ip.parse().map_err(|_| format!("{c} is not a CIDR"))?;
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    match bits.parse::<u8>() {
                        Ok(b) if b <= max => {}
                        _ => return Err(format!("{c} is not a CIDR")),
                    }
                }
            }
        }
        Ok(())
    }
}

pub async fn get_ips(State(sim): State<Arc<Sim>>, wire: Wire) -> Response {
    let ips = sim.state.lock().control_plane_ips.clone();
    wire.ok(json!(ips))
}
