//! # Tendril on blocking `std::net` sockets and threads
//!
//! A thin driver: it moves bytes and time between blocking sockets and the sans-IO
//! [`tendril_core`]; everything else — framing, switching, back-pressure, close reasons, TLS,
//! the UDP peer table — happens in the core and behaves the same under every driver. No async
//! runtime, no poller: only `std` threads and channels.
//!
//! The original Tendril's manager API, synchronous: [`get_manager`] by protocol name (`"tcp"`,
//! `"udp"`, `"unix"`, or one you [`register`]), [`Manager::start`] with an acceptor and a socket
//! wrapper, [`Manager::connect`], [`Manager::stop`], [`Manager::running`],
//! [`Manager::local_addr`], lookup of live tendrils, and [`TendrilHandle`]s to reach a tendril
//! from any thread (an acceptor gets its new tendril's with [`current_handle`]).
//!
//! ## Threads
//!
//! - Each stream connection (TCP, Unix) has its own thread, which runs its application's
//!   callbacks, plus a small helper thread (64 KiB stack) that blocks in `peek` on the socket
//!   and reports when it is readable. The connection's thread waits on one channel for
//!   readiness, handle commands and its next deadline, so commands, data and timers are all
//!   handled at once, with no polling interval.
//! - Writes block for at most 50 ms at a time (the socket's send timeout): while a peer does
//!   not take its bytes, commands and timers are looked at between slices.
//! - Each listener accepts on its own thread; [`Manager::stop`] wakes it by shutting the
//!   listening socket down (and by a connection of its own where that does not wake it).
//! - Each UDP socket runs all its peers (the core's tracker) on one thread, with the same
//!   readiness helper.
//!
//! [`Manager::stop`] closes the listeners, closes every tendril gracefully (aborting those still
//! open after [`Manager::set_stop_timeout`]), and returns once every thread has ended, so every
//! application's `closed` has run exactly once.
//!
//! The original's `TendrilPartial` is not needed: the acceptor is a closure, and captures what
//! it needs.
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
//!     let manager = tendril_blocking::get_manager("tcp", "127.0.0.1:7000")?;
//!     manager.start(
//!         |t: &mut Tendril| {
//!             t.set_recv_framer(Line::crlf());
//!             t.set_send_framer(Line::crlf());
//!             Ok(Echo)
//!         },
//!         tendril_blocking::WrapperChain::new().chain(tendril_blocking::options::nodelay(true)),
//!     )?;
//!     std::io::stdin().read_line(&mut String::new())?; // serve until Enter
//!     manager.stop();
//!     Ok(())
//! }
//! ```

mod handle;
mod manager;
mod readiness;
mod registry;
mod stream;
mod udp;

pub use handle::{current_handle, SendFailed, TendrilHandle};
pub use manager::{acceptor, get_manager, Acceptor, BoxApp, Context, Manager, SharedAcceptor};
pub use registry::{protocols, register, Transport};
pub use stream::spawn_stream;
pub use tendril_net::{options, WrapperChain};

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
