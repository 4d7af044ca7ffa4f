//! One connection: [`Tendril`], its [`Event`]s, close reasons and the [`Application`] callbacks.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::fmt;
use core::time::Duration;

use crate::layer::LayerSlot;
use crate::time::{MaybeNanos, Nanos};
use crate::{Addr, BoxFramer, FrameError, Framer, Layer, LayerError, Outgoing, Proto};

mod application;
mod config;
mod parked;

pub use application::{AppError, Application, Reject};
pub use config::Config;
pub(crate) use parked::Parked;

/// Why a connection closed. Reported exactly once per connection, through
/// [`Event::Closed`] and [`Application::closed`].
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer ended its stream (EOF) and everything owed to it was sent.
    PeerClosed,
    /// The application (or its manager) closed the connection and everything queued was sent.
    Closed,
    /// The connection was aborted: queued bytes were dropped.
    Aborted,
    /// Nothing was received for the configured idle timeout.
    IdleTimeout,
    /// A frame was started but not finished within the configured frame timeout (a slow or
    /// stalled peer: slowloris).
    FrameTimeout,
    /// A layer (e.g. TLS) did not finish its handshake within the configured handshake timeout.
    HandshakeTimeout,
    /// A graceful close did not finish in time (the peer stopped reading); queued bytes were
    /// dropped.
    LingerTimeout,
    /// The peer's bytes broke the receive framer's format.
    Frame(FrameError),
    /// A layer (e.g. TLS) failed.
    Layer(LayerError),
    /// The socket failed (reset, broken pipe, …), with the driver's message.
    Io(String),
    /// The application's `recv_frame` returned an error.
    Application(AppError),
    /// An application callback panicked; the driver caught it, with the panic's message (see
    /// [`Tendril::abort_after_panic`]).
    Panicked(String),
    /// The tracker evicted this peer to make room (datagram protocols).
    Evicted,
}

impl CloseReason {
    /// `true` for the orderly ends: the peer's EOF or a local close.
    pub fn is_clean(&self) -> bool {
        matches!(self, CloseReason::PeerClosed | CloseReason::Closed)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by the peer"),
            CloseReason::Closed => f.write_str("closed locally"),
            CloseReason::Aborted => f.write_str("aborted"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::FrameTimeout => f.write_str("a frame was not finished in time"),
            CloseReason::HandshakeTimeout => f.write_str("the handshake was not finished in time"),
            CloseReason::LingerTimeout => {
                f.write_str("the peer did not take the last bytes in time")
            }
            CloseReason::Frame(e) => write!(f, "framing error: {e}"),
            CloseReason::Layer(e) => write!(f, "{e}"),
            CloseReason::Io(e) => write!(f, "I/O error: {e}"),
            CloseReason::Application(e) => write!(f, "application error: {e}"),
            CloseReason::Panicked(message) => write!(f, "the application panicked: {message}"),
            CloseReason::Evicted => f.write_str("evicted from the connection table"),
        }
    }
}

/// Something that happened on a connection, from [`Tendril::poll_event`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The outgoing queue fell below the low watermark after a send was refused as
    /// [`SendError::Full`] or frame delivery paused: send again.
    Writable,
    /// The application's timer ([`Tendril::set_timer`]) expired.
    Timer,
    /// A frame over the limit was skipped and decoding went on (discard-oversized mode).
    FrameSkipped(FrameError),
    /// Plaintext that arrived after the frame that triggered [`Tendril::wrap`] was discarded, never
    /// delivered as if it had come through the new layer (the STARTTLS injection class,
    /// CVE-2011-0411).
    PlaintextDiscarded(usize),
    /// A datagram was longer than the receive buffer and was dropped, not cut short.
    DatagramTruncated,
    /// The connection closed. The last event of every connection, exactly once.
    Closed(CloseReason),
}

/// `send_frame` refused a frame; the frame is handed back.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError<F> {
    /// The outgoing queue is above its high watermark: wait for [`Event::Writable`].
    Full(F),
    /// The connection is closing or closed.
    Closed(F),
    /// The send framer cannot encode the frame; the connection is unaffected.
    Frame(FrameError),
}

impl SendError<()> {
    /// The same refusal, handing back `frame`.
    fn with<F>(self, frame: F) -> SendError<F> {
        match self {
            SendError::Full(()) => SendError::Full(frame),
            SendError::Closed(()) => SendError::Closed(frame),
            SendError::Frame(e) => SendError::Frame(e),
        }
    }
}

impl<F> fmt::Display for SendError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str(
                "outgoing queue above its high watermark; wait for Writable before sending more",
            ),
            SendError::Closed(_) => f.write_str("the connection is closing or closed"),
            SendError::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl<F: fmt::Debug> core::error::Error for SendError<F> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SendError::Frame(e) => Some(e),
            _ => None,
        }
    }
}

/// Byte and frame counters of a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes received from the socket.
    pub bytes_received: u64,
    /// Bytes queued for the driver to write (after all layers).
    pub bytes_sent: u64,
    /// Frames delivered to the application.
    pub frames_received: u64,
    /// Frames accepted by `send_frame`.
    pub frames_sent: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading and writing.
    Open,
    /// No more frames are read; queued bytes drain, then the write side shuts down.
    Closing,
    /// Done; `Event::Closed` has been queued.
    Closed,
}

/// One logical connection: a byte stream (TCP, Unix) or a tracked datagram peer (UDP).
///
/// A `Tendril` is a sans-IO state machine. The driver feeds it bytes
/// ([`read_buf`](Self::read_buf) + [`handle_read`](Self::handle_read), or
/// [`handle_data`](Self::handle_data)), EOF, errors, datagrams and the time, and takes out
/// frames ([`poll_frame`](Self::poll_frame) or [`dispatch`](Self::dispatch) to an
/// [`Application`]), events, bytes to write ([`outgoing`](Self::outgoing)) and the next deadline
/// ([`poll_timeout`](Self::poll_timeout)). Time is a [`Duration`] since any epoch the driver
/// chooses.
///
/// The receive and send framers are separate and can each be replaced between any two frames,
/// also from inside [`Application::recv_frame`]: the next buffered byte goes through the new
/// framer.
///
/// ```
/// use bytes::{Buf, Bytes};
/// use core::time::Duration;
/// use tendril_core::{Chunk, Line, Proto, Tendril};
///
/// let now = Duration::ZERO;
/// let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
/// t.handle_data(now, b"DATA\r\n12345rest\r\n");
/// assert_eq!(t.poll_frame().unwrap(), "DATA");
/// t.set_recv_framer(Chunk::new(5));
/// assert_eq!(t.poll_frame().unwrap(), "12345");
/// t.set_recv_framer(Line::crlf());
/// assert_eq!(t.poll_frame().unwrap(), "rest");
///
/// t.send_frame(Bytes::from("250 OK")).unwrap();
/// let out = t.outgoing();
/// assert_eq!(out.chunk(), b"250 OK\r\n");
/// out.advance(8);
/// ```
pub struct Tendril<In = Bytes, Out = In> {
    proto: Proto,
    local: Addr,
    remote: Addr,
    config: Config,
    recv: BoxFramer<In>,
    send: BoxFramer<Out>,
    /// Bytes for the framers (after all layers), not yet framed.
    recv_buf: BytesMut,
    /// Bytes for the driver to write (after all layers).
    out: Outgoing,
    /// Whole datagrams for the driver to send (datagram protocols).
    datagrams: VecDeque<Bytes>,
    /// Layers, the first nearest the socket.
    layers: Vec<LayerSlot>,
    state: State,
    /// The peer's stream ended: frame what is left with `frameify_eof`.
    eof: bool,
    /// Why the connection is closing, once it is.
    closing: Option<CloseReason>,
    events: VecDeque<Event>,
    /// A send was refused or delivery paused: report `Writable` below the low watermark.
    want_writable: bool,
    /// `finish` was called: no more sends; FIN once the queue is written, reading goes on.
    finishing: bool,
    /// The driver shut the write side down.
    write_shut: bool,
    /// The layers are to be closed (close or finish) once their handshakes are done.
    layers_closing: bool,
    /// The layers were told to close.
    layers_closed: bool,
    /// The application paused frame delivery.
    recv_paused: bool,
    now: Nanos,
    last_received: Nanos,
    /// When the partial frame now buffered began (for the frame timeout).
    frame_started: Option<Duration>,
    linger_deadline: Option<Duration>,
    /// When the newest layer was wrapped (its handshake began).
    handshake_started: Nanos,
    timer: MaybeNanos,
    stats: Stats,
    /// A framer was replaced (`set_recv_framer*` / `set_send_framer*`) since the tracker last
    /// looked: the tracker's shared framers are not this peer's any more.
    framers_replaced: bool,
    /// [`set_config`](Self::set_config) (or `with_config`) was called since the tracker last unparked this
    /// tendril: only then can its configuration differ from the tracker's, so a parking check
    /// compares the two `Config`s only then.
    config_set: bool,
}

impl<In> Tendril<In, Bytes> {
    /// Send a frame given as borrowed bytes: the send framer encodes it straight into the
    /// outgoing queue ([`Framer::streamify_slice`]), so a reply formatted into a stack buffer
    /// needs no [`Bytes`] of its own. Refused as [`send_frame`](Self::send_frame) refuses
    /// (nothing to hand back: the caller still has the bytes).
    ///
    /// ```
    /// use core::time::Duration;
    /// use std::io::Write;
    /// use tendril_core::{Line, Proto, Tendril};
    ///
    /// let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
    /// let mut buf = [0u8; 32];
    /// let mut cursor = &mut buf[..];
    /// write!(cursor, "250 {} bytes", 1234).unwrap();
    /// let n = 32 - cursor.len();
    /// t.send_slice(&buf[..n]).unwrap();
    /// assert_eq!(t.outgoing().take_all(), "250 1234 bytes\r\n");
    /// ```
    #[inline]
    pub fn send_slice(&mut self, frame: &[u8]) -> Result<(), SendError<()>> {
        if self.sends_straight() {
            return self.send_straight(|send, out| send.streamify_slice(frame, out));
        }
        self.send_slice_general(frame)
    }

    /// [`send_slice`](Self::send_slice) when it cannot go straight: refused, or through layers.
    #[inline(never)]
    fn send_slice_general(&mut self, frame: &[u8]) -> Result<(), SendError<()>> {
        match self.send_refusal() {
            Some(refusal) => Err(refusal),
            None => self.send_with(|send, out| send.streamify_slice(frame, out)),
        }
    }
}

impl<In, Out> fmt::Debug for Tendril<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tendril")
            .field("proto", &self.proto)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("state", &self.state)
            .field("buffered", &self.recv_buf.len())
            .field("queued", &self.out.len())
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl<In: 'static, Out: 'static> Tendril<In, Out> {
    /// A new open connection with the given receive and send framers and default [`Config`].
    pub fn new<R, S>(proto: Proto, recv: R, send: S) -> Self
    where
        R: Framer<Frame = In> + Send + 'static,
        S: Framer<Frame = Out> + Send + 'static,
    {
        Self::with_boxed(proto, recv.boxed(), send.boxed())
    }

    /// A new open connection with boxed framers.
    pub fn with_boxed(proto: Proto, recv: BoxFramer<In>, send: BoxFramer<Out>) -> Self {
        Tendril {
            proto,
            local: Addr::Unnamed,
            remote: Addr::Unnamed,
            config: Config::default(),
            recv,
            send,
            recv_buf: BytesMut::new(),
            out: Outgoing::new(),
            datagrams: VecDeque::new(),
            layers: Vec::new(),
            state: State::Open,
            eof: false,
            closing: None,
            events: VecDeque::new(),
            want_writable: false,
            finishing: false,
            write_shut: false,
            layers_closing: false,
            layers_closed: false,
            recv_paused: false,
            now: Nanos::ZERO,
            last_received: Nanos::ZERO,
            frame_started: None,
            linger_deadline: None,
            handshake_started: Nanos::ZERO,
            timer: MaybeNanos::NONE,
            stats: Stats::default(),
            framers_replaced: false,
            config_set: false,
        }
    }

    /// Set both addresses (builder style, for drivers and tests).
    pub fn with_addrs(mut self, local: Addr, remote: Addr) -> Self {
        self.local = local;
        self.remote = remote;
        self
    }

    /// Replace the configuration (builder style).
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self.config_set = true;
        self
    }

    /// Start the connection's clocks at `now` (builder style): the idle timeout counts from here.
    pub fn started_at(mut self, now: Duration) -> Self {
        self.now = Nanos::new(now);
        self.last_received = Nanos::new(now);
        self.handshake_started = Nanos::new(now);
        self
    }

    /// Replace the receive framer. The next frame, and every byte already buffered, goes
    /// through `framer`. Works from inside [`Application::recv_frame`].
    pub fn set_recv_framer<R>(&mut self, framer: R)
    where
        R: Framer<Frame = In> + Send + 'static,
    {
        self.set_recv_framer_boxed(framer.boxed());
    }

    /// Replace the receive framer with a boxed one; returns the old one.
    pub fn set_recv_framer_boxed(&mut self, mut framer: BoxFramer<In>) -> BoxFramer<In> {
        framer.reset();
        self.framers_replaced = true;
        core::mem::replace(&mut self.recv, framer)
    }

    /// Replace the send framer; frames sent from now on go through `framer`.
    pub fn set_send_framer<S>(&mut self, framer: S)
    where
        S: Framer<Frame = Out> + Send + 'static,
    {
        self.set_send_framer_boxed(framer.boxed());
    }

    /// Replace the send framer with a boxed one; returns the old one.
    pub fn set_send_framer_boxed(&mut self, mut framer: BoxFramer<Out>) -> BoxFramer<Out> {
        framer.reset();
        self.framers_replaced = true;
        core::mem::replace(&mut self.send, framer)
    }
}

impl<In, Out> Tendril<In, Out> {
    /// The transport protocol.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The local address.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> &Addr {
        &self.remote
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Change the configuration (e.g. from an acceptor: watermarks, idle timeout). A new idle
    /// timeout counts from the last receive.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
        self.config_set = true;
    }

    /// Byte and frame counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// `true` once the connection has closed (its `Closed` event is queued or taken).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// `true` while frames can be sent.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The last time passed in by the driver.
    pub fn now(&self) -> Duration {
        self.now.get()
    }

    /// The receive buffer: bytes that arrived (after all layers) and are not framed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.recv_buf
    }

    // ---- input -------------------------------------------------------------------------

    /// Where the driver appends bytes read from the socket; call [`handle_read`](Self::handle_read)
    /// after appending. At least [`Config::read_size`] bytes of spare capacity are reserved.
    ///
    /// Read only while [`wants_read`](Self::wants_read) says so (a read already in flight when it
    /// turned `false`, as on a completion-based driver, may still be handed in). Under that
    /// contract no peer can make the connection hold more than its largest frame plus the reads
    /// in flight (under a TLS layer, plus one record: a read that completes a record releases up
    /// to 16 KiB of plaintext begun in earlier reads); bytes handed in regardless are kept, not dropped, since a stream cannot lose
    /// them, so a driver that ignores `wants_read` lets a peer that never reads its replies grow
    /// the buffer.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        let read_size = self.config.read_size;
        let buf = match self.layers.first_mut() {
            Some(slot) => &mut slot.recv_in,
            None => &mut self.recv_buf,
        };
        buf.reserve(read_size);
        buf
    }

    /// `n` bytes were appended to [`read_buf`](Self::read_buf) at time `now`.
    pub fn handle_read(&mut self, now: Duration, n: usize) {
        self.now = Nanos::new(now);
        if self.finishing_handshake() {
            self.pump_recv();
            self.recv_buf.clear();
            return;
        }
        if self.state != State::Open {
            // Closing or closed: nobody will frame these bytes, so they are not kept.
            self.recv_buf.clear();
            if let Some(slot) = self.layers.first_mut() {
                slot.recv_in.clear();
            }
            return;
        }
        if n == 0 {
            return;
        }
        self.last_received = Nanos::new(now);
        self.stats.bytes_received += n as u64;
        self.pump_recv();
    }

    /// Bytes arrived (a copying convenience over [`read_buf`](Self::read_buf), under the same
    /// contract: only while [`wants_read`](Self::wants_read)).
    pub fn handle_data(&mut self, now: Duration, data: &[u8]) {
        if self.state == State::Closed {
            self.now = Nanos::new(now);
            return;
        }
        self.read_buf().extend_from_slice(data);
        self.handle_read(now, data.len());
    }

    /// One whole datagram arrived (datagram protocols). It is framed on its own: the receive
    /// framer sees its end as the end of input. A datagram the driver had to cut short
    /// (`truncated`) is dropped and reported as [`Event::DatagramTruncated`].
    pub fn handle_datagram(&mut self, now: Duration, datagram: &[u8], truncated: bool) {
        if self.accept_datagram(now, datagram.len(), truncated) {
            self.recv_buf.extend_from_slice(datagram);
        }
    }

    /// Shared by the datagram inputs: `true` if the datagram is to be framed.
    fn accept_datagram(&mut self, now: Duration, len: usize, truncated: bool) -> bool {
        self.now = Nanos::new(now);
        if self.state != State::Open {
            return false;
        }
        self.last_received = Nanos::new(now);
        self.stats.bytes_received += len as u64;
        if truncated {
            self.events.push_back(Event::DatagramTruncated);
            return false;
        }
        self.eof = true;
        true
    }

    /// The peer ended its stream. Frames still buffered are delivered (with
    /// [`Framer::frameify_eof`]), then the connection closes with
    /// [`CloseReason::PeerClosed`] once everything queued for the peer has been written.
    ///
    /// A layer still in its handshake can never finish it once the peer has stopped sending, so
    /// its goodbye is skipped: a TLS peer that hangs up mid-handshake is closed, not kept
    /// waiting for a handshake that cannot complete.
    pub fn handle_eof(&mut self, now: Duration) {
        self.now = Nanos::new(now);
        self.eof = true;
        if self.is_handshaking() {
            self.layers_closed = true;
        }
    }

    /// The socket failed: the connection closes at once with [`CloseReason::Io`].
    pub fn handle_error(&mut self, now: Duration, message: impl Into<String>) {
        self.now = Nanos::new(now);
        self.fail(CloseReason::Io(message.into()));
    }

    /// The driver's timer fired: handshake, idle, frame and linger timeouts and the
    /// application's timer.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = Nanos::new(now);
        if self.state == State::Closed {
            return;
        }
        if self.linger_deadline.is_some_and(|d| now >= d) {
            self.fail(CloseReason::LingerTimeout);
            return;
        }
        if self.handshake_deadline().is_some_and(|d| now >= d) {
            // Also while closing: a close that waits for a handshake waits no longer.
            self.layers_closed = true;
            self.close_with(CloseReason::HandshakeTimeout);
        }
        if self.state == State::Open {
            if let Some(idle) = self.config.idle_timeout {
                if now >= self.last_received.get() + idle {
                    self.close_with(CloseReason::IdleTimeout);
                }
            }
        }
        if self.state == State::Open && self.frame_deadline().is_some_and(|d| now >= d) {
            self.close_with(CloseReason::FrameTimeout);
        }
        if self.timer.get().is_some_and(|t| now >= t) {
            self.timer = MaybeNanos::NONE;
            self.events.push_back(Event::Timer);
        }
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) must be called, if any.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.state == State::Closed {
            return None;
        }
        let (idle, frame) = match self.state {
            State::Open => (
                self.config
                    .idle_timeout
                    .map(|i| self.last_received.get() + i),
                self.frame_deadline(),
            ),
            _ => (None, None),
        };
        [
            idle,
            frame,
            self.handshake_deadline(),
            self.linger_deadline,
            self.timer.get(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- output ------------------------------------------------------------------------

    /// Take the next frame, if a whole one is buffered.
    ///
    /// Returns `None` while delivery is paused because the outgoing queue is above its high
    /// watermark (back-pressure: a peer that does not read its replies stops being read), and
    /// after the connection stopped reading. A framing error closes the connection
    /// ([`CloseReason::Frame`]); a skipped oversized frame is reported as
    /// [`Event::FrameSkipped`].
    pub fn poll_frame(&mut self) -> Option<In> {
        loop {
            if !self.reading() || self.recv_paused {
                return None;
            }
            if self.out.len() >= self.config.high_watermark {
                self.want_writable = true;
                if self.eof && self.linger_deadline.is_none() {
                    // The peer stopped sending and reads none of its replies: stalled, so the
                    // linger timeout bounds it as it bounds a close.
                    self.linger_deadline = self.config.linger.map(|l| self.now.get() + l);
                }
                return None;
            }
            // Open and not stalled (the linger timeout of a close is set only once closing).
            self.linger_deadline = None;
            let result = if self.eof {
                self.recv.frameify_eof(&mut self.recv_buf)
            } else {
                self.recv.frameify(&mut self.recv_buf)
            };
            match result {
                Ok(Some(frame)) => {
                    self.stats.frames_received += 1;
                    self.frame_started = (!self.recv_buf.is_empty()).then_some(self.now.get());
                    return Some(frame);
                }
                Ok(None) => {
                    if self.recv_buf.is_empty() {
                        self.frame_started = None;
                    } else if self.frame_started.is_none() {
                        self.frame_started = Some(self.now.get());
                    }
                    if self.eof {
                        if self.proto.is_datagram() {
                            // The datagram is done; the next one starts afresh.
                            self.eof = false;
                            self.recv.reset();
                        } else {
                            self.close_with(CloseReason::PeerClosed);
                        }
                    }
                    return None;
                }
                Err(e) if e.is_recoverable() => {
                    // Hand the event over before the next frame, so replies stay in order.
                    self.events.push_back(Event::FrameSkipped(e));
                    return None;
                }
                Err(e) if self.proto.is_datagram() => {
                    // One bad datagram does not end the peer: drop it and report.
                    self.recv_buf.clear();
                    self.eof = false;
                    self.recv.reset();
                    self.events.push_back(Event::FrameSkipped(e));
                }
                Err(e) => {
                    self.close_with(CloseReason::Frame(e));
                    return None;
                }
            }
        }
    }

    /// Take the next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.want_writable && self.out.len() <= self.low_watermark() && self.is_open() {
            self.want_writable = false;
            return Some(Event::Writable);
        }
        self.events.pop_front()
    }

    /// Deliver buffered frames and events to `app`: `recv_frame` for each frame, `writable`,
    /// `timer` and `event` for events, and `closed` exactly once when the connection closes.
    /// Every driver calls this after feeding input, so all share one dispatch path.
    pub fn dispatch<A>(&mut self, app: &mut A)
    where
        A: Application<In, Out> + ?Sized,
    {
        loop {
            if let Some(frame) = self.poll_frame() {
                if let Err(e) = app.recv_frame(self, frame) {
                    self.fail(CloseReason::Application(e));
                }
                continue;
            }
            match self.poll_event() {
                Some(Event::Closed(reason)) => app.closed(self, &reason),
                Some(Event::Writable) => app.writable(self),
                Some(Event::Timer) => app.timer(self),
                Some(other) => app.event(self, &other),
                None => return,
            }
        }
    }

    /// The bytes to write to the socket (stream protocols). Write from
    /// [`Buf::chunk`](bytes::Buf::chunk) or [`Buf::chunks_vectored`](bytes::Buf::chunks_vectored), then
    /// [`Buf::advance`](bytes::Buf::advance) by what was written.
    pub fn outgoing(&mut self) -> &mut Outgoing {
        &mut self.out
    }

    /// The old name of [`outgoing`](Self::outgoing). "Transmit" now means one thing only: an
    /// addressed datagram ([`Transmit`](crate::tracker::Transmit)), as in quinn.
    #[deprecated(since = "0.1.0", note = "renamed to `outgoing`")]
    pub fn transmit(&mut self) -> &mut Outgoing {
        self.outgoing()
    }

    /// Bytes queued for the driver to write.
    pub fn outgoing_len(&self) -> usize {
        self.out.len()
    }

    /// The old name of [`outgoing_len`](Self::outgoing_len).
    #[deprecated(since = "0.1.0", note = "renamed to `outgoing_len`")]
    pub fn transmit_len(&self) -> usize {
        self.outgoing_len()
    }

    /// The next datagram to send (datagram protocols).
    pub fn poll_datagram(&mut self) -> Option<Bytes> {
        self.datagrams.pop_front()
    }

    /// `true` when the driver should shut down the write side (send FIN) and call
    /// [`handle_shutdown`](Self::handle_shutdown): the connection is closing and every queued
    /// byte was written.
    pub fn wants_shutdown(&self) -> bool {
        (self.state == State::Closing || (self.finishing && self.state == State::Open))
            && !self.write_shut
            && self.flushed()
    }

    /// The driver shut the write side down (or, for datagrams, sent the last one). A closing
    /// connection is then closed; after [`finish`](Self::finish) it goes on reading until the
    /// peer's EOF.
    pub fn handle_shutdown(&mut self, now: Duration) {
        self.now = Nanos::new(now);
        self.write_shut = true;
        if self.state == State::Closing {
            let reason = self.closing.take().unwrap_or(CloseReason::Closed);
            self.end(reason);
        }
    }

    /// Everything queued was handed to the driver and written.
    fn flushed(&self) -> bool {
        self.out.is_empty()
            && self.datagrams.is_empty()
            && self.layers.iter().all(|l| l.send_in.is_empty())
            && (self.layers_closed || self.layers.is_empty())
    }

    /// Ask the layers to end their streams (a TLS `close_notify`) once they can: not in the
    /// middle of a handshake, which would drop data queued behind it.
    fn close_layers(&mut self) {
        self.layers_closing = true;
        self.pump_send();
    }

    /// `true` while the driver should read from the socket: the connection reads and delivery is
    /// not paused by back-pressure.
    ///
    /// Once paused, reading resumes only after the queue drained to the low watermark *and*
    /// [`dispatch`](Self::dispatch) ran: frames buffered during the pause are delivered before
    /// more bytes are read, so a driver that writes and then reads in one turn cannot stack a
    /// read on top of them each time.
    pub fn wants_read(&self) -> bool {
        (self.reading() || self.finishing_handshake())
            && !self.eof
            && !self.recv_paused
            && !self.want_writable
            && self.out.len() < self.config.high_watermark
    }

    /// `true` while `send_frame` accepts frames (open, and the queue below its high watermark).
    pub fn is_writable(&self) -> bool {
        self.state == State::Open && self.out.len() < self.config.high_watermark
    }

    /// Pause (or resume) frame delivery, e.g. while the application's own consumer is full.
    /// While paused the driver stops reading, so the peer is held back by TCP flow control.
    pub fn pause_recv(&mut self, paused: bool) {
        self.recv_paused = paused;
    }

    /// `true` while frame delivery is paused by [`pause_recv`](Self::pause_recv).
    pub fn is_recv_paused(&self) -> bool {
        self.recv_paused
    }

    /// Give back the memory of empty buffers. Drivers call this when the socket has nothing more
    /// to read for now, so an idle connection holds no buffers (see [`Tendril::heap_bytes`]).
    pub fn release_idle_buffers(&mut self) {
        if self.recv_buf.is_empty() {
            self.recv_buf = BytesMut::new();
        }
        self.out.shrink();
        if self.datagrams.is_empty() {
            self.datagrams = VecDeque::new();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        for slot in &mut self.layers {
            if slot.recv_in.is_empty() {
                slot.recv_in = BytesMut::new();
            }
            slot.send_in.shrink();
        }
    }

    /// Heap bytes held by this connection's buffers (not counting framers, layers' own state
    /// and frames the application still holds).
    pub fn heap_bytes(&self) -> usize {
        self.recv_buf.capacity()
            + self.out.capacity()
            + self
                .layers
                .iter()
                .map(|l| l.recv_in.capacity() + l.send_in.capacity())
                .sum::<usize>()
    }

    // ---- application side --------------------------------------------------------------

    /// Send a frame through the send framer.
    ///
    /// Refused with the frame handed back when the connection is closing
    /// ([`SendError::Closed`]) or the outgoing queue is above its high watermark
    /// ([`SendError::Full`], then wait for [`Event::Writable`]). Large frame bodies are queued
    /// without copying.
    #[inline]
    pub fn send_frame(&mut self, frame: Out) -> Result<(), SendError<Out>> {
        if self.sends_straight() {
            return self.send_straight(|send, out| send.streamify(frame, out));
        }
        self.send_frame_general(frame)
    }

    /// [`send_frame`](Self::send_frame) when it cannot go straight: refused, or through layers.
    #[inline(never)]
    fn send_frame_general(&mut self, frame: Out) -> Result<(), SendError<Out>> {
        match self.send_refusal() {
            Some(refusal) => Err(refusal.with(frame)),
            None => self.send_with(|send, out| send.streamify(frame, out)),
        }
    }

    /// `true` when a frame can go straight into the socket's queue: open and not finishing, no
    /// layers, and the queue below its high watermark. The fast path of
    /// [`send_frame`](Self::send_frame) and [`send_slice`](Self::send_slice), inlined into the
    /// caller; refusals and layers take the general path ([`send_refusal`](Self::send_refusal),
    /// [`send_with`](Self::send_with)).
    #[inline(always)]
    fn sends_straight(&self) -> bool {
        self.state == State::Open
            && !self.finishing
            && self.layers.is_empty()
            && self.out.len() < self.config.high_watermark
    }

    /// Encode with `encode` straight into the socket's queue (no layers, so nothing to pump) and
    /// count it; a datagram is taken whole.
    #[inline(always)]
    fn send_straight<F>(
        &mut self,
        encode: impl FnOnce(&mut BoxFramer<Out>, &mut Outgoing) -> Result<(), FrameError>,
    ) -> Result<(), SendError<F>> {
        let queued = self.out.len();
        encode(&mut self.send, &mut self.out).map_err(SendError::Frame)?;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += (self.out.len() - queued) as u64;
        if self.proto.is_datagram() {
            let datagram = self.out.take_all();
            self.datagrams.push_back(datagram);
        }
        Ok(())
    }

    /// Why a frame cannot be sent now, if it cannot.
    #[inline]
    fn send_refusal(&mut self) -> Option<SendError<()>> {
        if self.state != State::Open || self.finishing {
            return Some(SendError::Closed(()));
        }
        if self.out.len() >= self.config.high_watermark {
            self.want_writable = true;
            return Some(SendError::Full(()));
        }
        None
    }

    /// Encode with `encode` into the top layer's queue (or the socket's), then move the bytes
    /// on: the part of sending shared by [`send_frame`](Self::send_frame) and
    /// [`send_slice`](Self::send_slice).
    #[inline]
    fn send_with<F>(
        &mut self,
        encode: impl FnOnce(&mut BoxFramer<Out>, &mut Outgoing) -> Result<(), FrameError>,
    ) -> Result<(), SendError<F>> {
        let Some(slot) = self.layers.last_mut() else {
            // No layers: straight into the socket's queue, as the fast path does.
            return self.send_straight(encode);
        };
        encode(&mut self.send, &mut slot.send_in).map_err(SendError::Frame)?;
        self.stats.frames_sent += 1;
        if self.proto.is_datagram() {
            let datagram = self.out.take_all();
            self.datagrams.push_back(datagram);
        } else {
            self.pump_send();
        }
        Ok(())
    }

    /// Close gracefully: no more frames are read, everything queued reaches the peer, then the
    /// write side shuts down and the connection closes with [`CloseReason::Closed`].
    pub fn close(&mut self) {
        self.close_with(CloseReason::Closed);
    }

    /// Half-close: nothing more will be sent; once everything queued is written the write side
    /// shuts down (FIN, and a TLS `close_notify` first), while frames go on arriving until the
    /// peer ends its side. The connection then closes with [`CloseReason::PeerClosed`]. This is
    /// what a client does at the end of its input (`nc -N`).
    pub fn finish(&mut self) {
        if self.state != State::Open || self.finishing {
            return;
        }
        self.finishing = true;
        self.close_layers();
    }

    /// Close at once, dropping everything queued ([`CloseReason::Aborted`]).
    pub fn abort(&mut self) {
        self.fail(CloseReason::Aborted);
    }

    /// Close at once because an application callback panicked: what a driver does when it
    /// catches the panic, so only this connection ends. Queued bytes are dropped and the close
    /// reason is [`CloseReason::Panicked`] with `message`.
    ///
    /// ```
    /// use tendril_core::{CloseReason, Line, Proto, Tendril};
    ///
    /// let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
    /// t.abort_after_panic("index out of bounds");
    /// assert!(matches!(t.poll_event(), Some(tendril_core::Event::Closed(CloseReason::Panicked(_)))));
    /// assert!(t.is_closed());
    /// ```
    pub fn abort_after_panic(&mut self, message: impl Into<String>) {
        self.fail(CloseReason::Panicked(message.into()));
    }

    /// Set (or clear) the application's timer; [`Application::timer`] runs when it expires.
    pub fn set_timer(&mut self, at: Option<Duration>) {
        self.timer = MaybeNanos::new(at);
    }

    /// Wrap the byte stream in a layer (e.g. TLS), at any time, also from inside
    /// [`Application::recv_frame`] (STARTTLS).
    ///
    /// Bytes queued for sending before the call go out beneath the new layer (e.g. the
    /// plaintext "220 ready to start TLS" reply). Received bytes not framed yet are
    /// **discarded** and reported as [`Event::PlaintextDiscarded`]: they arrived before the
    /// layer and must not be taken as if they had come through it (CVE-2011-0411).
    pub fn wrap<L: Layer + 'static>(&mut self, layer: L) {
        self.wrap_boxed(Box::new(layer));
    }

    /// [`wrap`](Self::wrap) with a boxed layer.
    pub fn wrap_boxed(&mut self, layer: Box<dyn Layer>) {
        if self.state == State::Closed {
            return;
        }
        let discarded = self.recv_buf.len();
        self.recv_buf.clear();
        self.recv.reset();
        if discarded > 0 {
            self.events.push_back(Event::PlaintextDiscarded(discarded));
        }
        self.layers.push(LayerSlot {
            layer,
            recv_in: BytesMut::new(),
            send_in: Outgoing::new(),
        });
        self.handshake_started = self.now;
        // Let the new layer start (a TLS client sends its ClientHello now).
        self.pump_send();
    }

    /// `true` while a layer is still in its handshake.
    pub fn is_handshaking(&self) -> bool {
        self.layers.iter().any(|l| l.layer.is_handshaking())
    }

    // ---- internals ---------------------------------------------------------------------

    /// The low watermark in effect: below the high one whatever the configuration says, so a
    /// paused connection is never told it is writable while it is still paused.
    fn low_watermark(&self) -> usize {
        self.config
            .low_watermark
            .min(self.config.high_watermark.saturating_sub(1))
    }

    /// When the handshake under way must be complete (none once every layer is through it, or
    /// once it was given up).
    fn handshake_deadline(&self) -> Option<Duration> {
        if self.layers_closed || !self.is_handshaking() {
            return None;
        }
        Some(self.handshake_started.get() + self.config.handshake_timeout?)
    }

    /// When the partial frame buffered now must be complete.
    fn frame_deadline(&self) -> Option<Duration> {
        Some(self.frame_started? + self.config.frame_timeout?)
    }

    /// Frames are delivered while open; after the peer's EOF the connection stays open until
    /// the last buffered frame is out.
    fn reading(&self) -> bool {
        self.state == State::Open
    }

    /// A graceful close waits for a handshake to send what was queued behind it, so the
    /// handshake's bytes must still be read (what they carry above the layers is dropped).
    fn finishing_handshake(&self) -> bool {
        self.state == State::Closing && !self.layers_closed && self.is_handshaking()
    }

    /// Begin a graceful close with `reason` (first reason wins).
    fn close_with(&mut self, reason: CloseReason) {
        if self.state != State::Open {
            return;
        }
        // A handshake cut short by a timeout or an error has nothing queued behind it worth
        // waiting for: skip the layers' polite goodbye.
        let abandon = !matches!(reason, CloseReason::Closed | CloseReason::PeerClosed);
        if abandon && self.is_handshaking() {
            self.layers_closed = true;
        }
        self.state = State::Closing;
        self.closing = Some(reason);
        // A stall after the peer's EOF may have set an earlier one.
        let linger = self.config.linger.map(|l| self.now.get() + l);
        self.linger_deadline = match (self.linger_deadline, linger) {
            (Some(stalled), Some(closing)) => Some(stalled.min(closing)),
            (stalled, closing) => stalled.or(closing),
        };
        self.close_layers();
        if self.write_shut {
            // The write side is already shut (after `finish`): nothing is left to send.
            let reason = self.closing.take().unwrap_or(CloseReason::Closed);
            self.end(reason);
        }
    }

    /// Close at once with `reason`, dropping queued bytes.
    pub(crate) fn fail(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.out.clear();
        self.datagrams.clear();
        self.end(reason);
    }

    fn end(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.closing = None;
        self.linger_deadline = None;
        self.timer = MaybeNanos::NONE;
        self.want_writable = false;
        self.recv_buf = BytesMut::new();
        self.out.shrink();
        for slot in &mut self.layers {
            slot.recv_in = BytesMut::new();
            slot.send_in = Outgoing::new();
        }
        self.events.push_back(Event::Closed(reason));
    }

    /// Move received bytes up through the layers into the receive buffer.
    fn pump_recv(&mut self) {
        if self.layers.is_empty() {
            return;
        }
        let n = self.layers.len();
        for i in 0..n {
            let (below, above) = self.layers.split_at_mut(i + 1);
            let slot = &mut below[i];
            let output = match above.first_mut() {
                Some(next) => &mut next.recv_in,
                None => &mut self.recv_buf,
            };
            if let Err(e) = slot.layer.recv(&mut slot.recv_in, output) {
                // Close gracefully, so the layer's alert (e.g. a TLS alert) reaches the peer;
                // the alert ends the layer's stream, so it is not closed again.
                self.layers_closed = true;
                self.close_with(CloseReason::Layer(e));
                return;
            }
        }
        if self.layers.iter().any(|l| l.layer.peer_closed()) {
            self.eof = true;
        }
        // Handshake replies, alerts.
        self.pump_send();
    }

    /// Move bytes to send down through the layers into the outgoing queue; close the layers
    /// once that was asked for and they can.
    fn pump_send(&mut self) {
        let queued = self.out.len();
        if self.send_through_layers()
            && self.layers_closing
            && !self.layers_closed
            && !self.is_handshaking()
            && self.layers.iter().all(|l| l.send_in.is_empty())
        {
            self.layers_closed = true;
            for slot in &mut self.layers {
                slot.layer.close();
            }
            // Once more, to write what closing produced.
            self.send_through_layers();
        }
        self.stats.bytes_sent += self.out.len().saturating_sub(queued) as u64;
    }

    /// One pass of every layer's `send`, innermost first. `false` if a layer failed (the
    /// connection is then closed).
    fn send_through_layers(&mut self) -> bool {
        for i in (0..self.layers.len()).rev() {
            let (below, at) = self.layers.split_at_mut(i);
            let slot = &mut at[0];
            let output = match below.last_mut() {
                Some(prev) => &mut prev.send_in,
                None => &mut self.out,
            };
            if let Err(e) = slot.layer.send(&mut slot.send_in, output) {
                self.fail(CloseReason::Layer(e));
                return false;
            }
        }
        true
    }
}
