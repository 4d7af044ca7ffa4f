//! What the network holds, whatever its frame and application types: connection ends, the
//! listeners that make them, and UDP sockets' trackers.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use bytes::{Buf, Bytes};
use core::any::Any;
use core::net::SocketAddr;
use core::time::Duration;

use crate::tracker::{Tracker, TrackerEvent};
use crate::{Application, CloseReason, Event, Reject, Tendril};

/// A connection end, whatever its frame and application types.
pub(super) trait StreamEnd {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Deliver callbacks; a close's reason is written to `closed`.
    fn dispatch(&mut self, closed: &mut Option<String>);
    fn is_closed(&self) -> bool;
    fn wants_read(&self) -> bool;
    fn wants_shutdown(&self) -> bool;
    fn queued(&self) -> usize;
    fn take(&mut self, n: usize) -> Bytes;
    fn shutdown(&mut self, now: Duration);
    fn deliver(&mut self, now: Duration, data: &[u8]);
    fn eof(&mut self, now: Duration);
    fn error(&mut self, now: Duration, message: &str);
    fn timeout(&mut self, now: Duration);
    fn deadline(&self) -> Option<Duration>;
    fn abort(&mut self);
}

impl<In: 'static, Out: 'static, A: Application<In, Out> + 'static> StreamEnd
    for (Tendril<In, Out>, A)
{
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn dispatch(&mut self, closed: &mut Option<String>) {
        let (tendril, app) = self;
        tendril.dispatch(&mut Watch { app, closed });
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn wants_read(&self) -> bool {
        self.0.wants_read()
    }

    fn wants_shutdown(&self) -> bool {
        self.0.wants_shutdown()
    }

    fn queued(&self) -> usize {
        self.0.outgoing_len()
    }

    fn take(&mut self, n: usize) -> Bytes {
        let out = self.0.outgoing();
        let n = n.min(out.remaining());
        out.copy_to_bytes(n)
    }

    fn shutdown(&mut self, now: Duration) {
        self.0.handle_shutdown(now);
    }

    fn deliver(&mut self, now: Duration, data: &[u8]) {
        self.0.handle_data(now, data);
    }

    fn eof(&mut self, now: Duration) {
        self.0.handle_eof(now);
    }

    fn error(&mut self, now: Duration, message: &str) {
        self.0.handle_error(now, message);
    }

    fn timeout(&mut self, now: Duration) {
        self.0.handle_timeout(now);
    }

    fn deadline(&self) -> Option<Duration> {
        if self.0.is_closed() {
            return None;
        }
        self.0.poll_timeout()
    }

    fn abort(&mut self) {
        self.0.abort();
    }
}

/// An application seen through the network: every callback passes through, and the close
/// reason is noted.
struct Watch<'a, A> {
    app: &'a mut A,
    closed: &'a mut Option<String>,
}

impl<In, Out, A: Application<In, Out>> Application<In, Out> for Watch<'_, A> {
    fn recv_frame(
        &mut self,
        tendril: &mut Tendril<In, Out>,
        frame: In,
    ) -> Result<(), crate::AppError> {
        self.app.recv_frame(tendril, frame)
    }

    fn closed(&mut self, tendril: &Tendril<In, Out>, reason: &CloseReason) {
        *self.closed = Some(reason.to_string());
        self.app.closed(tendril, reason);
    }

    fn writable(&mut self, tendril: &mut Tendril<In, Out>) {
        self.app.writable(tendril);
    }

    fn timer(&mut self, tendril: &mut Tendril<In, Out>) {
        self.app.timer(tendril);
    }

    fn event(&mut self, tendril: &mut Tendril<In, Out>, event: &Event) {
        self.app.event(tendril, event);
    }
}

/// A listener's way of making server ends, whatever their types.
pub(super) trait Accept {
    fn accept(
        &mut self,
        now: Duration,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Box<dyn StreamEnd>, Reject>;
}

pub(super) struct Acceptor<T, C> {
    pub(super) tendril: T,
    pub(super) acceptor: C,
}

impl<In, Out, A, T, C> Accept for Acceptor<T, C>
where
    In: 'static,
    Out: 'static,
    A: Application<In, Out> + 'static,
    T: FnMut() -> Tendril<In, Out>,
    C: FnMut(&mut Tendril<In, Out>) -> Result<A, Reject>,
{
    fn accept(
        &mut self,
        now: Duration,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Box<dyn StreamEnd>, Reject> {
        let mut tendril = (self.tendril)()
            .with_addrs(local.into(), remote.into())
            .started_at(now);
        let app = (self.acceptor)(&mut tendril)?;
        Ok(Box::new((tendril, app)))
    }
}

/// A UDP socket's tracker, whatever its types.
pub(super) trait DatagramEnd {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn receive(&mut self, now: Duration, local: SocketAddr, remote: SocketAddr, data: &[u8]);
    fn timeout(&mut self, now: Duration);
    fn deadline(&self) -> Option<Duration>;
    /// The next datagram to send: its peer (`None` if not an IP address) and bytes.
    fn poll_transmit(&mut self) -> Option<(Option<SocketAddr>, Bytes)>;
    fn poll_event(&mut self) -> Option<TrackerEvent>;
}

impl<In: 'static, Out: 'static, A: Application<In, Out> + 'static> DatagramEnd
    for Tracker<In, Out, A>
{
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn receive(&mut self, now: Duration, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.handle_datagram(now, local, remote, data, false);
    }

    fn timeout(&mut self, now: Duration) {
        self.handle_timeout(now);
    }

    fn deadline(&self) -> Option<Duration> {
        self.poll_timeout()
    }

    fn poll_transmit(&mut self) -> Option<(Option<SocketAddr>, Bytes)> {
        Tracker::poll_transmit(self).map(|t| (t.remote.ip(), t.data))
    }

    fn poll_event(&mut self) -> Option<TrackerEvent> {
        Tracker::poll_event(self)
    }
}
