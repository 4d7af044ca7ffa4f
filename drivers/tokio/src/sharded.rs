//! Tokio thread-per-core: one current-thread runtime per shard, sharing nothing.

use futures::future::BoxFuture;
use socket2::Socket;
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tendril_net::runtime::{Listener, Readiness, Runtime, StreamIo, Timer};
use tokio::runtime::Handle;

use crate::runtime;

/// Tokio, sharded: `shards` OS threads (`tendril-tokio-shard-{i}`), each running a
/// current-thread Tokio runtime with its own reactor and timers, sharing no state. A manager on
/// it listens with one `SO_REUSEPORT` socket per shard, and each connection or UDP peer is
/// served on the shard whose socket the kernel gave it to.
///
/// Tasks and sockets go where the kit's contract ([`Runtime#shards`]) says: spawned or
/// registered from a shard's thread, they stay on that shard; from any other thread (the
/// caller's own runtime, a plain `block_on`) they go to shard 0. So no Tokio runtime is needed
/// around it. Clones share the threads; they end once the last clone is dropped. A manager's
/// tasks hold a clone, so that is after its managers have stopped and been dropped.
///
/// ```
/// use std::sync::Arc;
/// use tendril_net::runtime::Runtime;
///
/// let runtime = tendril_tokio::Sharded::new(2)?;
/// assert_eq!(runtime.shards(), 2);
/// let manager = tendril_tokio::Manager::new(Arc::new(runtime), "udp", "127.0.0.1:0")?;
/// assert_eq!(manager.shards(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Sharded(Arc<Shards>);

struct Shards {
    /// Tells this runtime's shard threads from another's.
    id: u64,
    handles: Vec<Handle>,
    /// Dropped with the last clone: each shard's thread then ends its runtime.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

thread_local! {
    /// On a shard's thread: its runtime's id and its index.
    static SHARD: Cell<Option<(u64, usize)>> = const { Cell::new(None) };
}

impl std::fmt::Debug for Sharded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharded")
            .field("shards", &self.0.handles.len())
            .finish()
    }
}

impl Sharded {
    /// Start `shards` threads (at least one), each with its own current-thread runtime, all
    /// drivers enabled.
    ///
    /// ```
    /// let runtime = tendril_tokio::Sharded::new(4)?;
    /// assert!(tendril_tokio::Sharded::new(0).is_err());
    /// # drop(runtime);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(shards: usize) -> io::Result<Sharded> {
        if shards == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a sharded runtime needs at least one shard",
            ));
        }
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let (mut handles, mut stops) = (Vec::new(), Vec::new());
        for shard in 0..shards {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            handles.push(runtime.handle().clone());
            std::thread::Builder::new()
                .name(format!("tendril-tokio-shard-{shard}"))
                .spawn(move || {
                    SHARD.set(Some((id, shard)));
                    // Runs the shard's tasks until every `Sharded` clone is gone.
                    let _ = runtime.block_on(stopped);
                })?;
            stops.push(stop);
        }
        Ok(Sharded(Arc::new(Shards {
            id,
            handles,
            _stop: stops,
        })))
    }

    /// The shard the calling thread is, or shard 0.
    fn here(&self) -> &Handle {
        match SHARD.get() {
            Some((id, shard)) if id == self.0.id => &self.0.handles[shard],
            _ => &self.0.handles[0],
        }
    }

    /// `register` inside the calling thread's shard (Tokio registers with the runtime of the
    /// context).
    fn on_here<T>(&self, register: impl FnOnce() -> T) -> T {
        let _context = self.here().enter();
        register()
    }
}

impl Runtime for Sharded {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.here().spawn(task);
    }

    fn timer(&self) -> Box<dyn Timer> {
        self.on_here(runtime::timer)
    }

    fn listener(&self, socket: Socket) -> io::Result<Box<dyn Listener>> {
        self.on_here(|| runtime::listener(socket))
    }

    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>> {
        self.on_here(|| runtime::udp(socket))
    }

    fn stream(&self, socket: Socket) -> io::Result<Box<dyn StreamIo>> {
        self.on_here(|| runtime::stream(socket))
    }

    fn resolve(&self, endpoint: String) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let lookup = self.here().spawn(runtime::resolve(endpoint));
        Box::pin(async move { lookup.await.map_err(io::Error::other)? })
    }

    fn shards(&self) -> usize {
        self.0.handles.len()
    }

    /// Shard `shard` (counted modulo [`shards`](Runtime::shards)).
    fn spawn_on(&self, shard: usize, task: BoxFuture<'static, ()>) {
        self.0.handles[shard % self.0.handles.len()].spawn(task);
    }
}
