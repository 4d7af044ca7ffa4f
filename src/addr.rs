//! Transport protocols and addresses of a [`Tendril`](crate::Tendril).

use alloc::sync::Arc;
use core::fmt;
use core::net::SocketAddr;

/// The transport a tendril runs over: a name (as registered with a driver's `get_manager`) and
/// whether it carries datagrams or a byte stream.
///
/// ```
/// use tendril_core::Proto;
///
/// assert!(Proto::UDP.is_datagram());
/// let sctp = Proto::stream("sctp");
/// assert_eq!(sctp.name(), "sctp");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Proto {
    name: &'static str,
    datagram: bool,
}

impl Proto {
    /// TCP.
    pub const TCP: Proto = Proto::stream("tcp");
    /// UDP.
    pub const UDP: Proto = Proto::datagram("udp");
    /// Unix-domain stream sockets.
    pub const UNIX: Proto = Proto::stream("unix");

    /// A byte-stream protocol of this name.
    pub const fn stream(name: &'static str) -> Self {
        Proto {
            name,
            datagram: false,
        }
    }

    /// A datagram protocol of this name.
    pub const fn datagram(name: &'static str) -> Self {
        Proto {
            name,
            datagram: true,
        }
    }

    /// The protocol's name, e.g. `"tcp"`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// `true` for datagram protocols: each datagram is framed on its own.
    pub const fn is_datagram(&self) -> bool {
        self.datagram
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// One end of a tendril: an IP socket address, a path (Unix-domain sockets), or nothing known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Addr {
    /// An IPv4 or IPv6 socket address.
    Ip(SocketAddr),
    /// A path-like name, e.g. a Unix-domain socket path.
    Path(Arc<str>),
    /// No address (e.g. an unnamed Unix socket peer).
    Unnamed,
}

impl Addr {
    /// The IP socket address, if this is one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Addr::Ip(addr) => Some(*addr),
            _ => None,
        }
    }

    /// The same address with IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) turned into IPv4, so
    /// that a peer matches however the operating system formats it.
    pub fn canonical(&self) -> Addr {
        match self {
            Addr::Ip(SocketAddr::V6(v6)) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => Addr::Ip(SocketAddr::new(v4.into(), v6.port())),
                None => Addr::Ip(SocketAddr::V6(*v6)),
            },
            other => other.clone(),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(addr: SocketAddr) -> Self {
        Addr::Ip(addr)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Ip(addr) => write!(f, "{addr}"),
            Addr::Path(path) => f.write_str(path),
            Addr::Unnamed => f.write_str("(unnamed)"),
        }
    }
}
