//! Socket set-up: wrappers ([`WrapperChain`], [`options`]), endpoint resolution, and the
//! listening, connecting and datagram sockets every driver builds the same way.

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

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
}
