//! Handles to live tendrils, usable from any thread.

use bytes::Bytes;
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::{self, ThreadId};
use tendril_core::tracker::ConnId;
use tendril_core::{Addr, Framer, Layer, Proto, Tendril};

use crate::stream::StreamMsg;
use crate::udp::UdpMsg;

pub use tendril_net::command::SendFailed;
pub(crate) use tendril_net::command::{Command, Reply};

thread_local! {
    /// The handle of the stream tendril whose acceptor runs on this thread.
    static CURRENT: RefCell<Option<TendrilHandle>> = const { RefCell::new(None) };
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
/// acceptor, and for datagram peers.
///
/// ```no_run
/// use std::sync::{Arc, Mutex};
/// use tendril_blocking::{current_handle, TendrilHandle};
/// use tendril_core::{AppError, Application, Line, Tendril};
///
/// struct Member;
/// impl Application for Member {
///     fn recv_frame(&mut self, _: &mut Tendril, _: bytes::Bytes) -> Result<(), AppError> {
///         Ok(())
///     }
/// }
///
/// # fn main() -> std::io::Result<()> {
/// let members: Arc<Mutex<Vec<TendrilHandle>>> = Arc::default();
/// let list = members.clone();
/// let manager = tendril_blocking::get_manager("tcp", "127.0.0.1:0")?;
/// manager.start(
///     move |t: &mut Tendril| {
///         t.set_send_framer(Line::crlf());
///         list.lock().unwrap().extend(current_handle());
///         Ok(Member)
///     },
///     Default::default(),
/// )?;
/// # Ok(()) }
/// ```
pub fn current_handle() -> Option<TendrilHandle> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The way to a connection's thread.
#[derive(Clone)]
pub(crate) enum Route {
    /// A stream connection's own thread.
    Stream(Sender<StreamMsg>),
    /// The thread of the datagram socket that tracks this peer.
    Datagram(Sender<UdpMsg>, ConnId),
}

struct Info {
    /// Unique among all handles of the process.
    id: u64,
    proto: Proto,
    local: Addr,
    remote: Addr,
    closed: AtomicBool,
    /// The thread that runs the connection (and its application's callbacks).
    thread: OnceLock<ThreadId>,
}

/// A cloneable, `Send` handle to a live tendril: send frames to it, switch its framers, wrap it
/// or close it from any thread.
///
/// Commands run on the connection's own thread, in order, between two frames; a connection
/// waiting for its socket picks them up at once.
///
/// ```no_run
/// use bytes::Bytes;
/// use tendril_core::{AppError, Application, Line, Tendril};
///
/// struct Print;
/// impl Application for Print {
///     fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
///         println!("{frame:?}");
///         Ok(())
///     }
/// }
///
/// # fn main() -> std::io::Result<()> {
/// let manager = tendril_blocking::get_manager("tcp", "")?;
/// let handle = manager.connect(
///     "localhost:7000",
///     |t: &mut Tendril| {
///         t.set_recv_framer(Line::crlf());
///         t.set_send_framer(Line::crlf());
///         Ok(Print)
///     },
///     Default::default(),
/// )?;
/// // From any thread: blocks until the frame is queued (back-pressure), not until it is sent.
/// handle.send_frame(Bytes::from("HELLO")).unwrap();
/// handle.close();
/// manager.stop();
/// # Ok(()) }
/// ```
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
    pub(crate) fn new(route: Route, proto: Proto, local: Addr, remote: Addr) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        TendrilHandle {
            route,
            info: Arc::new(Info {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                proto,
                local,
                remote,
                closed: AtomicBool::new(false),
                thread: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.info.id
    }

    /// Record the calling thread as the one that runs this connection.
    pub(crate) fn set_thread(&self) {
        let _ = self.info.thread.set(thread::current().id());
    }

    pub(crate) fn mark_closed(&self) {
        self.info.closed.store(true, Ordering::Release);
    }

    /// `true` on the thread that runs this connection, or in its acceptor: there a blocking
    /// send would wait for itself.
    fn on_own_thread(&self) -> bool {
        self.info.thread.get() == Some(&thread::current().id())
            || CURRENT.with(|c| c.borrow().as_ref().is_some_and(|h| h.id() == self.id()))
    }

    fn command(&self, command: Command) -> bool {
        match &self.route {
            Route::Stream(tx) => tx.send(StreamMsg::Command(command)).is_ok(),
            Route::Datagram(tx, id) => tx.send(UdpMsg::Peer(*id, command)).is_ok(),
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

    /// Send a frame and block until it is queued; while the outgoing queue is above its high
    /// watermark this waits (back-pressure). It does not wait for the peer to receive it.
    ///
    /// Called on the connection's own thread (from one of its application's callbacks, or for a
    /// datagram peer from any application on the same socket) or from its acceptor, it cannot
    /// wait for itself: the frame is queued behind the running callback and `Ok` is returned.
    /// Inside a callback, prefer the `&mut Tendril` you were given; to reach *other*
    /// connections from a callback, [`send_frame_nowait`](Self::send_frame_nowait) never
    /// waits on them (two connections blocking on each other's full queues would wait forever).
    pub fn send_frame(&self, frame: Bytes) -> Result<(), SendFailed> {
        if self.on_own_thread() {
            return if self.send_frame_nowait(frame) {
                Ok(())
            } else {
                Err(SendFailed::Closed)
            };
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let reply: Reply = Box::new(move |result| {
            let _ = tx.send(result);
        });
        if !self.command(Command::Send(frame, Some(reply))) {
            return Err(SendFailed::Closed);
        }
        rx.recv().unwrap_or(Err(SendFailed::Closed))
    }

    /// Send a frame without waiting for it to be queued. Returns `false` if the connection is
    /// already gone. Frames sent this way while the queue is full wait in order behind it.
    pub fn send_frame_nowait(&self, frame: Bytes) -> bool {
        self.command(Command::Send(frame, None))
    }

    /// Run `f` on the tendril, on its thread, between two frames. Returns `false` if the
    /// connection is already gone.
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

    /// Close gracefully: what is queued is sent first.
    pub fn close(&self) -> bool {
        self.command(Command::Close)
    }

    /// Close at once, dropping queued bytes.
    pub fn abort(&self) -> bool {
        self.command(Command::Abort)
    }
}
