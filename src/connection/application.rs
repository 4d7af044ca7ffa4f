use alloc::boxed::Box;
use alloc::string::String;
use bytes::Bytes;
use core::fmt;

use super::{CloseReason, Event, Tendril};

/// An error returned by [`Application::recv_frame`]; it closes that connection only.
pub type AppError = Box<dyn core::error::Error + Send + Sync>;

/// The application's per-connection object.
///
/// The core calls it from [`Tendril::dispatch`], so every driver delivers the same callbacks in
/// the same order: `recv_frame` for each frame, `writable`, `timer` and `event` for events, and
/// `closed` exactly once, last. From inside `recv_frame` an application can send, switch either
/// framer, wrap the stream (STARTTLS) and close.
///
/// The Python original's `TendrilPartial` has no Rust counterpart: a closure that captures the
/// extra arguments is the acceptor.
///
/// ```
/// use bytes::Bytes;
/// use core::time::Duration;
/// use tendril_core::{AppError, Application, Line, Proto, Tendril};
///
/// struct Echo;
///
/// impl Application for Echo {
///     fn recv_frame(&mut self, tendril: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
///         if frame == "QUIT" {
///             tendril.close();
///             return Ok(());
///         }
///         tendril.send_frame(frame)?;
///         Ok(())
///     }
/// }
///
/// let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
/// t.handle_data(Duration::ZERO, b"hello\r\nQUIT\r\nignored\r\n");
/// t.dispatch(&mut Echo);
/// assert_eq!(t.outgoing().take_all(), "hello\r\n");
/// assert!(t.wants_shutdown());
/// ```
pub trait Application<In = Bytes, Out = In> {
    /// A frame arrived. An error closes this connection with [`CloseReason::Application`].
    fn recv_frame(&mut self, tendril: &mut Tendril<In, Out>, frame: In) -> Result<(), AppError>;

    /// The connection closed; called exactly once, after every other callback.
    fn closed(&mut self, tendril: &Tendril<In, Out>, reason: &CloseReason) {
        let _ = (tendril, reason);
    }

    /// The outgoing queue drained below the low watermark after a refused send.
    fn writable(&mut self, tendril: &mut Tendril<In, Out>) {
        let _ = tendril;
    }

    /// The timer set with [`Tendril::set_timer`] expired.
    fn timer(&mut self, tendril: &mut Tendril<In, Out>) {
        let _ = tendril;
    }

    /// Any other event ([`Event::FrameSkipped`], [`Event::PlaintextDiscarded`],
    /// [`Event::DatagramTruncated`]).
    fn event(&mut self, tendril: &mut Tendril<In, Out>, event: &Event) {
        let _ = (tendril, event);
    }
}

impl<In, Out, A: Application<In, Out> + ?Sized> Application<In, Out> for Box<A> {
    fn recv_frame(&mut self, tendril: &mut Tendril<In, Out>, frame: In) -> Result<(), AppError> {
        (**self).recv_frame(tendril, frame)
    }

    fn closed(&mut self, tendril: &Tendril<In, Out>, reason: &CloseReason) {
        (**self).closed(tendril, reason)
    }

    fn writable(&mut self, tendril: &mut Tendril<In, Out>) {
        (**self).writable(tendril)
    }

    fn timer(&mut self, tendril: &mut Tendril<In, Out>) {
        (**self).timer(tendril)
    }

    fn event(&mut self, tendril: &mut Tendril<In, Out>, event: &Event) {
        (**self).event(tendril, event)
    }
}

/// An acceptor's refusal of a new connection, with a reason for the logs.
///
/// An acceptor is any `FnMut(&mut Tendril<In, Out>) -> Result<App, Reject>`: it sees the new
/// connection's addresses and protocol, may set framers or wrap it, and returns the
/// application or a rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    reason: String,
}

impl Reject {
    /// A rejection with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Reject {
            reason: reason.into(),
        }
    }

    /// The reason given.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection rejected: {}", self.reason)
    }
}

impl core::error::Error for Reject {}
