//! Async drivers on any runtime, written once.
//!
//! Everything an async driver does lives here: the [`Manager`], its [`Transport`]s (TCP, UDP,
//! Unix), each stream connection's task, each UDP socket's task, the [`TendrilHandle`]s and the
//! framed [`FramedTendril`]. What is left to a driver is the [`Runtime`]: spawning, a timer,
//! and registering non-blocking sockets with its reactor. `tendril-tokio` and
//! `tendril-async-std` are such adapters, each a few hundred lines.
//!
//! | module | what is in it |
//! | --- | --- |
//! | `adapter` | the traits a runtime implements: [`Runtime`], [`Timer`], [`Listener`], [`StreamIo`], [`Readiness`] |
//! | `tasks` | [`Spawner`], [`Cancellation`] and the task count `stop()` waits on |
//! | `shared` | [`Shared`]: what a manager shares with its tasks |
//! | `manager` | [`Manager`]: `start`, `connect`, `stop` and the settings |
//! | `transport` | the [`Transport`] trait and the protocol registry ([`register`], [`protocols`]) |
//! | `stream` | [`spawn_stream`] and a stream connection's task |
//! | `stream_transports` | TCP and Unix: listening, accepting, connecting |
//! | `shards` | one listening socket per shard (`SO_REUSEPORT`), registered on its shard |
//! | `udp` | UDP: one task per socket runs the core's tracker |
//! | `handle` | [`TendrilHandle`] and [`current_handle`] |
//! | `framed` | [`FramedTendril`]: a connection as a `Stream` + `Sink` |
//!
//! # Writing a driver
//!
//! There are two ways in, depending on the loop you have.
//!
//! ## An async runtime, or a reactor of your own: implement [`Runtime`]
//!
//! Then the whole [`Manager`] runs on it, with every behaviour the shared driver suite
//! specifies. `tendril-mio` is the worked example: a plain `mio` poll loop, in 300 lines of code.
//! The contract, trait by trait:
//!
//! - [`Runtime::spawn`] runs a task to completion. Tasks are `Send`; a runtime may run them on
//!   any thread, one at a time each.
//! - [`Runtime::timer`] gives a [`Timer`] that does not fire before its first
//!   [`reset`](Timer::reset). [`poll_fired`](Timer::poll_fired) registers the waker and returns
//!   `Ready` once the instant has passed. The kit resets it only when the core's deadline moves,
//!   and stops polling it once fired, until the next reset.
//! - [`Runtime::listener`] registers a non-blocking listening socket. Its
//!   [`poll_accept`](Listener::poll_accept) hands out accepted sockets already registered (as by
//!   [`Runtime::stream`]).
//! - [`Runtime::stream`] registers a non-blocking stream socket, connected or still connecting.
//!   [`StreamIo::poll_read`] appends at most `limit` bytes to the buffer (use [`read_zeroed`] if
//!   your read wants initialised memory); `Ok(0)` is the peer's EOF.
//!   [`StreamIo::poll_write`] writes from the slices in order. [`StreamIo::poll_writable`] tells
//!   when a connect finished. Each returns `Pending` only after registering the waker.
//! - [`Runtime::udp`] registers a non-blocking datagram socket. The kit does its own system
//!   calls on it (batched receives with destination addresses, GSO sends), each inside
//!   [`Readiness::try_io`]; when one fails with `WouldBlock`, the runtime forgets the readiness
//!   it had cached, and [`Readiness::poll_ready`] waits for the reactor again.
//! - [`Runtime::resolve`] has a default (IP literals at once, names on a short-lived thread).
//! - [`Runtime::shards`] and [`Runtime::spawn_on`] have defaults: one shard. A thread-per-core
//!   runtime (threads that each run a reactor of their own and share nothing) overrides both,
//!   and then keeps this promise: [`spawn`](Runtime::spawn) and the registrations
//!   ([`listener`](Runtime::listener), [`udp`](Runtime::udp), [`stream`](Runtime::stream))
//!   called from a shard's own thread stay on that shard; called from any other thread they go
//!   to shard 0. The kit does the rest: a TCP or UDP manager listens with one `SO_REUSEPORT`
//!   socket per shard, each registered by a task [spawned on](Runtime::spawn_on) its shard, so
//!   what that socket accepts (connections, UDP peers, by the kernel's hash of their 4-tuple)
//!   is registered, spawned and served on that shard's thread. Unix sockets listen once, on
//!   shard 0. A manager with a custom [`Spawner`] has one shard. `tendril-tokio`'s `Sharded`
//!   is the worked example.
//!
//! Readiness is edge-triggered in spirit: "ready" is a hint that the next system call may
//! succeed, never a promise, and a call that would block is always followed by a `poll_ready`
//! before the task sleeps.
//!
//! ## A loop that is not async: drive the step functions
//!
//! A stream connection is a [`StreamConn`](crate::StreamConn): its documentation gives the
//! order of calls (step; shut down, close or wait; then report commands, writes, reads and the
//! deadline). The blocking driver runs it on a thread per connection; the kit's async task runs
//! it from a poll function.
//!
//! A UDP socket is the core's [`Tracker`](tendril_core::tracker::Tracker), made with
//! [`tracker_config`](crate::tracker_config) from the manager's settings. Each turn, in this
//! order (the kit's UDP task is the reference):
//!
//! 1. Commands from handles: `tracker.with(now, id, |t, _| apply_now(t, command))`
//!    ([`apply_now`](crate::command::apply_now)); a peer that is gone is skipped.
//! 2. Readable: receive a batch ([`UdpIo::recv`](crate::UdpIo::recv)) and hand it to
//!    `tracker.handle_datagrams(now, …)`; then settle (step 4) before the next batch, so replies
//!    leave while the peers' next datagrams arrive. Per-datagram errors (ICMP reports) are one
//!    peer's trouble, not the socket's.
//! 3. The deadline (`tracker.poll_timeout()`) passed: `tracker.handle_timeout(now)`.
//! 4. Settle: `tracker.poll_event()` until `None` (an `Accepted` peer gets a handle and joins the
//!    live table, a `Closed` one leaves it), then `tracker.poll_transmit()` until `None` into an
//!    [`Outbox`](crate::Outbox), and [`Outbox::flush`](crate::Outbox::flush) it; what would
//!    block waits for the socket to be writable.
//! 5. Stopping: `tracker.close_all(now)`, and keep turning until the tracker and the outbox are
//!    both empty. The socket itself failing: `tracker.fail_all(now, reason)`, settle, end.
//!
//! Panics in applications are already contained: every application the
//! [`acceptor`](crate::acceptor) makes is [`Isolated`](crate::Isolated).
//!
//! A driver's whole `get_manager`:
//!
//! ```
//! use std::sync::Arc;
//! # use tendril_net::runtime::{Listener, Readiness, Runtime, StreamIo, Timer};
//! # struct MyRuntime;
//! # impl Runtime for MyRuntime {
//! #     fn spawn(&self, _: futures::future::BoxFuture<'static, ()>) {}
//! #     fn timer(&self) -> Box<dyn Timer> { unimplemented!() }
//! #     fn listener(&self, _: socket2::Socket) -> std::io::Result<Box<dyn Listener>> { unimplemented!() }
//! #     fn udp(&self, _: std::net::UdpSocket) -> std::io::Result<Box<dyn Readiness>> { unimplemented!() }
//! #     fn stream(&self, _: socket2::Socket) -> std::io::Result<Box<dyn StreamIo>> { unimplemented!() }
//! # }
//!
//! pub fn get_manager(proto: &str, endpoint: &str) -> std::io::Result<tendril_net::runtime::Manager> {
//!     tendril_net::runtime::Manager::new(Arc::new(MyRuntime), proto, endpoint)
//! }
//! # assert!(get_manager("tcp", "127.0.0.1:0").is_ok());
//! ```

mod adapter;
mod framed;
mod handle;
mod manager;
mod shards;
mod shared;
mod stream;
mod stream_transports;
mod tasks;
mod transport;
mod udp;

pub use adapter::{read_zeroed, Interest, Listener, Readiness, Runtime, StreamIo, Timer};
pub use framed::{FramedTendril, Incoming};
pub use handle::{current_handle, SendFailed, TendrilHandle};
pub use manager::Manager;
pub use shared::Shared;
pub use stream::spawn_stream;
pub use tasks::{Cancellation, Spawner};
pub use transport::{protocols, register, Transport};
