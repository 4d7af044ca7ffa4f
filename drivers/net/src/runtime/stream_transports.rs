//! The stream transports, TCP and Unix: listen and accept, connect out, each socket handed to
//! [`spawn_stream`].

use futures::future::BoxFuture;
use socket2::{Domain, SockAddr, Socket, Type};
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tendril_core::{Addr, Proto};

use super::adapter::{Listener, Runtime, StreamIo};
use super::shards::{bind_shards, spawn_registered};
use super::{spawn_stream, Shared, TendrilHandle, Transport};
use crate::{lock, SharedAcceptor, WrapperChain};

/// How long a listener waits after a failed `accept` (e.g. `EMFILE`) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// The first address `endpoint` names.
pub(crate) async fn resolve_one(shared: &Shared, endpoint: &str) -> io::Result<SocketAddr> {
    let addrs = shared.runtime().resolve(endpoint.to_owned()).await?;
    addrs.first().copied().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{endpoint} resolved to no address"),
        )
    })
}

/// `future`, failed with `TimedOut` if the manager's connect timeout passes first.
pub(crate) async fn within_connect_timeout<T>(
    shared: &Shared,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let Some(timeout) = *lock(&shared.connect_timeout) else {
        return future.await;
    };
    shared.within(timeout, future).await.unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within the connect timeout of {timeout:?}"),
        ))
    })
}

/// A non-blocking connect of `socket` to `target`, registered with the runtime (a blocking
/// one, within the connect timeout, on a runtime that [connects blocking](super::Runtime::connects_blocking)).
async fn connect_socket(
    shared: &Shared,
    socket: Socket,
    target: &SockAddr,
) -> io::Result<Box<dyn StreamIo>> {
    if shared.runtime().connects_blocking() {
        match *lock(&shared.connect_timeout) {
            Some(timeout) => socket.connect_timeout(target, timeout)?,
            None => socket.connect(target)?,
        }
        return shared.runtime().stream(socket);
    }
    socket.set_nonblocking(true)?;
    let started = socket.connect(target);
    let mut io = shared.runtime().stream(socket)?;
    if let Err(e) = started {
        // Usually EINPROGRESS (which has no stable `ErrorKind`); a real failure leaves the
        // socket unconnected, which polls writable at once. SO_ERROR and the peer address tell
        // which.
        poll_fn(|cx| io.poll_writable(cx)).await?;
        if let Some(err) = io.socket().take_error()? {
            return Err(err);
        }
        if io.socket().peer_addr().is_err() {
            return Err(e);
        }
    }
    Ok(io)
}

/// The address of a stream socket's end, as the core names it.
fn addr_of(addr: &SockAddr) -> Addr {
    if let Some(ip) = addr.as_socket() {
        return ip.into();
    }
    match addr.as_pathname() {
        Some(path) => Addr::Path(path.to_string_lossy().into()),
        None => Addr::Unnamed,
    }
}

/// Accept on `listener` until the manager stops: wrap each socket, register it, spawn it.
async fn accept_loop(
    shared: Arc<Shared>,
    mut listener: Box<dyn Listener>,
    local: Addr,
    acceptor: SharedAcceptor,
) {
    let cancel = shared.cancelled();
    while let Some(accepted) = cancel
        .run_until_cancelled(poll_fn(|cx| listener.poll_accept(cx)))
        .await
    {
        let io = match accepted {
            Ok(io) => io,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                shared.sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let remote = io
            .socket()
            .peer_addr()
            .map(|a| addr_of(&a))
            .unwrap_or(Addr::Unnamed);
        if let Err(e) = shared.accepted_wrapper().apply(&io.socket()) {
            tracing::warn!(%remote, error = %e, "accepted-socket wrapper failed");
            continue;
        }
        let local = match io.socket().local_addr() {
            Ok(addr) if addr.as_socket().is_some() => addr_of(&addr),
            _ => local.clone(),
        };
        match spawn_stream(&shared, io, local, remote.clone(), &acceptor) {
            Ok(_) => tracing::debug!(%remote, "accepted"),
            Err(reason) => tracing::info!(%remote, %reason, "rejected"),
        }
    }
    tracing::info!("listener closed");
}

/// Register `listener` and spawn its accept loop, on `shard` if given (registered from that
/// shard's thread, so its connections stay there).
fn serve(
    shared: &Arc<Shared>,
    listener: Socket,
    local: Addr,
    acceptor: SharedAcceptor,
    shard: Option<usize>,
    after: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    let span = tracing::info_span!("listener", proto = %shared.proto(), %local);
    let task = shared.clone();
    let run = move |listener| async move {
        accept_loop(task, listener, local, acceptor).await;
        after();
    };
    let register = |runtime: &dyn Runtime, socket| runtime.listener(socket);
    let id = super::tasks::new_task_id();
    spawn_registered(shared, id, shard, listener, register, span, run)
}

fn refused(reason: tendril_core::Reject) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, reason.to_string())
}

/// TCP.
pub(crate) struct Tcp;

impl Transport for Tcp {
    fn proto(&self) -> Proto {
        Proto::TCP
    }

    fn listen(
        &self,
        shared: Arc<Shared>,
        endpoint: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<Addr>> {
        Box::pin(async move {
            let addr = resolve_one(&shared, &endpoint).await?;
            let shards = shared.shards();
            let (local, listeners) = bind_shards(addr, shards, &wrapper, crate::tcp_listener)?;
            tracing::info!(%local, shards, "listening (tcp)");
            for (shard, listener) in listeners {
                let (listener, acceptor) = (Socket::from(listener), acceptor.clone());
                serve(&shared, listener, local.into(), acceptor, shard, || {})?;
            }
            Ok(local.into())
        })
    }

    fn connect(
        &self,
        shared: Arc<Shared>,
        local: String,
        target: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<TendrilHandle>> {
        Box::pin(async move {
            let targets = shared.runtime().resolve(target.clone()).await?;
            let local_ip: Option<IpAddr> = if local.is_empty() {
                None
            } else {
                Some(resolve_one(&shared, &local).await?.ip())
            };
            // A name may resolve to several addresses (`localhost`: ::1 and 127.0.0.1); the
            // first that answers wins.
            let mut last_error = None;
            for target in targets {
                let attempt = async {
                    let socket = crate::tcp_connect_socket(local_ip, target, &wrapper)?;
                    connect_socket(&shared, socket, &target.into()).await
                };
                match within_connect_timeout(&shared, attempt).await {
                    Ok(io) => {
                        let local = io.socket().local_addr()?;
                        tracing::debug!(local = ?local.as_socket(), remote = %target, "connected (tcp)");
                        return spawn_stream(
                            &shared,
                            io,
                            addr_of(&local),
                            target.into(),
                            &acceptor,
                        )
                        .map_err(refused);
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

/// Unix-domain stream sockets. Socket wrappers run on them as on TCP sockets: on the listening
/// socket before it binds, on each accepted socket, and on an outgoing socket before it
/// connects.
pub(crate) struct Unix;

impl Transport for Unix {
    fn proto(&self) -> Proto {
        Proto::UNIX
    }

    fn listen(
        &self,
        shared: Arc<Shared>,
        endpoint: String,
        wrapper: WrapperChain,
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
            let listener = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            wrapper.apply(&listener)?;
            listener.bind(&SockAddr::unix(&endpoint)?)?;
            listener.listen(crate::BACKLOG)?;
            listener.set_nonblocking(true)?;
            let local = Addr::Path(endpoint.clone().into());
            tracing::info!(path = %endpoint, "listening (unix)");
            let remove = move || {
                let _ = std::fs::remove_file(&endpoint);
            };
            serve(&shared, listener, local.clone(), acceptor, None, remove)?;
            Ok(local)
        })
    }

    fn connect(
        &self,
        shared: Arc<Shared>,
        _local: String,
        target: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<TendrilHandle>> {
        Box::pin(async move {
            let attempt = async {
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                wrapper.apply(&socket)?;
                connect_socket(&shared, socket, &SockAddr::unix(&target)?).await
            };
            let io = within_connect_timeout(&shared, attempt).await?;
            let local = io
                .socket()
                .local_addr()
                .map(|a| addr_of(&a))
                .unwrap_or(Addr::Unnamed);
            spawn_stream(&shared, io, local, Addr::Path(target.into()), &acceptor).map_err(refused)
        })
    }
}
