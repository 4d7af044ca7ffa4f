//! Tokio as the kit's [`Runtime`]: spawning, timers and readiness, and nothing else.

use bytes::BytesMut;
use futures::future::BoxFuture;
use socket2::{Domain, SockRef, Socket};
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tendril_net::runtime::{Interest, Listener, Readiness, Runtime, StreamIo, Timer};
use tokio::io::AsyncWrite;

/// The Tokio runtime the caller runs on (tasks go to `tokio::spawn`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }

    fn timer(&self) -> Box<dyn Timer> {
        timer()
    }

    fn listener(&self, socket: Socket) -> io::Result<Box<dyn Listener>> {
        listener(socket)
    }

    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>> {
        udp(socket)
    }

    fn stream(&self, socket: Socket) -> io::Result<Box<dyn StreamIo>> {
        stream(socket)
    }

    fn resolve(&self, endpoint: String) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(resolve(endpoint))
    }
}

// What a Tokio runtime does for the kit, on the runtime of the calling context: the `Tokio`
// adapter calls these in the caller's context, `Sharded` inside a shard's.

pub(crate) fn timer() -> Box<dyn Timer> {
    // Not polled before its first `reset`: where it starts does not matter.
    let idle = Instant::now() + Duration::from_secs(3600);
    Box::new(Sleep(Box::pin(tokio::time::sleep_until(idle.into()))))
}

pub(crate) fn listener(socket: Socket) -> io::Result<Box<dyn Listener>> {
    socket.set_nonblocking(true)?; // Tokio's `from_std` trusts it is
    Ok(if socket.domain()? == Domain::UNIX {
        Box::new(Accept(tokio::net::UnixListener::from_std(socket.into())?))
    } else {
        Box::new(Accept(tokio::net::TcpListener::from_std(socket.into())?))
    })
}

pub(crate) fn udp(socket: std::net::UdpSocket) -> io::Result<Box<dyn Readiness>> {
    socket.set_nonblocking(true)?;
    Ok(Box::new(Udp(tokio::net::UdpSocket::from_std(socket)?)))
}

pub(crate) fn stream(socket: Socket) -> io::Result<Box<dyn StreamIo>> {
    socket.set_nonblocking(true)?;
    Ok(if socket.domain()? == Domain::UNIX {
        Box::new(Stream(tokio::net::UnixStream::from_std(socket.into())?))
    } else {
        Box::new(Stream(tokio::net::TcpStream::from_std(socket.into())?))
    })
}

pub(crate) async fn resolve(endpoint: String) -> io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host(endpoint).await?.collect())
}

struct Sleep(Pin<Box<tokio::time::Sleep>>);

impl Timer for Sleep {
    fn reset(&mut self, at: Instant) {
        self.0.as_mut().reset(at.into());
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

fn tokio_interest(interest: Interest) -> tokio::io::Interest {
    match interest {
        Interest::Read => tokio::io::Interest::READABLE,
        Interest::Write => tokio::io::Interest::WRITABLE,
    }
}

struct Udp(tokio::net::UdpSocket);

impl Readiness for Udp {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        match interest {
            Interest::Read => self.0.poll_recv_ready(cx),
            Interest::Write => self.0.poll_send_ready(cx),
        }
    }

    fn try_io(&self, interest: Interest, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        self.0.try_io(tokio_interest(interest), op)
    }
}

/// A Tokio listener.
struct Accept<L>(L);

impl Listener for Accept<tokio::net::TcpListener> {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Box<dyn StreamIo>>> {
        self.0
            .poll_accept(cx)
            .map_ok(|(stream, _)| Box::new(Stream(stream)) as Box<dyn StreamIo>)
    }
}

impl Listener for Accept<tokio::net::UnixListener> {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Box<dyn StreamIo>>> {
        self.0
            .poll_accept(cx)
            .map_ok(|(stream, _)| Box::new(Stream(stream)) as Box<dyn StreamIo>)
    }
}

/// A Tokio TCP or Unix stream.
struct Stream<S>(S);

/// What [`Stream`] needs of a Tokio stream type beyond `AsyncRead + AsyncWrite`.
trait TokioStream: tokio::io::AsyncRead + AsyncWrite + AsFd + Send + Unpin {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl TokioStream for tokio::net::TcpStream {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_write_ready(self, cx)
    }
}

impl TokioStream for tokio::net::UnixStream {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::UnixStream::poll_write_ready(self, cx)
    }
}

impl<S: TokioStream> StreamIo for Stream<S> {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        // Reads into the spare capacity without zeroing it first.
        tokio_util::io::poll_read_buf(
            Pin::new(&mut self.0),
            cx,
            &mut bytes::BufMut::limit(buf, limit),
        )
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_write_ready(cx)
    }

    fn socket(&self) -> SockRef<'_> {
        SockRef::from(&self.0)
    }
}
