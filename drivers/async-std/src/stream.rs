//! Stream connections (TCP, Unix): one task per connection moves bytes and time.

use async_io::{Async, Timer};
use bytes::Buf;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures::StreamExt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tendril_core::{Addr, Reject, Tendril};
use tendril_net::WrapperChain;
use tracing::Instrument;

use crate::handle::{Command, Route};
use crate::manager::{lock, BoxApp, Context, SharedAcceptor};
use crate::registry::Transport;
use crate::TendrilHandle;
use tendril_net::command::PendingSends;

/// The most buffers one vectored write hands to the kernel.
const MAX_IOVECS: usize = 64;

/// How long a listener waits after a failed `accept` (e.g. `EMFILE`) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// A socket for [`spawn_stream`]: [`async_io::Async`] around a non-blocking std socket, whose
/// [`close`](futures::io::AsyncWriteExt::close) shuts the write side down (sends FIN).
///
/// `Async<TcpStream>`'s own `close` only flushes, so a graceful close would never reach the
/// peer; wrap stream sockets in this type instead.
///
/// ```no_run
/// # fn demo() -> std::io::Result<()> {
/// use tendril_async_std::SocketStream;
///
/// let stream = std::net::TcpStream::connect("127.0.0.1:7000")?;
/// let stream = SocketStream::new(stream)?; // non-blocking, registered with async-io
/// assert!(stream.get_ref().peer_addr().is_ok());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SocketStream<T: AsFd>(Async<T>);

impl<T: AsFd> SocketStream<T> {
    /// Put `socket` in non-blocking mode and register it with the `async-io` reactor.
    pub fn new(socket: T) -> io::Result<Self> {
        Ok(SocketStream(Async::new(socket)?))
    }

    /// The socket.
    pub fn get_ref(&self) -> &T {
        self.0.get_ref()
    }

    /// The `async-io` handle.
    pub fn as_async(&self) -> &Async<T> {
        &self.0
    }
}

impl<T: AsFd> From<Async<T>> for SocketStream<T> {
    fn from(socket: Async<T>) -> Self {
        SocketStream(socket)
    }
}

impl<T: AsFd + Unpin> AsyncRead for SocketStream<T>
where
    Async<T>: AsyncRead,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsFd + Unpin> AsyncWrite for SocketStream<T>
where
    Async<T>: AsyncWrite,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Poll::Ready(tendril_net::socket2::SockRef::from(self.0.get_ref()).shutdown(Shutdown::Write))
    }
}

/// Marks the handle closed and drops it from the manager's table when the connection's task
/// ends, also if it panicked or its executor dropped it.
struct Unregister {
    ctx: Arc<Context>,
    handle: TendrilHandle,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.ctx.unregister(&self.handle);
    }
}

/// Run a connected byte stream as a tendril: make the tendril, ask `acceptor`, and spawn the
/// connection's task. Transports call this for each accepted or connected socket; it is public
/// so that new stream transports (see [`Transport`]) share everything above the socket.
///
/// `stream` must shut its write side down (send FIN) when closed; for `async-io` sockets use
/// [`SocketStream`].
pub fn spawn_stream<S>(
    ctx: &Arc<Context>,
    stream: S,
    local: Addr,
    remote: Addr,
    acceptor: &SharedAcceptor,
) -> Result<TendrilHandle, Reject>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut tendril = ctx.new_tendril(local.clone(), remote.clone());
    let (tx, rx) = mpsc::unbounded();
    let handle = TendrilHandle::new(Route::Stream(tx), ctx.proto, local, remote.clone());
    let app = crate::handle::with_current(&handle, || (lock(acceptor))(&mut tendril))?;
    ctx.register(&handle);
    let span = tracing::info_span!("tendril", proto = %ctx.proto, peer = %remote);
    let guard = Unregister {
        ctx: ctx.clone(),
        handle: handle.clone(),
    };
    ctx.spawn(
        async move {
            tracing::debug!("opened");
            run(&guard.ctx, stream, tendril, app, rx).await;
            drop(guard);
        }
        .instrument(span),
    );
    Ok(handle)
}

fn poll_write_queued<S: AsyncWrite + Unpin>(
    stream: &mut S,
    cx: &mut TaskContext<'_>,
    tendril: &mut Tendril,
) -> Poll<io::Result<usize>> {
    let result = {
        let out = tendril.transmit();
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = out.chunks_vectored(&mut slices);
        Pin::new(stream).poll_write_vectored(cx, &slices[..n])
    };
    if let Poll::Ready(Ok(n)) = result {
        tendril.transmit().advance(n);
    }
    result
}

/// One read into the tendril's receive buffer. The futures `AsyncRead` wants initialised
/// bytes, so the spare room is zeroed first (no `unsafe` in this workspace).
fn poll_read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut TaskContext<'_>,
    tendril: &mut Tendril,
) -> Poll<io::Result<usize>> {
    let read_size = tendril.config().read_size.max(1);
    let buf = tendril.read_buf();
    let start = buf.len();
    buf.resize(start + read_size, 0);
    let result = Pin::new(stream).poll_read(cx, &mut buf[start..]);
    let n = match &result {
        Poll::Ready(Ok(n)) => *n,
        _ => 0,
    };
    buf.truncate(start + n);
    if n == read_size {
        tendril_net::grow_reads(tendril);
    }
    result
}

async fn run<S>(
    ctx: &Context,
    mut stream: S,
    mut tendril: Tendril,
    mut app: BoxApp,
    mut commands: mpsc::UnboundedReceiver<Command>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut waiting = PendingSends::default();
    let mut commands_open = true;
    let mut timer = Timer::never();
    let mut armed: Option<Duration> = None;
    loop {
        waiting.retry(&mut tendril);
        tendril.dispatch(&mut app);
        if tendril.wants_shutdown() {
            if let Err(e) = stream.close().await {
                tracing::debug!(error = %e, "shutdown failed");
            }
            tendril.handle_shutdown(ctx.now());
            tendril.dispatch(&mut app);
        }
        if tendril.is_closed() {
            waiting.retry(&mut tendril);
            break;
        }
        let deadline = tendril.poll_timeout();
        if deadline != armed {
            if let Some(at) = deadline {
                timer.set_at(ctx.epoch + at);
            }
            armed = deadline;
        }
        poll_fn(|cx| {
            let mut ready = false;
            while commands_open {
                match commands.poll_next_unpin(cx) {
                    Poll::Ready(Some(command)) => {
                        waiting.apply(&mut tendril, command);
                        ready = true;
                    }
                    Poll::Ready(None) => commands_open = false,
                    Poll::Pending => break,
                }
            }
            if !tendril.transmit().is_empty() {
                match poll_write_queued(&mut stream, cx, &mut tendril) {
                    Poll::Ready(Ok(0)) => {
                        tendril.handle_error(ctx.now(), "the socket accepted no bytes");
                        ready = true;
                    }
                    Poll::Ready(Ok(_)) => ready = true,
                    Poll::Ready(Err(e)) => {
                        tendril.handle_error(ctx.now(), e.to_string());
                        ready = true;
                    }
                    Poll::Pending => {}
                }
            }
            if tendril.wants_read() {
                match poll_read_into(&mut stream, cx, &mut tendril) {
                    Poll::Ready(Ok(0)) => {
                        tendril.handle_eof(ctx.now());
                        ready = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        tendril.handle_read(ctx.now(), n);
                        ready = true;
                    }
                    Poll::Ready(Err(e)) => {
                        tendril.handle_error(ctx.now(), e.to_string());
                        ready = true;
                    }
                    Poll::Pending => tendril.release_idle_buffers(),
                }
            }
            if armed.is_some() && Pin::new(&mut timer).poll(cx).is_ready() {
                // A fired `Timer` is spent until set again.
                armed = None;
                tendril.handle_timeout(ctx.now());
                ready = true;
            }
            if ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
    tracing::debug!(stats = ?tendril.stats(), "finished");
}

/// Resolve `endpoint` to every address it names. IP literals need no lookup; names are looked
/// up on a short-lived thread, as the system resolver blocks.
pub(crate) async fn resolve_all(endpoint: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (tx, rx) = futures::channel::oneshot::channel();
    let name = endpoint.to_owned();
    std::thread::Builder::new()
        .name("tendril-resolve".into())
        .spawn(move || {
            let _ = tx.send(tendril_net::resolve(&name));
        })?;
    rx.await
        .map_err(|_| io::Error::other(format!("resolving {endpoint} failed")))?
}

/// The first address `endpoint` names.
pub(crate) async fn resolve(endpoint: &str) -> io::Result<SocketAddr> {
    let addrs = resolve_all(endpoint).await?;
    addrs.first().copied().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{endpoint} resolved to no address"),
        )
    })
}

/// TCP.
pub(crate) struct Tcp;

/// A non-blocking connect from a `tendril-net` socket (wrappers applied, bound to `local`).
async fn connect_tcp(
    local: Option<IpAddr>,
    target: SocketAddr,
    wrapper: &WrapperChain,
) -> io::Result<SocketStream<TcpStream>> {
    let socket = tendril_net::tcp_connect_socket(local, target, wrapper)?;
    socket.set_nonblocking(true)?;
    let started = socket.connect(&target.into());
    let stream = Async::new(TcpStream::from(socket))?;
    if let Err(e) = started {
        // Usually EINPROGRESS (which has no stable `ErrorKind`); a real failure leaves the socket
        // unconnected, which polls writable at once. SO_ERROR and the peer address tell which.
        stream.writable().await?;
        if let Some(err) = stream.get_ref().take_error()? {
            return Err(err);
        }
        if stream.get_ref().peer_addr().is_err() {
            return Err(e);
        }
    }
    Ok(stream.into())
}

impl Transport for Tcp {
    fn proto(&self) -> tendril_core::Proto {
        tendril_core::Proto::TCP
    }

    fn listen(
        &self,
        ctx: Arc<Context>,
        endpoint: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<Addr>> {
        Box::pin(async move {
            let addr = resolve(&endpoint).await?;
            let listener = Async::new(tendril_net::tcp_listener(addr, &wrapper)?)?;
            let local = listener.get_ref().local_addr()?;
            tracing::info!(%local, "listening (tcp)");
            let span = tracing::info_span!("listener", proto = %ctx.proto, %local);
            let task_ctx = ctx.clone();
            ctx.spawn(accept_tcp(task_ctx, listener, local, acceptor).instrument(span));
            Ok(local.into())
        })
    }

    fn connect(
        &self,
        ctx: Arc<Context>,
        local: String,
        target: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<TendrilHandle>> {
        Box::pin(async move {
            let targets = resolve_all(&target).await?;
            let local_ip = if local.is_empty() {
                None
            } else {
                Some(resolve(&local).await?.ip())
            };
            // A name may resolve to several addresses (`localhost`: ::1 and 127.0.0.1); the
            // first that answers wins.
            let mut last_error = None;
            for target in targets {
                match connect_tcp(local_ip, target, &wrapper).await {
                    Ok(stream) => {
                        let local = stream.get_ref().local_addr()?;
                        tracing::debug!(%local, remote = %target, "connected (tcp)");
                        return spawn_stream(&ctx, stream, local.into(), target.into(), &acceptor)
                            .map_err(|r| {
                                io::Error::new(io::ErrorKind::ConnectionRefused, r.to_string())
                            });
                    }
                    Err(e) => {
                        tracing::debug!(remote = %target, error = %e, "connect failed");
                        last_error = Some(e);
                    }
                }
            }
            Err(last_error.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{target} resolved to no address"),
                )
            }))
        })
    }
}

async fn accept_tcp(
    ctx: Arc<Context>,
    listener: Async<TcpListener>,
    local: SocketAddr,
    acceptor: SharedAcceptor,
) {
    let cancel = ctx.cancelled();
    while let Some(accepted) = cancel
        .run_until_cancelled(listener.read_with(|l| l.accept()))
        .await
    {
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                Timer::after(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if let Err(e) = ctx.accepted_wrapper().apply_to(&stream) {
            tracing::warn!(%remote, error = %e, "accepted-socket wrapper failed");
            continue;
        }
        let local = stream.local_addr().unwrap_or(local);
        let stream = match SocketStream::new(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%remote, error = %e, "cannot register the accepted socket");
                continue;
            }
        };
        match spawn_stream(&ctx, stream, local.into(), remote.into(), &acceptor) {
            Ok(_) => tracing::debug!(%remote, "accepted"),
            Err(reason) => tracing::info!(%remote, %reason, "rejected"),
        }
    }
    tracing::info!("listener closed");
}

/// Unix-domain stream sockets, built on [`spawn_stream`] and the rest of the public API like
/// any registered extension.
#[cfg(unix)]
pub(crate) struct Unix;

#[cfg(unix)]
fn path_addr(addr: &std::os::unix::net::SocketAddr) -> Addr {
    match addr.as_pathname() {
        Some(path) => Addr::Path(path.to_string_lossy().into()),
        None => Addr::Unnamed,
    }
}

#[cfg(unix)]
impl Transport for Unix {
    fn proto(&self) -> tendril_core::Proto {
        tendril_core::Proto::UNIX
    }

    fn listen(
        &self,
        ctx: Arc<Context>,
        endpoint: String,
        _wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<Addr>> {
        use std::os::unix::net::UnixListener;
        Box::pin(async move {
            // A stale socket file from a dead process would make bind fail; one that answers is
            // someone else's and is left alone.
            if std::path::Path::new(&endpoint).exists()
                && std::os::unix::net::UnixStream::connect(&endpoint).is_err()
            {
                std::fs::remove_file(&endpoint)?;
            }
            let listener = Async::new(UnixListener::bind(&endpoint)?)?;
            let local: Addr = Addr::Path(endpoint.clone().into());
            tracing::info!(path = %endpoint, "listening (unix)");
            let span = tracing::info_span!("listener", proto = %ctx.proto, path = %endpoint);
            let cancel = ctx.cancelled();
            let task_ctx = ctx.clone();
            let task_local = local.clone();
            ctx.spawn(
                async move {
                    while let Some(accepted) = cancel
                        .run_until_cancelled(listener.read_with(|l| l.accept()))
                        .await
                    {
                        let (stream, remote) = match accepted {
                            Ok(accepted) => accepted,
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                Timer::after(ACCEPT_BACKOFF).await;
                                continue;
                            }
                        };
                        let remote = path_addr(&remote);
                        let stream = match SocketStream::new(stream) {
                            Ok(stream) => stream,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot register the accepted socket");
                                continue;
                            }
                        };
                        match spawn_stream(&task_ctx, stream, task_local.clone(), remote, &acceptor)
                        {
                            Ok(_) => tracing::debug!("accepted"),
                            Err(reason) => tracing::info!(%reason, "rejected"),
                        }
                    }
                    drop(listener);
                    let _ = std::fs::remove_file(&endpoint);
                    tracing::info!("listener closed");
                }
                .instrument(span),
            );
            Ok(local)
        })
    }

    fn connect(
        &self,
        ctx: Arc<Context>,
        _local: String,
        target: String,
        _wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<TendrilHandle>> {
        Box::pin(async move {
            let stream = Async::<std::os::unix::net::UnixStream>::connect(&target).await?;
            let local = stream
                .get_ref()
                .local_addr()
                .map(|a| path_addr(&a))
                .unwrap_or(Addr::Unnamed);
            spawn_stream(
                &ctx,
                SocketStream::from(stream),
                local,
                Addr::Path(target.into()),
                &acceptor,
            )
            .map_err(|r| io::Error::new(io::ErrorKind::ConnectionRefused, r.to_string()))
        })
    }
}
