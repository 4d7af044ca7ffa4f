//! UDP: one task per socket runs the core's tracker.

use async_io::{Async, Timer};
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tendril_core::tracker::{ConnId, Tracker, TrackerEvent};
use tendril_core::{Addr, Proto, Reject, Tendril};
use tendril_net::{Outbox, UdpIo, WrapperChain};
use tracing::Instrument;

use crate::handle::{Command, Route};
use crate::manager::{lock, BoxApp, Context, SharedAcceptor};
use crate::registry::Transport;
use crate::stream::resolve;
use crate::TendrilHandle;

/// Receive calls (batches of datagrams) per wake-up before the task lets its other work
/// (commands, timers) in.
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

/// Bind `addr` and spawn its socket task; returns the bound address.
fn bind(
    ctx: &Arc<Context>,
    addr: SocketAddr,
    wrapper: &WrapperChain,
    acceptor: Option<SharedAcceptor>,
) -> io::Result<SocketAddr> {
    let socket = Async::new(tendril_net::udp_socket(addr, wrapper)?)?;
    let io = UdpIo::new(socket.get_ref())?;
    let local = io.local_addr();
    let (connect_tx, connect_rx) = mpsc::unbounded();
    sockets(ctx).by_family.push((local.is_ipv4(), connect_tx));
    let (peer_tx, peer_rx) = mpsc::unbounded();
    let framers_ctx = ctx.clone();
    let tracker: Tracker<Bytes, Bytes, BoxApp> = Tracker::new(
        ctx.proto,
        ctx.settings.tracker_config(),
        move || (lock(&framers_ctx.framers))(),
        move |t: &mut Tendril| match &acceptor {
            Some(acceptor) => (lock(acceptor))(t),
            None => Err(Reject::new(
                "this socket only talks to peers it connected to",
            )),
        },
    );
    let span = tracing::info_span!("udp", proto = %ctx.proto, %local);
    let task = SocketTask {
        ctx: ctx.clone(),
        socket,
        io,
        tracker,
        peer_tx,
        handles: HashMap::new(),
        outbox: Outbox::new(),
    };
    ctx.spawn(task.run(peer_rx, connect_rx).instrument(span));
    Ok(local)
}

struct SocketTask {
    ctx: Arc<Context>,
    socket: Async<UdpSocket>,
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
        let mut cancelled = pin!(cancel.cancelled());
        let mut stopping = false;
        let mut failed = false;
        let mut timer = Timer::never();
        let mut armed: Option<Duration> = None;
        loop {
            self.settle();
            if failed || (stopping && self.tracker.is_empty() && self.outbox.is_empty()) {
                break;
            }
            let deadline = self.tracker.poll_timeout();
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.set_at(self.ctx.epoch + at);
                }
                armed = deadline;
            }
            poll_fn(|cx| {
                let mut ready = false;
                if !stopping && cancelled.as_mut().poll(cx).is_ready() {
                    stopping = true;
                    self.tracker.close_all(self.ctx.now());
                    ready = true;
                }
                match self.poll_receive(cx, &mut buf, &mut received) {
                    Poll::Ready(Ok(())) => ready = true,
                    Poll::Ready(Err(e)) => {
                        tracing::warn!(error = %e, "socket failed");
                        failed = true;
                        ready = true;
                    }
                    Poll::Pending => {}
                }
                if !self.outbox.is_empty() && self.socket.poll_writable(cx).is_ready() {
                    ready = true;
                }
                while let Poll::Ready(Some((id, command))) = peer_rx.poll_next_unpin(cx) {
                    self.command(id, command);
                    ready = true;
                }
                while let Poll::Ready(Some(connect)) = connect_rx.poll_next_unpin(cx) {
                    self.connect(connect);
                    ready = true;
                }
                if armed.is_some() && Pin::new(&mut timer).poll(cx).is_ready() {
                    // A fired `Timer` is spent until set again.
                    armed = None;
                    self.tracker.handle_timeout(self.ctx.now());
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
        if failed {
            // Whoever is left learns of the end through `closed`.
            let now = self.ctx.now();
            let ids: Vec<ConnId> = self.tracker.ids().collect();
            for id in ids {
                self.tracker.with(now, id, |t, _| t.abort());
            }
            self.settle();
        }
        for handle in self.handles.values() {
            self.ctx.unregister(handle);
        }
        tracing::info!("socket closed");
    }

    /// Read the datagrams waiting on the socket into the tracker: `read_with` in poll form, so
    /// the socket shares one poll function with commands and timers. `Ready(Ok)` when any
    /// arrived, `Pending` once the socket is drained (the reactor wakes the task again).
    fn poll_receive(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
        received: &mut Vec<tendril_net::Received>,
    ) -> Poll<io::Result<()>> {
        let mut got = false;
        for _ in 0..RECV_ROUNDS {
            received.clear();
            match self
                .io
                .recv(self.socket.get_ref(), buf, |r| received.push(r))
            {
                Ok(_) => {
                    got = true;
                    let now = self.ctx.now();
                    let buf = &*buf;
                    self.tracker
                        .handle_datagrams(now, received.iter().map(|r| r.datagram(buf)));
                    // This batch's replies leave before the next batch is read.
                    self.settle();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.socket.poll_readable(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending if got => return Poll::Ready(Ok(())),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on some systems; one peer's
                    // trouble is not the socket's.
                    tracing::debug!(error = %e, "receive error");
                    got = true;
                }
            }
        }
        // A full batch: come back after the other work.
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(()))
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
                tracing::info!(%remote, %reason, "connect rejected by the acceptor");
                let _ = connect.reply.send(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    reason.to_string(),
                )));
                return;
            }
        };
        tracing::debug!(%remote, "connected (udp)");
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
                    tracing::trace!(%remote, "untracked");
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
        // `write_with` in poll form: on `WouldBlock` the rest waits for `poll_writable`.
        let _ = self.outbox.flush(
            &self.io,
            self.socket.get_ref(),
            |send| send(),
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
            tx.unbounded_send(Connect {
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
