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

mod runtime;

pub use runtime::Tokio;
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
