//! Handles to live tendrils, usable from any task or thread, under any runtime.

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tendril_core::tracker::ConnId;
use tendril_core::{Addr, Framer, Layer, Proto, Tendril};

pub use crate::command::SendFailed;
pub(crate) use crate::command::{Command, Reply};

thread_local! {
    static CURRENT: std::cell::RefCell<Option<TendrilHandle>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` (an acceptor) with `handle` as the [`current_handle`].
pub(crate) fn with_current<R>(handle: &TendrilHandle, f: impl FnOnce() -> R) -> R {
    /// Puts the previous handle back, also if the acceptor panics.
    struct Restore(Option<TendrilHandle>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(Some(handle.clone()))));
    f()
}

/// The handle of the stream tendril whose acceptor is running, so an acceptor can keep a way
/// to reach its connection later (e.g. a chat server's list of members). `None` outside an
/// acceptor.
pub fn current_handle() -> Option<TendrilHandle> {
    CURRENT.with(|c| c.borrow().clone())
}

#[derive(Clone)]
pub(crate) enum Route {
    Stream(mpsc::UnboundedSender<Command>),
    Datagram(mpsc::UnboundedSender<(ConnId, Command)>, ConnId),
}

struct Info {
    proto: Proto,
    local: Addr,
    remote: Addr,
    closed: AtomicBool,
    /// The manager task that runs the tendril's callbacks (a UDP peer's: its socket's).
    task: u64,
}

/// A cloneable, `Send` handle to a live tendril: send frames to it, switch its framers, wrap it
/// or close it from any task or thread.
///
/// Commands run on the connection's own task, in order, between two frames.
#[derive(Clone)]
pub struct TendrilHandle {
    route: Route,
    info: Arc<Info>,
}

impl fmt::Debug for TendrilHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TendrilHandle")
            .field("proto", &self.info.proto)
            .field("local", &self.info.local)
            .field("remote", &self.info.remote)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl TendrilHandle {
    pub(crate) fn new(route: Route, proto: Proto, local: Addr, remote: Addr, task: u64) -> Self {
        TendrilHandle {
            route,
            info: Arc::new(Info {
                proto,
                local,
                remote,
                closed: AtomicBool::new(false),
                task,
            }),
        }
    }

    pub(crate) fn mark_closed(&self) {
        self.info.closed.store(true, Ordering::Release);
    }

    fn command(&self, command: Command) -> bool {
        match &self.route {
            Route::Stream(tx) => tx.unbounded_send(command).is_ok(),
            Route::Datagram(tx, id) => tx.unbounded_send((*id, command)).is_ok(),
        }
    }

    /// The transport protocol.
    pub fn proto(&self) -> Proto {
        self.info.proto
    }

    /// The local address.
    pub fn local_addr(&self) -> &Addr {
        &self.info.local
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> &Addr {
        &self.info.remote
    }

    /// `true` once the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.info.closed.load(Ordering::Acquire)
    }

    /// Send a frame and wait until it is queued; while the outgoing queue is above its high
    /// watermark this waits (back-pressure).
    pub async fn send_frame(&self, frame: Bytes) -> Result<(), SendFailed> {
        let (tx, rx) = oneshot::channel();
        let reply: Reply = Box::new(move |result| {
            let _ = tx.send(result);
        });
        if !self.command(Command::Send(frame, Some(reply))) {
            return Err(SendFailed::Closed);
        }
        rx.await.unwrap_or(Err(SendFailed::Closed))
    }

    /// Send a frame and block the calling thread until it is queued (back-pressure), for code
    /// that is not async: a blocking driver's threads, or a thread of your own.
    ///
    /// Called where it would wait for itself — from one of the tendril's own callbacks (for a
    /// UDP peer, a callback of any peer on the same socket) or its acceptor — it cannot block:
    /// the frame is queued behind the running callback, as
    /// [`send_frame_nowait`](Self::send_frame_nowait) does, and `Ok` is returned.
    pub fn send_frame_blocking(&self, frame: Bytes) -> Result<(), SendFailed> {
        let in_acceptor = CURRENT.with(|c| c.borrow().as_ref().is_some_and(|h| h.same(self)));
        if in_acceptor || super::tasks::current_task() == self.info.task {
            return if self.send_frame_nowait(frame) {
                Ok(())
            } else {
                Err(SendFailed::Closed)
            };
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reply: Reply = Box::new(move |result| {
            let _ = tx.send(result);
        });
        if !self.command(Command::Send(frame, Some(reply))) {
            return Err(SendFailed::Closed);
        }
        rx.recv().unwrap_or(Err(SendFailed::Closed))
    }

    fn same(&self, other: &TendrilHandle) -> bool {
        Arc::ptr_eq(&self.info, &other.info)
    }

    pub(crate) fn send_with_reply(&self, frame: Bytes, reply: Reply) -> bool {
        self.command(Command::Send(frame, Some(reply)))
    }

    /// Send a frame without waiting for it to be queued. Returns `false` if the connection is
    /// already gone.
    pub fn send_frame_nowait(&self, frame: Bytes) -> bool {
        self.command(Command::Send(frame, None))
    }

    /// Run `f` on the tendril, on its task, between two frames.
    pub fn with(&self, f: impl FnOnce(&mut Tendril) + Send + 'static) -> bool {
        self.command(Command::With(Box::new(f)))
    }

    /// Replace the receive framer.
    pub fn set_recv_framer<F>(&self, framer: F) -> bool
    where
        F: Framer<Frame = Bytes> + Send + 'static,
    {
        self.with(move |t| t.set_recv_framer(framer))
    }

    /// Replace the send framer.
    pub fn set_send_framer<F>(&self, framer: F) -> bool
    where
        F: Framer<Frame = Bytes> + Send + 'static,
    {
        self.with(move |t| t.set_send_framer(framer))
    }

    /// Wrap the byte stream in a layer (e.g. TLS).
    pub fn wrap<L: Layer + 'static>(&self, layer: L) -> bool {
        self.with(move |t| t.wrap(layer))
    }

    /// Half-close: send what is queued, then FIN; keep receiving until the peer closes
    /// (see [`Tendril::finish`]).
    pub fn finish(&self) -> bool {
        self.with(Tendril::finish)
    }

    /// Close gracefully.
    pub fn close(&self) -> bool {
        self.command(Command::Close)
    }

    /// Close at once, dropping queued bytes.
    pub fn abort(&self) -> bool {
        self.command(Command::Abort)
    }
}

impl crate::live::Tracked for TendrilHandle {
    fn key(&self) -> usize {
        Arc::as_ptr(&self.info) as usize
    }

    fn local_addr(&self) -> &Addr {
        &self.info.local
    }

    fn remote_addr(&self) -> &Addr {
        &self.info.remote
    }

    fn is_closed(&self) -> bool {
        TendrilHandle::is_closed(self)
    }
}
