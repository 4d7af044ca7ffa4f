//! # Tendril on Linux io_uring
//!
//! A completion-based driver: the kernel receives into buffers it picks from a pool as data
//! arrives, accepts connections in a stream of completions, and takes every submission of a
//! loop turn in one system call. Each shard is a thread with its own ring; nothing on the path
//! of a frame is shared between shards.
//!
//! The manager, TCP, UDP and Unix sockets, handles, framing, TLS and the shared driver suite
//! are the driver kit's ([`tendril_net::runtime`]), the same code every other driver runs;
//! this crate is the kit's [`Runtime`](tendril_net::runtime::Runtime) on io_uring.
//!
//! | what | how |
//! | --- | --- |
//! | accepting | one multishot accept per listening socket, paused while 64 connections wait |
//! | receiving | one multishot receive per connection into a provided-buffer ring (1,024 × 16 KiB per shard, of which only as many are posted as receives have needed at once, at first 16, and the most recently used first, so the kernel writes into buffers still in the cache): an idle connection holds no buffer; a connection the kit stops reading (its peer sends without reading the replies) moves what it holds, at most eight buffers, to memory of its own and gives the buffers back, then receives one buffer at a time until the kit has read it, so such peers cannot starve the others |
//! | sending | straight from the kit's queue, vectored, in one non-blocking `sendmsg`, when the socket has room; when it would block, the bytes (up to 256 KiB) are copied once into a buffer the ring owns and the ring sends them as room appears |
//! | UDP | the kit's batched `recvmmsg` and GSO `sendmsg`, woken by one-shot polls |
//! | timers | a heap per shard; the loop waits in `io_uring_enter` until the next deadline |
//! | waking from other threads | a bell (a socket pair) the loop polls, rung only while the loop sleeps |
//!
//! ## Why the `io-uring` crate, not a runtime
//!
//! monoio and compio are runtimes: each brings its own executor, its own buffer traits and its
//! own framing, and a driver on either would be an adapter over an adapter (their sockets,
//! then the kit's). The kit already is the runtime-independent part — it needs a way to wait
//! for readable bytes, write bytes, accept, sleep and spawn. The low-level
//! [`io-uring`](https://docs.rs/io-uring) crate gives exactly the ring (submission and
//! completion queues, the opcodes, provided-buffer rings) and nothing else, so the driver owns
//! the loop: one `io_uring_enter` per turn, buffers lent from one pool per shard, and no second
//! executor. The price is `unsafe` (the kernel writes into memory it was lent); all of it is in
//! one module, `sys`, each block with its reason.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use tendril_core::{AppError, Application, Line, Tendril};
//!
//! struct Echo;
//! impl Application for Echo {
//!     fn recv_frame(&mut self, t: &mut Tendril, frame: bytes::Bytes) -> Result<(), AppError> {
//!         t.send_frame(frame)?;
//!         Ok(())
//!     }
//! }
//!
//! let manager = match tendril_uring::get_manager("tcp", "127.0.0.1:0") {
//!     Ok(manager) => manager,
//!     Err(e) => {
//!         eprintln!("{e}"); // names why io_uring cannot be used here
//!         return Ok(());
//!     }
//! };
//! futures::executor::block_on(manager.start(
//!     |t: &mut Tendril| {
//!         t.set_recv_framer(Line::crlf());
//!         t.set_send_framer(Line::crlf());
//!         Ok(Echo)
//!     },
//!     Default::default(),
//! ))?;
//! assert!(manager.local_addr().is_some());
//! futures::executor::block_on(manager.stop());
//! # Ok(()) }
//! ```

#[cfg(target_os = "linux")]
mod io;
#[cfg(target_os = "linux")]
mod shard;
#[cfg(target_os = "linux")]
mod sys;

mod unavailable;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tendril_net::runtime::Manager;

/// A manager for `proto` (`"tcp"`, `"udp"`, `"unix"` or a registered protocol) at `endpoint`,
/// on the process's one-shard io_uring runtime. Fails with
/// [`Unsupported`](std::io::ErrorKind::Unsupported), naming the cause, where io_uring cannot
/// be used (an old kernel, `io_uring_disabled`, a seccomp filter).
///
/// ```
/// match tendril_uring::get_manager("udp", "127.0.0.1:0") {
///     Ok(manager) => assert!(!manager.running()),
///     Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported),
/// }
/// ```
pub fn get_manager(proto: &str, endpoint: &str) -> std::io::Result<Manager> {
    get_sharded_manager(proto, endpoint, 1)
}

/// A manager on the process's io_uring runtime of `shards` threads (one ring each). Listening
/// TCP and UDP sockets get one socket per shard, bound with `SO_REUSEPORT`, so the kernel
/// spreads connections and UDP peers over the shards and keeps each on one.
///
/// ```
/// if let Ok(manager) = tendril_uring::get_sharded_manager("tcp", "127.0.0.1:0", 2) {
///     assert_eq!(manager.endpoint(), "127.0.0.1:0");
/// }
/// ```
pub fn get_sharded_manager(proto: &str, endpoint: &str, shards: usize) -> std::io::Result<Manager> {
    Manager::new(Arc::new(runtime(shards)?), proto, endpoint)
}

/// Whether io_uring can be used here: `Ok` once the process's one-shard runtime runs, or the
/// error [`get_manager`] would return, which names the cause.
///
/// ```
/// if let Err(e) = tendril_uring::available() {
///     println!("skipping: {e}");
/// }
/// ```
pub fn available() -> std::io::Result<()> {
    runtime(1).map(drop)
}

/// The process's io_uring runtime of `shards` threads, started on first use (its threads run
/// for the rest of the process, so there is one per shard count).
///
/// ```
/// if let Ok(uring) = tendril_uring::runtime(1) {
///     let manager = tendril_net::runtime::Manager::new(std::sync::Arc::new(uring), "tcp", "")?;
///     assert!(!manager.running());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn runtime(shards: usize) -> std::io::Result<Uring> {
    /// A runtime, or why it did not start (`io::Error` is not `Clone`).
    type Started = Result<Uring, (std::io::ErrorKind, String)>;
    static RUNTIMES: Mutex<Option<HashMap<usize, Started>>> = Mutex::new(None);
    let mut runtimes = tendril_net::lock(&RUNTIMES);
    let started = runtimes
        .get_or_insert_with(HashMap::new)
        .entry(shards.max(1))
        .or_insert_with(|| Uring::start(shards.max(1)).map_err(|e| (e.kind(), e.to_string())));
    started
        .clone()
        .map_err(|(kind, message)| std::io::Error::new(kind, message))
}

/// The io_uring runtime: a handle to its shards.
#[derive(Clone)]
pub struct Uring {
    #[cfg(target_os = "linux")]
    id: usize,
    #[cfg(target_os = "linux")]
    shards: Arc<[Arc<shard::Shard>]>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring").finish_non_exhaustive()
    }
}

#[cfg(not(target_os = "linux"))]
impl Uring {
    fn start(_shards: usize) -> std::io::Result<Uring> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "io_uring is Linux's: this is not Linux",
        ))
    }
}

#[cfg(target_os = "linux")]
mod runtime {
    use super::shard::{self, Shard};
    use super::Uring;
    use futures::future::BoxFuture;
    use socket2::Socket;
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tendril_net::runtime::{Listener, Readiness, Runtime, StreamIo, Timer};

    impl Uring {
        pub(crate) fn start(shards: usize) -> io::Result<Uring> {
            static NEXT: AtomicUsize = AtomicUsize::new(1);
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            let shards = (0..shards)
                .map(|index| Shard::start(id, index))
                .collect::<io::Result<Vec<_>>>()
                .map_err(super::unavailable::explain)?;
            Ok(Uring {
                id,
                shards: shards.into(),
            })
        }

        /// The shard of the calling thread, or the first one off the shards' threads.
        fn here(&self) -> &Arc<Shard> {
            let (runtime, index) = shard::current();
            let index = if runtime == self.id { index } else { 0 };
            &self.shards[index]
        }

        fn register(&self, socket: Socket, listening: bool) -> crate::io::Registered {
            crate::io::Source::register(socket, self.here().clone(), listening)
        }
    }

    impl Runtime for Uring {
        fn spawn(&self, task: BoxFuture<'static, ()>) {
            self.here().spawn(task);
        }

        fn shards(&self) -> usize {
            self.shards.len()
        }

        fn spawn_on(&self, shard: usize, task: BoxFuture<'static, ()>) {
            self.shards[shard % self.shards.len()].spawn(task);
        }

        fn timer(&self) -> Box<dyn Timer> {
            self.here().timer()
        }

        fn listener(&self, socket: Socket) -> io::Result<Box<dyn Listener>> {
            // The ring waits for the socket; a blocking socket keeps it from returning EAGAIN.
            socket.set_nonblocking(false)?;
            Ok(Box::new(self.register(socket, true)))
        }

        fn udp(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>> {
            // The kit does its own non-blocking system calls on it.
            socket.set_nonblocking(true)?;
            Ok(Box::new(self.register(socket.into(), false)))
        }

        fn stream(&self, socket: Socket) -> io::Result<Box<dyn StreamIo>> {
            socket.set_nonblocking(false)?;
            Ok(Box::new(self.register(socket, false)))
        }
    }
}
