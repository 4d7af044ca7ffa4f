//! UDP: one thread per socket runs the core's tracker.

use bytes::Bytes;
use socket2::SockRef;
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use tendril_core::tracker::{ConnId, Tracker, TrackerEvent};
use tendril_core::{Addr, Proto, Reject, Tendril};
use tendril_net::{Outbox, UdpIo, WrapperChain, MAX_DATAGRAM};

use crate::handle::{Command, Route};
use crate::manager::{lock, BoxApp, Context, SharedAcceptor};
use crate::readiness::Readiness;
use crate::registry::Transport;
use crate::stream::{resolve_one, self_addr, SHUTDOWN_WAKES, WRITE_SLICE};
use crate::TendrilHandle;

/// UDP.
pub(crate) struct Udp;

/// What reaches a socket's thread.
pub(crate) enum UdpMsg {
    /// A datagram (or an error) waits on the socket (from the readiness helper).
    Readable(io::Result<()>),
    /// A command from a peer's handle.
    Peer(ConnId, Command),
    /// Track an outgoing peer.
    Connect(Connect),
    /// The manager stops.
    Stop,
}

/// Ask the socket thread to track an outgoing peer.
pub(crate) struct Connect {
    remote: SocketAddr,
    acceptor: SharedAcceptor,
    reply: SyncSender<io::Result<TendrilHandle>>,
}

thread_local! {
    /// The id of the socket whose thread this is (0: none).
    static CURRENT_SOCKET: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The socket threads of this manager, for `connect`.
#[derive(Default)]
pub(crate) struct Sockets {
    /// (id, IPv4?, inbox) of each socket thread.
    by_family: Vec<(u64, bool, Sender<UdpMsg>)>,
}

impl Sockets {
    /// Forget every socket (they have all stopped).
    pub(crate) fn clear(&mut self) {
        self.by_family.clear();
    }
}

/// Bind `addr` and start its socket thread; returns the bound address and the thread's inbox.
fn bind(
    ctx: &Arc<Context>,
    addr: SocketAddr,
    wrapper: &WrapperChain,
    acceptor: Option<SharedAcceptor>,
) -> io::Result<(SocketAddr, Sender<UdpMsg>)> {
    let socket = tendril_net::udp_socket(addr, wrapper)?;
    let io = UdpIo::new(&socket)?;
    // Blocking, for the readiness helper's peek; sends give up after a slice of time.
    socket.set_nonblocking(false)?;
    socket.set_write_timeout(Some(WRITE_SLICE))?;
    let local = io.local_addr();
    let socket = Arc::new(socket);
    let (tx, rx) = mpsc::channel();
    let config = ctx.settings.tracker_config();
    let tracker: Tracker<Bytes, Bytes, BoxApp> = Tracker::new(
        ctx.proto,
        config,
        {
            let ctx = ctx.clone();
            move || (lock(&ctx.framers))()
        },
        move |t: &mut Tendril| match &acceptor {
            Some(acceptor) => (lock(acceptor))(t),
            None => Err(Reject::new(
                "this socket only talks to peers it connected to",
            )),
        },
    );
    let notify = tx.clone();
    let readiness = Readiness::spawn(socket.clone(), move |result| {
        notify.send(UdpMsg::Readable(result)).is_ok()
    })?;
    let stop = tx.clone();
    ctx.on_stop(move || {
        let _ = stop.send(UdpMsg::Stop);
    });
    static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let mut thread = SocketThread {
        ctx: ctx.clone(),
        socket,
        io,
        tracker,
        tx: tx.clone(),
        rx,
        readiness,
        readable: false,
        stopping: false,
        aborted: false,
        failed: false,
        handles: HashMap::new(),
        outbox: Outbox::new(),
    };
    let span = tracing::info_span!("udp", %local);
    ctx.spawn("tendril-udp", move || {
        let _enter = span.enter();
        CURRENT_SOCKET.with(|c| c.set(id));
        thread.run();
    })?;
    lock(&ctx.udp)
        .by_family
        .push((id, local.is_ipv4(), tx.clone()));
    Ok((local, tx))
}

struct SocketThread {
    ctx: Arc<Context>,
    socket: Arc<UdpSocket>,
    io: UdpIo,
    tracker: Tracker<Bytes, Bytes, BoxApp>,
    tx: Sender<UdpMsg>,
    rx: Receiver<UdpMsg>,
    readiness: Readiness,
    /// The readiness helper reported a datagram that was not read yet.
    readable: bool,
    stopping: bool,
    aborted: bool,
    /// The socket failed: the thread ends.
    failed: bool,
    handles: HashMap<ConnId, TendrilHandle>,
    outbox: Outbox,
}

impl SocketThread {
    fn run(&mut self) {
        // One datagram per call: on a blocking socket (the readiness helper's `peek` needs one)
        // a batch receive would wait for a full batch.
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut received = Vec::new();
        loop {
            self.follow_stop();
            self.settle();
            if self.failed || (self.stopping && self.tracker.is_empty() && self.outbox.is_empty()) {
                break;
            }
            if self.readable && !self.stopping {
                self.receive(&mut buf, &mut received);
                continue;
            }
            if !self.readable && !self.stopping {
                self.readiness.arm();
            }
            let now = self.ctx.now();
            let deadline = self.tracker.poll_timeout();
            if deadline.is_some_and(|at| now >= at) {
                self.tracker.handle_timeout(now);
                continue;
            }
            if self.outbox.is_empty() {
                let msg = match deadline {
                    Some(at) => self.rx.recv_timeout(at - now).ok(),
                    None => self.rx.recv().ok(),
                };
                if let Some(msg) = msg {
                    self.on_msg(msg);
                }
            }
            while let Ok(msg) = self.rx.try_recv() {
                self.on_msg(msg);
            }
        }
        tracing::debug!("socket closed");
    }

    /// Close every peer when the manager stops, abort them when it gives up waiting.
    fn follow_stop(&mut self) {
        if !self.stopping && self.ctx.is_stopping() {
            self.stop();
        }
        if !self.aborted && self.ctx.is_aborting() {
            self.aborted = true;
            let now = self.ctx.now();
            let ids: Vec<ConnId> = self.tracker.ids().collect();
            for id in ids {
                self.tracker.with(now, id, |t, _| t.abort());
            }
        }
    }

    fn stop(&mut self) {
        if !self.stopping {
            self.stopping = true;
            self.tracker.close_all(self.ctx.now());
        }
    }

    fn on_msg(&mut self, msg: UdpMsg) {
        match msg {
            UdpMsg::Readable(result) => {
                self.readiness.reported();
                match result {
                    Ok(()) => self.readable = true,
                    Err(e) => self.error(&e),
                }
            }
            UdpMsg::Peer(id, command) => self.command(id, command),
            UdpMsg::Connect(connect) => self.connect(connect),
            UdpMsg::Stop => self.stop(),
        }
    }

    /// Read one batch of datagrams into the tracker. The helper saw a datagram waiting, so this
    /// does not block.
    fn receive(&mut self, buf: &mut [u8], received: &mut Vec<tendril_net::Received>) {
        self.readable = false;
        received.clear();
        match self.io.recv(&*self.socket, buf, |r| received.push(r)) {
            Ok(_) => {
                let now = self.ctx.now();
                let buf = &*buf;
                self.tracker
                    .handle_datagrams(now, received.iter().map(|r| r.datagram(buf)));
            }
            Err(e) => self.error(&e),
        }
    }

    /// A receive failed: one peer's trouble, or the socket's end ([`tendril_net::peer_trouble`],
    /// the policy every driver follows).
    fn error(&mut self, e: &io::Error) {
        if tendril_net::peer_trouble(e) {
            tracing::debug!(error = %e, "receive error");
            return;
        }
        tracing::warn!(error = %e, "socket failed");
        let reason = format!("the UDP socket failed: {e}");
        self.tracker.fail_all(self.ctx.now(), &reason);
        self.settle();
        self.failed = true;
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
        if self.stopping {
            let _ = connect.reply.send(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the manager is stopping",
            )));
            return;
        }
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
            Route::Datagram(self.tx.clone(), id),
            self.ctx.proto,
            local,
            remote,
        );
        handle.set_thread();
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
        // The send buffer stayed full for a slice of time: the rest goes later.
        let _ = self.outbox.flush(
            &self.io,
            &*self.socket,
            |send| send(),
            |remote, e| tracing::debug!(%remote, error = %e, "send failed"),
        );
    }
}

impl Drop for SocketThread {
    fn drop(&mut self) {
        let socket = self.socket.clone();
        let local = self.io.local_addr();
        self.readiness.finish(move || {
            // Shutting the read side wakes the helper's peek (Linux); elsewhere a datagram to
            // ourselves does.
            let _ = SockRef::from(&*socket).shutdown(Shutdown::Read);
            if !SHUTDOWN_WAKES {
                let _ = socket.send_to(&[], self_addr(local));
            }
        });
        for handle in self.handles.values() {
            self.ctx.unregister(handle);
        }
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
    ) -> io::Result<Addr> {
        let addr = resolve_one(&endpoint)?;
        let (local, _) = bind(&ctx, addr, &wrapper, Some(acceptor))?;
        tracing::info!(%local, "listening (udp)");
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
        let remote = resolve_one(&target)?;
        let (reply, answer) = mpsc::sync_channel(1);
        let msg = UdpMsg::Connect(Connect {
            remote,
            acceptor,
            reply,
        });
        // Not the socket whose thread this is (an application connecting out from a
        // callback): that thread cannot answer while it waits here.
        let own = CURRENT_SOCKET.with(|c| c.get());
        let existing = lock(&ctx.udp)
            .by_family
            .iter()
            .find(|(id, v4, _)| *v4 == remote.is_ipv4() && *id != own)
            .map(|(id, _, tx)| (*id, tx.clone()));
        let unsent = match existing {
            Some((id, tx)) => match tx.send(msg) {
                Ok(()) => None,
                Err(mpsc::SendError(msg)) => {
                    // That socket's thread has ended: forget it, bind a new one.
                    lock(&ctx.udp)
                        .by_family
                        .retain(|(other, _, _)| *other != id);
                    Some(msg)
                }
            },
            None => Some(msg),
        };
        if let Some(msg) = unsent {
            let bind_addr = if local.is_empty() {
                let any: std::net::IpAddr = if remote.is_ipv4() {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                };
                SocketAddr::new(any, 0)
            } else {
                resolve_one(&local)?
            };
            let (_, tx) = bind(&ctx, bind_addr, &wrapper, None)?;
            tx.send(msg)
                .map_err(|_| io::Error::other("the socket thread has stopped"))?;
        }
        answer
            .recv()
            .map_err(|_| io::Error::other("the socket thread has stopped"))?
    }
}
