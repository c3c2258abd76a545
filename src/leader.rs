//! Leader election with a coordination.k8s.io Lease, so several replicas can run and only one writes to
//! Atlas.
//!
//! The rules are client-go's: a Lease is free when it names no holder or when its record has not
//! changed for `lease_duration` as measured by *this* replica's clock since it last saw it change (so
//! clock skew between nodes does not matter); every write is guarded by the resourceVersion read just
//! before, so two replicas can never both take it. The leader renews every `retry_period` and gives up
//! when it has not renewed for `renew_deadline`, which is shorter than `lease_duration`: it stops
//! before anybody else may start.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What to do with the Lease as last read.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// Free or expired: take it over (a new leadership term).
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Somebody else holds it and it is alive.
    Follow { holder: String },
}

/// The Lease record as this replica last saw it, and when that record last changed to its eyes.
#[derive(Debug, Clone)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    changed_at: Instant,
}

/// Decides from the Lease's spec, how long its record has stood unchanged to this replica, and who we
/// are. Pure, so every branch is unit-tested.
pub fn decide(
    spec: Option<&LeaseSpec>,
    unchanged_for: Duration,
    identity: &str,
    lease_duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) => {
            // The holder's own duration wins over ours: it promised to renew within it.
            let duration = spec
                .lease_duration_seconds
                .map_or(lease_duration, |s| Duration::from_secs(s.max(1) as u64));
            if unchanged_for >= duration {
                Decision::Acquire
            } else {
                Decision::Follow {
                    holder: holder.to_string(),
                }
            }
        }
    }
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaseLost {
    #[error("could not renew the Lease for {0:?}; stopping so that another replica can lead")]
    RenewDeadlineExceeded(Duration),
    #[error("the Lease is now held by {0}")]
    TakenBy(String),
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

/// One attempt's result.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    Leading,
    Following(Option<String>),
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Waits until this replica holds the Lease. `on_follow` hears who leads meanwhile (for readiness).
    pub async fn acquire(&mut self, mut on_follow: impl FnMut(Option<&str>)) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(Attempt::Following(holder)) => on_follow(holder.as_deref()),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read or write the Lease");
                    on_follow(None);
                }
            }
            tokio::time::sleep(jittered(self.config.retry_period)).await;
        }
    }

    /// Renews the Lease every retry period for as long as it can; returns when leadership is lost.
    /// Cancel-safe: dropping it simply stops renewing.
    pub async fn hold(&mut self) -> LeaseLost {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => last_renewed = Instant::now(),
                Ok(Attempt::Following(Some(holder))) => return LeaseLost::TakenBy(holder),
                Ok(Attempt::Following(None)) => {}
                Err(e) => tracing::warn!(error = %e, "could not renew the Lease"),
            }
            if last_renewed.elapsed() >= self.config.renew_deadline {
                return LeaseLost::RenewDeadlineExceeded(self.config.renew_deadline);
            }
        }
    }

    /// Hands the Lease back on a clean shutdown so a standby takes over at once instead of waiting
    /// for it to expire.
    pub async fn release(&mut self) {
        let Ok(mut lease) = self.api.get(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.config.name, "released the Lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the Lease; it expires by itself"),
        }
    }

    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let current = match self.api.get_opt(&self.config.name).await? {
            Some(lease) => lease,
            None => return self.create(now).await,
        };
        let unchanged_for = self.observe(&current);
        match decide(
            current.spec.as_ref(),
            unchanged_for,
            &self.config.identity,
            self.config.lease_duration,
        ) {
            Decision::Create => self.create(now).await,
            Decision::Follow { holder } => Ok(Attempt::Following(Some(holder))),
            decision @ (Decision::Acquire | Decision::Renew) => {
                let mut lease = current;
                let spec = lease.spec.get_or_insert_with(Default::default);
                if decision == Decision::Acquire {
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.holder_identity = Some(self.config.identity.clone());
                spec.lease_duration_seconds = Some(self.config.lease_duration.as_secs().max(1) as i32);
                spec.renew_time = Some(MicroTime(now));
                // The resourceVersion read above guards the write: a concurrent taker gets 409.
                match self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(written) => {
                        self.observe(&written);
                        Ok(Attempt::Leading)
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following(None)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn create(&mut self, now: Timestamp) -> Result<Attempt, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.lease_duration.as_secs().max(1) as i32),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => {
                self.observe(&written);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following(None)),
            Err(e) => Err(e),
        }
    }

    /// Records the Lease as seen now and returns how long its record has stood unchanged.
    fn observe(&mut self, lease: &Lease) -> Duration {
        let spec = lease.spec.as_ref();
        let holder = spec.and_then(|s| s.holder_identity.clone());
        let renew_time = spec.and_then(|s| s.renew_time.as_ref().map(|t| t.0));
        let same = self
            .observed
            .as_ref()
            .is_some_and(|o| o.holder == holder && o.renew_time == renew_time);
        if !same {
            self.observed = Some(Observed {
                holder,
                renew_time,
                changed_at: Instant::now(),
            });
            return Duration::ZERO;
        }
        self.observed
            .as_ref()
            .map_or(Duration::ZERO, |o| o.changed_at.elapsed())
    }
}

/// Up to 20 % later, so standbys started together do not knock on the Lease in lockstep.
fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + rand::random::<f64>() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIFTEEN: Duration = Duration::from_secs(15);

    fn held_by(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: seconds,
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created() {
        assert_eq!(decide(None, Duration::ZERO, "me", FIFTEEN), Decision::Create);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        for holder in [None, Some("")] {
            let spec = held_by(holder, Some(1));
            assert_eq!(
                decide(Some(&spec), Duration::ZERO, "me", FIFTEEN),
                Decision::Acquire
            );
        }
    }

    #[test]
    fn our_own_lease_is_renewed_even_when_old() {
        let spec = held_by(Some("me"), Some(15));
        assert_eq!(
            decide(Some(&spec), Duration::from_secs(60), "me", FIFTEEN),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_lease_of_another_replica_is_followed_until_it_expires() {
        let spec = held_by(Some("other"), Some(15));
        assert_eq!(
            decide(Some(&spec), Duration::from_secs(14), "me", FIFTEEN),
            Decision::Follow {
                holder: "other".into()
            }
        );
        assert_eq!(
            decide(Some(&spec), Duration::from_secs(15), "me", FIFTEEN),
            Decision::Acquire
        );
    }

    #[test]
    fn the_holders_promised_duration_wins_over_ours() {
        let spec = held_by(Some("other"), Some(60));
        assert_eq!(
            decide(Some(&spec), Duration::from_secs(30), "me", FIFTEEN),
            Decision::Follow {
                holder: "other".into()
            }
        );
        let spec = held_by(Some("other"), None);
        assert_eq!(
            decide(Some(&spec), Duration::from_secs(15), "me", FIFTEEN),
            Decision::Acquire
        );
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(12));
        }
    }
}
