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
use crate::{lock, BoxApp, SharedAcceptor, Step, StreamConn};

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
    let task = super::tasks::new_task_id();
    let handle = TendrilHandle::new(
        Route::Stream(tx),
        shared.proto(),
        local,
        remote.clone(),
        task,
    );
    let app = with_current(&handle, || (lock(acceptor))(&mut tendril))?;
    shared.register(&handle);
    let span = tracing::info_span!("tendril", proto = %shared.proto(), peer = %remote);
    let registered = Registered(shared.clone(), handle.clone());
    shared.spawn_as(
        task,
        async move {
            tracing::debug!("opened");
            let mut io = io;
            run(&registered.0, &mut io, tendril, app, rx).await;
            // Listed as closed before the peer can see the socket close.
            drop(registered);
            drop(io);
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

/// The connection's loop: [`StreamConn::step`], then wait for whichever comes first of a
/// command, room to write, bytes to read and the deadline, in the order the step function
/// documents.
async fn run(
    shared: &Shared,
    io: &mut Box<dyn StreamIo>,
    tendril: Tendril,
    app: BoxApp,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut conn = StreamConn::new(tendril, app);
    let mut commands_open = true;
    let mut timer = shared.runtime().timer();
    let mut armed = None;
    loop {
        let wait = match conn.step() {
            Step::Shutdown => {
                let result = io.socket().shutdown(Shutdown::Write);
                conn.shutdown_done(shared.now(), result);
                continue;
            }
            Step::Closed => break,
            Step::Wait(wait) => wait,
        };
        if wait.deadline != armed {
            if let Some(at) = wait.deadline {
                timer.reset(shared.instant(at));
            }
            armed = wait.deadline;
        }
        poll_fn(|cx| {
            let mut ready = false;
            while commands_open {
                match commands.poll_next_unpin(cx) {
                    Poll::Ready(Some(command)) => {
                        conn.command(command);
                        ready = true;
                    }
                    Poll::Ready(None) => commands_open = false,
                    Poll::Pending => break,
                }
            }
            if conn.wants_write() {
                let written = {
                    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                    let count = conn.outgoing(&mut slices);
                    io.poll_write(cx, &slices[..count])
                };
                if let Poll::Ready(result) = written {
                    conn.write_done(shared.now(), result);
                    ready = true;
                }
            }
            if conn.wants_read() {
                let (buf, limit) = conn.read_buf();
                match io.poll_read(cx, buf, limit) {
                    Poll::Ready(result) => {
                        conn.read_done(shared.now(), result);
                        ready = true;
                    }
                    Poll::Pending => conn.idle(shared.now()),
                }
            }
            if armed.is_some() && timer.poll_fired(cx).is_ready() {
                armed = None;
                conn.timer(shared.now());
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
    tracing::debug!(stats = ?conn.tendril().stats(), "finished");
}
