//! Stream connections (TCP, Unix): one task per connection moves bytes and time.

use futures::channel::mpsc;
use futures::StreamExt;
use std::future::poll_fn;
use std::io::IoSlice;
use std::net::Shutdown;
use std::sync::Arc;
use std::task::Poll;
use tendril_core::{Addr, Reject, Tendril};
use tracing::Instrument;

use super::adapter::StreamIo;
use super::handle::{with_current, Command, Route};
use super::{Shared, TendrilHandle};
use crate::command::PendingSends;
use crate::{lock, BoxApp, SharedAcceptor};

/// The most buffers one vectored write hands to the kernel.
const MAX_IOVECS: usize = 64;

/// Run a connected byte stream as a tendril: make the tendril, ask `acceptor`, and spawn the
/// connection's task. Transports call this for each accepted or connected socket (register it
/// with [`Runtime::stream`](super::Runtime::stream) first); it is public so that new stream
/// transports share everything above the socket.
pub fn spawn_stream(
    shared: &Arc<Shared>,
    io: Box<dyn StreamIo>,
    local: Addr,
    remote: Addr,
    acceptor: &SharedAcceptor,
) -> Result<TendrilHandle, Reject> {
    let mut tendril = shared.new_tendril(local.clone(), remote.clone());
    let (tx, rx) = mpsc::unbounded();
    let handle = TendrilHandle::new(Route::Stream(tx), shared.proto(), local, remote.clone());
    let app = with_current(&handle, || (lock(acceptor))(&mut tendril))?;
    shared.register(&handle);
    let span = tracing::info_span!("tendril", proto = %shared.proto(), peer = %remote);
    let registered = Registered(shared.clone(), handle.clone());
    shared.spawn(
        async move {
            tracing::debug!("opened");
            run(&registered.0, io, tendril, app, rx).await;
            drop(registered);
        }
        .instrument(span),
    );
    Ok(handle)
}

/// Takes a connection out of the live table when its task ends, whether it returns, panics or
/// is dropped unfinished.
struct Registered(Arc<Shared>, TendrilHandle);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.unregister(&self.1);
    }
}

/// The connection's loop: run what the tendril asks for (dispatch, shutdown), then wait for
/// whichever comes first of a command, room to write, bytes to read and the next deadline.
async fn run(
    shared: &Shared,
    mut io: Box<dyn StreamIo>,
    mut tendril: Tendril,
    mut app: BoxApp,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut waiting = PendingSends::default();
    let mut commands_open = true;
    let mut timer = shared.runtime().timer();
    let mut armed = None;
    loop {
        waiting.retry(&mut tendril);
        tendril.dispatch(&mut *app);
        if tendril.wants_shutdown() {
            if let Err(e) = io.socket().shutdown(Shutdown::Write) {
                tracing::debug!(error = %e, "shutdown failed");
            }
            tendril.handle_shutdown(shared.now());
            tendril.dispatch(&mut *app);
        }
        if tendril.is_closed() {
            waiting.retry(&mut tendril);
            break;
        }
        let deadline = tendril.poll_timeout();
        if deadline != armed {
            if let Some(at) = deadline {
                timer.reset(shared.instant(at));
            }
            armed = deadline;
        }
        poll_fn(|cx| {
            let mut ready = false;
            while commands_open {
                match commands.poll_next_unpin(cx) {
                    Poll::Ready(Some(command)) => {
                        waiting.apply(&mut tendril, command);
                        ready = true;
                    }
                    Poll::Ready(None) => commands_open = false,
                    Poll::Pending => break,
                }
            }
            if !tendril.transmit().is_empty() {
                let written = {
                    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                    let count = bytes::Buf::chunks_vectored(&*tendril.transmit(), &mut slices);
                    io.poll_write(cx, &slices[..count])
                };
                match written {
                    Poll::Ready(Ok(0)) => {
                        tendril.handle_error(shared.now(), "the socket accepted no bytes");
                        ready = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        bytes::Buf::advance(tendril.transmit(), n);
                        ready = true;
                    }
                    Poll::Ready(Err(e)) => {
                        tendril.handle_error(shared.now(), e.to_string());
                        ready = true;
                    }
                    Poll::Pending => {}
                }
            }
            if tendril.wants_read() {
                let limit = tendril.config().read_size.max(1);
                let buf = tendril.read_buf();
                let limit = limit.min(buf.capacity() - buf.len());
                match io.poll_read(cx, buf, limit) {
                    Poll::Ready(Ok(0)) => {
                        tendril.handle_eof(shared.now());
                        ready = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        if n == limit {
                            crate::grow_reads(&mut tendril);
                        }
                        tendril.handle_read(shared.now(), n);
                        ready = true;
                    }
                    Poll::Ready(Err(e)) => {
                        tendril.handle_error(shared.now(), e.to_string());
                        ready = true;
                    }
                    Poll::Pending => tendril.release_idle_buffers(),
                }
            }
            if armed.is_some() && timer.poll_fired(cx).is_ready() {
                armed = None;
                tendril.handle_timeout(shared.now());
                ready = true;
            }
            if ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
    tracing::debug!(stats = ?tendril.stats(), "finished");
}
