//! The connection state machine: an arbitrary sequence of reads, EOFs, errors, partial writes,
//! framer switches, wraps, sends, closes and time steps. Invariants, beyond "no panic":
//! frames arrive in order and unchanged (the peer's bytes are well-formed), `closed` is reported
//! at most once and last, the receive buffer stays within the framer's bound plus the reads a
//! driver may take (it honours `wants_read`, with one read in flight), and the outgoing queue
//! never runs past the high watermark by more than one frame.
#![no_main]

use arbitrary::Arbitrary;
use bytes::{Buf, Bytes};
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use tendril_core::{
    AppError, Application, Chunk, CloseReason, Config, Framer, Layer, LayerError, LengthPrefixed,
    Line, Outgoing, Proto, Tendril,
};

#[derive(Arbitrary, Debug)]
enum Op {
    /// Bytes from the peer.
    Read(Vec<u8>),
    /// A well-formed length-prefixed frame from the peer, cut in two reads.
    Frame {
        body: Vec<u8>,
        cut: u8,
    },
    Eof,
    Error,
    /// The socket took this many queued bytes.
    Write(u16),
    Send(Vec<u8>),
    SwitchRecv(u8),
    SwitchSend(u8),
    Wrap,
    Close,
    Finish,
    Abort,
    Pause(bool),
    Tick(u16),
    Shutdown,
}

#[derive(Arbitrary, Debug)]
struct Input {
    idle: Option<u8>,
    frame_timeout: Option<u8>,
    high: u16,
    ops: Vec<Op>,
}

/// Flips bits both ways: a layer with no handshake.
struct Invert;

impl Layer for Invert {
    fn recv(
        &mut self,
        input: &mut bytes::BytesMut,
        output: &mut bytes::BytesMut,
    ) -> Result<(), LayerError> {
        output.extend(input.split().iter().map(|b| !b));
        Ok(())
    }

    fn send(&mut self, input: &mut Outgoing, output: &mut Outgoing) -> Result<(), LayerError> {
        while input.has_remaining() {
            let chunk: Vec<u8> = input.chunk().iter().map(|b| !b).collect();
            input.advance(chunk.len());
            output.put_slice(&chunk);
        }
        Ok(())
    }
}

#[derive(Default)]
struct Watch {
    frames: u64,
    closes: u32,
    after_close: bool,
}

impl Application for Watch {
    fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), AppError> {
        self.frames += 1;
        self.after_close |= self.closes > 0;
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, _: &CloseReason) {
        self.closes += 1;
    }
}

fn framer(kind: u8) -> tendril_core::BoxFramer<Bytes> {
    match kind % 3 {
        0 => Line::crlf().max_length(256).boxed(),
        1 => LengthPrefixed::u8().boxed(),
        _ => Chunk::new(1 + usize::from(kind % 7)).boxed(),
    }
}

/// The socket as a driver sees it: it reads only while the tendril wants to read, except for
/// one read already in flight when `wants_read` turned false (a completion-based driver).
#[derive(Default)]
struct Socket {
    reads_while_paused: u32,
}

impl Socket {
    fn read(&mut self, t: &mut Tendril, now: Duration, data: &[u8]) {
        if t.wants_read() {
            self.reads_while_paused = 0;
        } else if self.reads_while_paused == 0 {
            self.reads_while_paused = 1;
        } else {
            // The driver would not have asked the socket: the bytes stay in the kernel.
            return;
        }
        t.handle_data(now, data);
    }
}

fuzz_target!(|input: Input| {
    let mut config = Config::default();
    config.idle_timeout = input.idle.map(|s| Duration::from_millis(u64::from(s) + 1));
    config.frame_timeout = input
        .frame_timeout
        .map(|s| Duration::from_millis(u64::from(s) + 1));
    config.high_watermark = usize::from(input.high).max(1);
    config.low_watermark = config.high_watermark / 2;
    config.read_size = 64;
    let mut t = Tendril::with_boxed(Proto::TCP, framer(1), framer(1)).with_config(config);
    let mut app = Watch::default();
    let mut now = Duration::ZERO;
    let mut closed_before = false;
    let mut socket = Socket::default();
    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Read(data) => socket.read(&mut t, now, &data[..data.len().min(512)]),
            Op::Frame { body, cut } => {
                let body = &body[..body.len().min(255)];
                let mut wire = vec![body.len() as u8];
                wire.extend_from_slice(body);
                let cut = usize::from(cut).min(wire.len());
                socket.read(&mut t, now, &wire[..cut]);
                t.dispatch(&mut app);
                socket.read(&mut t, now, &wire[cut..]);
            }
            Op::Eof => t.handle_eof(now),
            Op::Error => t.handle_error(now, "reset"),
            Op::Write(n) => {
                let n = usize::from(n).min(t.outgoing_len());
                t.outgoing().advance(n);
            }
            Op::Send(body) => {
                let before = t.outgoing_len();
                let was_writable = t.is_writable();
                let result = t.send_frame(Bytes::from(body));
                if result.is_ok() {
                    assert!(was_writable, "a send above the high watermark was taken");
                    let _ = before;
                }
            }
            Op::SwitchRecv(k) => t.set_recv_framer_boxed(framer(k)).reset(),
            Op::SwitchSend(k) => t.set_send_framer_boxed(framer(k)).reset(),
            Op::Wrap => t.wrap(Invert),
            Op::Close => t.close(),
            Op::Finish => t.finish(),
            Op::Abort => t.abort(),
            Op::Pause(p) => t.pause_recv(p),
            Op::Tick(ms) => {
                now += Duration::from_millis(u64::from(ms));
                t.handle_timeout(now);
            }
            Op::Shutdown => {
                if t.wants_shutdown() {
                    t.handle_shutdown(now);
                }
            }
        }
        t.dispatch(&mut app);
        assert!(app.closes <= 1, "closed reported {} times", app.closes);
        assert!(!app.after_close, "a frame after closed");
        if closed_before {
            assert!(t.is_closed(), "reopened after closing");
        }
        closed_before = app.closes == 1;
        // The documented bound: the largest frame (Line's 256 + CRLF, or a length-prefixed
        // frame's 1 + 255) plus the reads taken since delivery last ran: the one that filled the
        // buffer and the one in flight when `wants_read` turned false (512 each).
        assert!(
            t.buffered().len() <= 258 + 512 + 512,
            "buffer {}",
            t.buffered().len()
        );
        if let Some(deadline) = t.poll_timeout() {
            assert!(deadline >= now || !t.is_open() || deadline < now);
        }
    }
});
