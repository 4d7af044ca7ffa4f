//! # Tendril on blocking `std::net` sockets and threads
//!
//! A thin driver: it moves bytes and time between blocking sockets and the sans-IO
//! [`tendril_core`]; everything else — framing, switching, back-pressure, close reasons, TLS,
//! the UDP peer table — happens in the core and behaves the same under every driver. No async
//! runtime, no poller: only `std` threads and channels.
//!
//! The original Tendril's manager API, synchronous: [`get_manager`] by protocol name (`"tcp"`,
//! `"udp"`, `"unix"`, or one you [`register`]), [`Manager::start`] with an acceptor and a socket
//! wrapper, [`Manager::connect`], [`Manager::stop`], [`running`](tendril_net::runtime::Manager::running),
//! [`local_addr`](tendril_net::runtime::Manager::local_addr), lookup of live tendrils, and [`TendrilHandle`]s to reach a tendril
//! from any thread (an acceptor gets its new tendril's with [`current_handle`]).
//!
//! It is the kit's async manager ([`tendril_net::runtime`]) on a runtime of plain threads
//! ([`Threads`]): the same transports, handles, stop rules and UDP policy as every other
//! driver, with each call blocking the calling thread until it is done.
//!
//! ## Threads
//!
//! - Each stream connection (TCP, Unix) has its own thread, which runs its application's
//!   callbacks, plus a small helper thread (64 KiB stack) that blocks in `peek` on the socket
//!   and reports when it is readable. The connection's thread parks until readiness, a handle's
//!   command or its next deadline wakes it, so commands, data and timers are all handled at
//!   once, with no polling interval.
//! - Writes block for at most 50 ms at a time (the socket's send timeout): while a peer does
//!   not take its bytes, commands and timers are looked at between slices.
//! - Each listener accepts on its own thread; [`Manager::stop`] wakes it by shutting the
//!   listening socket down (and by a connection of its own where that does not wake it).
//! - Each UDP socket runs all its peers (the core's tracker) on one thread, with the same
//!   readiness helper.
//!
//! [`Manager::stop`] closes the listeners, closes every tendril gracefully (aborting those still
//! open after [`set_stop_timeout`](tendril_net::runtime::Manager::set_stop_timeout)), and returns once every thread has ended, so every
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

mod readiness;
mod threads;

use bytes::Bytes;
use std::io;
use std::ops::Deref;
use std::sync::Arc;

use tendril_core::{Addr, Application, Reject, Tendril};

pub use tendril_net::runtime::{protocols, register, spawn_stream, SendFailed, Shared, Transport};
pub use tendril_net::{acceptor, options, Acceptor, BoxApp, SharedAcceptor, WrapperChain};
pub use threads::Threads;

/// A manager for `proto` (a registered protocol name: `"tcp"`, `"udp"`, `"unix"` or one added
/// with [`register`]) at `endpoint` (`"host:port"`, a Unix socket path, or `""` for a manager
/// that only connects out). Every call makes a new manager.
///
/// ```
/// let manager = tendril_blocking::get_manager("udp", "127.0.0.1:0")?;
/// assert!(!manager.running());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn get_manager(proto: &str, endpoint: &str) -> io::Result<Manager> {
    tendril_net::runtime::Manager::new(Arc::new(Threads), proto, endpoint).map(Manager)
}

/// A manager for one protocol and endpoint, whose calls block: [`start`](Self::start) returns
/// once bound, [`connect`](Self::connect) once connected, [`stop`](Self::stop) once every
/// application's `closed` has run. Everything else is the kit's
/// [`Manager`](tendril_net::runtime::Manager) (through `Deref`): the settings, `running`,
/// `local_addr`.
///
/// ```no_run
/// use tendril_core::{AppError, Application, Line, Tendril};
///
/// struct Echo;
/// impl Application for Echo {
///     fn recv_frame(&mut self, t: &mut Tendril, frame: bytes::Bytes) -> Result<(), AppError> {
///         t.send_frame(frame)?;
///         Ok(())
///     }
/// }
///
/// # fn main() -> std::io::Result<()> {
/// let manager = tendril_blocking::get_manager("tcp", "127.0.0.1:0")?;
/// manager.start(
///     |t: &mut Tendril| {
///         t.set_recv_framer(Line::crlf());
///         t.set_send_framer(Line::crlf());
///         Ok(Echo)
///     },
///     Default::default(),
/// )?;
/// println!("listening on {}", manager.local_addr().unwrap());
/// manager.stop();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Manager(tendril_net::runtime::Manager);

impl Deref for Manager {
    type Target = tendril_net::runtime::Manager;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Manager {
    /// Bind the endpoint and accept connections (or, for datagrams, peers) with `acceptor`.
    /// `wrapper` runs on the listening socket before it binds. Returns once bound. A stopped
    /// manager does not start again.
    pub fn start<A, F>(&self, acceptor: F, wrapper: WrapperChain) -> io::Result<()>
    where
        A: Application + Send + 'static,
        F: FnMut(&mut Tendril) -> Result<A, Reject> + Send + 'static,
    {
        threads::block_on(self.0.start(acceptor, wrapper))
    }

    /// Connect to `target` (`"host:port"` or a path), within the connect timeout if one is set;
    /// `acceptor` makes the application for the new tendril, `wrapper` runs on the outgoing
    /// socket before it connects. May be called from an application's callback.
    pub fn connect<A, F>(
        &self,
        target: &str,
        acceptor: F,
        wrapper: WrapperChain,
    ) -> io::Result<TendrilHandle>
    where
        A: Application + Send + 'static,
        F: FnMut(&mut Tendril) -> Result<A, Reject> + Send + 'static,
    {
        threads::block_on(self.0.connect(target, acceptor, wrapper)).map(TendrilHandle)
    }

    /// Stop: close the listeners, close every tendril gracefully (aborting those still open
    /// after the stop timeout), and return once every application's `closed` has run. From an
    /// application's callback it waits for every connection but the caller's own.
    pub fn stop(&self) {
        threads::block_on(self.0.stop());
    }

    /// The live tendril at (local, remote), if any.
    pub fn find(&self, local: &Addr, remote: &Addr) -> Option<TendrilHandle> {
        self.0.find(local, remote).map(TendrilHandle)
    }

    /// All live tendrils.
    pub fn tendrils(&self) -> Vec<TendrilHandle> {
        self.0.tendrils().into_iter().map(TendrilHandle).collect()
    }
}

/// A cloneable, `Send` handle to a live tendril, reachable from any thread: the kit's
/// [`TendrilHandle`](tendril_net::runtime::TendrilHandle) (through `Deref`: framer switches,
/// `wrap`, `close`, `send_frame_nowait`, …) with a [`send_frame`](Self::send_frame) that blocks.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use bytes::Bytes;
/// use tendril_core::{Line, Tendril};
/// # struct Print;
/// # impl tendril_core::Application for Print {
/// #     fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), tendril_core::AppError> { Ok(()) }
/// # }
///
/// let manager = tendril_blocking::get_manager("tcp", "")?;
/// let handle = manager.connect(
///     "localhost:7000",
///     |t: &mut Tendril| {
///         t.set_recv_framer(Line::crlf());
///         t.set_send_framer(Line::crlf());
///         Ok(Print)
///     },
///     Default::default(),
/// )?;
/// // From any thread: blocks until the frame is queued (back-pressure), not until it is sent.
/// handle.send_frame(Bytes::from("HELLO")).unwrap();
/// handle.close();
/// manager.stop();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TendrilHandle(tendril_net::runtime::TendrilHandle);

impl Deref for TendrilHandle {
    type Target = tendril_net::runtime::TendrilHandle;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl TendrilHandle {
    /// Send a frame and block until it is queued; while the outgoing queue is above its high
    /// watermark this waits (back-pressure). From the tendril's own callbacks or acceptor it
    /// cannot wait for itself, and queues the frame instead (see
    /// [`send_frame_blocking`](tendril_net::runtime::TendrilHandle::send_frame_blocking)).
    pub fn send_frame(&self, frame: Bytes) -> Result<(), SendFailed> {
        self.0.send_frame_blocking(frame)
    }
}

/// The handle of the stream tendril whose acceptor is running, so an acceptor can keep a way
/// to reach its connection later (e.g. a chat server's list of members). `None` outside an
/// acceptor, and for datagram peers.
pub fn current_handle() -> Option<TendrilHandle> {
    tendril_net::runtime::current_handle().map(TendrilHandle)
}

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
