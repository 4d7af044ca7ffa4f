//! The application as the driver keeps it: every callback forwarded, and the close reason and
//! unusual events traced in the connection's span.

use bytes::Bytes;
use tendril_core::{AppError, Application, CloseReason, Event, Tendril};

use crate::manager::BoxApp;

pub(crate) struct Logged(pub(crate) BoxApp);

impl Application for Logged {
    fn recv_frame(&mut self, tendril: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.0.recv_frame(tendril, frame)
    }

    fn closed(&mut self, tendril: &Tendril, reason: &CloseReason) {
        if reason.is_clean() {
            tracing::debug!(remote = %tendril.remote_addr(), %reason, "closed");
        } else {
            tracing::info!(remote = %tendril.remote_addr(), %reason, "closed");
        }
        self.0.closed(tendril, reason);
    }

    fn writable(&mut self, tendril: &mut Tendril) {
        self.0.writable(tendril);
    }

    fn timer(&mut self, tendril: &mut Tendril) {
        self.0.timer(tendril);
    }

    fn event(&mut self, tendril: &mut Tendril, event: &Event) {
        tracing::debug!(remote = %tendril.remote_addr(), ?event, "event");
        self.0.event(tendril, event);
    }
}
