//! async-io as the kit's [`Runtime`]: the reactor and timers async-std and smol share, and a
//! global executor for the manager's tasks.

use async_executor::Executor;
use async_io::Async;
use bytes::BytesMut;
use futures::future::BoxFuture;
use socket2::{SockRef, Socket};
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tendril_net::runtime::{read_zeroed, Interest, Listener, Readiness, Runtime, StreamIo, Timer};

/// Sockets and timers on `async-io`'s reactor; tasks on the driver's global executor (one
/// thread per core, started on first use, as smol's and async-std's global executors are)
/// unless a manager is given a [`Spawner`](crate::Spawner).
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncIo;

impl Runtime for AsyncIo {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        global().spawn(task).detach();
    }

    fn timer(&self) -> Box<dyn Timer> {
        Box::new(AsyncTimer(async_io::Timer::never()))
    }

    fn listener(&self, socket: Socket) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(Registered(Async::new(socket)?)))
    }

    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>> {
        Ok(Box::new(Registered(Async::new(socket)?)))
    }

    fn stream(&self, socket: Socket) -> io::Result<Box<dyn StreamIo>> {
        Ok(Box::new(Registered(Async::new(socket)?)))
    }
}

fn global() -> &'static Executor<'static> {
    static GLOBAL: Executor<'static> = Executor::new();
    static THREADS: OnceLock<()> = OnceLock::new();
    THREADS.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for n in 1..=threads {
            std::thread::Builder::new()
                .name(format!("tendril-async-{n}"))
                .spawn(|| loop {
                    // A panicking task is caught by the executor (its task is dropped); this loop
                    // only guards against the unexpected, as smol's global executor does.
                    let _ = std::panic::catch_unwind(|| {
                        async_io::block_on(GLOBAL.run(futures::future::pending::<()>()))
                    });
                })
                .expect("cannot start a Tendril executor thread");
        }
    });
    &GLOBAL
}

struct AsyncTimer(async_io::Timer);

impl Timer for AsyncTimer {
    fn reset(&mut self, at: Instant) {
        self.0.set_at(at);
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

/// A socket on the reactor. Its system calls are the plain non-blocking ones; a `WouldBlock`
/// waits for the reactor, as `async-io`'s own `read_with` does.
struct Registered<T: AsFd>(Async<T>);

/// Retry `op` until it does not block, waiting on `poll` in between.
fn until_ready<R>(
    cx: &mut Context<'_>,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    mut op: impl FnMut() -> io::Result<R>,
) -> Poll<io::Result<R>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(poll(cx))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return Poll::Ready(result),
        }
    }
}

impl Listener for Registered<Socket> {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Box<dyn StreamIo>>> {
        let listener = &self.0;
        let (socket, _) = ready!(until_ready(
            cx,
            |cx| listener.poll_readable(cx),
            || listener.get_ref().accept()
        ))?;
        Poll::Ready(Ok(Box::new(Registered(Async::new(socket)?))))
    }
}

impl Readiness for Registered<std::net::UdpSocket> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.get_ref().as_fd()
    }

    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        match interest {
            Interest::Read => self.0.poll_readable(cx),
            Interest::Write => self.0.poll_writable(cx),
        }
    }

    fn try_io(&self, _: Interest, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        op()
    }
}

impl StreamIo for Registered<Socket> {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        let socket = &self.0;
        read_zeroed(buf, limit, |room| {
            until_ready(
                cx,
                |cx| socket.poll_readable(cx),
                || socket.get_ref().read(room),
            )
        })
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = &self.0;
        until_ready(
            cx,
            |cx| socket.poll_writable(cx),
            || socket.get_ref().write_vectored(bufs),
        )
    }

    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_writable(cx)
    }

    fn socket(&self) -> SockRef<'_> {
        SockRef::from(self.0.get_ref())
    }
}
