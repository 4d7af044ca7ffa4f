//! Socket set-up shared by Tendril's drivers (Tokio, async-std, blocking), written once.
//!
//! - [`WrapperChain`]: socket wrappers — closures over the raw socket, applied in order, as in
//!   the Python original — and ready-made ones for the usual options ([`options`]).
//! - [`resolve`]: endpoints as `host:port` strings (names resolve; the original took IP
//!   literals only), IP literals or socket addresses.
//! - Builders for listening, connecting and datagram sockets with the defaults every driver
//!   uses ([`tcp_listener`], [`tcp_connect_socket`], [`udp_socket`]).
//! - [`UdpIo`]: datagram I/O that knows which local address a datagram arrived on and sends
//!   replies from it (IP_PKTINFO through `quinn-udp`), and never cuts a datagram short.
//!
//! ```
//! use tendril_net::{options, WrapperChain};
//!
//! let chain = WrapperChain::new()
//!     .chain(options::nodelay(true))
//!     .chain(options::keepalive(std::time::Duration::from_secs(60)))
//!     .chain(|socket: &socket2::Socket| socket.set_ttl_v4(32));
//! assert_eq!(chain.len(), 3);
//! ```

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use tendril_core::{Application, BoxFramer, Framer, Identity, Reject, Tendril};

/// A boxed application, as managers keep them.
pub type BoxApp = Box<dyn Application + Send>;

/// A type-erased acceptor: sees the new tendril, returns its application or a rejection.
pub type Acceptor = Box<dyn FnMut(&mut Tendril) -> Result<BoxApp, Reject> + Send>;

/// The acceptor as a manager's listener and connect calls share it.
pub type SharedAcceptor = Arc<Mutex<Acceptor>>;

/// Turn a typed acceptor closure into the shared, type-erased form.
pub fn acceptor<A, F>(mut f: F) -> SharedAcceptor
where
    A: Application + Send + 'static,
    F: FnMut(&mut Tendril) -> Result<A, Reject> + Send + 'static,
{
    Arc::new(Mutex::new(Box::new(move |t: &mut Tendril| {
        f(t).map(|app| Box::new(app) as BoxApp)
    })))
}

/// Makes each new tendril's (receive, send) framers before the acceptor sees it.
pub type FramerFactory =
    Arc<dyn Fn() -> (BoxFramer<bytes::Bytes>, BoxFramer<bytes::Bytes>) + Send + Sync>;

/// The default framers of a new tendril: `Identity` both ways (the acceptor picks others).
pub fn identity_framers() -> FramerFactory {
    Arc::new(|| (Identity::new().boxed(), Identity::new().boxed()))
}

/// Lock a mutex, shrugging off poisoning: a panicked application must not take down the
/// manager's bookkeeping.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub use socket2;

/// A socket wrapper: runs on the raw socket before it binds or connects (or right after
/// accept), e.g. to set options.
pub type SocketWrapper = Arc<dyn Fn(&Socket) -> io::Result<()> + Send + Sync>;

/// Socket wrappers applied in order (the original's `WrapperChain`).
#[derive(Clone, Default)]
pub struct WrapperChain {
    wrappers: Vec<SocketWrapper>,
}

impl fmt::Debug for WrapperChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrapperChain")
            .field("wrappers", &self.wrappers.len())
            .finish()
    }
}

impl WrapperChain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a wrapper at the end of the chain (returns the chain, like the original's `chain()`).
    pub fn chain<F>(mut self, wrapper: F) -> Self
    where
        F: Fn(&Socket) -> io::Result<()> + Send + Sync + 'static,
    {
        self.wrappers.push(Arc::new(wrapper));
        self
    }

    /// The number of wrappers.
    pub fn len(&self) -> usize {
        self.wrappers.len()
    }

    /// `true` when the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.wrappers.is_empty()
    }

    /// Run every wrapper on `socket`, in order; the first error stops the chain.
    pub fn apply(&self, socket: &Socket) -> io::Result<()> {
        self.wrappers.iter().try_for_each(|w| w(socket))
    }

    /// Run every wrapper on any socket-like object (a std, Tokio or async-io socket).
    pub fn apply_to<S: std::os::fd::AsFd>(&self, socket: &S) -> io::Result<()> {
        let sock = SockRef::from(socket);
        // SockRef derefs to Socket.
        self.apply(&sock)
    }
}

impl<F> From<F> for WrapperChain
where
    F: Fn(&Socket) -> io::Result<()> + Send + Sync + 'static,
{
    fn from(wrapper: F) -> Self {
        WrapperChain::new().chain(wrapper)
    }
}

/// Ready-made wrappers for the usual socket options.
pub mod options {
    use socket2::{Socket, TcpKeepalive};
    use std::io;
    use std::time::Duration;

    type Wrapper = fn(&Socket) -> io::Result<()>;

    /// `TCP_NODELAY`: send small frames at once instead of waiting to coalesce them.
    pub fn nodelay(on: bool) -> impl Fn(&Socket) -> io::Result<()> + Send + Sync {
        move |s| s.set_tcp_nodelay(on)
    }

    /// TCP keepalive probes after `idle` without traffic.
    pub fn keepalive(idle: Duration) -> impl Fn(&Socket) -> io::Result<()> + Send + Sync {
        move |s| s.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))
    }

    /// `SO_RCVBUF`.
    pub fn recv_buffer_size(bytes: usize) -> impl Fn(&Socket) -> io::Result<()> + Send + Sync {
        move |s| s.set_recv_buffer_size(bytes)
    }

    /// `SO_SNDBUF`.
    pub fn send_buffer_size(bytes: usize) -> impl Fn(&Socket) -> io::Result<()> + Send + Sync {
        move |s| s.set_send_buffer_size(bytes)
    }

    /// `SO_REUSEADDR`.
    pub fn reuse_address(on: bool) -> impl Fn(&Socket) -> io::Result<()> + Send + Sync {
        move |s| s.set_reuse_address(on)
    }

    /// `SO_REUSEPORT`: several sockets (one per core) share a port; the kernel spreads
    /// connections and keeps each UDP peer on one socket.
    #[cfg(unix)]
    pub fn reuse_port(on: bool) -> impl Fn(&Socket) -> io::Result<()> + Send + Sync {
        move |s| s.set_reuse_port(on)
    }

    /// IP time-to-live (IPv4) / unicast hop limit (IPv6).
    pub fn ttl(hops: u32) -> impl Fn(&Socket) -> io::Result<()> + Send + Sync {
        move |s| match s.local_addr().ok().and_then(|a| a.as_socket()) {
            Some(std::net::SocketAddr::V6(_)) => s.set_unicast_hops_v6(hops),
            _ => s.set_ttl_v4(hops),
        }
    }

    /// `IPV6_V6ONLY`.
    pub fn only_v6(on: bool) -> impl Fn(&Socket) -> io::Result<()> + Send + Sync {
        move |s| s.set_only_v6(on)
    }

    /// A wrapper that does nothing (a placeholder in a chain).
    pub const NOTHING: Wrapper = |_| Ok(());
}

/// Resolve an endpoint: `"host:port"` (names are resolved), `"[::1]:80"`, `"127.0.0.1:0"`.
/// Blocking (it may ask DNS); async drivers run it off their executor.
pub fn resolve(endpoint: &str) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = endpoint.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{endpoint} resolved to no address"),
        ));
    }
    Ok(addrs)
}

/// The listen backlog drivers use (the original's 1024).
pub const BACKLOG: i32 = 1024;

/// A non-blocking TCP listener on `addr`: `SO_REUSEADDR` on, the wrappers applied before bind.
pub fn tcp_listener(addr: SocketAddr, wrapper: &WrapperChain) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    wrapper.apply(&socket)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A TCP socket ready to connect to `target`: wrappers applied, bound to `local`'s IP if given
/// (with an ephemeral port, so a manager listening on a fixed port can also connect out — the
/// original failed with `EADDRINUSE`). Connect it with [`Socket::connect`] (blocking) or after
/// `set_nonblocking(true)`.
pub fn tcp_connect_socket(
    local: Option<IpAddr>,
    target: SocketAddr,
    wrapper: &WrapperChain,
) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = local.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == target.is_ipv4()) {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    wrapper.apply(&socket)?;
    Ok(socket)
}

/// A non-blocking UDP socket bound to `addr`, wrappers applied before bind.
pub fn udp_socket(addr: SocketAddr, wrapper: &WrapperChain) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    wrapper.apply(&socket)?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The receive buffer for one datagram: the largest UDP payload, so nothing is ever cut short.
pub const MAX_DATAGRAM: usize = 65_536;

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The sender.
    pub remote: SocketAddr,
    /// The local address it arrived on (the socket's own address unless the socket is
    /// wildcard-bound and the platform says which interface address received it).
    pub local: SocketAddr,
    /// Where the datagram is in the buffer passed to [`UdpIo::recv`].
    pub start: usize,
    /// Its length.
    pub len: usize,
}

/// Datagram I/O on one socket: receives batches with the destination address of each datagram,
/// sends replies from a chosen local address (`quinn-udp`: `recvmmsg`, `IP_PKTINFO`, GRO where
/// available).
#[derive(Debug)]
pub struct UdpIo {
    state: quinn_udp::UdpSocketState,
    local: SocketAddr,
}

impl UdpIo {
    /// Prepare `socket` (sets the options `quinn-udp` needs, e.g. `IP_PKTINFO`).
    pub fn new<S: std::os::fd::AsFd>(socket: &S) -> io::Result<Self> {
        let sock = SockRef::from(socket);
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?;
        let state = quinn_udp::UdpSocketState::new(socket.into())?;
        Ok(UdpIo { state, local })
    }

    /// The socket's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The local address replies from `remote` will arrive on. On a wildcard-bound socket that
    /// is the address the system routes `remote` from, not `0.0.0.0`: trackers key peers by the
    /// address each datagram arrived on, so a peer tracked under the wildcard would never be
    /// matched by its replies.
    pub fn local_for(&self, remote: SocketAddr) -> SocketAddr {
        if !self.local.ip().is_unspecified() {
            return self.local;
        }
        let probe =
            std::net::UdpSocket::bind(SocketAddr::new(self.local.ip(), 0)).and_then(|probe| {
                probe.connect(remote)?;
                probe.local_addr()
            });
        match probe {
            Ok(routed) => SocketAddr::new(routed.ip(), self.local.port()),
            Err(_) => self.local,
        }
    }

    /// The buffer size that holds one receive call's datagrams (GRO may coalesce several).
    pub fn buffer_size(&self) -> usize {
        MAX_DATAGRAM * self.state.gro_segments().max(1)
    }

    /// Receive datagrams into `buf` (at least [`buffer_size`](Self::buffer_size) long), calling
    /// `each` for every datagram. Returns `WouldBlock` on a non-blocking socket with nothing to
    /// read.
    pub fn recv<S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        buf: &mut [u8],
        mut each: impl FnMut(Received),
    ) -> io::Result<()> {
        let mut meta = [quinn_udp::RecvMeta::default()];
        let mut bufs = [IoSliceMut::new(buf)];
        let n = self.state.recv(socket.into(), &mut bufs, &mut meta)?;
        for meta in &meta[..n] {
            let local = match meta.dst_ip {
                Some(ip) if self.local.ip().is_unspecified() => {
                    SocketAddr::new(ip, self.local.port())
                }
                _ => self.local,
            };
            let stride = meta.stride.max(1);
            let mut start = 0;
            while start < meta.len {
                let len = stride.min(meta.len - start);
                each(Received {
                    remote: meta.addr,
                    local,
                    start,
                    len,
                });
                start += stride;
            }
        }
        Ok(())
    }

    /// Send `data` to `remote`, from `local`'s IP when the socket is wildcard-bound.
    pub fn send<S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        data: &[u8],
    ) -> io::Result<()> {
        let src_ip = local
            .map(|l| l.ip())
            .filter(|ip| self.local.ip().is_unspecified() && !ip.is_unspecified());
        let transmit = quinn_udp::Transmit {
            destination: remote,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip,
        };
        self.state.try_send(socket.into(), &transmit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapper_chain_runs_its_wrappers_in_order_and_stops_at_the_first_error() {
        use std::sync::Mutex;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (seen.clone(), seen.clone());
        let chain = WrapperChain::new()
            .chain(move |_| {
                a.lock().unwrap().push(1);
                Ok(())
            })
            .chain(|_| Err(io::Error::other("no")))
            .chain(move |_| {
                b.lock().unwrap().push(3);
                Ok(())
            });
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        assert!(chain.apply(&socket).is_err());
        assert_eq!(*seen.lock().unwrap(), [1]);
    }

    #[test]
    fn options_reach_the_socket() {
        let chain = WrapperChain::new()
            .chain(options::nodelay(true))
            .chain(options::recv_buffer_size(64 * 1024));
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap(), &chain).unwrap();
        let sock = SockRef::from(&listener);
        assert!(sock.reuse_address().unwrap());
        assert!(sock.recv_buffer_size().unwrap() >= 64 * 1024);
    }

    #[test]
    fn hostnames_resolve() {
        let addrs = resolve("localhost:80").unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    }

    #[test]
    fn udp_io_reports_the_local_address_of_a_wildcard_socket() {
        let server = udp_socket("0.0.0.0:0".parse().unwrap(), &WrapperChain::new()).unwrap();
        server.set_nonblocking(false).unwrap();
        let port = server.local_addr().unwrap().port();
        let io = UdpIo::new(&server).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        let mut buf = vec![0; io.buffer_size()];
        let mut got = vec![];
        io.recv(&server, &mut buf, |r| got.push(r)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].local,
            SocketAddr::new("127.0.0.1".parse().unwrap(), port)
        );
        assert_eq!(&buf[got[0].start..got[0].start + got[0].len], b"hi");
        io.send(&server, Some(got[0].local), got[0].remote, b"back")
            .unwrap();
        let mut reply = [0; 16];
        let (n, from) = client.recv_from(&mut reply).unwrap();
        assert_eq!((&reply[..n], from), (&b"back"[..], got[0].local));
    }
}

/// The receiving half of a framed connection (`Stream` of frames), shared by the async drivers:
/// an application that forwards frames into a channel and pauses the connection while the
/// consumer lags, and the consumer side that resumes it.
pub mod framed {
    use bytes::Bytes;
    use futures::channel::mpsc;
    use futures::Stream;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};
    use tendril_core::{AppError, Application, CloseReason, Tendril};

    /// Frames waiting for the consumer before the connection stops reading.
    pub const QUEUE: usize = 64;

    /// What the application side and the consumer side share.
    #[derive(Debug, Default)]
    struct Shared {
        queued: AtomicUsize,
        paused: AtomicBool,
        reason: Mutex<Option<String>>,
    }

    /// The application of a framed connection: forwards each frame to the [`Frames`] consumer.
    #[derive(Debug)]
    pub struct Forward {
        tx: Option<mpsc::UnboundedSender<Bytes>>,
        shared: Arc<Shared>,
    }

    /// The consumer's end: received frames, in order; ends when the connection closes.
    #[derive(Debug)]
    pub struct Frames {
        rx: mpsc::UnboundedReceiver<Bytes>,
        shared: Arc<Shared>,
    }

    /// A connected pair: give `Forward` to the tendril as its application, keep `Frames`.
    pub fn channel() -> (Forward, Frames) {
        let (tx, rx) = mpsc::unbounded();
        let shared = Arc::new(Shared::default());
        let forward = Forward {
            tx: Some(tx),
            shared: shared.clone(),
        };
        (forward, Frames { rx, shared })
    }

    impl Application for Forward {
        fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            if let Some(tx) = &self.tx {
                // Count and mark the pause before the frame is visible, so the consumer,
                // whenever it takes this frame, sees both (and resumes delivery once it caught
                // up).
                let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel) + 1;
                if queued >= QUEUE {
                    self.shared.paused.store(true, Ordering::Release);
                    t.pause_recv(true);
                }
                if tx.unbounded_send(frame).is_err() {
                    self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Ok(())
        }

        fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
            *super::lock(&self.shared.reason) = Some(reason.to_string());
            self.tx = None;
        }
    }

    impl Frames {
        /// The next frame; `resume` is called (to un-pause the connection) once a lagging
        /// consumer has caught up.
        pub fn poll_next(
            &mut self,
            cx: &mut Context<'_>,
            resume: impl FnOnce(),
        ) -> Poll<Option<Bytes>> {
            let item = Pin::new(&mut self.rx).poll_next(cx);
            if let Poll::Ready(Some(_)) = item {
                let left = self.shared.queued.fetch_sub(1, Ordering::AcqRel) - 1;
                if left <= QUEUE / 2 && self.shared.paused.swap(false, Ordering::AcqRel) {
                    resume();
                }
            }
            item
        }

        /// Why the connection closed, once it has.
        pub fn close_reason(&self) -> Option<String> {
            super::lock(&self.shared.reason).clone()
        }
    }
}

/// What handles ask of a connection's task, and how the task carries it out — the same in
/// every driver.
pub mod command {
    use bytes::Bytes;
    use std::collections::VecDeque;
    use std::fmt;
    use tendril_core::{SendError, Tendril};

    /// Why a frame sent through a handle was not taken.
    #[derive(Debug)]
    #[non_exhaustive]
    pub enum SendFailed {
        /// The connection is closing or closed.
        Closed,
        /// The send framer cannot encode the frame.
        Frame(tendril_core::FrameError),
    }

    impl fmt::Display for SendFailed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                SendFailed::Closed => f.write_str("the tendril is closed"),
                SendFailed::Frame(e) => write!(f, "{e}"),
            }
        }
    }

    impl std::error::Error for SendFailed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            match self {
                SendFailed::Frame(e) => Some(e),
                SendFailed::Closed => None,
            }
        }
    }

    /// Where the outcome of a send goes (a driver's one-shot channel).
    pub type Reply = Box<dyn FnOnce(Result<(), SendFailed>) + Send>;

    /// One request from a handle.
    pub enum Command {
        /// Send a frame; reply once it is queued (waiting while the queue is full).
        Send(Bytes, Option<Reply>),
        /// Run a closure on the tendril (switch framers, wrap, …).
        With(Box<dyn FnOnce(&mut Tendril) + Send>),
        /// Close gracefully.
        Close,
        /// Close at once.
        Abort,
    }

    impl fmt::Debug for Command {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Command::Send(frame, _) => write!(f, "Send({} bytes)", frame.len()),
                Command::With(_) => f.write_str("With(..)"),
                Command::Close => f.write_str("Close"),
                Command::Abort => f.write_str("Abort"),
            }
        }
    }

    fn refused(e: SendError<Bytes>) -> SendFailed {
        match e {
            SendError::Frame(e) => SendFailed::Frame(e),
            _ => SendFailed::Closed,
        }
    }

    /// Carry out `command` at once (datagram peers, whose queue never fills).
    pub fn apply_now(tendril: &mut Tendril, command: Command) {
        match command {
            Command::Send(frame, reply) => {
                let result = tendril.send_frame(frame).map_err(refused);
                if let Some(reply) = reply {
                    reply(result);
                }
            }
            Command::With(f) => f(tendril),
            Command::Close => tendril.close(),
            Command::Abort => tendril.abort(),
        }
    }

    /// Frames from handles that wait for room in a stream connection's outgoing queue, in
    /// order: back-pressure for senders on other tasks and threads.
    #[derive(Default)]
    pub struct Waiting {
        queue: VecDeque<(Bytes, Option<Reply>)>,
    }

    impl fmt::Debug for Waiting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Waiting")
                .field("frames", &self.queue.len())
                .finish()
        }
    }

    impl Waiting {
        /// Carry out `command`; a frame that finds the queue full (or frames waiting before it)
        /// waits.
        pub fn apply(&mut self, tendril: &mut Tendril, command: Command) {
            match command {
                Command::Send(frame, reply) if self.queue.is_empty() => {
                    self.send(tendril, frame, reply)
                }
                Command::Send(frame, reply) => self.queue.push_back((frame, reply)),
                other => apply_now(tendril, other),
            }
        }

        fn send(&mut self, tendril: &mut Tendril, frame: Bytes, reply: Option<Reply>) {
            let result = match tendril.send_frame(frame) {
                Err(SendError::Full(frame)) => {
                    self.queue.push_front((frame, reply));
                    return;
                }
                other => other.map_err(refused),
            };
            if let Some(reply) = reply {
                reply(result);
            }
        }

        /// Send the waiting frames the queue has room for now; once the connection is no longer
        /// open, fail them all.
        pub fn retry(&mut self, tendril: &mut Tendril) {
            while tendril.is_writable() {
                let Some((frame, reply)) = self.queue.pop_front() else {
                    return;
                };
                self.send(tendril, frame, reply);
            }
            if !tendril.is_open() {
                self.fail_all();
            }
        }

        /// `true` when no frame waits.
        pub fn is_empty(&self) -> bool {
            self.queue.is_empty()
        }

        /// The connection is gone: every waiting frame fails.
        pub fn fail_all(&mut self) {
            for (_, reply) in self.queue.drain(..) {
                if let Some(reply) = reply {
                    reply(Err(SendFailed::Closed));
                }
            }
        }
    }
}

/// The live tendrils of a manager, shared by the drivers: kept by handle identity (several
/// unnamed Unix peers share one address pair), looked up by (local, remote).
pub mod registry {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tendril_core::Addr;

    /// What a registry needs of a driver's tendril handle.
    pub trait Tracked: Clone {
        /// Identifies the tendril (clones of one handle share it).
        fn key(&self) -> usize;
        /// The local address.
        fn local_addr(&self) -> &Addr;
        /// The peer's address.
        fn remote_addr(&self) -> &Addr;
        /// `true` once the connection has closed.
        fn is_closed(&self) -> bool;
    }

    /// A manager's live tendrils.
    #[derive(Debug)]
    pub struct Registry<H> {
        tendrils: Mutex<HashMap<usize, H>>,
    }

    impl<H> Default for Registry<H> {
        fn default() -> Self {
            Registry {
                tendrils: Mutex::new(HashMap::new()),
            }
        }
    }

    impl<H: Tracked> Registry<H> {
        /// Add a tendril.
        pub fn insert(&self, handle: &H) {
            super::lock(&self.tendrils).insert(handle.key(), handle.clone());
        }

        /// Remove a tendril.
        pub fn remove(&self, handle: &H) {
            super::lock(&self.tendrils).remove(&handle.key());
        }

        /// Every registered tendril, closed or not (for stop, which closes them all).
        pub fn all(&self) -> Vec<H> {
            super::lock(&self.tendrils).values().cloned().collect()
        }

        /// The open tendrils.
        pub fn live(&self) -> Vec<H> {
            super::lock(&self.tendrils)
                .values()
                .filter(|h| !h.is_closed())
                .cloned()
                .collect()
        }

        /// The open tendril at (local, remote), however the addresses are written.
        pub fn find(&self, local: &Addr, remote: &Addr) -> Option<H> {
            let (local, remote) = (local.canonical(), remote.canonical());
            super::lock(&self.tendrils)
                .values()
                .find(|h| {
                    !h.is_closed()
                        && h.local_addr().canonical() == local
                        && h.remote_addr().canonical() == remote
                })
                .cloned()
        }
    }
}
