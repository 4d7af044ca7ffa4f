//! Managers: one per protocol and endpoint.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tendril_core::{Addr, Application, BoxFramer, Config, Proto, Reject, Tendril};
use tendril_net::WrapperChain;

use crate::registry::{self, Transport};
use crate::TendrilHandle;

pub(crate) use tendril_net::lock;
pub use tendril_net::{acceptor, Acceptor, BoxApp, FramerFactory, SharedAcceptor};

/// The manager is not stopping.
const IDLE: u8 = 0;
/// `stop()` is closing every tendril gracefully.
const CLOSING: u8 = 1;
/// The stop timeout passed: `stop()` aborts what is still open.
const ABORTING: u8 = 2;

thread_local! {
    /// The id of the manager whose thread this is (0: none).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// A stop hook: wakes a thread that waits for its socket so that it sees the stop.
type StopHook = Box<dyn FnOnce() + Send>;

/// The live tendrils: every one by id (several Unix peers can share one address pair), and the
/// latest by (local, remote) for [`Manager::find`].
#[derive(Default)]
struct Tendrils {
    by_id: HashMap<u64, TendrilHandle>,
    by_addr: HashMap<(Addr, Addr), u64>,
}

#[derive(Default)]
struct Threads {
    handles: Vec<JoinHandle<()>>,
    prune_at: usize,
}

/// State shared by a manager, its transport's threads and its connections' threads.
///
/// Transports (see [`Transport`]) use it to make tendrils ([`new_tendril`](Self::new_tendril)
/// or, for streams, [`spawn_stream`](crate::spawn_stream)), to start threads that
/// [`Manager::stop`] waits for ([`spawn`](Self::spawn)), and to be woken when the manager
/// stops ([`on_stop`](Self::on_stop), [`is_stopping`](Self::is_stopping)).
pub struct Context {
    pub(crate) proto: Proto,
    epoch: Instant,
    id: u64,
    life: tendril_net::Lifecycle,
    stop_state: AtomicU8,
    local: Mutex<Option<Addr>>,
    tendrils: Mutex<Tendrils>,
    threads: Mutex<Threads>,
    live: Mutex<usize>,
    idle: Condvar,
    stop_hooks: Mutex<Vec<StopHook>>,
    stop_timeout: Mutex<Duration>,
    /// What `set_connect_timeout` set: the longest a stream connect may take.
    pub(crate) connect_timeout: Mutex<Option<Duration>>,
    stop_serial: Mutex<()>,
    /// What `set_config` and `set_udp_config` set.
    pub(crate) settings: tendril_net::ManagerSettings,
    pub(crate) framers: Mutex<FramerFactory>,
    accepted_wrapper: Mutex<WrapperChain>,
    pub(crate) udp: Mutex<crate::udp::Sockets>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("proto", &self.proto)
            .field("running", &self.life.is_running())
            .field("threads", &*lock(&self.live))
            .finish_non_exhaustive()
    }
}

/// Decrements the live-thread count when a manager's thread ends, even by a panic.
struct LiveGuard(Arc<Context>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut live = lock(&self.0.live);
        *live -= 1;
        if *live == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl Context {
    fn new(proto: Proto) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Context {
            proto,
            epoch: Instant::now(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            life: tendril_net::Lifecycle::default(),
            stop_state: AtomicU8::new(IDLE),
            local: Mutex::new(None),
            tendrils: Mutex::default(),
            threads: Mutex::default(),
            live: Mutex::new(0),
            idle: Condvar::new(),
            stop_hooks: Mutex::new(Vec::new()),
            stop_timeout: Mutex::new(Duration::from_secs(5)),
            connect_timeout: Mutex::new(None),
            stop_serial: Mutex::new(()),
            settings: tendril_net::ManagerSettings::default(),
            framers: Mutex::new(tendril_net::identity_framers()),
            accepted_wrapper: Mutex::new(WrapperChain::new()),
            udp: Mutex::default(),
        }
    }

    /// The manager's protocol.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Time since the manager was made: the core's clock.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// `true` while [`Manager::stop`] runs: listeners end, sockets close their tendrils.
    pub fn is_stopping(&self) -> bool {
        self.stop_state.load(Ordering::Acquire) != IDLE
    }

    /// `true` once `stop` gave up waiting for graceful closes: abort what is still open.
    pub fn is_aborting(&self) -> bool {
        self.stop_state.load(Ordering::Acquire) == ABORTING
    }

    /// Start a named thread that [`Manager::stop`] waits for.
    pub fn spawn<F>(self: &Arc<Self>, name: &str, f: F) -> io::Result<()>
    where
        F: FnOnce() + Send + 'static,
    {
        *lock(&self.live) += 1;
        // If the thread cannot start, the closure and with it the guard are dropped here.
        let guard = LiveGuard(self.clone());
        let id = self.id;
        let handle = thread::Builder::new().name(name.into()).spawn(move || {
            let _guard = guard;
            CURRENT.with(|c| c.set(id));
            f();
        })?;
        let mut threads = lock(&self.threads);
        threads.handles.push(handle);
        if threads.handles.len() >= threads.prune_at {
            threads.handles.retain(|h| !h.is_finished());
            threads.prune_at = (threads.handles.len() * 2).max(64);
        }
        Ok(())
    }

    /// Run `hook` when the manager stops, before tendrils are closed: it must wake a thread
    /// that blocks on a socket (e.g. shut a listening socket down) so that the thread sees
    /// [`is_stopping`](Self::is_stopping) and ends.
    pub fn on_stop(&self, hook: impl FnOnce() + Send + 'static) {
        lock(&self.stop_hooks).push(Box::new(hook));
    }

    /// A new tendril with the manager's framers and configuration.
    pub fn new_tendril(&self, local: Addr, remote: Addr) -> Tendril {
        let (recv, send) = (lock(&self.framers))();
        Tendril::with_boxed(self.proto, recv, send)
            .with_addrs(local, remote)
            .with_config(self.config())
            .started_at(self.now())
    }

    /// The configuration of new tendrils.
    pub fn config(&self) -> Config {
        self.settings.config()
    }

    /// The wrappers for each accepted socket.
    pub fn accepted_wrapper(&self) -> WrapperChain {
        lock(&self.accepted_wrapper).clone()
    }

    pub(crate) fn register(&self, handle: &TendrilHandle) {
        let key = (handle.local_addr().clone(), handle.remote_addr().clone());
        let mut tendrils = lock(&self.tendrils);
        tendrils.by_id.insert(handle.id(), handle.clone());
        tendrils.by_addr.insert(key, handle.id());
    }

    pub(crate) fn unregister(&self, handle: &TendrilHandle) {
        handle.mark_closed();
        let key = (handle.local_addr().clone(), handle.remote_addr().clone());
        let mut tendrils = lock(&self.tendrils);
        tendrils.by_id.remove(&handle.id());
        if tendrils.by_addr.get(&key) == Some(&handle.id()) {
            tendrils.by_addr.remove(&key);
        }
    }

    fn set_local(&self, addr: Addr) {
        *lock(&self.local) = Some(addr);
    }

    fn handles(&self) -> Vec<TendrilHandle> {
        lock(&self.tendrils).by_id.values().cloned().collect()
    }

    /// Wait until every thread of this manager has ended; `false` if `timeout` passed first.
    fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut live = lock(&self.live);
        while *live > 0 {
            live = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.idle
                        .wait_timeout(live, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.idle.wait(live).unwrap_or_else(|p| p.into_inner()),
            };
        }
        true
    }
}

/// A manager for one protocol and endpoint: listens with [`start`](Self::start), connects out
/// with [`connect`](Self::connect), and keeps track of its live tendrils. Clones share one
/// manager.
///
/// Dropping a manager does not stop it: its threads serve on until [`stop`](Self::stop).
///
/// Every stream connection runs on its own thread (plus a small helper that waits for the
/// socket to become readable); each UDP socket runs all its peers on one thread. Application
/// callbacks run on those threads.
///
/// ```no_run
/// use bytes::Bytes;
/// use tendril_core::{AppError, Application, Line, Tendril};
///
/// struct Echo;
/// impl Application for Echo {
///     fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
///         t.send_frame(frame)?;
///         Ok(())
///     }
/// }
///
/// # fn main() -> std::io::Result<()> {
/// let manager = tendril_blocking::get_manager("tcp", "127.0.0.1:0")?;
/// manager.start(
///     |t: &mut Tendril| {
///         t.set_recv_framer(Line::crlf());
///         t.set_send_framer(Line::crlf());
///         Ok(Echo)
///     },
///     Default::default(),
/// )?;
/// println!("listening on {}", manager.local_addr().unwrap());
/// manager.stop();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    ctx: Arc<Context>,
    transport: Arc<dyn Transport>,
    endpoint: String,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("proto", &self.ctx.proto)
            .field("endpoint", &self.endpoint)
            .field("running", &self.running())
            .finish()
    }
}

/// A manager for `proto` (a registered protocol name: `"tcp"`, `"udp"`, `"unix"` or one added
/// with [`register`](crate::register)) at `endpoint` (`"host:port"`, a Unix socket path, or
/// `""` for a manager that only connects out). Every call makes a new manager.
///
/// ```
/// let manager = tendril_blocking::get_manager("udp", "127.0.0.1:0").unwrap();
/// assert!(!manager.running());
/// assert!(tendril_blocking::get_manager("carrier-pigeon", "").is_err());
/// ```
pub fn get_manager(proto: &str, endpoint: &str) -> io::Result<Manager> {
    let transport = registry::lookup(proto).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "no transport registered for protocol {proto:?}; registered: {}",
                registry::protocols().join(", ")
            ),
        )
    })?;
    Ok(Manager {
        ctx: Arc::new(Context::new(transport.proto())),
        transport,
        endpoint: endpoint.to_owned(),
    })
}

impl Manager {
    /// The protocol.
    pub fn proto(&self) -> Proto {
        self.ctx.proto
    }

    /// The endpoint it was made for.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Set the configuration of new tendrils: stream connections, and the peers of UDP sockets
    /// bound after this.
    pub fn set_config(&self, config: Config) {
        self.ctx.settings.set_config(config);
    }

    /// Set the peer-table settings of UDP sockets bound after this: idle timeout, maximum
    /// peers, how long and how many rejections are remembered (see
    /// [`tendril_net::tracker_config`]; each peer's connection settings stay those of
    /// [`set_config`](Self::set_config)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tendril_core::tracker::TrackerConfig;
    ///
    /// let manager = tendril_blocking::get_manager("udp", "127.0.0.1:0")?;
    /// let mut udp = TrackerConfig::default();
    /// udp.idle_timeout = Duration::from_secs(30);
    /// udp.max_peers = 10_000;
    /// manager.set_udp_config(udp);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_udp_config(&self, udp: tendril_core::tracker::TrackerConfig) {
        self.ctx.settings.set_udp_config(udp);
    }

    /// Set the framers new tendrils start with (default: `Identity` both ways). The acceptor can
    /// still replace them per connection.
    pub fn set_framers<F>(&self, factory: F)
    where
        F: Fn() -> (BoxFramer<bytes::Bytes>, BoxFramer<bytes::Bytes>) + Send + Sync + 'static,
    {
        *lock(&self.ctx.framers) = Arc::new(factory);
    }

    /// Wrappers run on each accepted socket (stream protocols).
    pub fn set_accepted_wrapper(&self, wrapper: WrapperChain) {
        *lock(&self.ctx.accepted_wrapper) = wrapper;
    }

    /// How long [`connect`](Self::connect) waits for a stream connection to be established
    /// (per address the target resolves to) before it fails with
    /// [`TimedOut`](io::ErrorKind::TimedOut). Default: no limit but the system's.
    pub fn set_connect_timeout(&self, timeout: Duration) {
        *lock(&self.ctx.connect_timeout) = Some(timeout);
    }

    /// How long `stop()` lets connections close gracefully before aborting them (default 5 s).
    pub fn set_stop_timeout(&self, timeout: Duration) {
        *lock(&self.ctx.stop_timeout) = timeout;
    }

    /// Bind the endpoint and accept connections (or, for datagrams, peers) with `acceptor`.
    /// `wrapper` runs on the listening socket before it binds. Returns once bound, so
    /// [`local_addr`](Self::local_addr) is known. A stopped manager does not start again.
    pub fn start<A, F>(&self, acceptor: F, wrapper: WrapperChain) -> io::Result<()>
    where
        A: Application + Send + 'static,
        F: FnMut(&mut Tendril) -> Result<A, Reject> + Send + 'static,
    {
        self.ctx.life.begin_start(&self.endpoint)?;
        let result = self.transport.listen(
            self.ctx.clone(),
            self.endpoint.clone(),
            wrapper,
            self::acceptor(acceptor),
        );
        match result {
            Ok(addr) => {
                self.ctx.set_local(addr);
                Ok(())
            }
            Err(e) => {
                self.ctx.life.start_failed();
                Err(e)
            }
        }
    }

    /// Connect to `target` (`"host:port"` or a path) and return once connected; `acceptor` makes
    /// the application for the new tendril, `wrapper` runs on the outgoing socket before it
    /// connects. A TCP name that resolves to several addresses is tried address by address.
    /// A stopped manager does not connect.
    pub fn connect<A, F>(
        &self,
        target: &str,
        acceptor: F,
        wrapper: WrapperChain,
    ) -> io::Result<TendrilHandle>
    where
        A: Application + Send + 'static,
        F: FnMut(&mut Tendril) -> Result<A, Reject> + Send + 'static,
    {
        self.ctx.life.check_connect()?;
        self.transport.connect(
            self.ctx.clone(),
            self.endpoint.clone(),
            target.to_owned(),
            wrapper,
            self::acceptor(acceptor),
        )
    }

    /// `true` between `start` and `stop`.
    pub fn running(&self) -> bool {
        self.ctx.life.is_running()
    }

    /// The bound address, once `start` returned.
    pub fn local_addr(&self) -> Option<Addr> {
        lock(&self.ctx.local).clone()
    }

    /// The live tendril at (local, remote), if any (the latest, where several peers share an
    /// address pair, as unnamed Unix-socket clients do).
    pub fn find(&self, local: &Addr, remote: &Addr) -> Option<TendrilHandle> {
        let tendrils = lock(&self.ctx.tendrils);
        tendrils
            .by_addr
            .get(&(local.clone(), remote.clone()))
            .or_else(|| {
                tendrils
                    .by_addr
                    .get(&(local.canonical(), remote.canonical()))
            })
            .and_then(|id| tendrils.by_id.get(id))
            .filter(|h| !h.is_closed())
            .cloned()
    }

    /// All live tendrils.
    pub fn tendrils(&self) -> Vec<TendrilHandle> {
        self.ctx
            .handles()
            .into_iter()
            .filter(|h| !h.is_closed())
            .collect()
    }

    /// Stop: close the listener, close every tendril gracefully, abort those still open after
    /// the stop timeout, and return once every thread of the manager has ended, so each
    /// application's `closed` has run. The manager can then be started again.
    ///
    /// Called from one of the manager's own threads (an application callback), `stop` cannot
    /// wait for itself: it starts the stop on a new thread and returns at once.
    ///
    /// `stop` waits for application callbacks to return: one that blocks forever keeps `stop`
    /// from returning.
    pub fn stop(&self) {
        if CURRENT.with(Cell::get) == self.ctx.id {
            let manager = self.clone();
            let spawned = thread::Builder::new()
                .name("tendril-stop".into())
                .spawn(move || manager.stop());
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start a thread to stop the manager");
            }
            return;
        }
        let _serial = lock(&self.ctx.stop_serial);
        self.ctx.life.stop();
        self.ctx.stop_state.store(CLOSING, Ordering::Release);
        let hooks = std::mem::take(&mut *lock(&self.ctx.stop_hooks));
        for hook in hooks {
            hook();
        }
        for handle in self.ctx.handles() {
            handle.close();
        }
        let timeout = *lock(&self.ctx.stop_timeout);
        if !self.ctx.wait_idle(Some(timeout)) {
            tracing::info!(
                ?timeout,
                "aborting the tendrils still open after the stop timeout"
            );
            self.ctx.stop_state.store(ABORTING, Ordering::Release);
            for handle in self.ctx.handles() {
                handle.abort();
            }
            self.ctx.wait_idle(None);
        }
        let threads = std::mem::take(&mut lock(&self.ctx.threads).handles);
        for thread in threads {
            // A panic in an application ended its thread; the manager carries on.
            let _ = thread.join();
        }
        lock(&self.ctx.udp).clear();
        lock(&self.ctx.tendrils).by_id.retain(|_, h| !h.is_closed());
        self.ctx.stop_state.store(IDLE, Ordering::Release);
    }
}
