//! Stream connections (TCP, Unix): one thread per connection moves bytes and time.

use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;
use tendril_core::{Addr, Proto};
use tendril_net::WrapperChain;

use crate::handle::{with_current, Command, Route};
use crate::manager::{lock, Context, SharedAcceptor};
use crate::readiness::Readiness;
use crate::registry::Transport;
use crate::TendrilHandle;
use tendril_net::{Step, StreamConn};

/// The longest a write to a peer that does not read holds a connection's thread before it
/// looks at commands and timers again (the socket's send timeout).
pub(crate) const WRITE_SLICE: Duration = Duration::from_millis(50);

/// `true` where shutting a socket down wakes a thread blocked on it in `accept` or `recv`
/// (Linux). Elsewhere a connection or datagram of our own wakes it; that is not done where it
/// is not needed, because on a port shared through `SO_REUSEPORT` it could reach a sibling
/// socket.
pub(crate) const SHUTDOWN_WAKES: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// The most buffers handed to one vectored write.
const MAX_IOV: usize = 64;

/// What reaches a stream connection's thread.
pub(crate) enum StreamMsg {
    /// The socket has bytes, an EOF or an error to read (from the readiness helper).
    Readable(io::Result<()>),
    /// A command from a handle.
    Command(Command),
}

/// Run a connected byte stream as a tendril: make the tendril, ask `acceptor`, and start the
/// connection's thread. Returns once the acceptor decided; a rejection is an error of kind
/// [`ConnectionRefused`](io::ErrorKind::ConnectionRefused) carrying the acceptor's reason (the
/// socket is then closed).
///
/// Transports call this for each accepted or connected socket; it is public so that new stream
/// transports (see [`Transport`]) share everything above the socket. Any connected stream socket
/// works (`TcpStream`, `UnixStream`, a [`socket2::Socket`], …).
pub fn spawn_stream(
    ctx: &Arc<Context>,
    socket: impl Into<Socket>,
    local: Addr,
    remote: Addr,
    acceptor: &SharedAcceptor,
) -> io::Result<TendrilHandle> {
    let socket: Socket = socket.into();
    socket.set_nonblocking(false)?;
    socket.set_write_timeout(Some(WRITE_SLICE))?;
    let socket = Arc::new(socket);
    let mut tendril = ctx.new_tendril(local.clone(), remote.clone());
    let (tx, rx) = mpsc::channel();
    let handle = TendrilHandle::new(Route::Stream(tx.clone()), ctx.proto, local, remote.clone());
    let app = match with_current(&handle, || (lock(acceptor))(&mut tendril)) {
        Ok(app) => app,
        Err(reason) => {
            handle.mark_closed();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                reason.to_string(),
            ));
        }
    };
    let notify = tx.clone();
    let readiness = Readiness::spawn(socket.clone(), move |result| {
        notify.send(StreamMsg::Readable(result)).is_ok()
    });
    ctx.register(&handle);
    let mut conn = Conn {
        ctx: ctx.clone(),
        socket,
        conn: StreamConn::new(tendril, app),
        rx,
        _tx: tx,
        readiness: None,
        readable: false,
        handle: handle.clone(),
    };
    match readiness {
        Ok(readiness) => conn.readiness = Some(readiness),
        Err(e) => {
            conn.conn.fail(
                ctx.now(),
                &format!("could not start the connection's threads: {e}"),
            );
            return Err(e);
        }
    }
    let span = tracing::info_span!("tendril", proto = %ctx.proto, peer = %remote);
    // If the thread cannot start, `conn` is dropped with the closure: its drop reports the
    // close to the application.
    ctx.spawn("tendril-conn", move || {
        let _enter = span.enter();
        conn.run();
    })?;
    Ok(handle)
}

/// One stream connection, on its own thread: the kit's [`StreamConn`] step function, driven by
/// blocking calls and the readiness helper.
struct Conn {
    ctx: Arc<Context>,
    socket: Arc<Socket>,
    conn: StreamConn,
    rx: Receiver<StreamMsg>,
    /// Keeps the channel open while the connection runs.
    _tx: Sender<StreamMsg>,
    readiness: Option<Readiness>,
    /// The readiness helper reported the socket readable and it was not read yet.
    readable: bool,
    handle: TendrilHandle,
}

impl Conn {
    fn run(&mut self) {
        self.handle.set_thread();
        tracing::debug!("opened");
        loop {
            self.follow_stop();
            let wait = match self.conn.step() {
                Step::Shutdown => {
                    let result = self.socket.shutdown(Shutdown::Write);
                    self.conn.shutdown_done(self.ctx.now(), result);
                    continue;
                }
                Step::Closed => break,
                Step::Wait(wait) => wait,
            };
            // A write that took bytes (or failed) may have made room, finished a close or
            // ended the connection: the next step looks at that before any wait.
            let wrote = wait.write && self.write();
            if self.readable && wait.read {
                self.read();
                continue;
            }
            if !self.readable && wait.read {
                if let Some(readiness) = &mut self.readiness {
                    readiness.arm();
                }
            }
            let now = self.ctx.now();
            if wait.deadline.is_some_and(|at| now >= at) {
                self.conn.timer(now);
                continue;
            }
            if wrote || self.conn.wants_write() {
                // Look at what came in without waiting, then write again.
                self.drain();
            } else {
                if self.readiness.as_ref().is_some_and(Readiness::is_armed) {
                    self.conn.idle();
                }
                self.wait(wait.deadline.map(|at| at - now));
            }
        }
        tracing::debug!(stats = ?self.conn.tendril().stats(), "closed");
    }

    /// Close (or abort) when the manager stops; also covers tendrils started during `stop`.
    fn follow_stop(&mut self) {
        if self.ctx.is_aborting() {
            self.conn.abort();
        } else if self.ctx.is_stopping() {
            self.conn.close();
        }
    }

    /// Wait for a message or the deadline, then take every message already queued.
    fn wait(&mut self, timeout: Option<Duration>) {
        let msg = match timeout {
            Some(timeout) => self.rx.recv_timeout(timeout).ok(),
            None => self.rx.recv().ok(),
        };
        if let Some(msg) = msg {
            self.on_msg(msg);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            self.on_msg(msg);
        }
    }

    fn on_msg(&mut self, msg: StreamMsg) {
        match msg {
            StreamMsg::Readable(result) => {
                if let Some(readiness) = &mut self.readiness {
                    readiness.reported();
                }
                match result {
                    Ok(()) => self.readable = true,
                    Err(e) => self.conn.read_done(self.ctx.now(), Err(e)),
                }
            }
            StreamMsg::Command(command) => self.conn.command(command),
        }
    }

    /// One read into the tendril's buffer. The helper saw the socket readable, so it does not
    /// block.
    fn read(&mut self) {
        self.readable = false;
        let socket = &*self.socket;
        let (buf, limit) = self.conn.read_buf();
        let read = tendril_net::runtime::read_zeroed(buf, limit, |room| {
            std::task::Poll::Ready((&*socket).read(room))
        });
        if let std::task::Poll::Ready(result) = read {
            self.conn.read_done(self.ctx.now(), result);
        }
    }

    /// One vectored write of the queued bytes; blocks at most [`WRITE_SLICE`]. `false` if the
    /// socket took nothing in that time.
    fn write(&mut self) -> bool {
        let socket = &*self.socket;
        let result = {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = self.conn.outgoing(&mut slices);
            (&*socket).write_vectored(&slices[..count])
        };
        let took = !matches!(&result, Err(e) if tendril_net::transient(e));
        self.conn.write_done(self.ctx.now(), result);
        took
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Normally the tendril is closed by now; if the thread never started, report it. After
        // a panic in the application, no more callbacks.
        if !std::thread::panicking() {
            self.conn
                .fail(self.ctx.now(), "the connection's thread ended early");
        }
        // Listed as closed before the peer can see the socket close.
        self.ctx.unregister(&self.handle);
        if let Some(mut readiness) = self.readiness.take() {
            let socket = self.socket.clone();
            readiness.finish(move || {
                // Wakes the helper's peek (and sends FIN if the write side is still open).
                let _ = socket.shutdown(Shutdown::Both);
            });
        }
    }
}

/// The first address `endpoint` resolves to.
pub(crate) fn resolve_one(endpoint: &str) -> io::Result<SocketAddr> {
    Ok(tendril_net::resolve(endpoint)?[0])
}

/// Where a connection of our own reaches a socket bound to `local` (a wildcard address is
/// reached on loopback).
pub(crate) fn self_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local {
        SocketAddr::V4(a) if a.ip().is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        other => other.ip(),
    };
    SocketAddr::new(ip, local.port())
}

/// Accept on `listener` until the manager stops; `remote_of` names each peer.
fn accept_loop<L, S, A>(
    ctx: &Arc<Context>,
    local: &Addr,
    acceptor: &SharedAcceptor,
    mut accept: L,
    remote_of: impl Fn(&A) -> Addr,
    local_of: impl Fn(&S) -> Option<Addr>,
) where
    L: FnMut() -> io::Result<(S, A)>,
    S: Into<Socket> + std::os::fd::AsFd,
{
    loop {
        let accepted = accept();
        if ctx.is_stopping() {
            break;
        }
        match accepted {
            Ok((stream, remote)) => {
                let remote = remote_of(&remote);
                if let Err(e) = ctx.accepted_wrapper().apply_to(&stream) {
                    tracing::warn!(%remote, error = %e, "accepted-socket wrapper failed");
                    continue;
                }
                let local = local_of(&stream).unwrap_or_else(|| local.clone());
                match spawn_stream(ctx, stream, local, remote.clone(), acceptor) {
                    Ok(_) => tracing::debug!(%remote, "accepted"),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        tracing::info!(%remote, reason = %e, "rejected");
                    }
                    Err(e) => tracing::warn!(%remote, error = %e, "could not start a connection"),
                }
            }
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// TCP.
pub(crate) struct Tcp;

impl Transport for Tcp {
    fn proto(&self) -> Proto {
        Proto::TCP
    }

    fn listen(
        &self,
        ctx: Arc<Context>,
        endpoint: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> io::Result<Addr> {
        let addr = resolve_one(&endpoint)?;
        let listener = tendril_net::tcp_listener(addr, &wrapper)?;
        listener.set_nonblocking(false)?;
        let local = listener.local_addr()?;
        let listener = Arc::new(listener);
        tracing::info!(%local, "listening (tcp)");
        let wake = listener.clone();
        ctx.on_stop(move || {
            // Shutting a listening socket down wakes a blocked accept (Linux); elsewhere a
            // connection of our own does.
            let _ = SockRef::from(&*wake).shutdown(Shutdown::Both);
            if !SHUTDOWN_WAKES {
                let _ = TcpStream::connect_timeout(&self_addr(local), Duration::from_millis(100));
            }
        });
        let thread_ctx = ctx.clone();
        let span = tracing::info_span!("listener", proto = "tcp", %local);
        ctx.spawn("tendril-listen", move || {
            let _enter = span.enter();
            accept_loop(
                &thread_ctx,
                &local.into(),
                &acceptor,
                || listener.accept(),
                |remote: &SocketAddr| Addr::from(*remote),
                |stream: &TcpStream| stream.local_addr().ok().map(Addr::from),
            );
            tracing::info!("listener closed");
        })?;
        Ok(local.into())
    }

    fn connect(
        &self,
        ctx: Arc<Context>,
        local: String,
        target: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> io::Result<TendrilHandle> {
        let local_ip = if local.is_empty() {
            None
        } else {
            Some(resolve_one(&local)?.ip())
        };
        let mut last_error = None;
        for target in tendril_net::resolve(&target)? {
            let socket = tendril_net::tcp_connect_socket(local_ip, target, &wrapper)?;
            let connected = match *lock(&ctx.connect_timeout) {
                Some(timeout) => socket.connect_timeout(&target.into(), timeout),
                None => socket.connect(&target.into()),
            };
            match connected {
                Ok(()) => {
                    let local = socket
                        .local_addr()?
                        .as_socket()
                        .map_or(Addr::Unnamed, Addr::from);
                    return spawn_stream(&ctx, socket, local, target.into(), &acceptor);
                }
                Err(e) => {
                    tracing::debug!(%target, error = %e, "connect failed");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no address to connect to")))
    }
}

/// Unix-domain stream sockets, built on [`spawn_stream`] like any registered extension.
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
    fn proto(&self) -> Proto {
        Proto::UNIX
    }

    fn listen(
        &self,
        ctx: Arc<Context>,
        endpoint: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> io::Result<Addr> {
        use std::os::unix::net::{UnixListener, UnixStream};
        // A stale socket file from a dead process would make bind fail; one that answers is
        // someone else's and is left alone.
        if std::path::Path::new(&endpoint).exists() && UnixStream::connect(&endpoint).is_err() {
            std::fs::remove_file(&endpoint)?;
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        wrapper.apply(&socket)?;
        socket.bind(&SockAddr::unix(&endpoint)?)?;
        socket.listen(tendril_net::BACKLOG)?;
        let listener = Arc::new(UnixListener::from(socket));
        let local = Addr::Path(endpoint.clone().into());
        tracing::info!(path = %endpoint, "listening (unix)");
        let (wake, path) = (listener.clone(), endpoint.clone());
        ctx.on_stop(move || {
            let _ = SockRef::from(&*wake).shutdown(Shutdown::Both);
            if !SHUTDOWN_WAKES {
                let _ = UnixStream::connect(&path);
            }
        });
        let thread_ctx = ctx.clone();
        let thread_local = local.clone();
        let span = tracing::info_span!("listener", proto = "unix", path = %endpoint);
        ctx.spawn("tendril-listen", move || {
            let _enter = span.enter();
            accept_loop(
                &thread_ctx,
                &thread_local,
                &acceptor,
                || listener.accept(),
                path_addr,
                |_: &UnixStream| None,
            );
            drop(listener);
            let _ = std::fs::remove_file(&endpoint);
            tracing::info!("listener closed");
        })?;
        Ok(local)
    }

    fn connect(
        &self,
        ctx: Arc<Context>,
        _local: String,
        target: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> io::Result<TendrilHandle> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        wrapper.apply(&socket)?;
        socket.connect(&SockAddr::unix(&target)?)?;
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| {
                a.as_pathname()
                    .map(|p| Addr::Path(p.to_string_lossy().into()))
            })
            .unwrap_or(Addr::Unnamed);
        spawn_stream(&ctx, socket, local, Addr::Path(target.into()), &acceptor)
    }
}
