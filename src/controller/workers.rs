//! The worker slots of one kind: at most `--concurrency` passes at once, handed out in order of
//! arrival within a lane, change-driven passes before routine ones.
//!
//! kube-runtime bounds concurrency itself, but while every slot is busy it parks the objects that
//! become due in a hash set and takes them out in the set's order, which is arbitrary: under a wave
//! (300 objects applied at once) some objects waited four seconds for their first pass while others
//! had three, and a cluster whose project had just turned Ready waited behind clusters that could only
//! report that theirs was not. So the controllers admit a few times more due objects than there are
//! slots (see `run.rs`), the wake gate answers the passes that have nothing to do without a slot, and
//! the rest wait here: first come, first served within a lane, and a pass that can start Atlas's work
//! goes before one that only watches or waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::atlas::Lane;

/// The slots of one kind. Cheap to clone; clones share the slots.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: usize,
    closed: bool,
    change: VecDeque<oneshot::Sender<Slot>>,
    routine: VecDeque<oneshot::Sender<Slot>>,
}

/// A worker slot, given back when dropped (to the longest-waiting pass of the first lane with one).
pub struct Slot {
    inner: Option<Arc<Inner>>,
}

impl Workers {
    pub fn new(slots: usize) -> Self {
        let state = State {
            free: slots,
            ..State::default()
        };
        Workers {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
            }),
        }
    }

    /// A slot for a pass in `lane` (`Spare` waits with `Routine`), once one is free and every pass
    /// waiting before it in its lane, and in the `Change` lane, has had one. `None` once the workers
    /// are closed: the operator is stopping and the pass is not started.
    pub async fn slot(&self, lane: Lane) -> Option<Slot> {
        let waiting = {
            let mut state = self.inner.lock();
            if state.closed {
                return None;
            }
            if state.free > 0 {
                state.free -= 1;
                return Some(Slot::of(&self.inner));
            }
            let (sender, receiver) = oneshot::channel();
            match lane {
                Lane::Change => state.change.push_back(sender),
                Lane::Routine | Lane::Spare => state.routine.push_back(sender),
            }
            receiver
        };
        // The sender goes only when a slot is handed over or the workers close.
        waiting.await.ok()
    }

    /// Stops handing out slots: every pass still waiting gets `None`, and so does every later one.
    pub fn close(&self) {
        let mut state = self.inner.lock();
        state.closed = true;
        state.change.clear();
        state.routine.clear();
    }

    /// Passes waiting for a slot, change-driven and routine.
    #[cfg(test)]
    fn waiting(&self) -> (usize, usize) {
        let state = self.inner.lock();
        (state.change.len(), state.routine.len())
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot came back: it goes to the next pass still waiting, or back to the free ones.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut state = self.lock();
                match state.change.pop_front().or_else(|| state.routine.pop_front()) {
                    Some(next) => next,
                    None => {
                        state.free += 1;
                        return;
                    }
                }
            };
            match next.send(Slot::of(self)) {
                Ok(()) => return,
                // That pass stopped waiting (its controller shut down): the slot goes to the next.
                Err(mut unwanted) => {
                    unwanted.inner = None;
                }
            }
        }
    }
}

impl Slot {
    fn of(inner: &Arc<Inner>) -> Slot {
        Slot {
            inner: Some(inner.clone()),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Lets the spawned waiters run up to their wait.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Spawns a pass that waits for a slot in `lane`, then reports `name` and holds the slot until told.
    fn waiter(
        workers: &Workers,
        lane: Lane,
        name: &'static str,
        order: &tokio::sync::mpsc::UnboundedSender<&'static str>,
    ) -> oneshot::Sender<()> {
        let (done, hold) = oneshot::channel::<()>();
        let (workers, order) = (workers.clone(), order.clone());
        tokio::spawn(async move {
            let slot = workers.slot(lane).await;
            order.send(name).unwrap();
            let _ = hold.await;
            drop(slot);
        });
        done
    }

    #[tokio::test]
    async fn slots_go_first_come_first_served_and_change_before_routine() {
        let workers = Workers::new(1);
        let (order, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let first = workers.slot(Lane::Change).await.expect("a free slot");
        let mut releases = Vec::new();
        for (lane, name) in [
            (Lane::Routine, "resync-1"),
            (Lane::Change, "edit-1"),
            (Lane::Spare, "resync-2"),
            (Lane::Change, "edit-2"),
        ] {
            releases.push(waiter(&workers, lane, name, &order));
            settle().await;
        }
        assert_eq!(workers.waiting(), (2, 2));
        drop(first);
        for release in releases {
            settle().await;
            let _ = release.send(());
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(seen.recv().await.unwrap());
        }
        assert_eq!(got, ["edit-1", "edit-2", "resync-1", "resync-2"]);
    }

    #[tokio::test]
    async fn no_more_passes_run_at_once_than_there_are_slots() {
        let workers = Workers::new(3);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let passes: Vec<_> = (0..20)
            .map(|i| {
                let (workers, running, most) = (workers.clone(), running.clone(), most.clone());
                let lane = if i % 2 == 0 { Lane::Change } else { Lane::Routine };
                tokio::spawn(async move {
                    let _slot = workers.slot(lane).await.expect("open");
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for pass in passes {
            pass.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Every slot came back.
        let all: Vec<_> = futures::future::join_all((0..3).map(|_| workers.slot(Lane::Routine))).await;
        assert!(all.iter().all(Option::is_some));
        assert_eq!(workers.waiting(), (0, 0));
    }

    /// One slot, held, and a pass waiting for it (its task answers whether it got one).
    async fn one_slot_held_and_one_pass_waiting() -> (Workers, Slot, tokio::task::JoinHandle<bool>) {
        let workers = Workers::new(1);
        let held = workers.slot(Lane::Change).await.expect("a free slot");
        let waiting = tokio::spawn({
            let workers = workers.clone();
            async move { workers.slot(Lane::Change).await.is_some() }
        });
        settle().await;
        (workers, held, waiting)
    }

    #[tokio::test]
    async fn a_pass_that_stops_waiting_does_not_take_a_slot_with_it() {
        let (workers, held, abandoned) = one_slot_held_and_one_pass_waiting().await;
        abandoned.abort();
        let _ = abandoned.await;
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(1), workers.slot(Lane::Routine)).await;
        assert!(
            matches!(again, Ok(Some(_))),
            "the slot was lost with the abandoned waiter"
        );
    }

    #[tokio::test]
    async fn closing_turns_away_waiting_and_later_passes() {
        let (workers, _held, waiting) = one_slot_held_and_one_pass_waiting().await;
        workers.close();
        assert!(!waiting.await.unwrap());
        assert!(workers.slot(Lane::Change).await.is_none());
    }
}
