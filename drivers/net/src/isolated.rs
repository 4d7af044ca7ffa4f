//! Panic isolation: an application's panic ends its own tendril, never its socket's task, its
//! thread, or any other peer.

use bytes::Bytes;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tendril_core::{AppError, Application, CloseReason, Event, Reject, Tendril};

/// The text of a caught panic.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Run an acceptor, turning its panic into a rejection that carries the panic's message.
pub fn accept_isolated<A>(
    tendril: &mut Tendril,
    acceptor: impl FnOnce(&mut Tendril) -> Result<A, Reject>,
) -> Result<A, Reject> {
    catch(|| acceptor(&mut *tendril)).unwrap_or_else(|message| {
        logged(tendril, "the acceptor", &message);
        Err(Reject::new(format!("the acceptor panicked: {message}")))
    })
}

/// Run `f`, catching its panic: `Err` with the panic's message.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| panic_message(&*panic))
}

/// Log a caught panic of `callback` on `tendril`.
fn logged(tendril: &Tendril, callback: &str, message: &str) {
    tracing::error!(remote = %tendril.remote_addr(), %message, "{callback} panicked");
}

/// An application as every driver runs it: each callback's panic is caught, logged, and ends
/// only this tendril, with [`CloseReason::Panicked`] and the panic's message
/// ([`Tendril::abort_after_panic`]). `closed` still runs, exactly once, so the application can
/// let go of what it holds. Closes and unusual events are traced too.
///
/// ```
/// use bytes::Bytes;
/// use tendril_core::{AppError, Application, Line, Proto, Tendril};
/// use tendril_net::Isolated;
///
/// struct Fragile;
/// impl Application for Fragile {
///     fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), AppError> {
///         panic!("unexpected frame");
///     }
/// }
///
/// let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
/// let mut app = Isolated::new(Fragile);
/// t.handle_data(std::time::Duration::ZERO, b"hello\r\n");
/// t.dispatch(&mut app); // the panic stays here
/// assert!(t.is_closed());
/// ```
pub struct Isolated<A>(A);

impl<A> std::fmt::Debug for Isolated<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Isolated(..)")
    }
}

impl<A: Application> Isolated<A> {
    /// Guard `app`.
    pub fn new(app: A) -> Self {
        Isolated(app)
    }

    fn guard(&mut self, t: &mut Tendril, callback: &str, f: impl FnOnce(&mut A, &mut Tendril)) {
        let app = &mut self.0;
        if let Err(message) = catch(|| f(app, &mut *t)) {
            logged(t, callback, &message);
            t.abort_after_panic(message);
        }
    }
}

impl<A: Application> Application for Isolated<A> {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        let mut result = Ok(());
        self.guard(t, "recv_frame", |app, t| result = app.recv_frame(t, frame));
        result
    }

    fn writable(&mut self, t: &mut Tendril) {
        self.guard(t, "writable", |app, t| app.writable(t));
    }

    fn timer(&mut self, t: &mut Tendril) {
        self.guard(t, "timer", |app, t| app.timer(t));
    }

    fn event(&mut self, t: &mut Tendril, event: &Event) {
        tracing::debug!(remote = %t.remote_addr(), ?event, "event");
        self.guard(t, "event", |app, t| app.event(t, event));
    }

    fn closed(&mut self, t: &Tendril, reason: &CloseReason) {
        if reason.is_clean() {
            tracing::debug!(remote = %t.remote_addr(), %reason, "closed");
        } else {
            tracing::info!(remote = %t.remote_addr(), %reason, "closed");
        }
        let app = &mut self.0;
        if let Err(message) = catch(|| app.closed(t, reason)) {
            logged(t, "closed", &message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tendril_core::{Line, Proto};

    /// Panics on "boom" in `recv_frame`, on its timer, and in `closed` when told to.
    struct Fragile {
        closes: Arc<Mutex<Vec<String>>>,
        panic_in_closed: bool,
    }

    impl Application for Fragile {
        fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            if frame == "boom" {
                panic!("boom seen");
            }
            t.send_frame(frame)?;
            Ok(())
        }

        fn timer(&mut self, _: &mut Tendril) {
            panic!("{} o'clock", 12);
        }

        fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
            self.closes.lock().unwrap().push(reason.to_string());
            if self.panic_in_closed {
                panic!("again");
            }
        }
    }

    fn run(input: &[u8], timer: bool, panic_in_closed: bool) -> (Tendril, Vec<String>) {
        let closes = Arc::new(Mutex::new(Vec::new()));
        let mut app = Isolated::new(Fragile {
            closes: closes.clone(),
            panic_in_closed,
        });
        let mut t: Tendril = Tendril::new(Proto::TCP, Line::lf(), Line::lf());
        if timer {
            t.set_timer(Some(Duration::from_secs(1)));
            t.handle_timeout(Duration::from_secs(1));
        }
        t.handle_data(Duration::ZERO, input);
        t.dispatch(&mut app);
        let closes = closes.lock().unwrap().clone();
        (t, closes)
    }

    #[test]
    fn a_panic_in_recv_frame_closes_the_tendril_with_its_message_and_closed_runs_once() {
        let (t, closes) = run(b"one\nboom\ntwo\n", false, false);
        assert!(t.is_closed());
        assert_eq!(closes, ["the application panicked: boom seen"]);
    }

    #[test]
    fn a_panic_in_the_timer_and_again_in_closed_stays_inside() {
        let (t, closes) = run(b"", true, true);
        assert!(t.is_closed());
        assert_eq!(closes, ["the application panicked: 12 o'clock"]);
    }

    #[test]
    fn an_acceptor_that_panics_rejects_with_the_message() {
        let mut t: Tendril = Tendril::new(Proto::TCP, Line::lf(), Line::lf());
        let result: Result<(), Reject> = accept_isolated(&mut t, |_| panic!("no"));
        let reason = result.unwrap_err().to_string();
        assert!(reason.contains("the acceptor panicked: no"), "{reason}");
    }
}
