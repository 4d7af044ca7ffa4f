//! What an async runtime lends the kit: spawning, timers, and readiness of non-blocking
//! sockets. A driver implements these four small traits and nothing else.

use bytes::BytesMut;
use futures::future::BoxFuture;
use socket2::{SockRef, Socket};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::task::{Context, Poll};
use std::time::Instant;

/// An async runtime, as the kit sees it: the whole of what a driver for Tokio, async-std, smol
/// or another executor has to write.
///
/// Every method is object safe, so a manager holds an `Arc<dyn Runtime>`; each call costs one
/// virtual call, next to a system call.
///
/// # Shards
///
/// A runtime may run several *shards*: threads, each with its own reactor, that share no state
/// (thread-per-core). It says how many with [`shards`](Self::shards), and runs a task on a
/// given one with [`spawn_on`](Self::spawn_on). The kit then listens with one socket per shard
/// (`SO_REUSEPORT`) and keeps what each socket accepts on its shard. The contract:
/// [`spawn`](Self::spawn) and the registrations ([`listener`](Self::listener),
/// [`udp`](Self::udp), [`stream`](Self::stream)) called from a shard's own thread stay on that
/// shard; called from any other thread they go to shard 0. A runtime that does not override
/// the two methods has one shard, and everything stays as it was.
///
/// ```
/// use futures::future::BoxFuture;
/// use std::io;
/// use tendril_net::runtime::{Listener, Readiness, Runtime, StreamIo, Timer};
///
/// /// A runtime that cannot do anything: enough to show the shape.
/// struct Nothing;
///
/// impl Runtime for Nothing {
///     fn spawn(&self, _task: BoxFuture<'static, ()>) {}
///     fn timer(&self) -> Box<dyn Timer> {
///         unimplemented!()
///     }
///     fn listener(&self, _socket: socket2::Socket) -> io::Result<Box<dyn Listener>> {
///         Err(io::Error::other("no reactor"))
///     }
///     fn udp(&self, _socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>> {
///         Err(io::Error::other("no reactor"))
///     }
///     fn stream(&self, _socket: socket2::Socket) -> io::Result<Box<dyn StreamIo>> {
///         Err(io::Error::other("no reactor"))
///     }
/// }
/// ```
pub trait Runtime: Send + Sync + 'static {
    /// Run `task` to completion, detached.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// A timer that does not fire until [`Timer::reset`].
    fn timer(&self) -> Box<dyn Timer>;

    /// Register a non-blocking listening stream socket (TCP or Unix) with the reactor.
    fn listener(&self, socket: Socket) -> io::Result<Box<dyn Listener>>;

    /// Register a non-blocking datagram socket with the reactor.
    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>>;

    /// Register a non-blocking stream socket (TCP or Unix), connected or still connecting.
    fn stream(&self, socket: Socket) -> io::Result<Box<dyn StreamIo>>;

    /// How many shards the runtime runs: threads, each with its own reactor, that share no
    /// state. 1 by default.
    fn shards(&self) -> usize {
        1
    }

    /// Run `task` on shard `shard` (`< shards()`). By default the same as `spawn`.
    ///
    /// The kit calls it for the task of each shard's listening socket, which then registers
    /// its socket from that shard's thread (see [Shards](Self#shards)).
    fn spawn_on(&self, shard: usize, task: BoxFuture<'static, ()>) {
        let _ = shard;
        self.spawn(task)
    }

    /// `true` for a runtime without a reactor (one thread per task): the kit then connects
    /// stream sockets with a blocking call, within the manager's connect timeout, and hands
    /// [`stream`](Self::stream) a connected blocking socket.
    fn connects_blocking(&self) -> bool {
        false
    }

    /// Resolve `endpoint` (`"host:port"`) to every address it names. The default parses IP
    /// literals at once and looks names up on a short-lived thread, as the system resolver
    /// blocks; a runtime with a resolver of its own overrides it.
    fn resolve(&self, endpoint: String) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            if let Ok(addr) = endpoint.parse::<SocketAddr>() {
                return Ok(vec![addr]);
            }
            let (tx, rx) = futures::channel::oneshot::channel();
            let name = endpoint.clone();
            std::thread::Builder::new()
                .name("tendril-resolve".into())
                .spawn(move || {
                    let _ = tx.send(crate::resolve(&name));
                })?;
            rx.await
                .map_err(|_| io::Error::other(format!("resolving {endpoint} failed")))?
        })
    }
}

/// A resettable timer.
pub trait Timer: Send {
    /// Fire at `at` (replacing any earlier instant).
    fn reset(&mut self, at: Instant);

    /// `Ready` once the instant set last has passed; registers `cx` otherwise.
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// Which readiness a socket operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable (or an accept waiting, or an error).
    Read,
    /// Writable.
    Write,
}

/// A registered listening socket.
pub trait Listener: Send {
    /// The next accepted connection, registered with the runtime.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Box<dyn StreamIo>>>;
}

/// A registered non-blocking datagram socket that the kit does its own system calls on
/// (batched receives and sends).
pub trait Readiness: Send + Sync {
    /// The socket.
    fn fd(&self) -> BorrowedFd<'_>;

    /// `Ready` when the socket may be ready for `interest`; registers `cx` otherwise.
    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>>;

    /// Run `op` (a non-blocking system call). When it fails with `WouldBlock`, the runtime
    /// forgets the readiness it had cached, so the next [`poll_ready`](Self::poll_ready)
    /// waits for the reactor.
    fn try_io(&self, interest: Interest, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()>;
}

/// A registered non-blocking byte stream (TCP or Unix).
pub trait StreamIo: Send + Unpin {
    /// Read at most `limit` bytes (no more than `buf`'s spare capacity, and at least one),
    /// appending them to `buf`; `Ok(0)` is the end of the stream.
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>>;

    /// Write from `bufs`, in order; returns how much was taken.
    fn poll_write(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>])
        -> Poll<io::Result<usize>>;

    /// `Ready` once the socket is writable: a non-blocking connect has finished (or failed).
    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The socket, for addresses, options and shutdown.
    fn socket(&self) -> SockRef<'_>;
}

/// Read at most `limit` bytes into `buf` through an API that wants initialised bytes
/// (`futures::io::AsyncRead`, `std::io::Read`): the room is zeroed first (this workspace has no
/// `unsafe`), and what `read` did not fill is cut off again.
///
/// ```
/// use std::task::Poll;
///
/// let mut buf = bytes::BytesMut::with_capacity(16);
/// let read = tendril_net::runtime::read_zeroed(&mut buf, 8, |room| {
///     room[..2].copy_from_slice(b"hi");
///     Poll::Ready(Ok::<_, std::io::Error>(2))
/// });
/// assert!(matches!(read, Poll::Ready(Ok(2))));
/// assert_eq!(&buf[..], b"hi");
/// ```
pub fn read_zeroed<E>(
    buf: &mut BytesMut,
    limit: usize,
    read: impl FnOnce(&mut [u8]) -> Poll<Result<usize, E>>,
) -> Poll<Result<usize, E>> {
    let start = buf.len();
    buf.resize(start + limit, 0);
    let result = read(&mut buf[start..]);
    let n = match &result {
        Poll::Ready(Ok(n)) => *n,
        _ => 0,
    };
    buf.truncate(start + n);
    result
}
