//! Testing your protocol without sockets.
//!
//! Tendril's core never touches a socket or a clock, so a protocol built on it can be tested
//! the way Tendril tests itself: in memory, deterministically, and under faults no loopback
//! socket produces. There are three levels; most protocols want all three.
//!
//! # 1. One connection, by hand
//!
//! Feed a [`Tendril`] bytes, dispatch to your application, read what it wrote. This is the
//! unit test of a parser or a state machine (see [`Application`] for one).
//!
//! # 2. Two connections joined: [`Pipe`]
//!
//! [`Pipe`] joins a client and a server over a perfect in-memory stream and runs them until
//! nothing moves. [`Pipe::run_chunked`] cuts every transfer to a size you choose, the quickest
//! way to check that your framing survives a split; [`Pipe::advance_to`] moves the clock.
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
//! pipe.run_chunked(|| 1); // one byte per read
//! assert_eq!(pipe.client.1 .0, ["ping"]);
//! ```
//!
//! # 3. A hostile network: [`net`]
//!
//! [`net::Net`] is a seeded network of many endpoints: listeners and the connections made to
//! them, UDP sockets with their [`Tracker`](crate::tracker::Tracker)s, on virtual time that
//! jumps to the next deadline. Its [`Faults`](net::Faults) split and delay writes, hand bytes
//! over one at a time, reset connections and hang up on them mid-frame or mid-handshake, and
//! lose, double and reorder datagrams. [`net::check`] runs a test over many seeds and, when one
//! fails, prints the seed, what the network did last, and how to replay it:
//! `TENDRIL_SIM_SEED=<seed> cargo test <test>`. Its module docs hunt down a real bug in a few
//! seeds.
//!
//! For TLS, derive the configurations from the seed, so a failing run replays byte for byte:
//! [`tls::pair`]`(net.seed())`, then wrap the tendrils in the listener's factory and before
//! connecting. Tendril's own `tests/sim.rs` runs 400 seeds this way, half of them over TLS; the
//! examples' `smtp_sim.rs` and `dns_sim.rs` run SMTP (pipelining, DATA, STARTTLS) and DNS (UDP,
//! then TCP after a truncated answer) on the hostile preset.
//!
//! ## Property tests on the network
//!
//! The seed is one more input, so a property test can draw it with the rest, and proptest
//! shrinks a failure to the smallest frames that still break. In a test file this is a
//! `proptest! { #[test] fn … }`; here it is the runner underneath:
//!
//! ```
//! use bytes::Bytes;
//! use proptest::prelude::*;
//! use proptest::test_runner::TestRunner;
//! use std::net::SocketAddr;
//! use tendril_core::testkit::net::{Faults, Net};
//! use tendril_core::{AppError, Application, Line, Proto, Tendril};
//!
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
//! let lines = (any::<u64>(), prop::collection::vec("[ -~]{0,40}", 1..20));
//! TestRunner::default()
//!     .run(&lines, |(seed, lines)| {
//!         let mut net = Net::new(seed, Faults::lossy());
//!         let line = || Tendril::new(Proto::TCP, Line::lf(), Line::lf());
//!         let addr: SocketAddr = "10.0.0.1:7".parse().unwrap();
//!         let server = net.listen(addr, line, |_| Ok(Echo));
//!         let mut client = line();
//!         for text in &lines {
//!             client.send_frame(Bytes::from(text.clone())).unwrap();
//!         }
//!         let link = net.connect(&server, client, Collect::default());
//!         net.run();
//!         prop_assert_eq!(&net.get(link.client).1 .0, &lines);
//!         Ok(())
//!     })
//!     .unwrap();
//! ```
//!
//! With the `rustls` feature, [`tls`] adds deterministic TLS configurations: the same seed, the
//! same bytes on the wire.

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
