//! Stream connections (TCP, Unix): one task per connection moves bytes and time.

use futures::future::BoxFuture;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tendril_core::{Addr, Reject, Tendril};
use tendril_net::WrapperChain;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::io::{poll_read_buf, poll_write_buf};
use tracing::Instrument;

use crate::handle::{Command, Route};
use crate::manager::{lock, BoxApp, Context, SharedAcceptor};
use crate::registry::Transport;
use crate::TendrilHandle;
use tendril_net::command::PendingSends;

/// Run a connected byte stream as a tendril: make the tendril, ask `acceptor`, and spawn the
/// connection's task. Transports call this for each accepted or connected socket; it is public
/// so that new stream transports (see [`Transport`]) share everything above the socket.
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
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = TendrilHandle::new(Route::Stream(tx), ctx.proto, local, remote.clone());
    let app = crate::handle::with_current(&handle, || (lock(acceptor))(&mut tendril))?;
    ctx.register(&handle);
    let span = tracing::info_span!("tendril", proto = %ctx.proto, peer = %remote);
    let task_ctx = ctx.clone();
    let task_handle = handle.clone();
    ctx.spawn(
        async move {
            let _registered = Registered(task_ctx.clone(), task_handle);
            tracing::debug!("opened");
            run(&task_ctx, stream, tendril, app, rx).await;
        }
        .instrument(span),
    );
    Ok(handle)
}

/// Takes a connection out of the live table when its task ends, whether it returns, panics or
/// is dropped unfinished.
struct Registered(Arc<Context>, TendrilHandle);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.unregister(&self.1);
    }
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
    let sleep = tokio::time::sleep_until(ctx.epoch);
    tokio::pin!(sleep);
    loop {
        waiting.retry(&mut tendril);
        tendril.dispatch(&mut *app);
        if tendril.wants_shutdown() {
            if let Err(e) = stream.shutdown().await {
                tracing::debug!(error = %e, "shutdown failed");
            }
            tendril.handle_shutdown(ctx.now());
            tendril.dispatch(&mut *app);
        }
        if tendril.is_closed() {
            waiting.retry(&mut tendril);
            break;
        }
        let deadline = tendril.poll_timeout();
        if let Some(at) = deadline {
            sleep.as_mut().reset(ctx.epoch + at);
        }
        poll_fn(|cx| {
            let mut ready = false;
            while commands_open {
                match commands.poll_recv(cx) {
                    Poll::Ready(Some(command)) => {
                        waiting.apply(&mut tendril, command);
                        ready = true;
                    }
                    Poll::Ready(None) => commands_open = false,
                    Poll::Pending => break,
                }
            }
            if !tendril.transmit().is_empty() {
                match poll_write_buf(Pin::new(&mut stream), cx, tendril.transmit()) {
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
                let buf = tendril.read_buf();
                let room = buf.capacity() - buf.len();
                match poll_read_buf(Pin::new(&mut stream), cx, buf) {
                    Poll::Ready(Ok(0)) => {
                        tendril.handle_eof(ctx.now());
                        ready = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        if n == room {
                            tendril_net::grow_reads(&mut tendril);
                        }
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
            if deadline.is_some() && sleep.as_mut().poll(cx).is_ready() {
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

/// TCP.
pub(crate) struct Tcp;

async fn resolve(endpoint: &str) -> io::Result<std::net::SocketAddr> {
    tokio::net::lookup_host(endpoint)
        .await?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{endpoint} resolved to no address"),
            )
        })
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
            let listener =
                tokio::net::TcpListener::from_std(tendril_net::tcp_listener(addr, &wrapper)?)?;
            let local = listener.local_addr()?;
            tracing::info!(%local, "listening (tcp)");
            let cancel = ctx.cancelled();
            let task_ctx = ctx.clone();
            ctx.spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        _ = cancel.cancelled() => break,
                        accepted = listener.accept() => accepted,
                    };
                    match accepted {
                        Ok((stream, remote)) => {
                            let wrapper = task_ctx.accepted_wrapper();
                            if let Err(e) = wrapper.apply_to(&stream) {
                                tracing::warn!(%remote, error = %e, "accepted-socket wrapper failed");
                                continue;
                            }
                            let local = stream.local_addr().unwrap_or(local);
                            match spawn_stream(&task_ctx, stream, local.into(), remote.into(), &acceptor) {
                                Ok(_) => tracing::debug!(%remote, "accepted"),
                                Err(reason) => tracing::info!(%remote, %reason, "rejected"),
                            }
                        }
                        Err(e) => {
                            // EMFILE and friends: back off a little instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    }
                }
                tracing::info!(%local, "listener closed");
            });
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
            let local_ip = if local.is_empty() {
                None
            } else {
                Some(resolve(&local).await?.ip())
            };
            // Try every address the name resolves to (e.g. ::1 then 127.0.0.1), in order.
            let mut last_error = None;
            for target in tokio::net::lookup_host(&target).await? {
                let attempt = async {
                    let socket = tendril_net::tcp_connect_socket(local_ip, target, &wrapper)?;
                    socket.set_nonblocking(true)?;
                    tokio::net::TcpSocket::from_std_stream(socket.into())
                        .connect(target)
                        .await
                };
                match attempt.await {
                    Ok(stream) => {
                        let local = stream.local_addr()?;
                        return spawn_stream(&ctx, stream, local.into(), target.into(), &acceptor)
                            .map_err(|r| {
                                io::Error::new(io::ErrorKind::ConnectionRefused, r.to_string())
                            });
                    }
                    Err(e) => last_error = Some(e),
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

/// Unix-domain stream sockets, built on [`spawn_stream`] like any registered extension.
#[cfg(unix)]
pub(crate) struct Unix;

#[cfg(unix)]
fn path_addr(addr: &tokio::net::unix::SocketAddr) -> Addr {
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
        Box::pin(async move {
            // A stale socket file from a dead process would make bind fail; one that answers is
            // someone else's and is left alone.
            if std::path::Path::new(&endpoint).exists()
                && std::os::unix::net::UnixStream::connect(&endpoint).is_err()
            {
                std::fs::remove_file(&endpoint)?;
            }
            let listener = tokio::net::UnixListener::bind(&endpoint)?;
            let local: Addr = Addr::Path(endpoint.clone().into());
            tracing::info!(path = %endpoint, "listening (unix)");
            let cancel = ctx.cancelled();
            let task_ctx = ctx.clone();
            let task_local = local.clone();
            ctx.spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        _ = cancel.cancelled() => break,
                        accepted = listener.accept() => accepted,
                    };
                    match accepted {
                        Ok((stream, remote)) => {
                            let remote = path_addr(&remote);
                            if let Err(reason) = spawn_stream(
                                &task_ctx,
                                stream,
                                task_local.clone(),
                                remote,
                                &acceptor,
                            ) {
                                tracing::info!(%reason, "rejected");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    }
                }
                let _ = std::fs::remove_file(&endpoint);
            });
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
            let stream = tokio::net::UnixStream::connect(&target).await?;
            let local = stream
                .local_addr()
                .map(|a| path_addr(&a))
                .unwrap_or(Addr::Unnamed);
            spawn_stream(&ctx, stream, local, Addr::Path(target.into()), &acceptor)
                .map_err(|r| io::Error::new(io::ErrorKind::ConnectionRefused, r.to_string()))
        })
    }
}
