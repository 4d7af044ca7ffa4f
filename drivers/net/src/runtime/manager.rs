//! Managers: one per protocol and endpoint, on any runtime.

use std::io;
use std::sync::Arc;
use std::time::Duration;
use tendril_core::{Addr, Application, BoxFramer, Config, Proto, Reject, Tendril};

use super::adapter::Runtime;
use super::tasks::Spawner;
use super::transport::{lookup, Transport};
use super::{Shared, TendrilHandle};
use crate::{lock, WrapperChain};

/// A manager for one protocol and endpoint: listens with [`start`](Self::start), connects out
/// with [`connect`](Self::connect), and keeps track of its live tendrils. Each async driver's
/// `get_manager` makes one on its runtime.
///
/// ```no_run
/// # async fn demo(manager: tendril_net::runtime::Manager) -> std::io::Result<()> {
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
/// // `manager` comes from a driver: `tendril_tokio::get_manager("tcp", "127.0.0.1:0")?`.
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
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    endpoint: String,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("proto", &self.shared.proto())
            .field("endpoint", &self.endpoint)
            .field("running", &self.running())
            .finish()
    }
}

impl Manager {
    /// A manager on `runtime` for `proto` (a registered protocol name: `"tcp"`, `"udp"`,
    /// `"unix"` or one added with [`register`](super::register)) at `endpoint` (`"host:port"`,
    /// a Unix socket path, or `""` for a manager that only connects out). Drivers call this
    /// from their `get_manager`.
    pub fn new(runtime: Arc<dyn Runtime>, proto: &str, endpoint: &str) -> io::Result<Manager> {
        let transport = lookup(proto)?;
        Ok(Manager {
            shared: Arc::new(Shared::new(transport.proto(), runtime)),
            transport,
            endpoint: endpoint.to_owned(),
        })
    }

    /// The protocol.
    pub fn proto(&self) -> Proto {
        self.shared.proto()
    }

    /// The endpoint it was made for.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Set the configuration of new tendrils: stream connections, and the peers of UDP sockets
    /// bound after this.
    pub fn set_config(&self, config: Config) {
        self.shared.settings.set_config(config);
    }

    /// Set the peer-table settings of UDP sockets bound after this: idle timeout, maximum
    /// peers, how long and how many rejections are remembered (see
    /// [`tracker_config`](crate::tracker_config); each peer's connection settings stay those
    /// of [`set_config`](Self::set_config)).
    ///
    /// ```no_run
    /// # fn demo(manager: tendril_net::runtime::Manager) {
    /// use std::time::Duration;
    /// use tendril_core::tracker::TrackerConfig;
    ///
    /// let mut udp = TrackerConfig::default();
    /// udp.idle_timeout = Duration::from_secs(30);
    /// udp.max_peers = 10_000;
    /// manager.set_udp_config(udp);
    /// # }
    /// ```
    pub fn set_udp_config(&self, udp: tendril_core::tracker::TrackerConfig) {
        self.shared.settings.set_udp_config(udp);
    }

    /// Set the framers new tendrils start with (default: `Identity` both ways). The acceptor can
    /// still replace them per connection.
    pub fn set_framers<F>(&self, factory: F)
    where
        F: Fn() -> (BoxFramer<bytes::Bytes>, BoxFramer<bytes::Bytes>) + Send + Sync + 'static,
    {
        *lock(&self.shared.framers) = Arc::new(factory);
    }

    /// Wrappers run on each accepted socket (stream protocols).
    pub fn set_accepted_wrapper(&self, wrapper: WrapperChain) {
        *lock(&self.shared.accepted_wrapper) = wrapper;
    }

    /// How long `stop()` lets connections close gracefully before aborting them (default 5 s).
    pub fn set_stop_timeout(&self, timeout: Duration) {
        *lock(&self.shared.stop_timeout) = timeout;
    }

    /// How long [`connect`](Self::connect) waits for a stream connection to be established
    /// (per address the target resolves to) before it fails with
    /// [`TimedOut`](io::ErrorKind::TimedOut). Default: no limit but the system's.
    pub fn set_connect_timeout(&self, timeout: Duration) {
        *lock(&self.shared.connect_timeout) = Some(timeout);
    }

    /// Run this manager's tasks (listeners, connections, UDP sockets) with `spawner` instead of
    /// the driver's runtime, e.g. on an executor of the application's own. A spawner replaces
    /// sharding: on a sharded runtime, a manager with a spawner listens with one socket, and
    /// every task goes to the spawner. Set it before [`start`](Self::start).
    pub fn set_spawner(&self, spawner: Spawner) {
        self.shared.set_spawner(spawner);
    }

    /// Bind the endpoint and accept connections (or, for datagrams, peers) with `acceptor`.
    /// `wrapper` runs on the listening socket before it binds. Returns once bound, so
    /// [`local_addr`](Self::local_addr) is known. A stopped manager does not start again.
    pub async fn start<A, F>(&self, acceptor: F, wrapper: WrapperChain) -> io::Result<()>
    where
        A: Application + Send + 'static,
        F: FnMut(&mut Tendril) -> Result<A, Reject> + Send + 'static,
    {
        self.shared.life.begin_start(&self.endpoint)?;
        let result = self
            .transport
            .listen(
                self.shared.clone(),
                self.endpoint.clone(),
                wrapper,
                crate::acceptor(acceptor),
            )
            .await;
        match result {
            Ok(addr) => {
                *lock(&self.shared.local) = Some(addr);
                Ok(())
            }
            Err(e) => {
                self.shared.life.start_failed();
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
        self.shared.life.check_connect()?;
        self.transport
            .connect(
                self.shared.clone(),
                self.endpoint.clone(),
                target.to_owned(),
                wrapper,
                crate::acceptor(acceptor),
            )
            .await
    }

    /// How many shards [`start`](Self::start) listens on: one socket per shard
    /// (`SO_REUSEPORT`) for TCP and UDP, each accepting on its own shard. 1 unless the driver's
    /// runtime is sharded (see [`Runtime::shards`]) and no custom spawner is set.
    pub fn shards(&self) -> usize {
        self.shared.shards()
    }

    /// `true` between `start` and `stop`.
    pub fn running(&self) -> bool {
        self.shared.life.is_running()
    }

    /// The bound address, once `start` returned.
    pub fn local_addr(&self) -> Option<Addr> {
        lock(&self.shared.local).clone()
    }

    /// The live tendril at (local, remote), if any.
    pub fn find(&self, local: &Addr, remote: &Addr) -> Option<TendrilHandle> {
        self.shared.tendrils.find(local, remote)
    }

    /// All live tendrils.
    pub fn tendrils(&self) -> Vec<TendrilHandle> {
        self.shared.tendrils.live()
    }

    /// Stop: close the listener, close every tendril gracefully, abort those still open after
    /// the stop timeout, and wait until each application's `closed` has run. Called from one of
    /// this manager's own tasks (an application callback that blocks on it, under a blocking
    /// driver), it waits for every task but that one.
    pub async fn stop(&self) {
        self.shared.life.stop();
        self.shared.cancel.cancel();
        for handle in self.shared.tendrils.all() {
            handle.close();
        }
        let timeout = *lock(&self.shared.stop_timeout);
        if self
            .shared
            .within(timeout, self.shared.tasks.wait())
            .await
            .is_none()
        {
            tracing::warn!(
                ?timeout,
                "tendrils still open after the stop timeout; aborting them"
            );
            for handle in self.shared.tendrils.all() {
                handle.abort();
            }
            self.shared.tasks.wait().await;
        }
    }
}
