//! The receiving half of a framed connection (`Stream` of frames), shared by the async drivers:
//! an application that forwards frames into a channel and pauses the connection while the
//! consumer lags, and the consumer side that resumes it.

use bytes::Bytes;
use futures::channel::mpsc;
use futures::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tendril_core::{AppError, Application, CloseReason, Tendril};

/// Frames waiting for the consumer before the connection stops reading.
pub const QUEUE: usize = 64;

/// What the application side and the consumer side share.
#[derive(Debug, Default)]
struct Shared {
    queued: AtomicUsize,
    paused: AtomicBool,
    reason: Mutex<Option<String>>,
}

/// The application of a framed connection: forwards each frame to the [`Frames`] consumer.
#[derive(Debug)]
pub struct Forward {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    shared: Arc<Shared>,
}

/// The consumer's end: received frames, in order; ends when the connection closes.
#[derive(Debug)]
pub struct Frames {
    rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
}

/// A connected pair: give `Forward` to the tendril as its application, keep `Frames`.
pub fn channel() -> (Forward, Frames) {
    let (tx, rx) = mpsc::unbounded();
    let shared = Arc::new(Shared::default());
    let forward = Forward {
        tx: Some(tx),
        shared: shared.clone(),
    };
    (forward, Frames { rx, shared })
}

impl Application for Forward {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        if let Some(tx) = &self.tx {
            // Count and mark the pause before the frame is visible, so the consumer,
            // whenever it takes this frame, sees both (and resumes delivery once it caught
            // up).
            let queued = self.shared.queued.fetch_add(1, Ordering::AcqRel) + 1;
            if queued >= QUEUE {
                self.shared.paused.store(true, Ordering::Release);
                t.pause_recv(true);
            }
            if tx.unbounded_send(frame).is_err() {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
        *crate::lock(&self.shared.reason) = Some(reason.to_string());
        self.tx = None;
    }
}

impl Frames {
    /// The next frame; `resume` is called (to un-pause the connection) once a lagging
    /// consumer has caught up.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        resume: impl FnOnce(),
    ) -> Poll<Option<Bytes>> {
        let item = Pin::new(&mut self.rx).poll_next(cx);
        if let Poll::Ready(Some(_)) = item {
            let left = self.shared.queued.fetch_sub(1, Ordering::AcqRel) - 1;
            if left <= QUEUE / 2 && self.shared.paused.swap(false, Ordering::AcqRel) {
                resume();
            }
        }
        item
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        crate::lock(&self.shared.reason).clone()
    }
}
