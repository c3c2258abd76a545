//! Which lane an Atlas call travels in. Work a change asked for (a new object, a spec edit, a
//! dependency turning Ready, a trust policy awaited) is the `Change` lane; calls that only watch
//! (a converged object's resync, a poll of a cluster update under way) are the `Routine` lane. When a
//! bucket runs short, routine calls wait until it holds a reserve again, so change-driven calls go
//! first: a resync wave never queues in front of a person's edit, and the writes that start Atlas's
//! work go before the reads that watch it. `Spare` calls are made only with budget nobody wants now.
//! The lane is set around a whole reconcile pass (or a stage of one), so no call site passes it.

use std::future::Future;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lane {
    #[default]
    Change,
    Routine,
    /// Worth making only with budget to spare: a token above the reserve now, or the call is not sent
    /// (`AtlasError::NoSpareBudget`). For reads made ahead of need, which the pass can do without.
    Spare,
}

tokio::task_local! {
    static LANE: Lane;
}

/// Runs `work` with its Atlas calls in `lane`.
pub async fn within<F: Future>(lane: Lane, work: F) -> F::Output {
    LANE.scope(lane, work).await
}

/// The lane of the calls made here: `Change` outside any [`within`].
pub(crate) fn current() -> Lane {
    LANE.try_with(|lane| *lane).unwrap_or_default()
}
