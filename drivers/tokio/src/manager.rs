//! Managers: one per protocol and endpoint.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tendril_core::{Addr, Application, BoxFramer, Config, Proto, Reject, Tendril};
use tendril_net::live::LiveTendrils;
use tendril_net::WrapperChain;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::{self, Transport};
use crate::TendrilHandle;

pub use tendril_net::{acceptor, Acceptor, BoxApp, FramerFactory, SharedAcceptor};

/// State shared by a manager, its transport's tasks and its connections' tasks.
pub struct Context {
    pub(crate) proto: Proto,
    pub(crate) epoch: Instant,
    life: tendril_net::Lifecycle,
    local: Mutex<Option<Addr>>,
    /// Live tendrils by handle identity: several may share an address pair (unnamed Unix peers).
    tendrils: LiveTendrils<TendrilHandle>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// What `set_config` and `set_udp_config` set.
    pub(crate) settings: tendril_net::ManagerSettings,
    pub(crate) framers: Mutex<FramerFactory>,
    pub(crate) accepted_wrapper: Mutex<WrapperChain>,
    pub(crate) udp: Mutex<crate::udp::Sockets>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("proto", &self.proto)
            .field("running", &self.life.is_running())
            .finish_non_exhaustive()
    }
}

impl Context {
    fn new(proto: Proto) -> Self {
        Context {
            proto,
            epoch: Instant::now(),
            life: tendril_net::Lifecycle::default(),
            local: Mutex::new(None),
            tendrils: LiveTendrils::default(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
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

    /// Fires when the manager stops: listeners and socket tasks end.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Spawn a task that `stop()` waits for.
    pub fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(future);
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

    pub(crate) fn set_local(&self, addr: Addr) {
        *lock(&self.local) = Some(addr);
    }

    pub(crate) fn handles(&self) -> Vec<TendrilHandle> {
        self.tendrils.all()
    }
}

pub(crate) use tendril_net::lock;

/// A manager for one protocol and endpoint: listens with [`start`](Self::start), connects out
/// with [`connect`](Self::connect), and keeps track of its live tendrils.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
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
/// let manager = tendril_tokio::get_manager("tcp", "127.0.0.1:0")?;
/// manager
///     .start(|t: &mut Tendril| {
///         t.set_recv_framer(Line::crlf());
///         t.set_send_framer(Line::crlf());
///         Ok(Echo)
///     }, Default::default())
///     .await?;
/// println!("listening on {}", manager.local_addr().unwrap());
/// manager.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    ctx: Arc<Context>,
    transport: Arc<dyn Transport>,
    endpoint: String,
    stop_timeout: Duration,
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
pub fn get_manager(proto: &str, endpoint: &str) -> io::Result<Manager> {
    let transport = registry::lookup(proto).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("no transport registered for protocol {proto:?}"),
        )
    })?;
    Ok(Manager {
        ctx: Arc::new(Context::new(transport.proto())),
        transport,
        endpoint: endpoint.to_owned(),
        stop_timeout: Duration::from_secs(5),
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
    /// let manager = tendril_tokio::get_manager("udp", "127.0.0.1:0")?;
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

    /// How long `stop()` lets connections close gracefully before aborting them (default 5 s).
    pub fn set_stop_timeout(&mut self, timeout: Duration) {
        self.stop_timeout = timeout;
    }

    /// Bind the endpoint and accept connections (or, for datagrams, peers) with `acceptor`.
    /// `wrapper` runs on the listening socket before it binds. Returns once bound, so
    /// [`local_addr`](Self::local_addr) is known. A stopped manager does not start again.
    pub async fn start<A, F>(&self, acceptor: F, wrapper: WrapperChain) -> io::Result<()>
    where
        A: Application + Send + 'static,
        F: FnMut(&mut Tendril) -> Result<A, Reject> + Send + 'static,
    {
        self.ctx.life.begin_start(&self.endpoint)?;
        let result = self
            .transport
            .listen(
                self.ctx.clone(),
                self.endpoint.clone(),
                wrapper,
                self::acceptor(acceptor),
            )
            .await;
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

    /// Connect to `target` (`"host:port"` or a path); `acceptor` makes the application for the
    /// new tendril, `wrapper` runs on the outgoing socket before it connects. A stopped
    /// manager does not connect.
    pub async fn connect<A, F>(
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
        self.transport
            .connect(
                self.ctx.clone(),
                self.endpoint.clone(),
                target.to_owned(),
                wrapper,
                self::acceptor(acceptor),
            )
            .await
    }

    /// `true` between `start` and `stop`.
    pub fn running(&self) -> bool {
        self.ctx.life.is_running()
    }

    /// The bound address, once `start` returned.
    pub fn local_addr(&self) -> Option<Addr> {
        lock(&self.ctx.local).clone()
    }

    /// The live tendril at (local, remote), if any.
    pub fn find(&self, local: &Addr, remote: &Addr) -> Option<TendrilHandle> {
        self.ctx.tendrils.find(local, remote)
    }

    /// All live tendrils.
    pub fn tendrils(&self) -> Vec<TendrilHandle> {
        self.ctx.tendrils.live()
    }

    /// Stop: close the listener, close every tendril gracefully, abort those still open after
    /// the stop timeout, and wait until each application's `closed` has run.
    pub async fn stop(&self) {
        self.ctx.life.stop();
        self.ctx.cancel.cancel();
        for handle in self.ctx.handles() {
            handle.close();
        }
        self.ctx.tasks.close();
        if tokio::time::timeout(self.stop_timeout, self.ctx.tasks.wait())
            .await
            .is_err()
        {
            for handle in self.ctx.handles() {
                handle.abort();
            }
            self.ctx.tasks.wait().await;
        }
    }
}
