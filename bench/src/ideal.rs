//! The ideal the figures are compared with: the fewest Atlas calls the Encryption at Rest flow needs,
//! and the least time they can take at the configured latency, concurrency and rate budget.
//!
//! Every call counted is listed in [`project_calls`] and [`cluster_calls`]; nothing here measures.

/// One Atlas call of the ideal flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdealCall {
    pub method: &'static str,
    pub route: &'static str,
    pub why: &'static str,
}

impl IdealCall {
    pub fn is_read(&self) -> bool {
        self.method == "GET"
    }
}

const fn call(method: &'static str, route: &'static str, why: &'static str) -> IdealCall {
    IdealCall { method, route, why }
}

/// A ProjectEncryption taken from nothing to Ready, with `spec.projectId` given (no name lookup).
pub fn project_calls() -> Vec<IdealCall> {
    vec![
        call(
            "GET",
            "/groups/{groupId}/encryptionAtRest",
            "what Atlas has now (another key, legacy access keys)",
        ),
        call(
            "GET",
            "/groups/{groupId}/cloudProviderAccess",
            "an existing role to reuse, so none is created twice",
        ),
        call(
            "POST",
            "/groups/{groupId}/cloudProviderAccess",
            "create the Atlas role; its external ID goes to the customer",
        ),
        call(
            "PATCH",
            "/groups/{groupId}/cloudProviderAccess/{roleId}",
            "authorize, once the IAM role trusts Atlas",
        ),
        call(
            "PATCH",
            "/groups/{groupId}/encryptionAtRest",
            "assign the key; the answer carries awsKms.valid",
        ),
    ]
}

/// A ClusterEncryption taken to `encryptionAtRestProvider: AWS` and IDLE.
pub fn cluster_calls() -> Vec<IdealCall> {
    vec![
        call(
            "GET",
            "/groups/{groupId}/clusters/{clusterName}",
            "tier, backup, paused, provider, state",
        ),
        call(
            "PATCH",
            "/groups/{groupId}/clusters/{clusterName}",
            "encryptionAtRestProvider AWS",
        ),
        call(
            "GET",
            "/groups/{groupId}/clusters/{clusterName}",
            "IDLE again after the update",
        ),
    ]
}

/// A key rotation of one project: the key change itself, then the check that tells whether the old key
/// may be deleted (snapshots taken under it), one list per backed-up cluster.
pub fn rotation_calls(backup_clusters: u64) -> (u64, u64) {
    let core = 2; // GET encryptionAtRest, PATCH encryptionAtRest
    let snapshot_check = 1 + backup_clusters; // GET clusters, GET …/backup/snapshots per cluster
    (core, snapshot_check)
}

/// What the operator was configured with and what the simulator injects.
#[derive(Clone, Debug)]
pub struct FlowParams {
    pub projects: u64,
    pub clusters_per_project: u64,
    /// Added to every Atlas call by the simulator.
    pub latency_s: f64,
    /// Reconciles of one kind at once (the operator runs one pool per kind).
    pub concurrency: u64,
    /// The operator's Atlas rate budget (calls per second, shared by all projects of the organization).
    pub rate_per_s: f64,
    pub burst: u64,
    /// How long a cluster stays UPDATING after its provider changes.
    pub cluster_update_s: f64,
    /// Atlas's bucket per project that bounds the run: (capacity, refill per second).
    pub project_limit: Option<(f64, f64)>,
    /// Atlas's bucket per organization that bounds the run.
    pub org_limit: Option<(f64, f64)>,
}

/// `CAPACITY,REFILL,SECONDS` as (capacity, refill per second).
pub fn parse_limit(s: &str) -> Option<(f64, f64)> {
    let parts: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [capacity, refill, seconds] if *seconds > 0.0 => Some((*capacity, refill / seconds)),
        _ => None,
    }
}

/// Calls beyond a bucket's capacity at its refill rate.
fn bucket_bound(calls: u64, (capacity, per_s): (f64, f64)) -> f64 {
    ((calls as f64 - capacity).max(0.0)) / per_s.max(1e-9)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ideal {
    pub reads: u64,
    pub writes: u64,
    pub calls_per_resource: f64,
    /// One project and its clusters end to end, every call in sequence, plus the cluster update.
    pub critical_path_s: f64,
    /// Busy time of the busier worker pool: calls × latency / concurrency.
    pub pool_bound_s: f64,
    /// Calls beyond the burst at the configured rate, or beyond Atlas's published buckets at their
    /// refill rates (the slowest bucket).
    pub rate_bound_s: f64,
    /// The rate bound of the calls that must come before the last cluster's provider PATCH (every
    /// project call, every cluster's first read and PATCH), then that PATCH's answer, the cluster
    /// update and the read that sees it end: a cluster cannot start updating before its PATCH is
    /// sent, so the update cannot overlap the calls the budget holds back ahead of it.
    pub rate_then_update_s: f64,
    pub time_s: f64,
}

pub fn ideal(p: &FlowParams) -> Ideal {
    let project = project_calls();
    let cluster = cluster_calls();
    let per_group_reads = project.iter().filter(|c| c.is_read()).count() as u64
        + p.clusters_per_project * cluster.iter().filter(|c| c.is_read()).count() as u64;
    let per_group_writes = project.iter().filter(|c| !c.is_read()).count() as u64
        + p.clusters_per_project * cluster.iter().filter(|c| !c.is_read()).count() as u64;
    let reads = p.projects * per_group_reads;
    let writes = p.projects * per_group_writes;
    let resources = p.projects * (1 + p.clusters_per_project);
    let calls = reads + writes;

    let critical_path_s = (project.len() + cluster.len()) as f64 * p.latency_s + p.cluster_update_s;
    let concurrency = p.concurrency.max(1) as f64;
    let project_pool = (p.projects * project.len() as u64) as f64 * p.latency_s / concurrency;
    let cluster_pool =
        (p.projects * p.clusters_per_project * cluster.len() as u64) as f64 * p.latency_s / concurrency;
    let pool_bound_s = project_pool.max(cluster_pool);
    let rate_bound_s = rate_bound(p, calls, per_group_reads + per_group_writes);
    // Before a cluster's update starts: its project's calls, then its own read and PATCH (the calls
    // of `cluster_calls` up to the PATCH).
    let before_toggle_per_cluster = cluster
        .iter()
        .position(|c| c.method == "PATCH")
        .map_or(0, |i| i + 1) as u64;
    let before_toggle_per_group = project.len() as u64 + p.clusters_per_project * before_toggle_per_cluster;
    let last_toggle_sent_s = rate_bound(p, p.projects * before_toggle_per_group, before_toggle_per_group);
    let rate_then_update_s = last_toggle_sent_s + 2.0 * p.latency_s + p.cluster_update_s;
    Ideal {
        reads,
        writes,
        calls_per_resource: if resources == 0 {
            0.0
        } else {
            calls as f64 / resources as f64
        },
        critical_path_s,
        pool_bound_s,
        rate_bound_s,
        rate_then_update_s,
        time_s: critical_path_s
            .max(pool_bound_s)
            .max(rate_bound_s)
            .max(rate_then_update_s),
    }
}

impl Ideal {
    /// The ideal as computed up to session 8: as if the cluster update could overlap the calls the
    /// budget holds back before it. Kept so figures stay comparable across sessions.
    pub fn time_s_update_overlapping(&self) -> f64 {
        self.critical_path_s.max(self.pool_bound_s).max(self.rate_bound_s)
    }
}

/// The least time in which `calls` (of which `per_project` in each project) can all be sent: beyond
/// the burst at the configured rate, and beyond each of Atlas's published buckets at its refill rate.
fn rate_bound(p: &FlowParams, calls: u64, per_project: u64) -> f64 {
    let budget_bound = if p.rate_per_s > 0.0 {
        calls.saturating_sub(p.burst) as f64 / p.rate_per_s
    } else {
        0.0
    };
    budget_bound
        .max(p.org_limit.map_or(0.0, |l| bucket_bound(calls, l)))
        .max(p.project_limit.map_or(0.0, |l| bucket_bound(per_project, l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(projects: u64) -> FlowParams {
        FlowParams {
            projects,
            clusters_per_project: 5,
            latency_s: 0.05,
            concurrency: 8,
            rate_per_s: 100.0,
            burst: 100,
            cluster_update_s: 3.0,
            project_limit: None,
            org_limit: None,
        }
    }

    #[test]
    fn one_project_with_five_clusters_needs_twenty_calls() {
        let i = ideal(&params(1));
        assert_eq!((i.reads, i.writes), (2 + 10, 3 + 5));
        assert!((i.calls_per_resource - 20.0 / 6.0).abs() < 1e-9);
        // 8 calls in sequence at 50 ms, then the 3 s update.
        assert!((i.critical_path_s - 3.4).abs() < 1e-9);
        assert!((i.time_s - 3.4).abs() < 1e-9);
    }

    #[test]
    fn large_scales_are_bound_by_the_rate_budget_or_the_pool() {
        let i = ideal(&params(1000));
        assert_eq!(i.reads + i.writes, 20_000);
        assert!((i.rate_bound_s - 199.0).abs() < 1e-9);
        assert!((i.pool_bound_s - 15_000.0 * 0.05 / 8.0).abs() < 1e-9);
        assert_eq!(i.time_s, i.rate_bound_s);
        let fast = ideal(&FlowParams {
            rate_per_s: 10_000.0,
            ..params(1000)
        });
        assert_eq!(fast.time_s, fast.pool_bound_s);
    }

    #[test]
    fn published_limits_bound_by_their_slowest_bucket() {
        assert_eq!(parse_limit("300,150,1"), Some((300.0, 150.0)));
        assert_eq!(parse_limit("100,100,60").unwrap().1, 100.0 / 60.0);
        let published = FlowParams {
            rate_per_s: 0.0,
            org_limit: parse_limit("20,20,1"),
            project_limit: parse_limit("100,100,60"),
            ..params(100)
        };
        // 2,000 calls, 20 of them at once, the rest at 20/s; each project's 20 calls fit its bucket.
        assert!((ideal(&published).rate_bound_s - 99.0).abs() < 1e-9);
        let tight_project = FlowParams {
            project_limit: parse_limit("10,1,1"),
            org_limit: None,
            ..published
        };
        assert!((ideal(&tight_project).rate_bound_s - 10.0).abs() < 1e-9);
    }

    #[test]
    fn the_update_cannot_overlap_the_calls_held_back_before_the_last_toggle() {
        // 50 projects under the generous published limits: 1,000 calls are 4.67 s of budget, but 750 of
        // them come before the last PATCH (3.0 s beyond the burst of 300), and its update takes 3 s after.
        let generous = FlowParams {
            rate_per_s: 0.0,
            org_limit: parse_limit("300,150,1"),
            project_limit: parse_limit("100,100,60"),
            ..params(50)
        };
        let i = ideal(&generous);
        assert!((i.rate_bound_s - 700.0 / 150.0).abs() < 1e-9);
        assert!((i.rate_then_update_s - (3.0 + 0.1 + 3.0)).abs() < 1e-9);
        assert_eq!(i.time_s, i.rate_then_update_s);
        // 10 projects at 100/s with a burst of 100: 150 calls before the last PATCH, 0.5 s past the burst.
        let small = ideal(&params(10));
        assert!((small.rate_then_update_s - 3.6).abs() < 1e-9);
        assert!(small.time_s > small.critical_path_s);
        // Within the burst the bound is the update alone, below the critical path.
        assert!(ideal(&params(1)).rate_then_update_s < ideal(&params(1)).critical_path_s);
    }

    #[test]
    fn rotation_counts_the_snapshot_check_apart() {
        assert_eq!(rotation_calls(5), (2, 6));
    }
}
