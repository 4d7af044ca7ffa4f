//! UDP: one task per socket runs the core's tracker.

use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tendril_core::tracker::{ConnId, Tracker, TrackerEvent};
use tendril_core::{Addr, Proto, Reject, Tendril};
use tendril_net::{Outbox, UdpIo, WrapperChain};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::handle::{Command, Route};
use crate::manager::{lock, BoxApp, Context, SharedAcceptor};
use crate::registry::Transport;
use crate::TendrilHandle;

/// Receive batches per wake-up before commands and timers get their turn.
const RECV_ROUNDS: usize = 16;

/// UDP.
pub(crate) struct Udp;

/// Ask the socket task to track an outgoing peer.
struct Connect {
    remote: SocketAddr,
    acceptor: SharedAcceptor,
    reply: oneshot::Sender<io::Result<TendrilHandle>>,
}

/// The socket tasks of this manager, for `connect`.
#[derive(Default)]
pub(crate) struct Sockets {
    by_family: Vec<(bool, mpsc::UnboundedSender<Connect>)>,
}

fn sockets(ctx: &Context) -> std::sync::MutexGuard<'_, Sockets> {
    lock(&ctx.udp)
}

async fn resolve(endpoint: &str) -> io::Result<SocketAddr> {
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

/// Bind `addr` and spawn its socket task; returns the bound address.
fn bind(
    ctx: &Arc<Context>,
    addr: SocketAddr,
    wrapper: &WrapperChain,
    acceptor: Option<SharedAcceptor>,
) -> io::Result<SocketAddr> {
    let socket = UdpSocket::from_std(tendril_net::udp_socket(addr, wrapper)?)?;
    let io = UdpIo::new(&socket)?;
    let local = io.local_addr();
    let (connect_tx, connect_rx) = mpsc::unbounded_channel();
    sockets(ctx).by_family.push((local.is_ipv4(), connect_tx));
    let (peer_tx, peer_rx) = mpsc::unbounded_channel();
    let config = ctx.settings.tracker_config();
    let task_ctx = ctx.clone();
    let accept = acceptor.clone();
    let tracker: Tracker<Bytes, Bytes, BoxApp> = Tracker::new(
        ctx.proto,
        config,
        {
            let ctx = ctx.clone();
            move || (lock(&ctx.framers))()
        },
        move |t: &mut Tendril| match &accept {
            Some(acceptor) => (lock(acceptor))(t),
            None => Err(Reject::new(
                "this socket only talks to peers it connected to",
            )),
        },
    );
    let span = tracing::info_span!("udp", %local);
    ctx.spawn(tracing::Instrument::instrument(
        SocketTask {
            ctx: task_ctx,
            socket,
            io,
            tracker,
            peer_tx,
            handles: HashMap::new(),
            outbox: Outbox::new(),
        }
        .run(peer_rx, connect_rx),
        span,
    ));
    Ok(local)
}

struct SocketTask {
    ctx: Arc<Context>,
    socket: UdpSocket,
    io: UdpIo,
    tracker: Tracker<Bytes, Bytes, BoxApp>,
    peer_tx: mpsc::UnboundedSender<(ConnId, Command)>,
    handles: HashMap<ConnId, TendrilHandle>,
    outbox: Outbox,
}

impl SocketTask {
    async fn run(
        mut self,
        mut peer_rx: mpsc::UnboundedReceiver<(ConnId, Command)>,
        mut connect_rx: mpsc::UnboundedReceiver<Connect>,
    ) {
        let mut buf = vec![0u8; self.io.buffer_size()];
        let mut received = Vec::new();
        let cancel = self.ctx.cancelled();
        let mut stopping = false;
        let sleep = tokio::time::sleep_until(self.ctx.epoch);
        tokio::pin!(sleep);
        loop {
            self.settle();
            if stopping && self.tracker.is_empty() && self.outbox.is_empty() {
                break;
            }
            let deadline = self.tracker.poll_timeout();
            if let Some(at) = deadline {
                sleep.as_mut().reset(self.ctx.epoch + at);
            }
            tokio::select! {
                _ = cancel.cancelled(), if !stopping => {
                    stopping = true;
                    self.tracker.close_all(self.ctx.now());
                }
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::warn!(error = %e, "socket failed");
                        self.tracker.fail_all(self.ctx.now(), &e.to_string());
                        self.settle();
                        break;
                    }
                    self.receive(&mut buf, &mut received);
                }
                _ = self.socket.writable(), if !self.outbox.is_empty() => {}
                Some((id, command)) = peer_rx.recv() => self.command(id, command),
                Some(connect) = connect_rx.recv() => self.connect(connect),
                _ = &mut sleep, if deadline.is_some() => self.tracker.handle_timeout(self.ctx.now()),
            }
        }
        for handle in self.handles.values() {
            self.ctx.unregister(handle);
        }
    }

    /// Read the datagrams waiting on the socket into the tracker, a batch per system call, and
    /// send each batch's replies before reading the next (they leave while the peers' next
    /// datagrams arrive). Stops when the socket is drained or after [`RECV_ROUNDS`] batches, so
    /// commands and timers get their turn; the socket is still readable then, and the select
    /// loop comes straight back.
    fn receive(&mut self, buf: &mut [u8], received: &mut Vec<tendril_net::Received>) {
        for _ in 0..RECV_ROUNDS {
            received.clear();
            let result = self.socket.try_io(Interest::READABLE, || {
                self.io.recv(&self.socket, buf, |r| received.push(r))
            });
            match result {
                Ok(_) => {
                    let now = self.ctx.now();
                    let buf = &*buf;
                    self.tracker
                        .handle_datagrams(now, received.iter().map(|r| r.datagram(buf)));
                    self.settle();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on some systems; one peer's
                    // trouble is not the socket's.
                    tracing::debug!(error = %e, "receive error");
                    return;
                }
            }
        }
    }

    fn command(&mut self, id: ConnId, command: Command) {
        let now = self.ctx.now();
        let done = self
            .tracker
            .with(now, id, |t, _| tendril_net::command::apply_now(t, command));
        if done.is_none() {
            tracing::debug!(%id, "command for a peer that is gone");
        }
    }

    fn connect(&mut self, connect: Connect) {
        let now = self.ctx.now();
        let local: Addr = self.io.local_for(connect.remote).into();
        let remote: Addr = connect.remote.into();
        let acceptor = connect.acceptor;
        let id = match self
            .tracker
            .connect(now, local.clone(), remote.clone(), |t| (lock(&acceptor))(t))
        {
            Ok(id) => id,
            Err(reason) => {
                let _ = connect.reply.send(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    reason.to_string(),
                )));
                return;
            }
        };
        let handle = self.handle_for(id, local, remote);
        let _ = connect.reply.send(Ok(handle));
    }

    fn handle_for(&mut self, id: ConnId, local: Addr, remote: Addr) -> TendrilHandle {
        let handle = TendrilHandle::new(
            Route::Datagram(self.peer_tx.clone(), id),
            self.ctx.proto,
            local,
            remote,
        );
        self.ctx.register(&handle);
        self.handles.insert(id, handle.clone());
        handle
    }

    /// Send what the tracker queued and keep the manager's tendril list current.
    fn settle(&mut self) {
        while let Some(event) = self.tracker.poll_event() {
            match event {
                TrackerEvent::Accepted { id, remote } => {
                    let local = self
                        .tracker
                        .get(id)
                        .map(|t| t.local_addr().clone())
                        .unwrap_or(Addr::Unnamed);
                    tracing::debug!(%remote, "accepted");
                    self.handle_for(id, local, remote);
                }
                TrackerEvent::Rejected { remote, reason } => {
                    tracing::info!(%remote, %reason, "rejected");
                }
                TrackerEvent::TableFull { remote } => {
                    tracing::warn!(%remote, "peer table full of established peers; datagram dropped");
                }
                TrackerEvent::Closed { id, remote } => {
                    tracing::debug!(%remote, "closed");
                    if let Some(handle) = self.handles.remove(&id) {
                        self.ctx.unregister(&handle);
                    }
                }
                _ => {}
            }
        }
        while let Some(t) = self.tracker.poll_transmit() {
            self.outbox.push(t);
        }
        let (socket, io) = (&self.socket, &self.io);
        // On `WouldBlock` the rest waits for `writable`.
        let _ = self.outbox.flush(
            io,
            socket,
            |send| socket.try_io(Interest::WRITABLE, send),
            |remote, e| tracing::debug!(%remote, error = %e, "send failed"),
        );
    }
}

impl Transport for Udp {
    fn proto(&self) -> Proto {
        Proto::UDP
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
            let local = bind(&ctx, addr, &wrapper, Some(acceptor))?;
            tracing::info!(%local, "listening (udp)");
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
            let remote = resolve(&target).await?;
            let existing = sockets(&ctx)
                .by_family
                .iter()
                .find(|(v4, tx)| *v4 == remote.is_ipv4() && !tx.is_closed())
                .map(|(_, tx)| tx.clone());
            let tx = match existing {
                Some(tx) => tx,
                None => {
                    let bind_addr = if local.is_empty() {
                        let any: std::net::IpAddr = if remote.is_ipv4() {
                            std::net::Ipv4Addr::UNSPECIFIED.into()
                        } else {
                            std::net::Ipv6Addr::UNSPECIFIED.into()
                        };
                        SocketAddr::new(any, 0)
                    } else {
                        resolve(&local).await?
                    };
                    bind(&ctx, bind_addr, &wrapper, None)?;
                    sockets(&ctx)
                        .by_family
                        .last()
                        .map(|(_, tx)| tx.clone())
                        .ok_or_else(|| io::Error::other("socket task missing"))?
                }
            };
            let (reply, rx) = oneshot::channel();
            tx.send(Connect {
                remote,
                acceptor,
                reply,
            })
            .map_err(|_| io::Error::other("the socket task has stopped"))?;
            rx.await
                .map_err(|_| io::Error::other("the socket task has stopped"))?
        })
    }
}
