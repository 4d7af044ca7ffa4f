//! What `stop()` needs from tasks, on no runtime in particular: a [`Cancellation`] that fires
//! once, a tracker that counts a manager's live tasks, and the [`Spawner`] that starts them.

use futures::future::BoxFuture;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use event_listener::Event;

/// How a manager starts its tasks (listeners, connections, UDP sockets). By default a
/// manager uses its driver's runtime; hand in another spawn function to run them elsewhere,
/// e.g. on an executor of your own:
///
/// ```
/// use tendril_net::runtime::Spawner;
///
/// let on_a_thread_each = Spawner::new(|task| {
///     std::thread::spawn(move || futures::executor::block_on(task));
/// });
/// # let _ = on_a_thread_each;
/// ```
#[derive(Clone)]
pub struct Spawner(Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>);

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Spawner")
    }
}

impl Spawner {
    /// A spawner that hands each task to `spawn` (which must run it to completion, detached).
    pub fn new<F>(spawn: F) -> Self
    where
        F: Fn(BoxFuture<'static, ()>) + Send + Sync + 'static,
    {
        Spawner(Arc::new(spawn))
    }

    /// Start `future` as a detached task.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        (self.0)(Box::pin(future));
    }
}

/// Fires once, when a manager stops: listeners and socket tasks wait on it to end.
///
/// Cheap to clone; all clones fire together.
#[derive(Clone, Default)]
pub struct Cancellation {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    event: Event,
}

impl fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancellation")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Cancellation {
    /// Fire: every waiter wakes, now and later.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::Release);
        self.inner.event.notify(usize::MAX);
    }

    /// `true` once fired.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Wait until fired.
    pub async fn cancelled(&self) {
        loop {
            if self.is_cancelled() {
                return;
            }
            // Listen before the second check, so a `cancel` in between is not missed.
            let listener = self.inner.event.listen();
            if self.is_cancelled() {
                return;
            }
            listener.await;
        }
    }

    /// Run `future` until it finishes (`Some(output)`) or this fires first (`None`; the future
    /// is dropped).
    pub async fn run_until_cancelled<F: Future>(&self, future: F) -> Option<F::Output> {
        let cancelled = pin!(self.cancelled());
        let future = pin!(future);
        match futures::future::select(cancelled, future).await {
            futures::future::Either::Left(_) => None,
            futures::future::Either::Right((output, _)) => Some(output),
        }
    }
}

/// Counts a manager's live tasks, so that `stop()` can wait for them.
#[derive(Default)]
pub(crate) struct TaskTracker {
    live: AtomicUsize,
    idle: Event,
}

/// Decrements the count when the task ends, also when it panics or is dropped unfinished.
struct TaskGuard(Arc<TaskTracker>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) <= 2 {
            self.0.idle.notify(usize::MAX);
        }
    }
}

thread_local! {
    /// The task being polled on this thread, and the tracker that counts it.
    static CURRENT: std::cell::Cell<(u64, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// A new task id (never 0).
pub(crate) fn new_task_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The id of the manager task being polled on this thread (0 outside them). Code that would
/// wait for a task — a blocking send, a stop, a connect through a socket's task — asks first,
/// since a task cannot wait for itself.
pub(crate) fn current_task() -> u64 {
    CURRENT.get().0
}

impl TaskTracker {
    /// `future` as task `id`, counted from now until it ends.
    pub(crate) fn track_as<F>(
        self: &Arc<Self>,
        id: u64,
        future: F,
    ) -> impl Future<Output = ()> + Send
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.live.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(self.clone());
        let tracker = Arc::as_ptr(self) as usize;
        let mut future = Box::pin(future);
        std::future::poll_fn(move |cx| {
            let _ = &guard;
            let outer = CURRENT.replace((id, tracker));
            let polled = future.as_mut().poll(cx);
            CURRENT.set(outer);
            polled
        })
    }

    /// `future`, counted from now until it ends.
    #[cfg(test)]
    pub(crate) fn track<F>(self: &Arc<Self>, future: F) -> impl Future<Output = ()> + Send
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.track_as(new_task_id(), future)
    }

    /// Wait until no tracked task is left, but the one that waits, if it is one of them (a
    /// task that stops its own manager).
    pub(crate) async fn wait(&self) {
        let own = usize::from(CURRENT.get().1 == self as *const Self as usize);
        loop {
            if self.live.load(Ordering::Acquire) <= own {
                return;
            }
            let listener = self.idle.listen();
            if self.live.load(Ordering::Acquire) <= own {
                return;
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_wakes_waiters_and_stops_unfinished_work() {
        let cancel = Cancellation::default();
        let c = cancel.clone();
        let waiter = std::thread::spawn(move || futures::executor::block_on(c.cancelled()));
        cancel.cancel();
        waiter.join().unwrap();
        let out = futures::executor::block_on(
            cancel.run_until_cancelled(futures::future::pending::<()>()),
        );
        assert_eq!(out, None);
    }

    #[test]
    fn the_tracker_waits_for_every_task_including_dropped_ones() {
        let tracker = Arc::new(TaskTracker::default());
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let task = tracker.track(async move {
            let _ = rx.await;
        });
        let thread = std::thread::spawn(move || futures::executor::block_on(task));
        let dropped = tracker.track(async {});
        drop(dropped);
        assert_eq!(tracker.live.load(Ordering::Acquire), 1);
        tx.send(()).unwrap();
        futures::executor::block_on(tracker.wait());
        assert_eq!(tracker.live.load(Ordering::Acquire), 0);
        thread.join().unwrap();
    }
}
