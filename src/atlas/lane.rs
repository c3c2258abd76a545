//! Which lane an Atlas call travels in. Work a change asked for (a new object, a spec edit, a
//! dependency turning Ready, the polls that follow them) is the `Change` lane; the routine look at a
//! converged object (its resync) is the `Routine` lane. When a bucket runs short, routine calls wait
//! until it holds a reserve again, so change-driven calls go first and a resync wave never queues in
//! front of a person's edit. The lane is set around a whole reconcile pass, so no call site passes it.

use std::future::Future;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lane {
    #[default]
    Change,
    Routine,
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
