//! # Tendril on a plain mio poll loop
//!
//! The whole of a driver for an event loop of one's own, and the worked example of the
//! driver-writing guide in [`tendril_net::runtime`]: one thread runs a [`mio::Poll`], the
//! tasks the kit spawns and its timers. The manager, TCP, UDP and Unix sockets, handles,
//! framing and TLS are the kit's, the same code Tokio and async-std run, and the shared driver
//! suite passes on it. Each turn of the loop runs the queued tasks, fires the timers that are
//! due (a production loop would keep them in a heap or a wheel), waits in `poll` until the
//! next deadline, and marks the sockets that became ready.
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
//! let manager = tendril_mio::get_manager("tcp", "127.0.0.1:0")?;
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

use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::task::{waker_ref, ArcWake};
use mio::unix::SourceFd;
use mio::{Events, Interest as MioInterest, Poll as MioPoll, Registry, Token};
use socket2::{SockRef, Socket};
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tendril_net::lock;
use tendril_net::runtime::{
    read_zeroed, Interest, Listener, Manager, Readiness, Runtime, StreamIo, Timer,
};

/// The loop's own token; a socket's token is its file descriptor.
const WAKE: Token = Token(usize::MAX);

/// A manager on the process's mio loop (one thread, started on first use).
pub fn get_manager(proto: &str, endpoint: &str) -> io::Result<Manager> {
    Manager::new(Arc::new(runtime()?), proto, endpoint)
}

/// The process's mio loop as a [`Runtime`], e.g. to wrap in one of your own.
pub fn runtime() -> io::Result<Mio> {
    static LOOP: OnceLock<Result<Mio, String>> = OnceLock::new();
    let started = LOOP.get_or_init(|| start().map(Mio).map_err(|e| e.to_string()));
    started.clone().map_err(io::Error::other)
}

fn start() -> io::Result<Arc<Reactor>> {
    let poll = MioPoll::new()?;
    let reactor = Arc::new(Reactor {
        registry: poll.registry().try_clone()?,
        waker: mio::Waker::new(poll.registry(), WAKE)?,
        runnable: Mutex::default(),
        sources: Mutex::default(),
        timers: Mutex::default(),
    });
    let looping = reactor.clone();
    let thread = std::thread::Builder::new().name("tendril-mio".into());
    thread.spawn(move || looping.run(poll))?;
    Ok(reactor)
}

/// The [`Runtime`]: a handle to the loop.
#[derive(Clone)]
pub struct Mio(Arc<Reactor>);

struct Reactor {
    registry: Registry,
    waker: mio::Waker,
    runnable: Mutex<VecDeque<Arc<Task>>>,
    sources: Mutex<HashMap<Token, Arc<Source>>>,
    timers: Mutex<Vec<Weak<Slot>>>,
}

thread_local! {
    /// `true` on the loop's thread, which looks at the timers before it waits anyway.
    static ON_LOOP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Reactor {
    fn run(&self, mut poll: MioPoll) {
        ON_LOOP.set(true);
        let mut events = Events::with_capacity(1024);
        loop {
            while let Some(task) = self.next_task() {
                task.run();
            }
            let next = self.fire_due();
            if !lock(&self.runnable).is_empty() {
                continue;
            }
            let timeout = next.map(|at| at.saturating_duration_since(Instant::now()));
            // An interrupted wait (the one error `poll` has in practice) is a turn like any other.
            let _ = poll.poll(&mut events, timeout);
            for event in events.iter().filter(|e| e.token() != WAKE) {
                let source = lock(&self.sources).get(&event.token()).cloned();
                if let Some(source) = source {
                    let (read, write) = (event.is_read_closed(), event.is_write_closed());
                    source.ready([
                        event.is_readable() || read || event.is_error(),
                        event.is_writable() || write || event.is_error(),
                    ]);
                }
            }
        }
    }

    /// The next task to run. (Not a `while let` on the lock: its guard would live through the
    /// task's run, and a task that wakes itself would wait for it forever.)
    fn next_task(&self) -> Option<Arc<Task>> {
        lock(&self.runnable).pop_front()
    }

    /// Wake the timers whose deadline has passed; the earliest one still waiting.
    fn fire_due(&self) -> Option<Instant> {
        let (now, mut next, mut fired) = (Instant::now(), None::<Instant>, Vec::new());
        lock(&self.timers).retain(|slot| {
            let Some(slot) = slot.upgrade() else {
                return false;
            };
            let mut slot = lock(&slot);
            match slot.0 {
                Some(at) if at <= now => fired.extend(slot.1.take()),
                Some(at) if slot.1.is_some() => next = Some(next.map_or(at, |n| n.min(at))),
                _ => {}
            }
            true
        });
        fired.into_iter().for_each(Waker::wake);
        next
    }

    fn register(self: &Arc<Self>, socket: Socket) -> io::Result<Registered> {
        socket.set_nonblocking(true)?;
        let fd = socket.as_raw_fd();
        let source = Arc::new(Source::default());
        lock(&self.sources).insert(Token(fd as usize), source.clone());
        // Dropped on failure, which takes the source out again.
        let registered = Registered {
            socket,
            source,
            reactor: self.clone(),
        };
        let both = MioInterest::READABLE | MioInterest::WRITABLE;
        self.registry
            .register(&mut SourceFd(&fd), Token(fd as usize), both)?;
        Ok(registered)
    }
}

struct Task {
    future: Mutex<Option<BoxFuture<'static, ()>>>,
    queued: AtomicBool,
    reactor: Weak<Reactor>,
}

impl Task {
    fn run(self: Arc<Self>) {
        self.queued.store(false, Ordering::Release);
        let mut slot = lock(&self.future);
        let Some(future) = slot.as_mut() else { return };
        let waker = waker_ref(&self);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        if !matches!(polled, Ok(Poll::Pending)) {
            *slot = None;
        }
    }
}

impl ArcWake for Task {
    fn wake_by_ref(task: &Arc<Self>) {
        if task.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(reactor) = task.reactor.upgrade() {
            lock(&reactor.runnable).push_back(task.clone());
            if !ON_LOOP.get() {
                let _ = reactor.waker.wake(); // the loop runs its queue before it waits
            }
        }
    }
}

/// A timer: when it fires, and the task waiting for it.
type Slot = Mutex<(Option<Instant>, Option<Waker>)>;

struct MioTimer(Arc<Slot>, Arc<Reactor>);

impl Timer for MioTimer {
    fn reset(&mut self, at: Instant) {
        lock(&self.0).0 = Some(at);
        if !ON_LOOP.get() {
            let _ = self.1.waker.wake(); // the loop may be waiting past `at`
        }
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = lock(&self.0);
        match slot.0 {
            Some(at) if at <= Instant::now() => Poll::Ready(()),
            _ => {
                slot.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// What the loop knows of one socket's readiness: a flag and a waiting task per direction,
/// and a tick that counts events.
#[derive(Default)]
struct Source(Mutex<(u64, [bool; 2], [Option<Waker>; 2])>);

impl Source {
    /// An event: for each direction, whether it is ready now.
    fn ready(&self, ready: [bool; 2]) {
        let mut state = lock(&self.0);
        state.0 += 1;
        let mut woken = [None, None]; // no allocation per event
        for (i, _) in ready.iter().enumerate().filter(|(_, on)| **on) {
            state.1[i] = true;
            woken[i] = state.2[i].take();
        }
        drop(state);
        woken.into_iter().flatten().for_each(Waker::wake);
    }

    fn poll(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        let mut state = lock(&self.0);
        if state.1[interest as usize] {
            return Poll::Ready(Ok(()));
        }
        state.2[interest as usize] = Some(cx.waker().clone());
        Poll::Pending
    }

    fn io<R>(&self, interest: Interest, op: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        let tick = lock(&self.0).0;
        let result = op();
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            let mut state = lock(&self.0);
            if state.0 == tick {
                state.1[interest as usize] = false;
            }
        }
        result
    }

    /// `op` until it does not block, waiting for readiness in between.
    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            match self.io(interest, &mut op) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.poll(cx, interest))?
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

/// A socket on the loop; deregistered when dropped.
struct Registered {
    socket: Socket,
    source: Arc<Source>,
    reactor: Arc<Reactor>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = self
            .reactor
            .registry
            .deregister(&mut SourceFd(&self.socket.as_raw_fd()));
        lock(&self.reactor.sources).remove(&Token(self.socket.as_raw_fd() as usize));
    }
}

impl Runtime for Mio {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        let task = Arc::new(Task {
            future: Mutex::new(Some(task)),
            queued: AtomicBool::new(false),
            reactor: Arc::downgrade(&self.0),
        });
        ArcWake::wake_by_ref(&task);
    }

    fn timer(&self) -> Box<dyn Timer> {
        let slot = Arc::new(Slot::default());
        lock(&self.0.timers).push(Arc::downgrade(&slot));
        Box::new(MioTimer(slot, self.0.clone()))
    }

    fn listener(&self, socket: Socket) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(self.0.register(socket)?))
    }

    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>> {
        Ok(Box::new(self.0.register(socket.into())?))
    }

    fn stream(&self, socket: Socket) -> io::Result<Box<dyn StreamIo>> {
        Ok(Box::new(self.0.register(socket)?))
    }
}

impl Listener for Registered {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Box<dyn StreamIo>>> {
        let (socket, _) = std::task::ready!(self
            .source
            .poll_io(cx, Interest::Read, || self.socket.accept()))?;
        Poll::Ready(Ok(Box::new(self.reactor.register(socket)?)))
    }
}

impl Readiness for Registered {
    fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        self.source.poll(cx, interest)
    }

    fn try_io(&self, interest: Interest, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        self.source.io(interest, op)
    }
}

impl StreamIo for Registered {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        let (source, socket) = (&self.source, &self.socket);
        read_zeroed(buf, limit, |room| {
            source.poll_io(cx, Interest::Read, || (&*socket).read(room))
        })
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = &self.socket;
        self.source
            .poll_io(cx, Interest::Write, || (&*socket).write_vectored(bufs))
    }

    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.source.poll(cx, Interest::Write)
    }

    fn socket(&self) -> SockRef<'_> {
        SockRef::from(&self.socket)
    }
}
