//! Readiness without a poller.
//!
//! `std` has no way to wait for "the socket is readable *or* a command arrived". So a small
//! helper thread blocks in `peek` on the socket (which consumes nothing) and reports readiness,
//! which wakes the task that owns the socket. It peeks again only when the owner asks
//! ([`Readiness::arm`]), after it has read, so the helper never spins and never reads.
//! Commands, readiness and timers therefore wake the owner at once, with no polling interval.

use socket2::SockRef;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The helper thread only peeks: a small stack is plenty.
const STACK_SIZE: usize = 64 * 1024;

/// How long the owner waits for the helper to leave its `peek` once the socket is shut.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// The readiness helper of one socket.
pub(crate) struct Readiness {
    go: Option<Sender<()>>,
    exited: std::sync::Mutex<Receiver<()>>,
    thread: Option<JoinHandle<()>>,
    armed: AtomicBool,
}

impl Readiness {
    /// Start the helper for `socket`. `notify` delivers each readiness report (`Err` when the
    /// peek failed, e.g. a reset) and returns `false` once nobody listens any more.
    pub(crate) fn spawn<S, N>(socket: Arc<S>, mut notify: N) -> io::Result<Self>
    where
        S: AsFd + Send + Sync + 'static,
        N: FnMut(io::Result<()>) -> bool + Send + 'static,
    {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (exited_tx, exited_rx) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("tendril-peek".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                // Dropped when this thread ends: the owner's `recv` on `exited` returns.
                let _exited = exited_tx;
                while go_rx.recv().is_ok() {
                    let result = loop {
                        let mut byte = [MaybeUninit::<u8>::uninit()];
                        match SockRef::from(&*socket).peek(&mut byte) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            result => break result.map(|_| ()),
                        }
                    };
                    if !notify(result) {
                        break;
                    }
                }
            })?;
        Ok(Readiness {
            go: Some(go_tx),
            exited: std::sync::Mutex::new(exited_rx),
            thread: Some(thread),
            armed: AtomicBool::new(false),
        })
    }

    /// Ask for the next report, unless one is already asked for.
    pub(crate) fn arm(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            if let Some(go) = &self.go {
                let _ = go.send(());
            }
        }
    }

    /// A report arrived: the helper waits for the next [`arm`](Self::arm).
    pub(crate) fn reported(&self) {
        self.armed.store(false, Ordering::Release);
    }

    /// Stop the helper. `wake` must make a blocked `peek` return (shut the socket's read side).
    /// Waits for the helper briefly; one that does not leave its `peek` is left behind, never
    /// waited on forever.
    pub(crate) fn finish(&mut self, wake: impl FnOnce()) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.go = None;
        wake();
        match tendril_net::lock(&self.exited).recv_timeout(EXIT_GRACE) {
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("the readiness thread did not leave its peek; leaving it behind");
            }
            _ => {
                let _ = thread.join();
            }
        }
    }
}
