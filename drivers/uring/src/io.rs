//! Sockets on a shard: what each one has in flight and what came back, and the kit's
//! [`StreamIo`], [`Listener`] and [`Readiness`] on top.
//!
//! A socket is a [`Source`], shared by its I/O object and the operations in flight on it. The
//! I/O object asks (a [`Request`]); the shard's loop submits; the completion lands in the
//! source's state and wakes the task. Receives are multishot into the shard's buffer pool
//! (one-shot while a connection the kit stopped reading has bytes spilled), accepts are
//! multishot, a write goes straight out when the socket has room (and through a
//! `send` the ring owns when it would block), and readiness (a connect finishing, the UDP
//! socket the kit reads itself) is a one-shot poll.

use bytes::BytesMut;
use socket2::{SockRef, Socket};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tendril_net::lock;
use tendril_net::runtime::{Interest, Listener, Readiness, StreamIo};

use crate::shard::{Shard, BUFFER_SIZE};
use crate::sys::{accepted_fd, Chunk, Completion, Pool, Ring};

/// Filled buffers one connection may hold unread. When it holds this many, or has held some
/// for two loop turns without the kit reading them, the kit is not reading (its peer sends
/// and does not read the replies, say): the bytes move to memory of the connection's own (its
/// spill), the buffers go back to the shard's pool, and the multishot receive is cancelled.
/// Until the kit has read the spill, the connection receives one buffer at a time (a
/// multishot receive takes as many buffers as the socket holds bytes before the loop can stop
/// it). So peers that send without reading cannot hold the pool the others receive into.
const MAX_CHUNKS: usize = 8;
/// The most bytes a connection keeps spilled before its receive stays paused.
const MAX_SPILL: usize = MAX_CHUNKS * BUFFER_SIZE as usize;
/// Accepted connections queued before the multishot accept is paused.
const MAX_ACCEPTED: usize = 64;
/// The most bytes one send takes from the kit's queue.
const MAX_SEND: usize = 256 * 1024;

/// A multishot or one-shot operation's state on a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Arm {
    /// Nothing in flight.
    #[default]
    Off,
    /// Asked for; the loop has not submitted it yet.
    Queued,
    /// In flight, as this `user_data`.
    On(u64),
    /// Cancelled, its last completion not in yet.
    Cancelling,
    /// Stopped for want of receive buffers, waiting for some to come back.
    Starved,
}

/// What the loop submits, asked for from any thread.
pub(crate) enum Request {
    Recv(Arc<Source>),
    Accept(Arc<Source>),
    Send(Arc<Source>, Vec<u8>),
    Poll(Arc<Source>, Interest),
    /// The I/O object was dropped: cancel what is in flight. The descriptor closes when the
    /// last operation holding the source completes.
    Close(Arc<Source>),
}

/// An operation in flight, as the ring knows it.
#[derive(Clone)]
pub(crate) enum Op {
    Recv(Arc<Source>),
    Accept(Arc<Source>),
    Send(Arc<Source>),
    Poll(Arc<Source>, Interest),
    /// The shard's own bell: another thread has queued something.
    Bell,
}

/// A socket registered with a shard.
pub(crate) struct Source {
    socket: Socket,
    /// A listening socket: it stops listening the moment its I/O object is dropped.
    listening: bool,
    shard: Arc<Shard>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    closed: bool,
    // Readiness, by `Interest as usize`, with a tick that counts polls that fired.
    ready: [bool; 2],
    tick: u64,
    polling: [Arm; 2],
    waiting: [Option<Waker>; 2],
    // Receiving (streams) or accepting (listeners).
    arm: Arm,
    chunks: VecDeque<Chunk>,
    // Received bytes older than any in `chunks` (one of the two is empty), copied out of the
    // pool because the kit was not reading them. While there are some, receives are one-shot.
    spill: BytesMut,
    // The loop turn since which `chunks` have waited for the kit, and whether the source is
    // on the shard's list of holders.
    held_since: u64,
    holding: bool,
    accepted: VecDeque<io::Result<OwnedFd>>,
    eof: bool,
    error: Option<io::Error>,
    reader: Option<Waker>,
    // Sending: `out[out_from..]` are bytes taken from the kit's queue and not sent yet (a
    // short send leaves some; the kit hands them over again, and they are not copied twice).
    sending: Arm,
    sent: Option<io::Result<usize>>,
    out: Vec<u8>,
    out_from: usize,
    writer: Option<Waker>,
}

impl State {
    /// Move the bytes of the held buffers to the spill and give the buffers back.
    fn spill_chunks(&mut self, pool: &Pool) {
        while let Some(chunk) = self.chunks.pop_front() {
            self.spill_chunk(pool, chunk);
        }
    }

    /// Move the bytes of `chunk` to the spill and give the buffer back.
    fn spill_chunk(&mut self, pool: &Pool, chunk: Chunk) {
        self.spill.extend_from_slice(pool.bytes(&chunk));
        pool.recycle(chunk);
    }

    /// Room for more received bytes: fewer than [`MAX_CHUNKS`] buffers held, and little
    /// spilled.
    fn wants_more(&self) -> bool {
        self.chunks.len() < MAX_CHUNKS && self.spill.len() < MAX_SPILL
    }
}

fn os_error(result: i32) -> io::Error {
    io::Error::from_raw_os_error(-result)
}

impl Source {
    /// Register `socket` with `shard`.
    pub(crate) fn register(socket: Socket, shard: Arc<Shard>, listening: bool) -> Registered {
        Registered(Arc::new(Source {
            socket,
            listening,
            shard,
            state: Mutex::default(),
        }))
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Buffers are back after this source starved: receive again.
    pub(crate) fn fed(self: Arc<Self>) {
        let mut state = lock(&self.state);
        if state.arm == Arm::Starved && !state.closed {
            if !state.wants_more() {
                // Full of bytes the kit has not read: its next read receives again.
                state.arm = Arm::Off;
                return;
            }
            state.arm = Arm::Queued;
            drop(state);
            self.shard.request(Request::Recv(self.clone()));
        }
    }
}

impl Request {
    /// Submit on the loop's thread.
    pub(crate) fn submit(self, ring: &mut Ring<Op>) {
        match self {
            Request::Recv(source) => {
                let mut state = lock(&source.state);
                if state.closed || state.arm != Arm::Queued {
                    return;
                }
                source.receive(ring, &mut state);
            }
            Request::Accept(source) => {
                let mut state = lock(&source.state);
                if state.closed || state.arm != Arm::Queued {
                    return;
                }
                match ring.accept_multi(source.fd(), Op::Accept(source.clone())) {
                    Ok(id) => state.arm = Arm::On(id),
                    Err(e) => {
                        state.arm = Arm::Off;
                        state.accepted.push_back(Err(e));
                        wake(&mut state.reader);
                    }
                }
            }
            Request::Send(source, buf) => {
                let mut state = lock(&source.state);
                if state.closed {
                    return;
                }
                let from = state.out_from;
                match ring.send(source.fd(), buf, from, Op::Send(source.clone())) {
                    Ok(id) => state.sending = Arm::On(id),
                    Err(e) => {
                        state.sending = Arm::Off;
                        state.sent = Some(Err(e));
                        wake(&mut state.writer);
                    }
                }
            }
            Request::Poll(source, interest) => {
                let mut state = lock(&source.state);
                let i = interest as usize;
                if state.closed || state.polling[i] != Arm::Queued {
                    return;
                }
                let events = match interest {
                    Interest::Read => libc::POLLIN,
                    Interest::Write => libc::POLLOUT,
                };
                match ring.poll(
                    source.fd(),
                    events,
                    false,
                    Op::Poll(source.clone(), interest),
                ) {
                    Ok(id) => state.polling[i] = Arm::On(id),
                    Err(_) => {
                        // Let the task try its system call: it reports the error itself.
                        state.polling[i] = Arm::Off;
                        state.ready[i] = true;
                        wake(&mut state.waiting[i]);
                    }
                }
            }
            Request::Close(source) => {
                let state = lock(&source.state);
                let arms = [state.arm, state.sending, state.polling[0], state.polling[1]];
                drop(state);
                for arm in arms {
                    if let Arm::On(id) = arm {
                        if let Err(e) = ring.cancel(id) {
                            tracing::warn!(error = %e, "cancelling a closed socket's operation failed");
                        }
                    }
                }
            }
        }
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

fn fail_read(state: &mut State, e: io::Error) {
    state.arm = Arm::Off;
    state.error = Some(e);
    wake(&mut state.reader);
}

impl Op {
    /// A completion of this operation, on the loop's thread.
    pub(crate) fn complete(self, ring: &mut Ring<Op>, done: Completion<Op>) {
        match self {
            Op::Recv(source) => source.received(ring, done),
            Op::Accept(source) => source.accepted(ring, done),
            Op::Send(source) => source.sent(done),
            Op::Poll(source, interest) => source.polled(interest, done),
            Op::Bell => {}
        }
    }
}

impl Source {
    /// Submit a receive: multishot, or one-shot while bytes are spilled.
    fn receive(self: &Arc<Self>, ring: &mut Ring<Op>, state: &mut State) {
        let pool = &self.shard.pool;
        let op = Op::Recv(self.clone());
        let submitted = if state.spill.is_empty() {
            ring.recv_multi(self.fd(), pool, op)
        } else {
            ring.recv(self.fd(), pool, op)
        };
        match submitted {
            Ok(id) => state.arm = Arm::On(id),
            Err(e) => fail_read(state, e),
        }
    }

    fn received(self: &Arc<Self>, ring: &mut Ring<Op>, done: Completion<Op>) {
        let pool = &self.shard.pool;
        let mut state = lock(&self.state);
        let mut returned = false;
        let chunk = pool.chunk(done.flags, done.result.max(0) as u32);
        match chunk {
            Some(chunk) if done.result > 0 && !state.closed && !state.spill.is_empty() => {
                state.spill_chunk(pool, chunk);
                returned = true;
            }
            Some(chunk) if done.result > 0 && !state.closed => {
                if state.chunks.is_empty() {
                    state.held_since = self.shard.turn();
                }
                state.chunks.push_back(chunk);
                if !state.holding {
                    state.holding = true;
                    self.shard.holds(self.clone());
                }
            }
            // Data for a socket already closed, or a buffer with no data.
            Some(chunk) => {
                pool.recycle(chunk);
                state.eof |= done.result == 0;
            }
            None if done.result == 0 => state.eof = true,
            None => match -done.result {
                libc::ENOBUFS => state.arm = Arm::Starved,
                libc::ECANCELED => {}
                _ if done.result < 0 => state.error = Some(os_error(done.result)),
                _ => {}
            },
        }
        if state.chunks.len() >= MAX_CHUNKS {
            // The kit is not reading: give the pool its buffers back.
            state.spill_chunks(pool);
            returned = true;
        }
        if done.last {
            if state.arm == Arm::Starved && !state.closed {
                self.shard.starve(self.clone());
            } else {
                state.arm = Arm::Off;
            }
            let more = !state.eof && state.error.is_none() && !state.closed;
            if more && state.arm == Arm::Off && state.wants_more() {
                self.receive(ring, &mut state);
            }
        } else if !state.wants_more() {
            // A multishot receive the kit is not keeping up with.
            if let Arm::On(id) = state.arm {
                state.arm = Arm::Cancelling;
                let _ = ring.cancel(id);
            }
        }
        wake(&mut state.reader);
        drop(state);
        if returned {
            self.shard.buffers_returned();
        }
    }

    /// At the end of loop turn `turn`: if the kit has left this source's buffers unread for two
    /// turns, it is not reading; give them back. `false` once the source holds none.
    pub(crate) fn sweep(self: &Arc<Self>, ring: &mut Ring<Op>, turn: u64) -> bool {
        let mut state = lock(&self.state);
        if state.closed || state.chunks.is_empty() {
            state.holding = false;
            return false;
        }
        if turn.wrapping_sub(state.held_since) < 2 {
            return true;
        }
        state.spill_chunks(&self.shard.pool);
        state.holding = false;
        if let Arm::On(id) = state.arm {
            state.arm = Arm::Cancelling; // to receive one buffer at a time from now on
            let _ = ring.cancel(id);
        }
        false
    }

    fn accepted(self: &Arc<Self>, ring: &mut Ring<Op>, done: Completion<Op>) {
        let mut state = lock(&self.state);
        if done.result >= 0 {
            let fd = accepted_fd(done.result);
            if !state.closed {
                state.accepted.push_back(Ok(fd));
            }
        } else if done.result != -libc::ECANCELED {
            // EMFILE and the like: the accept loop reports it and backs off before it asks
            // again.
            state.accepted.push_back(Err(os_error(done.result)));
        }
        if done.last {
            state.arm = Arm::Off;
        } else if state.accepted.len() >= MAX_ACCEPTED {
            if let Arm::On(id) = state.arm {
                state.arm = Arm::Cancelling;
                let _ = ring.cancel(id);
            }
        }
        wake(&mut state.reader);
    }

    fn sent(&self, done: Completion<Op>) {
        let mut state = lock(&self.state);
        state.sending = Arm::Off;
        let mut out = done.buf.unwrap_or_default();
        if done.result >= 0 {
            state.out_from += done.result as usize;
            state.sent = Some(Ok(done.result as usize));
        } else {
            // The connection is failing: nothing more of this will be sent.
            state.out_from = out.len();
            state.sent = Some(Err(os_error(done.result)));
        }
        if state.out_from >= out.len() {
            // All sent: the buffer goes back to the shard, for whichever connection sends next.
            state.out_from = 0;
            self.shard.give_send_buffer(std::mem::take(&mut out));
        }
        state.out = out;
        wake(&mut state.writer);
    }

    fn polled(&self, interest: Interest, done: Completion<Op>) {
        let mut state = lock(&self.state);
        let i = interest as usize;
        state.polling[i] = Arm::Off;
        if done.result != -libc::ECANCELED {
            state.ready[i] = true;
            state.tick += 1;
        }
        wake(&mut state.waiting[i]);
    }
}

/// A source as its one I/O object: the kit's stream, listener or datagram socket. Dropping it
/// closes the socket.
pub(crate) struct Registered(Arc<Source>);

impl Drop for Registered {
    fn drop(&mut self) {
        let source = &self.0;
        if source.listening {
            // The descriptor closes only once the cancelled accept completes; until then the
            // kernel would go on completing handshakes for it. Shut down, a listening socket
            // stops listening at once: connects are refused from here on.
            let _ = source.socket.shutdown(std::net::Shutdown::Both);
        }
        let mut state = lock(&source.state);
        state.closed = true;
        let pool = &source.shard.pool;
        let had_chunks = !state.chunks.is_empty();
        state.chunks.drain(..).for_each(|chunk| pool.recycle(chunk));
        state.accepted.clear();
        source
            .shard
            .give_send_buffer(std::mem::take(&mut state.out));
        let in_flight = [state.arm, state.sending, state.polling[0], state.polling[1]]
            .iter()
            .any(|arm| matches!(arm, Arm::On(_)));
        drop(state);
        if in_flight {
            source.shard.request(Request::Close(source.clone()));
        }
        if had_chunks {
            source.shard.buffers_returned();
        }
    }
}

impl Registered {
    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        let source = &self.0;
        let mut state = lock(&source.state);
        let i = interest as usize;
        if state.ready[i] {
            return Poll::Ready(Ok(()));
        }
        state.waiting[i] = Some(cx.waker().clone());
        if state.polling[i] == Arm::Off {
            state.polling[i] = Arm::Queued;
            drop(state);
            source
                .shard
                .request(Request::Poll(source.clone(), interest));
        }
        Poll::Pending
    }
}

impl StreamIo for Registered {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        let source = &self.0;
        let pool = &source.shard.pool;
        let mut state = lock(&source.state);
        let (mut n, mut returned) = (0, false);
        if !state.spill.is_empty() {
            let take = state.spill.len().min(limit);
            buf.extend_from_slice(&state.spill.split_to(take));
            if state.spill.is_empty() {
                state.spill = BytesMut::new(); // an idle connection holds no memory
            }
            n = take;
        }
        while n < limit {
            let Some(front) = state.chunks.front_mut() else {
                break;
            };
            let bytes = pool.bytes(front);
            let take = bytes.len().min(limit - n);
            buf.extend_from_slice(&bytes[..take]);
            front.consume(take);
            n += take;
            if front.remaining() == 0 {
                if let Some(chunk) = state.chunks.pop_front() {
                    pool.recycle(chunk);
                    returned = true;
                }
            }
        }
        state.held_since = source.shard.turn();
        let result = if n > 0 {
            Poll::Ready(Ok(n))
        } else if let Some(e) = state.error.take() {
            Poll::Ready(Err(e))
        } else if state.eof {
            Poll::Ready(Ok(0))
        } else {
            state.reader = Some(cx.waker().clone());
            Poll::Pending
        };
        let rearm =
            state.arm == Arm::Off && !state.eof && state.error.is_none() && state.wants_more();
        if rearm {
            state.arm = Arm::Queued;
        }
        drop(state);
        if rearm {
            source.shard.request(Request::Recv(source.clone()));
        }
        if returned {
            source.shard.buffers_returned();
        }
        result
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let source = &self.0;
        let mut state = lock(&source.state);
        // The kit calls again with the same bytes in front until it hears how many went.
        if let Some(sent) = state.sent.take() {
            return Poll::Ready(sent);
        }
        if state.sending != Arm::Off {
            state.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if state.out.len() == state.out_from {
            // Nothing held back: straight from the kit's queue, no copy, if the socket has
            // room. Only when it would block do the bytes go to the ring.
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            match source.socket.send_vectored_with_flags(bufs, flags) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
        let mut out = std::mem::take(&mut state.out);
        if out.capacity() == 0 {
            out = source.shard.send_buffer();
        }
        // The kit's queue starts with what a short send left: copy only what follows it.
        let mut skip = out.len() - state.out_from;
        for slice in bufs {
            let slice: &[u8] = slice;
            if skip >= slice.len() {
                skip -= slice.len();
                continue;
            }
            let slice = &slice[std::mem::take(&mut skip)..];
            let room = MAX_SEND.saturating_sub(out.len() - state.out_from);
            if room == 0 {
                break;
            }
            out.extend_from_slice(&slice[..slice.len().min(room)]);
        }
        if out.len() == state.out_from {
            source.shard.give_send_buffer(out);
            return Poll::Ready(Ok(0));
        }
        state.sending = Arm::Queued;
        state.writer = Some(cx.waker().clone());
        drop(state);
        source.shard.request(Request::Send(source.clone(), out));
        Poll::Pending
    }

    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_ready(cx, Interest::Write)
    }

    fn socket(&self) -> SockRef<'_> {
        SockRef::from(&self.0.socket)
    }
}

impl Listener for Registered {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Box<dyn StreamIo>>> {
        let source = &self.0;
        let mut state = lock(&source.state);
        let accepted = state.accepted.pop_front();
        let rearm = state.arm == Arm::Off && state.accepted.len() < MAX_ACCEPTED;
        if accepted.is_none() {
            state.reader = Some(cx.waker().clone());
        }
        // After an error the accept loop backs off and calls again: ask again then.
        let rearm = rearm && !matches!(accepted, Some(Err(_)));
        if rearm {
            state.arm = Arm::Queued;
        }
        drop(state);
        if rearm {
            source.shard.request(Request::Accept(source.clone()));
        }
        match accepted {
            None => Poll::Pending,
            Some(Err(e)) => Poll::Ready(Err(e)),
            // The connection stays on the listener's shard.
            Some(Ok(fd)) => Poll::Ready(Ok(Box::new(Source::register(
                Socket::from(fd),
                source.shard.clone(),
                false,
            )))),
        }
    }
}

impl Readiness for Registered {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }

    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        Registered::poll_ready(self, cx, interest)
    }

    fn try_io(&self, interest: Interest, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        let tick = lock(&self.0.state).tick;
        let result = op();
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            let mut state = lock(&self.0.state);
            if state.tick == tick {
                state.ready[interest as usize] = false;
            }
        }
        result
    }
}
