//! Frames as a `Stream` + `Sink`, for users who prefer `async` code to callbacks.

use bytes::Bytes;
use futures::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use tendril_core::{AppError, Application, CloseReason, Reject, Tendril};
use tendril_net::WrapperChain;
use tokio::sync::{mpsc, oneshot};

use crate::handle::{current_handle, SendFailed};
use crate::{Manager, TendrilHandle};

/// Frames waiting for the consumer before the connection stops reading.
const QUEUE: usize = 64;

/// What the application side and the stream side share.
struct Shared {
    queued: AtomicUsize,
    paused: AtomicBool,
    reason: Mutex<Option<String>>,
}

/// Forwards frames to a [`FramedTendril`]; pauses the connection when the consumer lags.
struct Forward {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    shared: Arc<Shared>,
}

impl Application for Forward {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        if let Some(tx) = &self.tx {
            // Count and mark the pause before the frame is visible, so the consumer, whenever
            // it takes this frame, sees both (and resumes delivery once it caught up).
            let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel) + 1;
            if queued >= QUEUE {
                self.shared.paused.store(true, Ordering::Release);
                t.pause_recv(true);
            }
            if tx.send(frame).is_err() {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
        *self.shared.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
        self.tx = None;
    }
}

/// One connection as a [`Stream`] of received frames and a [`Sink`] of frames to send.
///
/// The stream ends when the connection closes ([`close_reason`](Self::close_reason) says why).
/// Closing the sink half-closes the connection ([`Tendril::finish`]): what was sent goes out,
/// then FIN, and frames keep arriving until the peer closes. A consumer that falls behind makes
/// the connection stop reading after a few dozen frames, so a fast peer is held back by TCP.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use futures::{SinkExt, StreamExt};
/// use tendril_core::{Line, Tendril};
///
/// let manager = tendril_tokio::get_manager("tcp", "")?;
/// let mut conn = manager
///     .connect_framed("127.0.0.1:7000", |t: &mut Tendril| {
///         t.set_recv_framer(Line::crlf());
///         t.set_send_framer(Line::crlf());
///         Ok(())
///     })
///     .await?;
/// conn.send("hello".into()).await.ok();
/// let reply = conn.next().await;
/// # let _ = reply; Ok(()) }
/// ```
pub struct FramedTendril {
    handle: TendrilHandle,
    rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
    in_flight: Option<oneshot::Receiver<Result<(), SendFailed>>>,
}

impl std::fmt::Debug for FramedTendril {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedTendril")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

fn forward() -> (Forward, mpsc::UnboundedReceiver<Bytes>, Arc<Shared>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        paused: AtomicBool::new(false),
        reason: Mutex::new(None),
    });
    let app = Forward {
        tx: Some(tx),
        shared: shared.clone(),
    };
    (app, rx, shared)
}

impl FramedTendril {
    /// The handle, for framer switches, wrapping and closing.
    pub fn handle(&self) -> &TendrilHandle {
        &self.handle
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.shared
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn poll_in_flight(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), SendFailed>> {
        let Some(rx) = self.in_flight.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = match Pin::new(rx).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result.unwrap_or(Err(SendFailed::Closed)),
        };
        self.in_flight = None;
        Poll::Ready(result)
    }
}

use std::future::Future;

impl Stream for FramedTendril {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Bytes>> {
        let item = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = item {
            let left = self.shared.queued.fetch_sub(1, Ordering::AcqRel) - 1;
            if left <= QUEUE / 2 && self.shared.paused.swap(false, Ordering::AcqRel) {
                self.handle.with(|t| t.pause_recv(false));
            }
        }
        item
    }
}

impl Sink<Bytes> for FramedTendril {
    type Error = SendFailed;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), SendFailed>> {
        self.poll_in_flight(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Bytes) -> Result<(), SendFailed> {
        let (tx, rx) = oneshot::channel();
        if !self.handle.send_with_reply(frame, tx) {
            return Err(SendFailed::Closed);
        }
        self.in_flight = Some(rx);
        Ok(())
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), SendFailed>> {
        self.poll_in_flight(cx)
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), SendFailed>> {
        match self.poll_in_flight(cx) {
            Poll::Ready(result) => {
                self.handle.finish();
                Poll::Ready(result)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The connections a [`Manager::start_framed`] listener accepts.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::UnboundedReceiver<FramedTendril>,
}

impl Stream for Incoming {
    type Item = FramedTendril;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<FramedTendril>> {
        self.rx.poll_recv(cx)
    }
}

impl Manager {
    /// Connect to `target` and get the connection as a [`FramedTendril`]; `setup` picks its
    /// framers (and may wrap it).
    pub async fn connect_framed<F>(&self, target: &str, setup: F) -> io::Result<FramedTendril>
    where
        F: FnOnce(&mut Tendril) -> Result<(), Reject> + Send + 'static,
    {
        let parts = Arc::new(Mutex::new(None));
        let slot = parts.clone();
        let mut setup = Some(setup);
        let handle = self
            .connect(
                target,
                move |t: &mut Tendril| {
                    if let Some(setup) = setup.take() {
                        setup(t)?;
                    }
                    let (app, rx, shared) = forward();
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((rx, shared));
                    Ok(app)
                },
                WrapperChain::new(),
            )
            .await?;
        let (rx, shared) = parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| io::Error::other("the connection was set up without its channel"))?;
        Ok(FramedTendril {
            handle,
            rx,
            shared,
            in_flight: None,
        })
    }

    /// Listen, and get each accepted connection (stream protocols) as a [`FramedTendril`];
    /// `setup` picks each connection's framers.
    pub async fn start_framed<F>(&self, mut setup: F, wrapper: WrapperChain) -> io::Result<Incoming>
    where
        F: FnMut(&mut Tendril) -> Result<(), Reject> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        self.start(
            move |t: &mut Tendril| {
                setup(t)?;
                let handle = current_handle()
                    .ok_or_else(|| Reject::new("framed listening needs a stream protocol"))?;
                let (app, frames, shared) = forward();
                let framed = FramedTendril {
                    handle,
                    rx: frames,
                    shared,
                    in_flight: None,
                };
                tx.send(framed)
                    .map_err(|_| Reject::new("nobody takes incoming connections any more"))?;
                Ok(app)
            },
            wrapper,
        )
        .await?;
        Ok(Incoming { rx })
    }
}
