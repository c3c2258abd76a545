//! Where the time to Ready goes. From atlas-sim's call log (when Atlas answered each call) and the
//! moments the bench itself acted (the apply, each customer trust policy, all Ready), each project's
//! path is cut into its waits; the median and the slowest of each show which waits dominate the gap
//! between a run and its ideal.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::sim::Call;

/// What the bench did, and when.
pub struct Moments {
    pub applied: DateTime<Utc>,
    /// When the customer's trust policy was in place, by Atlas project id.
    pub trusted: HashMap<String, DateTime<Utc>>,
    pub all_ready: DateTime<Utc>,
}

/// A cluster's provider PATCH and the last successful read of it.
type ClusterMilestones = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// One project's milestones in Atlas's call log.
#[derive(Default)]
struct Milestones {
    first_call: Option<DateTime<Utc>>,
    last_call: Option<DateTime<Utc>>,
    role_created: Option<DateTime<Utc>>,
    authorized: Option<DateTime<Utc>>,
    key_assigned: Option<DateTime<Utc>>,
    clusters: BTreeMap<String, ClusterMilestones>,
}

/// The waits, each as its median and slowest over the projects (or clusters) it was measured on.
pub fn breakdown(calls: &[Call], moments: &Moments) -> Value {
    let projects = milestones(calls);
    let mut waits: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut add = |name, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| {
        if let (Some(from), Some(to)) = (from, to) {
            waits.entry(name).or_default().push(seconds(from, to));
        }
    };
    for (group, m) in &projects {
        add(
            "1 apply to the first Atlas call",
            Some(moments.applied),
            m.first_call,
        );
        add(
            "2 role created to trust policy in place (the customer)",
            m.role_created,
            moments.trusted.get(group).copied(),
        );
        add(
            "3 trust policy in place to authorized (trust polls)",
            moments.trusted.get(group).copied(),
            m.authorized,
        );
        add("4 authorized to key assigned", m.authorized, m.key_assigned);
        let first_toggle = m.clusters.values().filter_map(|(patch, _)| *patch).min();
        add(
            "5 key assigned to first cluster toggle (project Ready wakes clusters)",
            m.key_assigned,
            first_toggle,
        );
        for (patch, idle) in m.clusters.values() {
            add("6 cluster toggle to last read (update + polls)", *patch, *idle);
        }
    }
    let last_call = projects.values().filter_map(|m| m.last_call).max();
    add(
        "7 last Atlas call to all Ready (status writes, watches)",
        last_call,
        Some(moments.all_ready),
    );
    waits
        .into_iter()
        .map(|(name, mut values)| {
            values.sort_by(f64::total_cmp);
            let median = values[values.len() / 2];
            let max = values[values.len() - 1];
            (
                name.to_string(),
                json!({"median_s": round2(median), "max_s": round2(max), "n": values.len()}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn milestones(calls: &[Call]) -> BTreeMap<String, Milestones> {
    let mut projects: BTreeMap<String, Milestones> = BTreeMap::new();
    for call in calls.iter().filter(|c| (200..300).contains(&c.status)) {
        let Some(rest) = call.path.strip_prefix("/api/atlas/v2/groups/") else {
            continue;
        };
        let mut parts = rest.split('/');
        let Some(group) = parts.next() else { continue };
        let m = projects.entry(group.to_string()).or_default();
        let at = call.timestamp;
        m.first_call = Some(m.first_call.map_or(at, |t| t.min(at)));
        m.last_call = Some(m.last_call.map_or(at, |t| t.max(at)));
        let tail: Vec<&str> = parts.collect();
        match (call.method.as_str(), tail.as_slice()) {
            ("POST", ["cloudProviderAccess"]) => m.role_created = Some(at),
            ("PATCH", ["cloudProviderAccess", _]) => m.authorized = Some(at),
            ("PATCH", ["encryptionAtRest"]) => m.key_assigned = m.key_assigned.or(Some(at)),
            ("PATCH", ["clusters", name]) => {
                let entry = m.clusters.entry(name.to_string()).or_default();
                entry.0 = entry.0.or(Some(at));
            }
            ("GET", ["clusters", name]) => m.clusters.entry(name.to_string()).or_default().1 = Some(at),
            _ => {}
        }
    }
    projects
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ms: i64, method: &str, path: &str) -> Call {
        Call {
            method: method.into(),
            route: None,
            status: 200,
            path: format!("/api/atlas/v2/groups/g1{path}"),
            timestamp: DateTime::from_timestamp_millis(ms).unwrap(),
            duration_ms: 50.0,
        }
    }

    #[test]
    fn a_projects_path_is_cut_into_its_waits() {
        let calls = [
            call(1_000, "GET", "/encryptionAtRest"),
            call(1_100, "POST", "/cloudProviderAccess"),
            call(4_000, "PATCH", "/cloudProviderAccess/r1"),
            call(4_100, "PATCH", "/encryptionAtRest"),
            call(4_600, "PATCH", "/clusters/c0"),
            call(8_000, "GET", "/clusters/c0"),
        ];
        let at = |ms| DateTime::from_timestamp_millis(ms).unwrap();
        let moments = Moments {
            applied: at(500),
            trusted: HashMap::from([("g1".to_string(), at(2_100))]),
            all_ready: at(8_500),
        };
        let waits = breakdown(&calls, &moments);
        let median = |name: &str| waits[name]["median_s"].as_f64().unwrap();
        assert_eq!(median("1 apply to the first Atlas call"), 0.5);
        assert_eq!(
            median("2 role created to trust policy in place (the customer)"),
            1.0
        );
        assert_eq!(median("3 trust policy in place to authorized (trust polls)"), 1.9);
        assert_eq!(median("4 authorized to key assigned"), 0.1);
        assert_eq!(
            median("5 key assigned to first cluster toggle (project Ready wakes clusters)"),
            0.5
        );
        assert_eq!(median("6 cluster toggle to last read (update + polls)"), 3.4);
        assert_eq!(
            median("7 last Atlas call to all Ready (status writes, watches)"),
            0.5
        );
    }
}
