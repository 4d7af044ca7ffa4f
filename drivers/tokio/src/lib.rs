//! # Tendril on Tokio
//!
//! A thin driver: it moves bytes and time between Tokio sockets and the sans-IO
//! [`tendril_core`]; everything else — framing, switching, back-pressure, close reasons, TLS,
//! the UDP peer table — happens in the core and behaves the same under every driver.
//!
//! The original Tendril's manager API: [`get_manager`] by protocol name (`"tcp"`, `"udp"`,
//! `"unix"`, or one you [`register`]), [`Manager::start`] with an acceptor and a socket wrapper,
//! [`Manager::connect`], [`Manager::stop`], [`Manager::running`], [`Manager::local_addr`],
//! lookup of live tendrils, and [`TendrilHandle`]s to reach a tendril from any task.
//!
//! ```no_run
//! use bytes::Bytes;
//! use tendril_core::{AppError, Application, Line, Tendril};
//!
//! struct Echo;
//!
//! impl Application for Echo {
//!     fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
//!         t.send_frame(frame)?;
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let manager = tendril_tokio::get_manager("tcp", "127.0.0.1:7000")?;
//!     manager
//!         .start(
//!             |t: &mut Tendril| {
//!                 t.set_recv_framer(Line::crlf());
//!                 t.set_send_framer(Line::crlf());
//!                 Ok(Echo)
//!             },
//!             tendril_net::WrapperChain::new().chain(tendril_net::options::nodelay(true)),
//!         )
//!         .await?;
//!     tokio::signal::ctrl_c().await?;
//!     manager.stop().await;
//!     Ok(())
//! }
//! ```
//!
//! Thread-per-core: [`get_sharded_manager`] runs a manager on [`Sharded`], a current-thread
//! Tokio runtime per shard. TCP and UDP listen with one `SO_REUSEPORT` socket per shard; each
//! connection, and each UDP peer, is served on one shard from start to end.

mod runtime;
mod sharded;

pub use runtime::Tokio;
pub use sharded::Sharded;
pub use tendril_net::runtime::{
    current_handle, protocols, register, spawn_stream, FramedTendril, Incoming, Manager,
    SendFailed, Shared, Spawner, TendrilHandle, Transport,
};
pub use tendril_net::{acceptor, options, Acceptor, BoxApp, SharedAcceptor, WrapperChain};

/// A manager for `proto` (a registered protocol name: `"tcp"`, `"udp"`, `"unix"` or one added
/// with [`register`]) at `endpoint` (`"host:port"`, a Unix socket path, or `""` for a manager
/// that only connects out), on the Tokio runtime it is started from. Every call makes a new
/// manager.
///
/// ```
/// let manager = tendril_tokio::get_manager("udp", "127.0.0.1:0")?;
/// assert!(!manager.running());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn get_manager(proto: &str, endpoint: &str) -> std::io::Result<Manager> {
    Manager::new(std::sync::Arc::new(Tokio), proto, endpoint)
}

/// A manager for `proto` at `endpoint`, as [`get_manager`] makes, on a [`Sharded`] runtime of
/// its own with `shards` threads: TCP and UDP listen on every shard. It needs no Tokio runtime
/// around it.
///
/// ```
/// use tendril_core::{AppError, Application, Tendril};
///
/// struct Echo;
/// impl Application for Echo {
///     fn recv_frame(&mut self, t: &mut Tendril, frame: bytes::Bytes) -> Result<(), AppError> {
///         t.send_frame(frame)?;
///         Ok(())
///     }
/// }
///
/// let manager = tendril_tokio::get_sharded_manager("udp", "127.0.0.1:0", 2)?;
/// futures::executor::block_on(manager.start(|_: &mut Tendril| Ok(Echo), Default::default()))?;
/// let server = manager.local_addr().and_then(|a| a.ip()).expect("bound");
/// let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// client.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
/// client.send_to(b"hello", server)?;
/// let mut buf = [0; 16];
/// let n = client.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"hello");
/// assert_eq!(manager.shards(), 2);
/// futures::executor::block_on(manager.stop());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn get_sharded_manager(proto: &str, endpoint: &str, shards: usize) -> std::io::Result<Manager> {
    Manager::new(std::sync::Arc::new(Sharded::new(shards)?), proto, endpoint)
}
