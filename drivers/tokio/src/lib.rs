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

mod framed;
mod handle;
mod manager;
mod registry;
mod stream;
mod udp;

pub use framed::{FramedTendril, Incoming};
pub use handle::{current_handle, SendFailed, TendrilHandle};
pub use manager::{acceptor, get_manager, Acceptor, BoxApp, Context, Manager, SharedAcceptor};
pub use registry::{protocols, register, Transport};
pub use stream::spawn_stream;
pub use tendril_net::{options, WrapperChain};
