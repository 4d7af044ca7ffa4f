//! # Tendril on async-std and smol
//!
//! A thin driver on the foundations async-std and smol share: [`async-io`](async_io) (sockets
//! and timers on one reactor) and the `futures` I/O traits. It moves bytes and time between
//! sockets and the sans-IO [`tendril_core`]; everything else — framing, switching,
//! back-pressure, close reasons, TLS, the UDP peer table — happens in the core and behaves the
//! same under every driver.
//!
//! The same code runs under async-std's executor and under smol (async-std is discontinued
//! upstream; its authors point to smol, and both run on `async-io`). The manager's own tasks
//! run on a [`Spawner`]: by default the driver's global executor, or whichever executor you
//! hand in with [`Manager::set_spawner`].
//!
//! The original Tendril's manager API: [`get_manager`] by protocol name (`"tcp"`, `"udp"`,
//! `"unix"`, or one you [`register`]), [`Manager::start`] with an acceptor and a socket wrapper,
//! [`Manager::connect`], [`Manager::stop`], [`Manager::running`], [`Manager::local_addr`],
//! lookup of live tendrils, and [`TendrilHandle`]s to reach a tendril from any task or thread.
//!
//! The original's `TendrilPartial` (binding extra arguments to an acceptor) is not needed:
//! acceptors are closures and capture what they need, e.g.
//! `move |t: &mut Tendril| Ok(Echo { greeting: greeting.clone() })`.
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
//! fn main() -> std::io::Result<()> {
//!     // `smol::block_on` works the same.
//!     async_std::task::block_on(async {
//!         let manager = tendril_async_std::get_manager("tcp", "127.0.0.1:7000")?;
//!         // Optional: run the connections on async-std's own executor.
//!         manager.set_spawner(tendril_async_std::Spawner::new(|task| {
//!             async_std::task::spawn(task);
//!         }));
//!         manager
//!             .start(
//!                 |t: &mut Tendril| {
//!                     t.set_recv_framer(Line::crlf());
//!                     t.set_send_framer(Line::crlf());
//!                     Ok(Echo)
//!                 },
//!                 tendril_net::WrapperChain::new().chain(tendril_net::options::nodelay(true)),
//!             )
//!             .await?;
//!         futures::future::pending::<()>().await; // serve until the process ends
//!         manager.stop().await;
//!         Ok(())
//!     })
//! }
//! ```

mod runtime;

pub use async_io;
pub use runtime::AsyncIo;
pub use tendril_net::runtime::{
    current_handle, protocols, register, spawn_stream, Cancellation, FramedTendril, Incoming,
    Manager, SendFailed, Shared, Spawner, TendrilHandle, Transport,
};
pub use tendril_net::{acceptor, options, Acceptor, BoxApp, SharedAcceptor, WrapperChain};

/// A manager for `proto` (a registered protocol name: `"tcp"`, `"udp"`, `"unix"` or one added
/// with [`register`]) at `endpoint` (`"host:port"`, a Unix socket path, or `""` for a manager
/// that only connects out), on `async-io`. Every call makes a new manager.
///
/// ```
/// let manager = tendril_async_std::get_manager("udp", "127.0.0.1:0")?;
/// assert!(!manager.running());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn get_manager(proto: &str, endpoint: &str) -> std::io::Result<Manager> {
    Manager::new(std::sync::Arc::new(AsyncIo), proto, endpoint)
}
