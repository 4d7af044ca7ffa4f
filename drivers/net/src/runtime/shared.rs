//! What a manager shares with its transports' tasks and its connections' tasks.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tendril_core::{Addr, Proto, Tendril};

use super::adapter::Runtime;
use super::tasks::{Cancellation, Spawner, TaskTracker};
use super::TendrilHandle;
use crate::live::LiveTendrils;
use crate::{lock, FramerFactory, WrapperChain};

/// The state a manager shares with its tasks: the runtime, the settings new tendrils start
/// with, the stop rules and the table of live tendrils. A [`Transport`](super::Transport) gets
/// it to spawn its tasks and make its tendrils.
pub struct Shared {
    proto: Proto,
    epoch: Instant,
    runtime: Arc<dyn Runtime>,
    spawner: Mutex<Option<Spawner>>,
    pub(crate) life: crate::Lifecycle,
    pub(crate) local: Mutex<Option<Addr>>,
    /// Live tendrils by handle identity: several may share an address pair (unnamed Unix peers).
    pub(crate) tendrils: LiveTendrils<TendrilHandle>,
    pub(crate) cancel: Cancellation,
    pub(crate) tasks: Arc<TaskTracker>,
    /// What `set_config` and `set_udp_config` set.
    pub(crate) settings: crate::ManagerSettings,
    pub(crate) framers: Mutex<FramerFactory>,
    pub(crate) accepted_wrapper: Mutex<WrapperChain>,
    pub(crate) connect_timeout: Mutex<Option<Duration>>,
    pub(crate) stop_timeout: Mutex<Duration>,
    pub(crate) udp: Mutex<super::udp::Sockets>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("proto", &self.proto)
            .field("running", &self.life.is_running())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(proto: Proto, runtime: Arc<dyn Runtime>) -> Self {
        Shared {
            proto,
            epoch: Instant::now(),
            runtime,
            spawner: Mutex::new(None),
            life: crate::Lifecycle::default(),
            local: Mutex::new(None),
            tendrils: LiveTendrils::default(),
            cancel: Cancellation::default(),
            tasks: Arc::default(),
            settings: crate::ManagerSettings::default(),
            framers: Mutex::new(crate::identity_framers()),
            accepted_wrapper: Mutex::new(WrapperChain::new()),
            connect_timeout: Mutex::new(None),
            stop_timeout: Mutex::new(Duration::from_secs(5)),
            udp: Mutex::default(),
        }
    }

    /// The manager's protocol.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The runtime the manager runs on.
    pub fn runtime(&self) -> &dyn Runtime {
        &*self.runtime
    }

    /// Time since the manager was made: the core's clock.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The instant the core's time `at` stands for.
    pub fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }

    /// Fires when the manager stops: listeners and socket tasks end.
    pub fn cancelled(&self) -> Cancellation {
        self.cancel.clone()
    }

    /// Spawn a task that `stop()` waits for.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_as(super::tasks::new_task_id(), future);
    }

    /// [`spawn`](Self::spawn) on shard `shard` (`< shards()`) of the runtime
    /// ([`Runtime::spawn_on`]): a task that `stop()` waits for. Under a custom
    /// [`Spawner`] the spawner runs it, like every other task.
    pub fn spawn_on<F>(&self, shard: usize, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_to(super::tasks::new_task_id(), Some(shard), future);
    }

    /// How many shards this manager's listening sockets run on: the runtime's
    /// [`shards`](Runtime::shards), or 1 once a custom [`Spawner`] is set (it replaces
    /// sharding: the kit does not know which of its threads would be whose).
    pub fn shards(&self) -> usize {
        match &*lock(&self.spawner) {
            Some(_) => 1,
            None => self.runtime.shards(),
        }
    }

    /// [`spawn`](Self::spawn) as task `id` (from `new_task_id`).
    pub(crate) fn spawn_as<F>(&self, id: u64, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_to(id, None, future);
    }

    /// Spawn as task `id`, on `shard` if given.
    pub(crate) fn spawn_to<F>(&self, id: u64, shard: Option<usize>, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = self.tasks.track_as(id, future);
        match (&*lock(&self.spawner), shard) {
            (Some(spawner), _) => spawner.spawn(task),
            (None, Some(shard)) => self.runtime.spawn_on(shard, Box::pin(task)),
            (None, None) => self.runtime.spawn(Box::pin(task)),
        }
    }

    pub(crate) fn set_spawner(&self, spawner: Spawner) {
        *lock(&self.spawner) = Some(spawner);
    }

    /// A new tendril with the manager's framers and configuration.
    pub fn new_tendril(&self, local: Addr, remote: Addr) -> Tendril {
        let (recv, send) = (lock(&self.framers))();
        Tendril::with_boxed(self.proto, recv, send)
            .with_addrs(local, remote)
            .with_config(self.settings.config())
            .started_at(self.now())
    }

    /// The wrappers for each accepted socket.
    pub fn accepted_wrapper(&self) -> WrapperChain {
        lock(&self.accepted_wrapper).clone()
    }

    pub(crate) fn register(&self, handle: &TendrilHandle) {
        self.tendrils.insert(handle);
        // Accepted while `stop()` was closing the others (it marks the manager stopped before
        // it takes its list): close this one too, or `stop()` would wait for it until its
        // timeout.
        if self.life.is_stopped() {
            handle.close();
        }
    }

    pub(crate) fn unregister(&self, handle: &TendrilHandle) {
        handle.mark_closed();
        self.tendrils.remove(handle);
    }

    /// Wait for `duration` on the runtime's timer.
    pub(crate) async fn sleep(&self, duration: Duration) {
        let mut timer = self.runtime.timer();
        timer.reset(Instant::now() + duration);
        std::future::poll_fn(|cx| timer.poll_fired(cx)).await;
    }

    /// `future`'s output, or `None` if `duration` passes first (the future is dropped).
    pub(crate) async fn within<T>(
        &self,
        duration: Duration,
        future: impl Future<Output = T>,
    ) -> Option<T> {
        let future = std::pin::pin!(future);
        let expired = std::pin::pin!(self.sleep(duration));
        match futures::future::select(future, expired).await {
            futures::future::Either::Left((output, _)) => Some(output),
            futures::future::Either::Right(_) => None,
        }
    }
}
