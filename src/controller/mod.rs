//! The two controllers and what they share. One concern a file: `context` (the shared clients, caches
//! and settings), `run` (wiring), `events`, `error`, `finalizer`, `finish` (how a pass ends),
//! `moments` (a per-object clock), `observing` (`managementPolicy: Observe`), `wake` (when each object is looked at again) and `workers` (who runs next); each kind's reconciler in `project/` and `cluster/`.

pub mod cluster;
mod context;
pub(crate) mod credentials;
mod error;
mod events;
mod finalizer;
mod finish;
mod moments;
pub(crate) mod observing;
pub mod project;
mod run;
#[cfg(test)]
mod testing;
mod wake;
mod workers;

pub(crate) use context::clusters_of;
pub use context::{Context, ControllerConfig, RESYNC_BUDGET_SHARE, Reconciler, Stores, resync_period};
pub use credentials::CredentialsError;
pub use error::{Error, Result};
pub(crate) use events::{NORMAL, WARNING};
pub use finalizer::{ensure_finalizer, remove_finalizer};
pub use finish::apply_status;
pub(crate) use finish::{Step, USER_ACTION_REQUEUE, finish};
pub(crate) use moments::Moments;
pub(crate) use observing::Written;
pub use run::{Observers, run, run_observed};
pub(crate) use wake::object_key;
pub use wake::{patient_delay, waited_since};
