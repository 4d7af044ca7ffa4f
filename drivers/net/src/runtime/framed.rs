//! Frames as a `Stream` + `Sink`, for users who prefer `async` code to callbacks.

use super::handle::{current_handle, SendFailed};
use super::{Manager, TendrilHandle};
use crate::{framed, WrapperChain};
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use tendril_core::{Reject, Tendril};

/// One connection as a [`Stream`] of received frames and a [`Sink`] of frames to send.
///
/// The stream ends when the connection closes ([`close_reason`](Self::close_reason) says why).
/// Closing the sink half-closes the connection ([`Tendril::finish`]): what was sent goes out,
/// then FIN, and frames keep arriving until the peer closes. A consumer that falls behind makes
/// the connection stop reading after a few dozen frames, so a fast peer is held back by TCP.
///
/// ```no_run
/// # async fn demo(manager: &tendril_net::runtime::Manager) -> std::io::Result<()> {
/// use futures::{SinkExt, StreamExt};
/// use tendril_core::{Line, Tendril};
///
/// // `manager` comes from a driver's `get_manager("tcp", "")`.
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
    frames: framed::Frames,
    in_flight: Option<oneshot::Receiver<Result<(), SendFailed>>>,
}

impl std::fmt::Debug for FramedTendril {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedTendril")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl FramedTendril {
    /// The handle, for framer switches, wrapping and closing.
    pub fn handle(&self) -> &TendrilHandle {
        &self.handle
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.frames.close_reason()
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
        let this = &mut *self;
        let handle = &this.handle;
        this.frames.poll_next(cx, || {
            // If the connection is gone there is nothing to resume.
            let _ = handle.with(|t| t.pause_recv(false));
        })
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
        let reply: super::handle::Reply = Box::new(move |result| {
            let _ = tx.send(result);
        });
        if !self.handle.send_with_reply(frame, reply) {
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
        Pin::new(&mut self.rx).poll_next(cx)
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
                    let (app, frames) = framed::channel();
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(frames);
                    Ok(app)
                },
                WrapperChain::new(),
            )
            .await?;
        let frames = parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| io::Error::other("the connection was set up without its channel"))?;
        Ok(FramedTendril {
            handle,
            frames,
            in_flight: None,
        })
    }

    /// Listen, and get each accepted connection (stream protocols) as a [`FramedTendril`];
    /// `setup` picks each connection's framers.
    pub async fn start_framed<F>(&self, mut setup: F, wrapper: WrapperChain) -> io::Result<Incoming>
    where
        F: FnMut(&mut Tendril) -> Result<(), Reject> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded();
        self.start(
            move |t: &mut Tendril| {
                setup(t)?;
                let handle = current_handle()
                    .ok_or_else(|| Reject::new("framed listening needs a stream protocol"))?;
                let (app, frames) = framed::channel();
                let framed = FramedTendril {
                    handle,
                    frames,
                    in_flight: None,
                };
                tx.unbounded_send(framed)
                    .map_err(|_| Reject::new("nobody takes incoming connections any more"))?;
                Ok(app)
            },
            wrapper,
        )
        .await?;
        Ok(Incoming { rx })
    }
}
