//! Test kit: join two connections in memory and run them, no sockets, no clock.
//!
//! Use it to test your own protocol the way Tendril's tests do. With the `rustls` feature,
//! [`tls`] adds deterministic TLS configurations: the same seed, the same bytes on the wire.
//!
//! ```
//! use bytes::Bytes;
//! use tendril_core::testkit::Pipe;
//! use tendril_core::{AppError, Application, Line, Proto, Tendril};
//!
//! #[derive(Default)]
//! struct Echo;
//! impl Application for Echo {
//!     fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
//!         t.send_frame(frame)?;
//!         Ok(())
//!     }
//! }
//! #[derive(Default)]
//! struct Collect(Vec<Bytes>);
//! impl Application for Collect {
//!     fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
//!         self.0.push(frame);
//!         Ok(())
//!     }
//! }
//!
//! let line = || Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
//! let mut pipe = Pipe::new((line(), Collect::default()), (line(), Echo));
//! pipe.client.0.send_frame(Bytes::from("ping")).unwrap();
//! pipe.run();
//! assert_eq!(pipe.client.1 .0, ["ping"]);
//! ```

use bytes::Buf;
use core::time::Duration;

use crate::{Application, Tendril};

#[cfg(feature = "std")]
pub mod net;
#[cfg(feature = "rustls")]
pub mod tls;

/// One end of a [`Pipe`]: a connection and its application.
pub trait Side {
    /// Deliver frames and events to the application.
    fn dispatch(&mut self);
    /// The connection.
    fn tendril_ref(&self) -> TendrilView<'_>;
    /// Take up to `max` bytes to send.
    fn take_outgoing(&mut self, max: usize) -> bytes::Bytes;
    /// Bytes arrived.
    fn deliver(&mut self, now: Duration, data: &[u8]);
    /// The peer sent FIN.
    fn eof(&mut self, now: Duration);
    /// Shut the write side if the connection asks; returns `true` if it did.
    fn maybe_shutdown(&mut self, now: Duration) -> bool;
    /// Pass the time.
    fn timeout(&mut self, now: Duration);
}

/// What a [`Pipe`] needs to know about a connection, whatever its frame types.
#[derive(Debug, Clone, Copy)]
pub struct TendrilView<'a> {
    /// Queued outgoing bytes.
    pub queued: usize,
    /// The connection is closed.
    pub closed: bool,
    /// The connection reads.
    pub wants_read: bool,
    /// The connection is open (not closing).
    pub open: bool,
    /// The next deadline.
    pub timeout: Option<Duration>,
    _marker: core::marker::PhantomData<&'a ()>,
}

impl<In, Out, A: Application<In, Out>> Side for (Tendril<In, Out>, A) {
    fn dispatch(&mut self) {
        self.0.dispatch(&mut self.1);
    }

    fn tendril_ref(&self) -> TendrilView<'_> {
        TendrilView {
            queued: self.0.outgoing_len(),
            closed: self.0.is_closed(),
            wants_read: self.0.wants_read(),
            open: self.0.is_open(),
            timeout: self.0.poll_timeout(),
            _marker: core::marker::PhantomData,
        }
    }

    fn take_outgoing(&mut self, max: usize) -> bytes::Bytes {
        let out = self.0.outgoing();
        let n = max.min(out.remaining()).min(out.chunk().len().max(1));
        out.copy_to_bytes(n.min(out.remaining()))
    }

    fn deliver(&mut self, now: Duration, data: &[u8]) {
        self.0.handle_data(now, data);
    }

    fn eof(&mut self, now: Duration) {
        self.0.handle_eof(now);
    }

    fn maybe_shutdown(&mut self, now: Duration) -> bool {
        if self.0.wants_shutdown() {
            self.0.handle_shutdown(now);
            return true;
        }
        false
    }

    fn timeout(&mut self, now: Duration) {
        self.0.handle_timeout(now);
    }
}

/// Two connections joined by an in-memory byte stream, with controllable chunking and time.
#[derive(Debug)]
pub struct Pipe<C, S> {
    /// The client side.
    pub client: C,
    /// The server side.
    pub server: S,
    /// Virtual time, passed to every call.
    pub now: Duration,
    client_fin: bool,
    server_fin: bool,
}

impl<C: Side, S: Side> Pipe<C, S> {
    /// Join two sides.
    pub fn new(client: C, server: S) -> Self {
        Pipe {
            client,
            server,
            now: Duration::ZERO,
            client_fin: false,
            server_fin: false,
        }
    }

    /// Run until nothing moves, delivering whole chunks.
    pub fn run(&mut self) {
        self.run_chunked(|| usize::MAX);
    }

    /// Run until nothing moves; each transfer carries at most `next_chunk()` bytes (at least 1).
    pub fn run_chunked(&mut self, mut next_chunk: impl FnMut() -> usize) {
        for _ in 0..10_000_000 {
            if !self.step(&mut next_chunk) {
                return;
            }
        }
        panic!("the pipe never went quiet");
    }

    /// Advance virtual time to `now` and fire timers on both sides.
    pub fn advance_to(&mut self, now: Duration) {
        self.now = now;
        self.client.timeout(now);
        self.server.timeout(now);
        self.run();
    }

    /// One round: dispatch both sides, move one chunk each way, pass on FINs.
    /// Returns `false` when nothing happened.
    pub fn step(&mut self, next_chunk: &mut impl FnMut() -> usize) -> bool {
        let now = self.now;
        self.client.dispatch();
        self.server.dispatch();
        let mut moved = false;
        moved |= transfer(&mut self.client, &mut self.server, now, next_chunk());
        moved |= transfer(&mut self.server, &mut self.client, now, next_chunk());
        if !self.client_fin && self.client.maybe_shutdown(now) {
            self.client_fin = true;
            self.server.eof(now);
            moved = true;
        }
        if !self.server_fin && self.server.maybe_shutdown(now) {
            self.server_fin = true;
            self.client.eof(now);
            moved = true;
        }
        if moved {
            self.client.dispatch();
            self.server.dispatch();
        }
        moved
    }
}

/// Move one chunk from `from` to `to`. A side that stopped reading for good (closing or closed)
/// swallows what it is sent, as a socket's kernel buffer would; a side paused by back-pressure
/// leaves it queued at the sender.
fn transfer(from: &mut impl Side, to: &mut impl Side, now: Duration, max: usize) -> bool {
    let view = to.tendril_ref();
    if view.open && !view.wants_read {
        return false;
    }
    let data = from.take_outgoing(max.max(1));
    if data.is_empty() {
        return false;
    }
    // A closing side may still read: the rest of a handshake its close waits for.
    if view.wants_read {
        to.deliver(now, &data);
    }
    true
}
