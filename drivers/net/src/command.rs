//! What handles ask of a connection's task, and how the task carries it out — the same in
//! every driver.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use tendril_core::{SendError, Tendril};

/// Why a frame sent through a handle was not taken.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendFailed {
    /// The connection is closing or closed.
    Closed,
    /// The send framer cannot encode the frame.
    Frame(tendril_core::FrameError),
}

impl fmt::Display for SendFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendFailed::Closed => f.write_str("the tendril is closed"),
            SendFailed::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendFailed::Frame(e) => Some(e),
            SendFailed::Closed => None,
        }
    }
}

/// Where the outcome of a send goes (a driver's one-shot channel).
pub type Reply = Box<dyn FnOnce(Result<(), SendFailed>) + Send>;

/// One request from a handle.
pub enum Command {
    /// Send a frame; reply once it is queued (waiting while the queue is full).
    Send(Bytes, Option<Reply>),
    /// Run a closure on the tendril (switch framers, wrap, …).
    With(Box<dyn FnOnce(&mut Tendril) + Send>),
    /// Close gracefully.
    Close,
    /// Close at once.
    Abort,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Send(frame, _) => write!(f, "Send({} bytes)", frame.len()),
            Command::With(_) => f.write_str("With(..)"),
            Command::Close => f.write_str("Close"),
            Command::Abort => f.write_str("Abort"),
        }
    }
}

fn refused(e: SendError<Bytes>) -> SendFailed {
    match e {
        SendError::Frame(e) => SendFailed::Frame(e),
        _ => SendFailed::Closed,
    }
}

/// Carry out `command` at once (datagram peers, whose queue never fills).
pub fn apply_now(tendril: &mut Tendril, command: Command) {
    match command {
        Command::Send(frame, reply) => {
            let result = tendril.send_frame(frame).map_err(refused);
            if let Some(reply) = reply {
                reply(result);
            }
        }
        Command::With(f) => f(tendril),
        Command::Close => tendril.close(),
        Command::Abort => tendril.abort(),
    }
}

/// Frames from handles that wait for room in a stream connection's outgoing queue, in
/// order: back-pressure for senders on other tasks and threads.
#[derive(Default)]
pub struct PendingSends {
    queue: VecDeque<(Bytes, Option<Reply>)>,
}

impl fmt::Debug for PendingSends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSends")
            .field("frames", &self.queue.len())
            .finish()
    }
}

impl PendingSends {
    /// Carry out `command`; a frame that finds the queue full (or frames waiting before it)
    /// waits.
    pub fn apply(&mut self, tendril: &mut Tendril, command: Command) {
        match command {
            Command::Send(frame, reply) if self.queue.is_empty() => {
                self.send(tendril, frame, reply)
            }
            Command::Send(frame, reply) => self.queue.push_back((frame, reply)),
            other => apply_now(tendril, other),
        }
    }

    fn send(&mut self, tendril: &mut Tendril, frame: Bytes, reply: Option<Reply>) {
        let result = match tendril.send_frame(frame) {
            Err(SendError::Full(frame)) => {
                self.queue.push_front((frame, reply));
                return;
            }
            other => other.map_err(refused),
        };
        if let Some(reply) = reply {
            reply(result);
        }
    }

    /// Send the waiting frames the queue has room for now; once the connection is no longer
    /// open, fail them all.
    pub fn retry(&mut self, tendril: &mut Tendril) {
        while tendril.is_writable() {
            let Some((frame, reply)) = self.queue.pop_front() else {
                return;
            };
            self.send(tendril, frame, reply);
        }
        if !tendril.is_open() {
            self.fail_all();
        }
    }

    /// `true` when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The connection is gone: every waiting frame fails.
    pub fn fail_all(&mut self) {
        for (_, reply) in self.queue.drain(..) {
            if let Some(reply) = reply {
                reply(Err(SendFailed::Closed));
            }
        }
    }
}
