//! What Tendril's drivers (Tokio, async-std, blocking) share, written once. One file per
//! concern:
//!
//! | module | what is in it |
//! | --- | --- |
//! | `socket` | socket wrappers, endpoint resolution, listening/connecting/datagram sockets |
//! | `datagram` | [`UdpIo`] (batched receive with destination addresses) and the [`Outbox`] |
//! | `app` | [`BoxApp`], the [`SharedAcceptor`], the [`FramerFactory`] |
//! | `stream` | [`StreamConn`]: a stream connection's step function, and read growth ([`grow_reads`]) |
//! | [`command`] | what handles ask of a connection, and the [`PendingSends`](command::PendingSends) |
//! | [`live`] | a manager's table of live tendrils |
//! | `isolated` | panic isolation: a panicking application ends only its own tendril ([`Isolated`]) |
//! | `lifecycle` | the stop rules: start once, nothing after stop ([`Lifecycle`]) |
//! | [`framed`] | the receiving half of a framed `Stream` |
//! | [`runtime`] | async drivers on any runtime: the manager, transports and tasks, over a small [`Runtime`](runtime::Runtime) trait |
//! | `settings` | a manager's tendril and UDP peer-table settings ([`ManagerSettings`]) |
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

mod app;
pub mod command;
mod datagram;
pub mod framed;
mod isolated;
mod lifecycle;
pub mod live;
#[cfg(unix)]
pub mod runtime;
mod settings;
mod socket;
mod stream;

pub use app::{acceptor, identity_framers, lock, Acceptor, BoxApp, FramerFactory, SharedAcceptor};
pub use datagram::{peer_trouble, Outbox, Received, UdpIo, MAX_DATAGRAM, RECV_BATCH};
pub use isolated::{accept_isolated, panic_message, Isolated};
pub use lifecycle::Lifecycle;
pub use settings::{tracker_config, ManagerSettings};
pub use socket::{
    options, resolve, tcp_connect_socket, tcp_listener, udp_socket, SocketWrapper, WrapperChain,
    BACKLOG,
};
pub use socket2;
pub use stream::{grow_reads, transient, Step, StreamConn, Wait, IDLE_RELEASE_DELAY, MAX_READ};
