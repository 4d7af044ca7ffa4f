//! UDP: one task per socket runs the core's tracker.

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tendril_core::tracker::{ConnId, Tracker, TrackerEvent};
use tendril_core::{Addr, Proto, Reject, Tendril};

use super::adapter::{Interest, Readiness, Runtime};
use super::handle::{Command, Route};
use super::shards::{bind_shards, spawn_registered};
use super::stream_transports::resolve_one;
use super::{Shared, TendrilHandle, Transport};
use crate::{lock, BoxApp, Outbox, SharedAcceptor, UdpIo, WrapperChain};

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
    /// Each socket task's family (`true`: IPv4), task id and way in.
    by_family: Vec<(bool, u64, mpsc::UnboundedSender<Connect>)>,
}

fn sockets(shared: &Shared) -> std::sync::MutexGuard<'_, Sockets> {
    lock(&shared.udp)
}

/// Spawn the task of the bound `socket`, on `shard` if given: its address and its way in for
/// `connect`. A socket for no shard in particular is also offered to `connect`; a shard's is
/// not, as the kernel could hash a peer's replies to another shard's socket.
fn spawn_socket(
    shared: &Arc<Shared>,
    socket: std::net::UdpSocket,
    acceptor: Option<SharedAcceptor>,
    shard: Option<usize>,
) -> io::Result<(SocketAddr, mpsc::UnboundedSender<Connect>)> {
    // Before the runtime has it: setting up `UdpIo` may change the socket's blocking mode,
    // which is the runtime's to choose.
    let io = UdpIo::new(&socket)?;
    let local = io.local_addr();
    let (connect_tx, connect_rx) = mpsc::unbounded();
    let task = super::tasks::new_task_id();
    if shard.is_none() {
        sockets(shared)
            .by_family
            .push((local.is_ipv4(), task, connect_tx.clone()));
    }
    let (peer_tx, peer_rx) = mpsc::unbounded();
    let framers = shared.clone();
    let tracker: Tracker<Bytes, Bytes, BoxApp> = Tracker::new(
        shared.proto(),
        shared.settings.tracker_config(),
        move || (lock(&framers.framers))(),
        move |t: &mut Tendril| match &acceptor {
            Some(acceptor) => (lock(acceptor))(t),
            None => Err(Reject::new(
                "this socket only talks to peers it connected to",
            )),
        },
    );
    let span = tracing::info_span!("udp", proto = %shared.proto(), %local);
    let shared_task = shared.clone();
    let run = move |socket| {
        let task = SocketTask {
            shared: shared_task,
            socket,
            io,
            tracker,
            peer_tx,
            handles: HashMap::new(),
            outbox: Outbox::new(),
            task,
        };
        task.run(peer_rx, connect_rx)
    };
    let register = |runtime: &dyn Runtime, socket| runtime.udp(socket);
    spawn_registered(shared, task, shard, socket, register, span, run)?;
    Ok((local, connect_tx))
}

struct SocketTask {
    shared: Arc<Shared>,
    socket: Box<dyn Readiness>,
    io: UdpIo,
    tracker: Tracker<Bytes, Bytes, BoxApp>,
    peer_tx: mpsc::UnboundedSender<(ConnId, Command)>,
    handles: HashMap<ConnId, TendrilHandle>,
    outbox: Outbox,
    /// This task's id: its peers' handles carry it.
    task: u64,
}

impl SocketTask {
    async fn run(
        mut self,
        mut peer_rx: mpsc::UnboundedReceiver<(ConnId, Command)>,
        mut connect_rx: mpsc::UnboundedReceiver<Connect>,
    ) {
        let mut buf = vec![0u8; self.io.buffer_size()];
        let mut received = Vec::new();
        let cancel = self.shared.cancelled();
        let mut cancelled = pin!(cancel.cancelled());
        let mut stopping = false;
        let mut failed: Option<String> = None;
        let mut timer = self.shared.runtime().timer();
        let mut armed = None;
        loop {
            self.settle();
            if failed.is_some() || (stopping && self.tracker.is_empty() && self.outbox.is_empty()) {
                break;
            }
            let deadline = self.tracker.poll_timeout();
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.reset(self.shared.instant(at));
                }
                armed = deadline;
            }
            poll_fn(|cx| {
                let mut ready = false;
                if !stopping && cancelled.as_mut().poll(cx).is_ready() {
                    stopping = true;
                    self.tracker.close_all(self.shared.now());
                    ready = true;
                }
                match self.poll_receive(cx, &mut buf, &mut received) {
                    Poll::Ready(Ok(())) => ready = true,
                    Poll::Ready(Err(e)) => {
                        tracing::warn!(error = %e, "socket failed");
                        failed = Some(format!("the UDP socket failed: {e}"));
                        ready = true;
                    }
                    Poll::Pending => {}
                }
                if !self.outbox.is_empty() && self.socket.poll_ready(cx, Interest::Write).is_ready()
                {
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
                if armed.is_some() && timer.poll_fired(cx).is_ready() {
                    armed = None;
                    self.tracker.handle_timeout(self.shared.now());
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
        if let Some(reason) = failed {
            // The one policy for a socket that fails: every peer on it closes with the error as
            // its reason (each application's `closed` learns why), and the socket task ends.
            self.tracker.fail_all(self.shared.now(), &reason);
            self.settle();
        }
        for handle in self.handles.values() {
            self.shared.unregister(handle);
        }
        tracing::info!("socket closed");
    }

    /// Read the datagrams waiting on the socket into the tracker: `read_with` in poll form, so
    /// the socket shares one poll function with commands and timers. `Ready(Ok)` when any
    /// arrived, `Pending` once the socket is drained (the reactor wakes the task again).
    fn poll_receive(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        received: &mut Vec<crate::Received>,
    ) -> Poll<io::Result<()>> {
        let mut got = false;
        for _ in 0..RECV_ROUNDS {
            received.clear();
            let (socket, io) = (&self.socket, &self.io);
            let result = socket.try_io(Interest::Read, &mut || {
                io.recv(&socket.fd(), buf, |r| received.push(r)).map(drop)
            });
            match result {
                Ok(()) => {
                    got = true;
                    let now = self.shared.now();
                    let buf = &*buf;
                    self.tracker
                        .handle_datagrams(now, received.iter().map(|r| r.datagram(buf)));
                    // This batch's replies leave before the next batch is read.
                    self.settle();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.socket.poll_ready(cx, Interest::Read) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending if got => return Poll::Ready(Ok(())),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) if crate::peer_trouble(&e) => {
                    tracing::debug!(error = %e, "receive error");
                    got = true;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        // A full batch: come back after the other work.
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(()))
    }

    fn command(&mut self, id: ConnId, command: Command) {
        let now = self.shared.now();
        let done = self
            .tracker
            .with(now, id, |t, _| crate::command::apply_now(t, command));
        if done.is_none() {
            tracing::debug!(%id, "command for a peer that is gone");
        }
    }

    fn connect(&mut self, connect: Connect) {
        let now = self.shared.now();
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
            self.shared.proto(),
            local,
            remote,
            self.task,
        );
        self.shared.register(&handle);
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
                        self.shared.unregister(&handle);
                    }
                }
                _ => {}
            }
        }
        while let Some(t) = self.tracker.poll_transmit() {
            self.outbox.push(t);
        }
        // On `WouldBlock` the rest waits for the socket to be writable.
        let socket = &self.socket;
        let _ = self.outbox.flush(
            &self.io,
            &socket.fd(),
            |send| socket.try_io(Interest::Write, send),
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
        shared: Arc<Shared>,
        endpoint: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<Addr>> {
        Box::pin(async move {
            let addr = resolve_one(&shared, &endpoint).await?;
            let shards = shared.shards();
            let (local, sockets) = bind_shards(addr, shards, &wrapper, crate::udp_socket)?;
            for (shard, socket) in sockets {
                spawn_socket(&shared, socket, Some(acceptor.clone()), shard)?;
            }
            tracing::info!(%local, shards, "listening (udp)");
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
            let remote = resolve_one(&shared, &target).await?;
            // Not through the socket whose task is running this (a callback that connects out
            // and waits, under a blocking driver): it would wait for itself.
            let own = super::tasks::current_task();
            let existing = sockets(&shared)
                .by_family
                .iter()
                .find(|(v4, task, tx)| *v4 == remote.is_ipv4() && *task != own && !tx.is_closed())
                .map(|(_, _, tx)| tx.clone());
            let tx = match existing {
                Some(tx) => tx,
                None => {
                    let mut bind_addr = if local.is_empty() {
                        let any: std::net::IpAddr = if remote.is_ipv4() {
                            std::net::Ipv4Addr::UNSPECIFIED.into()
                        } else {
                            std::net::Ipv6Addr::UNSPECIFIED.into()
                        };
                        SocketAddr::new(any, 0)
                    } else {
                        resolve_one(&shared, &local).await?
                    };
                    if shared.shards() > 1 {
                        // On shards the endpoint's port is the listening sockets' group, and
                        // the kernel may hash the peer's replies to any of them: a port of its
                        // own keeps them on this socket.
                        bind_addr.set_port(0);
                    }
                    let socket = crate::udp_socket(bind_addr, &wrapper)?;
                    spawn_socket(&shared, socket, None, None)?.1
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
