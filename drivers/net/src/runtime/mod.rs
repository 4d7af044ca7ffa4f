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
//! | `udp` | UDP: one task per socket runs the core's tracker |
//! | `handle` | [`TendrilHandle`] and [`current_handle`] |
//! | `framed` | [`FramedTendril`]: a connection as a `Stream` + `Sink` |
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
