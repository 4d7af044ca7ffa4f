//! A TLS server connection: a `Line`-framed TCP tendril wrapped in a TLS server layer from the
//! deterministic test kit (`testkit::tls`, seed 0), talking to a deterministic TLS client tendril
//! kept inside the target. Ops hand the server raw bytes, or the client's real output (whole, cut
//! short, or with a byte flipped), hand the server's output to the client (all or part: partial
//! writes), make the client send a line, close or half-close, and the server's application send,
//! close, finish, abort or pause; plus EOF, socket errors, time steps and shutdowns when asked.
//! The server is read only while it `wants_read`, with at most one read in flight after that
//! turned false, as a driver does.
//!
//! Invariants, beyond "no panic": `closed` is reported at most once and nothing is delivered
//! after it; a closed connection stays closed; the receive buffer stays within the bound worked
//! out at `BUFFER_BOUND`; and once the peer has gone and the server is driven out (EOF, writes
//! taken whole, shutdown when asked, timers fired), it has reported `closed` exactly once,
//! within the linger and handshake timeouts, and holds no buffers.
//!
//! Every run starts the random streams over (`Seeded::rewind`), so an input means the same
//! handshake bytes every time and a crash replays.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Buf, Bytes};
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use tendril_core::testkit::tls;
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, CloseReason, Config, Line, Proto, Tendril};

/// The longest line the server frames (more closes the connection).
const MAX_LINE: usize = 256;
/// The largest read handed to the server at once (longer data goes in several reads).
const READ_CAP: usize = 512;
/// The longest line the client sends (before CRLF).
const CLIENT_LINE_CAP: usize = 200;
/// The most plaintext one TLS record can carry (RFC 8446 §5.1), plus room for its header, tag
/// and padding. A record is not one line: the client's layer encrypts whatever its outgoing
/// queue holds in one piece, so lines queued together (during the handshake, or before the
/// driver wrote) share records of up to 16 KiB. (The first long run found this: 10,446 bytes
/// against a bound that took one record for one line.)
const MAX_RECORD: usize = 16 * 1024 + 256;
/// The receive buffer's bound (plaintext not framed yet), checked after every op:
///
/// - After delivery ran, `Line` keeps at most a partial line: `MAX_LINE` bytes plus a `\r`.
/// - Complete lines stay buffered only when delivery stopped (back-pressure or a pause). The
///   driver then stops reading (`wants_read` is false), so at most two reads arrive before
///   delivery drains the buffer again: the one that filled it and the one in flight. (Once
///   false, `wants_read` turns true again only after delivery ran: see the fixed bug
///   `read-before-delivery` where this is checked.)
/// - One read releases the plaintext of the records it completes: at most its own bytes plus the
///   rest of a record begun in an earlier read (rustls holds a record until its last byte), so
///   under `READ_CAP + MAX_RECORD`. Only the client's genuine records release plaintext: raw or
///   corrupted bytes fail the record's authentication and close the connection.
const BUFFER_BOUND: usize = MAX_LINE + 1 + 2 * (READ_CAP + MAX_RECORD);
/// At most this many ops per input.
const MAX_OPS: usize = 256;

#[derive(Debug)]
enum Op {
    /// Raw bytes from the peer (at most `READ_CAP` of them).
    Read(Vec<u8>),
    /// Hand the server up to this many bytes of the client's output (0: all of it).
    Forward(u16),
    /// Hand the server all of the client's output, with the byte at `at` (modulo the length)
    /// xored with `xor` (at least 1).
    Flip {
        at: u16,
        xor: u8,
    },
    /// Hand the client up to this many bytes of the server's output (0: all of it): the socket
    /// took that much.
    Reply(u16),
    /// The client sends a line (CR and LF taken out, at most `CLIENT_LINE_CAP` bytes).
    ClientSend(Vec<u8>),
    /// The client sends `1 + count % 16` lines of `len` bytes (at most `CLIENT_LINE_CAP`): many
    /// lines from a short input, for back-pressure.
    ClientLines {
        count: u8,
        len: u8,
    },
    /// The client closes (its `close_notify` goes out with its next output).
    ClientClose,
    /// The client half-closes.
    ClientFinish,
    /// The client shuts its write side down, if it asks to: FIN reaches the server after the
    /// bytes before it.
    ClientShutdown,
    /// The peer sent FIN.
    Eof,
    /// The socket failed.
    Error,
    /// Time passes (milliseconds); both sides' timers fire.
    Tick(u16),
    /// The server's application sends a line (as given, so it may be refused).
    Send(Vec<u8>),
    Close,
    Finish,
    Abort,
    Pause(bool),
    /// The server's driver shuts the write side down, if it asks to.
    Shutdown,
}

/// Bytes: a little-endian `u16` length, then that many bytes (or what is left).
fn bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let len = usize::from(u16::arbitrary(u)?).min(u.len());
    Ok(u.bytes(len)?.to_vec())
}

// A compact form, so that seeds stay close to the wire bytes (see `make-seeds.py`): each op is a
// tag byte (taken modulo the number of ops) and its fields in order, integers little-endian.
impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? % 18 {
            0 => Op::Read(bytes(u)?),
            1 => Op::Forward(u16::arbitrary(u)?),
            2 => Op::Flip {
                at: u16::arbitrary(u)?,
                xor: u8::arbitrary(u)?,
            },
            3 => Op::Reply(u16::arbitrary(u)?),
            4 => Op::ClientSend(bytes(u)?),
            5 => Op::ClientClose,
            6 => Op::ClientFinish,
            7 => Op::ClientShutdown,
            8 => Op::Eof,
            9 => Op::Error,
            10 => Op::Tick(u16::arbitrary(u)?),
            11 => Op::Send(bytes(u)?),
            12 => Op::Close,
            13 => Op::Finish,
            14 => Op::Abort,
            15 => Op::Pause(bool::arbitrary(u)?),
            16 => Op::Shutdown,
            _ => Op::ClientLines {
                count: u8::arbitrary(u)?,
                len: u8::arbitrary(u)?,
            },
        })
    }
}

#[derive(Debug)]
struct Input {
    /// `Config::handshake_timeout` in milliseconds (+1), or none.
    handshake: Option<u16>,
    /// `Config::idle_timeout` in milliseconds (+1), or none.
    idle: Option<u16>,
    /// `Config::linger` in milliseconds (+1); always set, so that a close ends.
    linger: u16,
    /// `Config::high_watermark` (at least 1).
    high: u16,
    ops: Vec<Op>,
}

// The options (an `Option` is a byte whose low bit says `Some`, then the value), then ops until
// the input ends.
impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let handshake = Option::<u16>::arbitrary(u)?;
        let idle = Option::<u16>::arbitrary(u)?;
        let linger = u16::arbitrary(u)?;
        let high = u16::arbitrary(u)?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(Op::arbitrary(u)?);
        }
        Ok(Input {
            handshake,
            idle,
            linger,
            high,
            ops,
        })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// The server's application: echoes every line, and watches the callbacks.
#[derive(Default)]
struct Server {
    frames: u64,
    closes: u32,
    after_close: bool,
}

impl Application for Server {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.frames += 1;
        self.after_close |= self.closes > 0;
        // Refused when full or closing: the fuzzer cares about what the server survives.
        let _ = t.send_frame(frame);
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, _: &CloseReason) {
        self.closes += 1;
    }
}

/// The client's application: takes its frames and nothing else.
struct Client;

impl Application for Client {
    fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), AppError> {
        Ok(())
    }
}

/// The server's socket as its driver sees it.
///
/// One known problem is steered around, not fuzzed: after the server's own `close_notify` (a
/// half-close, `Tendril::finish`), rustls 0.23 fails the debug assertion
/// `!self.sent_fatal_alert` in `CommonState::send_fatal_alert` when the peer's bytes then
/// fail (a bad record header, a record that does not decrypt), because `send_close_notify` set
/// that flag (rustls issue #959, open). Release builds only send the fatal alert after the
/// `close_notify`. So once the server half-closed, only genuine client bytes reach it, and
/// none at all if raw or corrupted bytes went in before (a bogus record begun before the
/// half-close would fail after it). The test kit's
/// `garbage_after_a_half_close_meets_rustls_debug_assertion` tracks the upstream state.
#[derive(Default)]
struct Socket {
    /// The server's application half-closed (`finish`).
    half_closed: bool,
    /// Raw or corrupted bytes went in.
    corrupted: bool,
    /// A read was handed in while `wants_read` was false: the one read in flight is used up.
    late_read: bool,
    /// The peer sent FIN: nothing more arrives after the bytes before it.
    peer_fin: bool,
    /// The server has been told of the FIN.
    eof_seen: bool,
}

impl Socket {
    /// `true` if the driver may read now: while the server wants to read, and once more after
    /// that turned false (a read already in flight).
    fn may_read(&mut self, server: &Tendril) -> bool {
        if server.wants_read() {
            self.late_read = false;
            true
        } else if !self.late_read {
            self.late_read = true;
            true
        } else {
            false
        }
    }

    /// Hand raw `data` to the server in reads of at most `READ_CAP`, as long as the driver may
    /// read, delivering after each read as a driver does (the rest is dropped).
    fn read(&mut self, server: &mut Tendril, app: &mut Server, now: Duration, data: &[u8]) {
        if self.half_closed {
            return;
        }
        for piece in data.chunks(READ_CAP) {
            if self.peer_fin || !self.may_read(server) {
                break;
            }
            server.handle_data(now, piece);
            server.dispatch(app);
            self.corrupted = true;
        }
    }

    /// Take all of the client's output, xor the byte at `at` (modulo the length) with `xor`
    /// (at least 1), and hand it to the server as `read` does. What the server does not take is
    /// lost: the stream is corrupted either way.
    fn flip(
        &mut self,
        client: &mut Tendril,
        server: &mut Tendril,
        app: &mut Server,
        now: Duration,
        at: u16,
        xor: u8,
    ) {
        if self.half_closed || client.outgoing_len() == 0 {
            return;
        }
        let mut data = client.outgoing().take_all().to_vec();
        let at = usize::from(at) % data.len();
        data[at] ^= xor.max(1);
        self.corrupted = true;
        self.read(server, app, now, &data);
    }

    /// Hand the server up to `max` bytes (0: all) of what the client has queued, in reads of
    /// at most `READ_CAP` (each delivered before the next), as long as the driver may read; the
    /// rest stays queued at the client.
    fn forward(
        &mut self,
        client: &mut Tendril,
        server: &mut Tendril,
        app: &mut Server,
        now: Duration,
        max: u16,
    ) {
        if self.half_closed && self.corrupted {
            return;
        }
        let mut left = match usize::from(max) {
            0 => usize::MAX,
            n => n,
        };
        while left > 0 && client.outgoing_len() > 0 && !self.peer_fin && self.may_read(server) {
            let n = left.min(READ_CAP).min(client.outgoing_len());
            let piece = client.outgoing().copy_to_bytes(n);
            server.handle_data(now, &piece);
            server.dispatch(app);
            left -= n;
        }
    }

    /// The peer sent FIN; the server reads it when the driver next reads.
    fn fin(&mut self, server: &mut Tendril, now: Duration) {
        self.peer_fin = true;
        self.deliver_eof(server, now);
    }

    fn deliver_eof(&mut self, server: &mut Tendril, now: Duration) {
        if self.peer_fin && !self.eof_seen && self.may_read(server) {
            self.eof_seen = true;
            server.handle_eof(now);
        }
    }
}

fn line() -> Tendril {
    Tendril::new(
        Proto::TCP,
        Line::crlf().max_length(MAX_LINE),
        Line::crlf().max_length(MAX_LINE),
    )
}

/// Take up to `max` bytes (0: all) of what `t` has queued.
fn take(t: &mut Tendril, max: u16) -> Bytes {
    let out = t.outgoing();
    let n = match usize::from(max) {
        0 => out.remaining(),
        n => n.min(out.remaining()),
    };
    out.copy_to_bytes(n)
}

fuzz_target!(|input: Input| {
    let (seeded, server_config, client_config) = tendril_core_fuzz::tls_setup();
    seeded.rewind();

    let mut config = Config::default();
    config.handshake_timeout = input
        .handshake
        .map(|ms| Duration::from_millis(u64::from(ms) + 1));
    config.idle_timeout = input
        .idle
        .map(|ms| Duration::from_millis(u64::from(ms) + 1));
    config.linger = Some(Duration::from_millis(u64::from(input.linger) + 1));
    config.high_watermark = usize::from(input.high).max(1);
    config.low_watermark = config.high_watermark / 2;
    config.read_size = READ_CAP;
    let mut now = Duration::ZERO;
    let mut server = line().with_config(config).started_at(now);
    server.wrap(TlsLayer::server(server_config.clone()).expect("a server layer"));
    let mut client = line().started_at(now);
    client.wrap(TlsLayer::client(client_config.clone(), tls::server_name()).expect("a client"));

    let mut app = Server::default();
    let mut socket = Socket::default();
    let mut client_shut = false;
    let mut server_shut = false;
    let mut closed_before = false;
    for op in input.ops {
        let write = matches!(op, Op::Reply(_));
        match op {
            Op::Read(data) => {
                socket.read(
                    &mut server,
                    &mut app,
                    now,
                    &data[..data.len().min(READ_CAP)],
                );
            }
            Op::Forward(max) => socket.forward(&mut client, &mut server, &mut app, now, max),
            Op::Flip { at, xor } => socket.flip(&mut client, &mut server, &mut app, now, at, xor),
            Op::Reply(max) => {
                let data = take(&mut server, max);
                if !server_shut {
                    client.handle_data(now, &data);
                }
                // After the write side was shut, a write fails and the driver drops the bytes.
            }
            Op::ClientSend(mut line) => {
                line.retain(|b| *b != b'\r' && *b != b'\n');
                line.truncate(CLIENT_LINE_CAP);
                let _ = client.send_frame(Bytes::from(line));
            }
            Op::ClientLines { count, len } => {
                let len = usize::from(len).min(CLIENT_LINE_CAP);
                for i in 0..1 + count % 16 {
                    let _ = client.send_frame(Bytes::from(vec![b'a' + i; len]));
                }
            }
            Op::ClientClose => client.close(),
            Op::ClientFinish => client.finish(),
            Op::ClientShutdown => {
                if !client_shut && client.wants_shutdown() {
                    client_shut = true;
                    client.handle_shutdown(now);
                    socket.fin(&mut server, now);
                }
            }
            Op::Eof => socket.fin(&mut server, now),
            Op::Error => server.handle_error(now, "connection reset"),
            Op::Tick(ms) => {
                now += Duration::from_millis(u64::from(ms));
                server.handle_timeout(now);
                client.handle_timeout(now);
            }
            Op::Send(line) => {
                let _ = server.send_frame(Bytes::from(line));
            }
            Op::Close => server.close(),
            Op::Finish => {
                server.finish();
                socket.half_closed = true;
            }
            Op::Abort => server.abort(),
            Op::Pause(paused) => server.pause_recv(paused),
            Op::Shutdown => {
                if !server_shut && server.wants_shutdown() {
                    server_shut = true;
                    server.handle_shutdown(now);
                    // Every byte before the FIN has reached the client (`wants_shutdown` waits
                    // for the queue to be taken).
                    client.handle_eof(now);
                }
            }
        }
        // A FIN the driver could not read yet is read once it reads again.
        socket.deliver_eof(&mut server, now);
        // Every input is delivered at once. A write is not: a driver writes and then reads in
        // one turn of its loop (the Tokio driver does), so the next op may read before
        // delivery runs again.
        if !write {
            server.dispatch(&mut app);
        }
        client.dispatch(&mut Client);

        assert!(app.closes <= 1, "closed reported {} times", app.closes);
        assert!(!app.after_close, "a frame after closed");
        if closed_before {
            assert!(server.is_closed(), "reopened after closing");
        }
        closed_before = app.closes == 1;
        // The bug `read-before-delivery` (fuzz/regressions/tls/), fixed: a write that took the
        // queue below the high watermark made `wants_read` true while complete lines still
        // waited for delivery, so the read a driver makes next, before it delivers (the Tokio
        // driver writes, then reads, in one turn), added to them every round.
        assert!(
            server.buffered().len() <= BUFFER_BOUND,
            "{} bytes buffered, more than {BUFFER_BOUND}",
            server.buffered().len()
        );
    }

    // The peer goes away: it sends FIN and takes whatever it is sent. Driven as the simplest
    // driver does (every write taken whole, shutdown when asked, timers when due), the server
    // must close, within the linger and handshake timeouts, and give back its buffers.
    socket.peer_fin = true;
    server.pause_recv(false);
    let start = now;
    let config = *server.config();
    let bound =
        start + config.linger.unwrap_or_default() + config.handshake_timeout.unwrap_or_default();
    for _ in 0..10_000 {
        server.dispatch(&mut app);
        let wrote = !server.outgoing().take_all().is_empty();
        if server.wants_shutdown() {
            server.handle_shutdown(now);
            server.dispatch(&mut app);
        }
        if server.is_closed() {
            break;
        }
        if !socket.eof_seen && server.wants_read() {
            socket.deliver_eof(&mut server, now);
            continue;
        }
        if wrote {
            // The queue drained: delivery held back by it goes on.
            continue;
        }
        match server.poll_timeout() {
            Some(at) => {
                now = now.max(at);
                server.handle_timeout(now);
            }
            None => panic!("not closed and no timer: {server:?}"),
        }
    }
    assert!(server.is_closed(), "never closed: {server:?}");
    assert_eq!(app.closes, 1, "closed reported {} times", app.closes);
    assert!(!app.after_close, "a frame after closed");
    assert!(now <= bound, "closed at {now:?}, after {bound:?}");
    assert_eq!(server.heap_bytes(), 0, "buffers kept after closing");
});
