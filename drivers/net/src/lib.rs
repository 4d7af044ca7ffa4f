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
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use tendril_core::tracker::{Datagram, Transmit};
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

/// One datagram's room in a receive buffer: the largest UDP payload, so nothing is ever cut
/// short.
///
/// A GRO batch (several datagrams of one flow that the kernel coalesced) fits too: Linux
/// coalesces UDP only while the packet stays under 64 KiB, headers included
/// (`GRO_LEGACY_MAX_SIZE`, `skb_gro_receive`: only TCP may grow past it), and a GSO send is
/// limited by the UDP length field. So one slot per datagram, not one per possible GRO segment
/// (`quinn-udp`'s `gro_segments()` sizes buffers for MTU-sized slots, which is not our case).
pub const MAX_DATAGRAM: usize = 65_536;

/// The most datagrams (or GRO batches) one [`UdpIo::recv`] call takes from the socket:
/// `recvmmsg` on Linux, 1 where the platform has no batch receive.
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// The most payload bytes one GSO send may carry (the IPv4 UDP limit, 65,535 minus the IP and
/// UDP headers; IPv6 allows a little more).
const MAX_GSO_BYTES: usize = 65_507;

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

impl Received {
    /// The datagram in `buf` (the buffer given to [`UdpIo::recv`]), for
    /// [`Tracker::handle_datagrams`](tendril_core::tracker::Tracker::handle_datagrams).
    pub fn datagram<'b>(&self, buf: &'b [u8]) -> Datagram<'b> {
        Datagram::new(
            self.local,
            self.remote,
            &buf[self.start..self.start + self.len],
        )
    }
}

/// Datagram I/O on one socket: receives batches with the destination address of each datagram,
/// sends replies from a chosen local address (`quinn-udp`: `recvmmsg`, `IP_PKTINFO`, GRO and
/// GSO where available).
#[derive(Debug)]
pub struct UdpIo {
    state: quinn_udp::UdpSocketState,
    local: SocketAddr,
}

/// Give back the system's default for datagrams larger than the path MTU: fragment them.
///
/// `quinn-udp` sets `IP_PMTUDISC_PROBE` (QUIC sizes its own packets and must never be
/// fragmented), under which a datagram larger than the interface's MTU fails with `EMSGSIZE`.
/// Datagram protocols such as DNS send replies larger than 1,500 bytes (EDNS(0) allows 4,096) and
/// rely on IP fragmentation, so the socket goes back to `IP_PMTUDISC_WANT`: path MTU discovery,
/// and fragmentation of what does not fit.
#[cfg(target_os = "linux")]
fn allow_fragmentation<S: std::os::fd::AsFd>(socket: &S, ipv4: bool) -> io::Result<()> {
    use rustix::net::sockopt;
    if ipv4 {
        sockopt::set_ip_mtu_discover(socket, sockopt::Ipv4PathMtuDiscovery::WANT)?;
    } else {
        sockopt::set_ipv6_mtu_discover(socket, sockopt::Ipv6PathMtuDiscovery::WANT)?;
        // A dual-stack socket also sends IPv4 (to IPv4-mapped peers); an IPv6-only one has no
        // IPv4 option to set.
        let _ = sockopt::set_ip_mtu_discover(socket, sockopt::Ipv4PathMtuDiscovery::WANT);
    }
    Ok(())
}

impl UdpIo {
    /// Prepare `socket` (sets the options `quinn-udp` needs, e.g. `IP_PKTINFO`, and turns GRO
    /// on where the system has it).
    pub fn new<S: std::os::fd::AsFd>(socket: &S) -> io::Result<Self> {
        let sock = SockRef::from(socket);
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?;
        let state = quinn_udp::UdpSocketState::new(socket.into())?;
        #[cfg(target_os = "linux")]
        allow_fragmentation(socket, local.is_ipv4())?;
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

    /// The buffer size that holds one receive call's datagrams: [`RECV_BATCH`] slots of
    /// [`MAX_DATAGRAM`] (2 MiB on Linux). Allocate it zeroed (`vec![0; n]`): the system then
    /// maps pages only as datagrams land in them, so small datagrams keep it mostly virtual.
    pub fn buffer_size(&self) -> usize {
        MAX_DATAGRAM * RECV_BATCH
    }

    /// Receive the datagrams waiting on the socket, up to one per [`MAX_DATAGRAM`] slot of `buf`
    /// (at most [`RECV_BATCH`]) in one system call, calling `each` for every datagram in
    /// arrival order (GRO batches are split into their datagrams). Returns how many datagrams
    /// `each` saw; `WouldBlock` on a non-blocking socket with nothing to read. `buf` shorter
    /// than one slot is refused, so a datagram is never cut short.
    ///
    /// On a *blocking* socket pass one slot (`&mut buf[..MAX_DATAGRAM]`): `recvmmsg` there
    /// waits until every slot is filled (checked in debug builds).
    pub fn recv<S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        buf: &mut [u8],
        mut each: impl FnMut(Received),
    ) -> io::Result<usize> {
        let slots = (buf.len() / MAX_DATAGRAM).min(RECV_BATCH);
        if slots == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a datagram receive buffer needs at least {MAX_DATAGRAM} bytes"),
            ));
        }
        debug_assert!(
            slots == 1 || SockRef::from(socket).nonblocking().unwrap_or(true),
            "a batch receive on a blocking socket waits for a full batch"
        );
        let mut chunks = buf.chunks_exact_mut(MAX_DATAGRAM);
        let mut bufs: [IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let mut meta = [quinn_udp::RecvMeta::default(); RECV_BATCH];
        let n = self
            .state
            .recv(socket.into(), &mut bufs[..slots], &mut meta[..slots])?;
        let mut delivered = 0;
        for (slot, meta) in meta[..n].iter().enumerate() {
            let local = match meta.dst_ip {
                Some(ip) if self.local.ip().is_unspecified() => {
                    SocketAddr::new(ip, self.local.port())
                }
                _ => self.local,
            };
            let base = slot * MAX_DATAGRAM;
            let received = |start, len| Received {
                remote: meta.addr,
                local,
                start: base + start,
                len,
            };
            if meta.len == 0 {
                // An empty datagram is a datagram too.
                each(received(0, 0));
                delivered += 1;
                continue;
            }
            let stride = meta.stride.clamp(1, meta.len);
            let mut start = 0;
            while start < meta.len {
                each(received(start, stride.min(meta.len - start)));
                delivered += 1;
                start += stride;
            }
        }
        Ok(delivered)
    }

    /// The most datagrams one [`send_segments`](Self::send_segments) call may carry: 1 where
    /// the system has no GSO (or it failed once on this socket's route).
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Send `data` to `remote`, from `local`'s IP when the socket is wildcard-bound.
    pub fn send<S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        data: &[u8],
    ) -> io::Result<()> {
        self.send_segments(socket, local, remote, data, data.len())
    }

    /// Send `data` as consecutive datagrams of `segment_size` bytes (the last may be shorter)
    /// to `remote` in one system call (GSO), from `local`'s IP when the socket is
    /// wildcard-bound. The receiver gets separate datagrams (or one GRO batch it splits).
    /// At most [`max_segments`](Self::max_segments) datagrams; with `segment_size >=
    /// data.len()` this is a plain send.
    pub fn send_segments<S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        data: &[u8],
        segment_size: usize,
    ) -> io::Result<()> {
        let src_ip = local
            .map(|l| l.ip())
            .filter(|ip| self.local.ip().is_unspecified() && !ip.is_unspecified());
        let transmit = quinn_udp::Transmit {
            destination: remote,
            ecn: None,
            contents: data,
            segment_size: (segment_size > 0 && segment_size < data.len()).then_some(segment_size),
            src_ip,
        };
        self.state.try_send(socket.into(), &transmit)
    }
}

/// Datagrams waiting for the socket, in order: what a driver's UDP loop takes from the tracker
/// and sends. Consecutive datagrams from one local address to one peer, of one size (the last
/// of a run may be shorter), leave in one system call through GSO where the system has it (an
/// echo or request-reply server answering a peer's burst); the peer still receives separate
/// datagrams.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Transmit>,
    /// Where a GSO run is laid out contiguously.
    scratch: Vec<u8>,
    /// Datagrams at the front to send one by one (a GSO send of them failed).
    unbatched: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a datagram.
    pub fn push(&mut self, transmit: Transmit) {
        self.queue.push_back(transmit);
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// `true` when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Send the waiting datagrams until none is left (`Ok`) or the socket would block
    /// (`WouldBlock`, or `TimedOut`/`Interrupted` from a blocking socket with a send timeout;
    /// the rest stays queued, in order). `attempt` runs each system call: Tokio's
    /// `UdpSocket::try_io` (so readiness is cleared on `WouldBlock`), `|send| send()` elsewhere.
    /// A datagram that fails otherwise is dropped and reported to `failed`: UDP is unreliable,
    /// and one peer's trouble is not the socket's. Datagrams without IP addresses are dropped.
    pub fn flush<S: std::os::fd::AsFd>(
        &mut self,
        io: &UdpIo,
        socket: &S,
        mut attempt: impl FnMut(&mut dyn FnMut() -> io::Result<()>) -> io::Result<()>,
        mut failed: impl FnMut(SocketAddr, io::Error),
    ) -> io::Result<()> {
        while let Some(first) = self.queue.front() {
            let (Some(local), Some(remote)) = (first.local.ip(), first.remote.ip()) else {
                self.pop(1);
                continue;
            };
            let (count, segment_size) = self.run(io.max_segments());
            let result = if count == 1 {
                attempt(&mut || io.send(socket, Some(local), remote, &first.data))
            } else {
                self.scratch.clear();
                for t in self.queue.iter().take(count) {
                    self.scratch.extend_from_slice(&t.data);
                }
                let data = &self.scratch;
                attempt(&mut || io.send_segments(socket, Some(local), remote, data, segment_size))
            };
            match result {
                Err(e) if later(&e) => return Err(e),
                Err(_) if count > 1 => {
                    // No GSO on this route after all (`quinn-udp` turns it off on EIO/EINVAL):
                    // the same datagrams, one by one.
                    self.unbatched = count;
                    continue;
                }
                Err(e) => failed(remote, e),
                Ok(()) => {}
            }
            self.pop(count);
        }
        Ok(())
    }

    /// How many datagrams at the front leave together, and their segment size.
    fn run(&self, max_segments: usize) -> (usize, usize) {
        let Some(first) = self.queue.front() else {
            return (0, 0);
        };
        let size = first.data.len();
        if self.unbatched > 0 || max_segments < 2 || size == 0 {
            return (1, size);
        }
        let (mut count, mut total) = (1, size);
        for t in self.queue.iter().skip(1) {
            let len = t.data.len();
            if count == max_segments
                || len == 0
                || len > size
                || total + len > MAX_GSO_BYTES
                || t.remote != first.remote
                || t.local != first.local
            {
                break;
            }
            count += 1;
            total += len;
            if len < size {
                break;
            }
        }
        (count, size)
    }

    fn pop(&mut self, count: usize) {
        self.queue.drain(..count);
        self.unbatched = self.unbatched.saturating_sub(count);
    }
}

/// A send that may succeed later: the socket's buffer is full for now.
fn later(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
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

    /// A bound server socket with its `UdpIo`, and a plain client socket.
    fn udp_pair(server_addr: &str) -> (std::net::UdpSocket, UdpIo, std::net::UdpSocket, u16) {
        let server = udp_socket(server_addr.parse().unwrap(), &WrapperChain::new()).unwrap();
        let io = UdpIo::new(&server).unwrap();
        let port = server.local_addr().unwrap().port();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        (server, io, client, port)
    }

    /// Receive until `n` datagrams arrived (waiting in a blocking `peek`, not a sleep); returns
    /// them with their bytes and the number of receive calls that returned something.
    fn recv_n(
        io: &UdpIo,
        socket: &std::net::UdpSocket,
        n: usize,
    ) -> (Vec<(Received, Vec<u8>)>, usize) {
        let mut buf = vec![0; io.buffer_size()];
        let (mut got, mut calls) = (Vec::new(), 0);
        while got.len() < n {
            let mut batch = Vec::new();
            match io.recv(socket, &mut buf, |r| batch.push(r)) {
                Ok(_) => {
                    calls += 1;
                    got.extend(
                        batch
                            .into_iter()
                            .map(|r| (r, buf[r.start..r.start + r.len].to_vec())),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    socket.set_nonblocking(false).unwrap();
                    socket.peek(&mut [0; 1]).unwrap();
                    socket.set_nonblocking(true).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        (got, calls)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn datagrams_larger_than_the_path_mtu_may_be_fragmented() {
        use rustix::net::sockopt;
        // quinn-udp forbids fragmentation; a 4 KiB DNS reply over a 1,500-byte link needs it.
        let (server, _io, _, _) = udp_pair("127.0.0.1:0");
        assert_eq!(
            sockopt::ip_mtu_discover(&server).unwrap(),
            sockopt::Ipv4PathMtuDiscovery::WANT
        );
        let (server, _io, _, _) = udp_pair("[::1]:0");
        assert_eq!(
            sockopt::ipv6_mtu_discover(&server).unwrap(),
            sockopt::Ipv6PathMtuDiscovery::WANT
        );
    }

    #[test]
    fn udp_io_reports_the_local_address_of_a_wildcard_socket() {
        let (server, io, client, port) = udp_pair("0.0.0.0:0");
        client.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        let (got, _) = recv_n(&io, &server, 1);
        assert_eq!(got.len(), 1);
        let (r, data) = &got[0];
        assert_eq!(r.local, SocketAddr::new("127.0.0.1".parse().unwrap(), port));
        assert_eq!(data, b"hi");
        io.send(&server, Some(r.local), r.remote, b"back").unwrap();
        let mut reply = [0; 16];
        let (n, from) = client.recv_from(&mut reply).unwrap();
        assert_eq!((&reply[..n], from), (&b"back"[..], r.local));
    }

    #[test]
    fn one_receive_call_takes_several_waiting_datagrams_each_whole_and_in_order() {
        let (server, io, client, port) = udp_pair("0.0.0.0:0");
        // Sizes up to the largest IPv4 UDP payload, which needs a full-size slot (all of them
        // well within the default receive buffer, so none is dropped).
        let mut sizes: Vec<usize> = (0..20).map(|i| [1, 64, 1500][i % 3]).collect();
        sizes[7] = 65_507;
        sizes[12] = 9000;
        for (i, &size) in sizes.iter().enumerate() {
            client
                .send_to(&vec![i as u8; size], ("127.0.0.1", port))
                .unwrap();
        }
        let (got, calls) = recv_n(&io, &server, sizes.len());
        assert!(
            calls < sizes.len(),
            "{calls} calls for {} datagrams",
            sizes.len()
        );
        let here = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        for (i, (r, data)) in got.iter().enumerate() {
            assert_eq!((r.local, r.remote), (here, client.local_addr().unwrap()));
            assert_eq!(data, &vec![i as u8; sizes[i]]);
        }
    }

    #[test]
    fn a_receive_buffer_smaller_than_one_datagram_slot_is_refused() {
        let (server, io, _client, _) = udp_pair("127.0.0.1:0");
        let mut small = vec![0; MAX_DATAGRAM - 1];
        let err = io.recv(&server, &mut small, |_| {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn an_empty_datagram_is_delivered() {
        let (server, io, client, port) = udp_pair("127.0.0.1:0");
        client.send_to(b"", ("127.0.0.1", port)).unwrap();
        client.send_to(b"x", ("127.0.0.1", port)).unwrap();
        let (got, _) = recv_n(&io, &server, 2);
        assert_eq!((got[0].1.len(), &got[1].1[..]), (0, &b"x"[..]));
    }

    #[test]
    fn segments_sent_in_one_call_arrive_as_separate_datagrams_and_gro_batches_are_split() {
        let (server, io, plain, port) = udp_pair("127.0.0.1:0");
        let sender = udp_socket("127.0.0.1:0".parse().unwrap(), &WrapperChain::new()).unwrap();
        let sender_io = UdpIo::new(&sender).unwrap();
        let segments = sender_io.max_segments().min(60);
        // Up to 60 × 1000 bytes: a GRO batch close to the 64 KiB bound, in one slot.
        let mut data: Vec<u8> = (0..segments - 1)
            .flat_map(|i| vec![i as u8; 1000])
            .collect();
        data.extend_from_slice(&[0xee; 10]);
        let to = |port| SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        // To a socket without GRO: the kernel cuts the segments apart.
        sender_io
            .send_segments(&sender, None, plain.local_addr().unwrap(), &data, 1000)
            .unwrap();
        let mut buf = vec![0; MAX_DATAGRAM];
        for i in 0..segments {
            let n = plain.recv(&mut buf).unwrap();
            let want = if i + 1 == segments { 10 } else { 1000 };
            assert_eq!(n, want, "segment {i}");
        }
        // To our socket (GRO on): one batch or several, split into the datagrams either way.
        sender_io
            .send_segments(&sender, None, to(port), &data, 1000)
            .unwrap();
        let (got, _) = recv_n(&io, &server, segments);
        let lens: Vec<usize> = got.iter().map(|(r, _)| r.len).collect();
        let mut want = vec![1000; segments - 1];
        want.push(10);
        assert_eq!(lens, want);
        assert_eq!(got[1].1, vec![1u8; 1000]);
    }

    fn transmit(local: SocketAddr, remote: SocketAddr, data: &[u8]) -> Transmit {
        Transmit {
            local: local.into(),
            remote: remote.into(),
            data: bytes::Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn an_outbox_sends_runs_to_each_peer_from_the_receiving_address_as_separate_datagrams() {
        let (server, io, a, port) = udp_pair("0.0.0.0:0");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let here = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut outbox = Outbox::new();
        // A run to a (the last shorter), one to b, then a run to a cut by a longer datagram.
        let plan: &[(SocketAddr, usize)] = &[
            (to_a, 64),
            (to_a, 64),
            (to_a, 64),
            (to_a, 10),
            (to_b, 64),
            (to_b, 64),
            (to_a, 5),
            (to_a, 5),
            (to_a, 300),
            (to_a, 0),
        ];
        for (i, &(to, len)) in plan.iter().enumerate() {
            outbox.push(transmit(here, to, &vec![i as u8; len]));
        }
        let mut failures = 0;
        outbox
            .flush(&io, &server, |send| send(), |_, _| failures += 1)
            .unwrap();
        assert!(outbox.is_empty());
        assert_eq!(failures, 0);
        let mut buf = vec![0; MAX_DATAGRAM];
        for (i, &(to, len)) in plan.iter().enumerate() {
            let socket = if to == to_a { &a } else { &b };
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!((n, from), (len, here), "datagram {i}");
            assert!(buf[..n].iter().all(|&x| x == i as u8));
        }
    }
}

/// The most a busy stream connection reads per system call (see [`grow_reads`]).
pub const MAX_READ: usize = 64 * 1024;

/// A stream read filled all the room it had: the peer sends faster than one read takes, so the
/// connection reads more at a time, doubling its [`read_size`](tendril_core::Config::read_size)
/// up to [`MAX_READ`] — fewer system calls, more frames dispatched per read and replies per
/// write. Drivers call this after such a read; an idle connection still gives its buffer back
/// (`release_idle_buffers`), so only busy ones hold the larger one.
pub fn grow_reads(tendril: &mut Tendril) {
    let mut config = *tendril.config();
    if config.read_size < MAX_READ {
        config.read_size = (config.read_size * 2).min(MAX_READ);
        tendril.set_config(config);
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
