//! A stream connection between its socket and the core, the same under every driver:
//! [`StreamConn`], its step function, and how busy connections read more at a time.

use bytes::BytesMut;
use std::fmt;
use std::io::{self, IoSlice};
use std::time::Duration;
use tendril_core::Tendril;

use crate::command::{Command, PendingSends};
use crate::BoxApp;

/// The most a busy stream connection reads per system call (see [`grow_reads`]).
pub const MAX_READ: usize = 64 * 1024;

/// A stream read filled all the room it had: the peer sends faster than one read takes, so the
/// connection reads more at a time, doubling its [`read_size`](tendril_core::Config::read_size)
/// up to [`MAX_READ`] — fewer system calls, more frames dispatched per read and replies per
/// write. Drivers call this after such a read; an idle connection still gives its buffer back
/// (`release_idle_buffers`), so only busy ones hold the larger one.
pub fn grow_reads(tendril: &mut Tendril) {
    let mut config = *tendril.config();
    if config.read_size < MAX_READ {
        config.read_size = (config.read_size * 2).min(MAX_READ);
        tendril.set_config(config);
    }
}

/// How long a busy connection (one whose reads have filled their room, see [`grow_reads`])
/// keeps its buffers after a read would block, before it gives them back
/// ([`StreamConn::idle`]). Its reads block between every two bursts; giving its buffers back
/// each time would free and allocate them on every turn, and the allocator may return the
/// memory to the system and fault it in again each time (glibc trims a thread's arena: one
/// `madvise` per turn, 7,295 in 3 s, measured with io_uring at one connection; 249 with the
/// delay). A connection that was never busy gives them back at once, so a burst of short
/// exchanges on many connections does not hold a buffer for each.
pub const IDLE_RELEASE_DELAY: Duration = Duration::from_millis(10);

/// One stream connection between its socket and the core: the step function every driver runs,
/// whatever its event loop. The driver does the system calls; this decides which ones.
///
/// The order of calls, from a readiness loop (mio, `poll(2)`), a completion loop (io_uring) or
/// an async task alike:
///
/// 1. [`step`](Self::step): run what is due (waiting sends, dispatch of received frames to the
///    application). It answers with what to do next:
///    - [`Step::Shutdown`]: shut the socket's write side down (send FIN), report it with
///      [`shutdown_done`](Self::shutdown_done), and step again;
///    - [`Step::Closed`]: the connection is over; drop the socket;
///    - [`Step::Wait`]: wait for what it names, then report each event, and step again.
/// 2. Events, in any order:
///    - a handle's command: [`command`](Self::command);
///    - the socket is writable and [`wants_write`](Self::wants_write): one write of
///      [`outgoing`](Self::outgoing), reported with [`write_done`](Self::write_done);
///    - the socket is readable and [`wants_read`](Self::wants_read): one read into
///      [`read_buf`](Self::read_buf), at most its limit, reported with
///      [`read_done`](Self::read_done) (`Ok(0)` is the peer's EOF);
///    - a read would block: [`idle`](Self::idle) (an idle connection gives back the buffers it
///      does not need; a busy one [`IDLE_RELEASE_DELAY`] later, at a deadline of its own);
///    - the deadline passed: [`timer`](Self::timer).
///
/// Errors that only mean "not now" (`WouldBlock`, `TimedOut`, `Interrupted`) may be reported
/// as they are: they change nothing.
///
/// ```
/// use tendril_core::{Line, Proto, Tendril};
/// use tendril_net::{acceptor, Step, StreamConn};
///
/// # struct Echo;
/// # impl tendril_core::Application for Echo {
/// #     fn recv_frame(&mut self, t: &mut Tendril, f: bytes::Bytes) -> Result<(), tendril_core::AppError> {
/// #         t.send_frame(f)?; Ok(())
/// #     }
/// # }
/// let mut tendril = Tendril::new(Proto::TCP, Line::lf(), Line::lf());
/// let app = (acceptor(|_: &mut Tendril| Ok(Echo)).lock().unwrap())(&mut tendril).unwrap();
/// let mut conn = StreamConn::new(tendril, app);
/// let now = std::time::Duration::ZERO;
///
/// // The socket had a line to read…
/// assert!(matches!(conn.step(), Step::Wait(_)));
/// let (buf, _limit) = conn.read_buf();
/// buf.extend_from_slice(b"hi\n");
/// conn.read_done(now, Ok(3));
/// // …so after the next step there is a reply to write.
/// assert!(matches!(conn.step(), Step::Wait(w) if w.write));
/// let mut slices = [std::io::IoSlice::new(&[]); 4];
/// let n = conn.outgoing(&mut slices);
/// assert_eq!(&*slices[..n][0], b"hi\n");
/// conn.write_done(now, Ok(3));
/// assert!(!conn.wants_write());
/// ```
pub struct StreamConn {
    tendril: Tendril,
    app: BoxApp,
    pending: PendingSends,
    /// The limit of the read [`read_buf`](Self::read_buf) handed out last.
    read_limit: usize,
    /// When the buffers go back, if the connection is still idle then.
    release_at: Option<Duration>,
    /// A read filled its room: the peer sends faster than one read takes.
    busy: bool,
}

/// What [`StreamConn::step`] asks of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Shut the write side down, then report it with [`StreamConn::shutdown_done`].
    Shutdown,
    /// Wait for any of these.
    Wait(Wait),
    /// The connection is over.
    Closed,
}

/// What a connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Bytes to read (or the peer's EOF).
    pub read: bool,
    /// Room to write: bytes are queued.
    pub write: bool,
    /// The core's next deadline, on the manager's clock.
    pub deadline: Option<Duration>,
}

impl fmt::Debug for StreamConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamConn")
            .field("tendril", &self.tendril)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

/// Errors that say "not now" rather than "broken".
pub fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl StreamConn {
    /// A connection for `tendril`, run by `app`.
    pub fn new(tendril: Tendril, app: BoxApp) -> Self {
        StreamConn {
            tendril,
            app,
            pending: PendingSends::default(),
            read_limit: 0,
            release_at: None,
            busy: false,
        }
    }

    /// The tendril.
    pub fn tendril(&self) -> &Tendril {
        &self.tendril
    }

    /// Run what is due and say what to do next.
    pub fn step(&mut self) -> Step {
        self.pending.retry(&mut self.tendril);
        self.tendril.dispatch(&mut *self.app);
        if self.tendril.wants_shutdown() {
            return Step::Shutdown;
        }
        if self.tendril.is_closed() {
            self.pending.retry(&mut self.tendril);
            return Step::Closed;
        }
        Step::Wait(Wait {
            read: self.wants_read(),
            write: self.wants_write(),
            deadline: match (self.tendril.poll_timeout(), self.release_at) {
                (Some(core), Some(release)) => Some(core.min(release)),
                (core, release) => core.or(release),
            },
        })
    }

    /// A handle's command.
    pub fn command(&mut self, command: Command) {
        self.pending.apply(&mut self.tendril, command);
    }

    /// Close gracefully (e.g. the manager stops).
    pub fn close(&mut self) {
        if self.tendril.is_open() {
            self.tendril.close();
        }
    }

    /// Close at once, dropping queued bytes.
    pub fn abort(&mut self) {
        self.tendril.abort();
    }

    /// `true` while the connection takes bytes.
    pub fn wants_read(&self) -> bool {
        self.tendril.wants_read()
    }

    /// `true` while bytes are queued to send.
    pub fn wants_write(&self) -> bool {
        self.tendril.outgoing_len() > 0
    }

    /// Where the next read goes, and the most it should read.
    pub fn read_buf(&mut self) -> (&mut BytesMut, usize) {
        let size = self.tendril.config().read_size.max(1);
        let buf = self.tendril.read_buf();
        self.read_limit = size.min(buf.capacity() - buf.len()).max(1);
        (buf, self.read_limit)
    }

    /// A read into [`read_buf`](Self::read_buf) ended: `Ok(n)` bytes were appended (`Ok(0)`:
    /// the peer's EOF).
    pub fn read_done(&mut self, now: Duration, result: io::Result<usize>) {
        match result {
            Ok(0) => self.tendril.handle_eof(now),
            Ok(n) => {
                if n >= self.read_limit {
                    grow_reads(&mut self.tendril);
                    self.busy = true;
                }
                self.tendril.handle_read(now, n);
            }
            Err(e) if transient(&e) => {}
            Err(e) => {
                tracing::debug!(error = %e, "read failed");
                self.tendril.handle_error(now, e.to_string());
            }
        }
    }

    /// The queued bytes, as slices for one vectored write; returns how many slices were filled.
    pub fn outgoing<'a>(&'a mut self, slices: &mut [IoSlice<'a>]) -> usize {
        bytes::Buf::chunks_vectored(&*self.tendril.outgoing(), slices)
    }

    /// A write of [`outgoing`](Self::outgoing) ended: `Ok(n)` bytes were taken.
    pub fn write_done(&mut self, now: Duration, result: io::Result<usize>) {
        match result {
            Ok(0) => self
                .tendril
                .handle_error(now, "the socket accepted no bytes"),
            Ok(n) => bytes::Buf::advance(self.tendril.outgoing(), n),
            Err(e) if transient(&e) => {}
            Err(e) => {
                tracing::debug!(error = %e, "write failed");
                self.tendril.handle_error(now, e.to_string());
            }
        }
    }

    /// The write side was shut down (or shutting it down failed: the connection goes on to
    /// close either way).
    pub fn shutdown_done(&mut self, now: Duration, result: io::Result<()>) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "shutdown failed");
        }
        self.tendril.handle_shutdown(now);
    }

    /// The deadline passed.
    pub fn timer(&mut self, now: Duration) {
        if self.release_at.is_some_and(|at| at <= now) {
            self.release_at = None;
            self.tendril.release_idle_buffers();
        }
        self.tendril.handle_timeout(now);
    }

    /// A read would block: the connection gives back the buffers it holds (those that are
    /// empty) — at once, or [`IDLE_RELEASE_DELAY`] from `now` if it is busy, so that a
    /// connection that stays idle holds none and a busy one keeps them from turn to turn.
    pub fn idle(&mut self, now: Duration) {
        if !self.busy {
            self.tendril.release_idle_buffers();
        } else if self.release_at.is_none() && self.tendril.heap_bytes() > 0 {
            self.release_at = Some(now + IDLE_RELEASE_DELAY);
        }
    }

    /// End the connection with an error (e.g. its task could not start), telling the
    /// application, unless it is closed already.
    pub fn fail(&mut self, now: Duration, message: &str) {
        if !self.tendril.is_closed() {
            self.tendril.handle_error(now, message);
            self.tendril.dispatch(&mut *self.app);
        }
        self.pending.fail_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tendril_core::{AppError, Application, Line, Proto};

    struct Echo;
    impl Application for Echo {
        fn recv_frame(&mut self, t: &mut Tendril, f: bytes::Bytes) -> Result<(), AppError> {
            t.send_frame(f)?;
            Ok(())
        }
    }

    /// At `now`, a connection reads lines — one, or as many as fill the read's room if
    /// `filled` — and writes their echo.
    fn exchange(conn: &mut StreamConn, now: Duration, filled: bool) {
        conn.step();
        let (buf, limit) = conn.read_buf();
        let n = if filled { limit } else { 4 };
        buf.extend((0..n).map(|i| {
            if i % 4 == 3 || i == n - 1 {
                b'\n'
            } else {
                b'a'
            }
        }));
        conn.read_done(now, Ok(n));
        conn.step();
        assert!(conn.wants_write());
        let mut slices = [IoSlice::new(&[]); 4];
        let count = conn.outgoing(&mut slices);
        let len = slices[..count].iter().map(|s| s.len()).sum();
        conn.write_done(now, Ok(len));
    }

    fn connection() -> StreamConn {
        StreamConn::new(
            Tendril::new(Proto::TCP, Line::lf(), Line::lf()),
            Box::new(Echo),
        )
    }

    fn deadline(conn: &mut StreamConn) -> Option<Duration> {
        match conn.step() {
            Step::Wait(wait) => wait.deadline,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_connection_that_was_never_busy_gives_its_buffers_back_at_once() {
        let now = Duration::from_secs(1);
        let mut conn = connection();
        exchange(&mut conn, now, false);
        assert!(conn.tendril().heap_bytes() > 0);
        conn.idle(now);
        assert_eq!(conn.tendril().heap_bytes(), 0);
        assert_eq!(deadline(&mut conn), None);
    }

    #[test]
    fn a_busy_connection_gives_its_buffers_back_after_the_delay_not_at_once() {
        let now = Duration::from_secs(1);
        let mut conn = connection();
        // A read that fills its room (and its buffer, all framed and gone), then a short one.
        exchange(&mut conn, now, true);
        exchange(&mut conn, now, false);
        conn.idle(now);
        assert!(conn.tendril().heap_bytes() > 0, "kept while it may be busy");
        let at = now + IDLE_RELEASE_DELAY;
        assert_eq!(deadline(&mut conn), Some(at));
        conn.timer(at - Duration::from_micros(1));
        assert!(conn.tendril().heap_bytes() > 0);
        conn.timer(at);
        assert_eq!(conn.tendril().heap_bytes(), 0);
        assert_eq!(
            deadline(&mut conn),
            None,
            "no deadline once there is nothing to give"
        );
        conn.idle(at);
        assert_eq!(deadline(&mut conn), None);
    }

    #[test]
    fn a_busy_connection_keeps_its_buffers_from_one_read_to_the_next() {
        let now = Duration::from_secs(1);
        let mut conn = connection();
        exchange(&mut conn, now, true);
        for turn in 1..=5u64 {
            let now = now + Duration::from_micros(100 * turn);
            exchange(&mut conn, now, false);
            conn.idle(now);
            assert!(conn.tendril().heap_bytes() > 0, "turn {turn}");
        }
        // The first read that would block set the deadline; later ones did not move it.
        let first = now + Duration::from_micros(100);
        assert_eq!(deadline(&mut conn), Some(first + IDLE_RELEASE_DELAY));
    }
}
