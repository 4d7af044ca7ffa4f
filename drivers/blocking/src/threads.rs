//! Threads as the kit's [`Runtime`]: a thread per task, blocking sockets, and no poller.
//!
//! `std` cannot wait for "this socket is readable *or* a command arrived", so each socket that
//! is read from has a small helper thread that blocks in `peek` (consuming nothing) and wakes
//! the task when data, an EOF or an error waits ([`Readiness`](crate::readiness::Readiness)).
//! A task waits by parking its thread, until it is woken or its next deadline comes.

use bytes::BytesMut;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::StreamExt;
use socket2::{SockRef, Socket};
use std::cell::Cell;
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};
use tendril_net::runtime::{read_zeroed, Interest, Listener, Readiness, Runtime, StreamIo, Timer};
use tendril_net::{lock, transient};

use crate::readiness::Readiness as Peek;

/// The longest a write to a peer that does not read holds a task before it looks at commands
/// and timers again (the socket's send timeout).
pub(crate) const WRITE_SLICE: Duration = Duration::from_millis(50);

/// `true` where shutting a socket down wakes a thread blocked on it in `accept` or `recv`
/// (Linux). Elsewhere a connection or datagram of our own wakes it.
const SHUTDOWN_WAKES: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// How long an accept thread waits after a failed `accept` (e.g. `EMFILE`) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// One thread per task; blocking sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Threads;

impl Runtime for Threads {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        let spawned = thread::Builder::new()
            .name("tendril".into())
            .spawn(move || block_on(task));
        if let Err(e) = spawned {
            // The task was dropped with the closure: its guards took it out of every table.
            tracing::warn!(error = %e, "could not start a thread");
        }
    }

    fn timer(&self) -> Box<dyn Timer> {
        Box::new(ParkTimer(None))
    }

    fn listener(&self, socket: Socket) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(AcceptThread::start(socket)?))
    }

    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>> {
        Ok(Box::new(Blocking::new(socket.into())?))
    }

    fn stream(&self, socket: Socket) -> io::Result<Box<dyn StreamIo>> {
        Ok(Box::new(Blocking::new(socket)?))
    }

    fn connects_blocking(&self) -> bool {
        true
    }
}

thread_local! {
    /// The earliest deadline a timer asked for during the current poll on this thread.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Wakes a parked thread, and says it was woken (an unpark meant for an outer `block_on` may
/// wake an inner one on the same thread; the flag keeps the wake for its owner).
struct Unpark(Thread, AtomicBool);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.1.store(true, Ordering::Release);
        self.0.unpark();
    }
}

/// Run `future` on this thread: poll it, and park until it is woken or a timer it polled is
/// due. Nests: an application callback may block on a manager call inside a task.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let unpark = Arc::new(Unpark(thread::current(), AtomicBool::new(false)));
    let waker = Waker::from(unpark.clone());
    let mut future = pin!(future);
    loop {
        let outer = DEADLINE.replace(None);
        let polled = future.as_mut().poll(&mut Context::from_waker(&waker));
        let deadline = DEADLINE.replace(outer);
        if let Poll::Ready(output) = polled {
            return output;
        }
        while !unpark.1.swap(false, Ordering::AcqRel) {
            match deadline {
                Some(at) if at <= Instant::now() => break,
                Some(at) => thread::park_timeout(at - Instant::now()),
                None => thread::park(),
            }
        }
    }
}

/// A timer is a deadline the polling thread parks until.
struct ParkTimer(Option<Instant>);

impl Timer for ParkTimer {
    fn reset(&mut self, at: Instant) {
        self.0 = Some(at);
    }

    fn poll_fired(&mut self, _: &mut Context<'_>) -> Poll<()> {
        match self.0 {
            Some(at) if at <= Instant::now() => Poll::Ready(()),
            Some(at) => {
                DEADLINE.set(Some(DEADLINE.get().map_or(at, |d| d.min(at))));
                Poll::Pending
            }
            None => Poll::Pending,
        }
    }
}

/// What the peek helper last reported, and the task waiting for it.
#[derive(Default)]
struct Peeked {
    report: Option<io::Result<()>>,
    waker: Option<Waker>,
}

/// A blocking socket with its peek helper: reads happen only once the helper saw something to
/// read, so they never block; writes block for at most [`WRITE_SLICE`].
struct Blocking {
    socket: Arc<Socket>,
    peeked: Arc<Mutex<Peeked>>,
    peek: Peek,
}

impl Blocking {
    fn new(socket: Socket) -> io::Result<Self> {
        socket.set_nonblocking(false)?;
        socket.set_write_timeout(Some(WRITE_SLICE))?;
        let socket = Arc::new(socket);
        let peeked = Arc::new(Mutex::new(Peeked::default()));
        let reports = peeked.clone();
        let peek = Peek::spawn(socket.clone(), move |result| {
            let waker = {
                let mut peeked = lock(&reports);
                peeked.report = Some(result);
                peeked.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
            true
        })?;
        Ok(Blocking {
            socket,
            peeked,
            peek,
        })
    }

    /// The helper's report if there is one (the helper then waits to be asked again);
    /// otherwise ask it, and wait.
    fn poll_report(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut peeked = lock(&self.peeked);
        if let Some(report) = peeked.report.take() {
            self.peek.reported();
            return Poll::Ready(report);
        }
        peeked.waker = Some(cx.waker().clone());
        drop(peeked);
        self.peek.arm();
        Poll::Pending
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        let socket = self.socket.clone();
        self.peek.finish(move || {
            // Shutting the read side wakes the helper's peek (Linux); elsewhere something of
            // our own to read does.
            let _ = socket.shutdown(Shutdown::Read);
            if !SHUTDOWN_WAKES {
                if let Some(local) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
                    let _ = socket.send_to(&[], &self_addr(local).into());
                }
            }
        });
    }
}

impl StreamIo for Blocking {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_report(cx))?;
        let socket = &*self.socket;
        read_zeroed(buf, limit, |room| Poll::Ready((&*socket).read(room)))
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match (&*self.socket).write_vectored(bufs) {
            // The slice of time passed: look at commands and timers, then write again.
            Err(e) if transient(&e) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            written => Poll::Ready(written),
        }
    }

    fn poll_writable(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // connected by a blocking call
    }

    fn socket(&self) -> SockRef<'_> {
        SockRef::from(&*self.socket)
    }
}

/// A UDP socket: receives once the helper saw a datagram, sends within a slice of time.
impl Readiness for Blocking {
    fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        if interest == Interest::Write {
            return Poll::Ready(Ok(()));
        }
        let mut peeked = lock(&self.peeked);
        match &peeked.report {
            Some(Ok(())) => Poll::Ready(Ok(())),
            Some(Err(_)) => {
                self.peek.reported();
                Poll::Ready(peeked.report.take().unwrap_or(Ok(())))
            }
            None => {
                peeked.waker = Some(cx.waker().clone());
                drop(peeked);
                self.peek.arm();
                Poll::Pending
            }
        }
    }

    fn try_io(&self, interest: Interest, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        if interest == Interest::Read {
            let report = lock(&self.peeked).report.take();
            let Some(report) = report else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            self.peek.reported();
            report?; // what the peek met (an ICMP report, …) is this receive's error
                     // A batch receive on a blocking socket would wait for a full batch: this one takes
                     // what is there. The helper is not peeking now (it waits to be asked again).
            self.socket.set_nonblocking(true)?;
            let received = op();
            self.socket.set_nonblocking(false)?;
            return received;
        }
        op()
    }
}

/// Where a connection or datagram of our own reaches a socket bound to `local` (a wildcard
/// address is reached on loopback).
fn self_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local {
        SocketAddr::V4(a) if a.ip().is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        other => other.ip(),
    };
    SocketAddr::new(ip, local.port())
}

/// A listener accepts on a thread of its own, which hands each socket to the accept task.
struct AcceptThread {
    accepted: mpsc::UnboundedReceiver<io::Result<Socket>>,
    socket: Arc<Socket>,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AcceptThread {
    fn start(socket: Socket) -> io::Result<Self> {
        socket.set_nonblocking(false)?;
        let socket = Arc::new(socket);
        let closing = Arc::new(AtomicBool::new(false));
        let (tx, accepted) = mpsc::unbounded();
        let (listener, stop) = (socket.clone(), closing.clone());
        let thread = thread::Builder::new()
            .name("tendril-accept".into())
            .spawn(move || loop {
                let result = listener.accept().map(|(socket, _)| socket);
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let failed = result.is_err();
                if tx.unbounded_send(result).is_err() {
                    return;
                }
                if failed {
                    thread::sleep(ACCEPT_BACKOFF);
                }
            })?;
        Ok(AcceptThread {
            accepted,
            socket,
            closing,
            thread: Some(thread),
        })
    }
}

impl Listener for AcceptThread {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Box<dyn StreamIo>>> {
        match self.accepted.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(socket))) => {
                Poll::Ready(Blocking::new(socket).map(|s| Box::new(s) as Box<dyn StreamIo>))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(e)),
            // The accept thread ended: nothing more comes until the manager stops.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for AcceptThread {
    /// Wake the accept thread and wait for it, so the port is free once the listener is gone.
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.socket.shutdown(Shutdown::Both);
        if !SHUTDOWN_WAKES {
            if let Some(local) = self.socket.local_addr().ok().and_then(|a| a.as_socket()) {
                let _ = TcpStream::connect_timeout(&self_addr(local), Duration::from_millis(100));
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
