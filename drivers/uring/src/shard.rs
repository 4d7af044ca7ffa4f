//! A shard: one thread, one ring, the tasks that run on it and their timers.
//!
//! Each turn of the loop runs the tasks that were woken, fires the timers that are due, turns
//! the sockets' requests into submissions, and then makes one system call that submits them
//! all and waits (until a completion, the next deadline, or the bell another thread rings).
//! The completions it reaps wake the tasks of the next turn.

use futures::future::BoxFuture;
use futures::task::{waker_ref, ArcWake};
use std::cell::Cell;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tendril_net::lock;
use tendril_net::runtime::Timer;

use crate::io::{Op, Request, Source};
use crate::sys::{Completion, Pool, Ring};

/// Submission queue entries per ring (completions: four times as many).
const RING_ENTRIES: u32 = 4096;
/// Receive buffers per shard, and their size: 16 MiB that idle connections do not hold.
const BUFFERS: u16 = 1024;
/// Buffers in the ring at first (256 KiB, a quarter of one core's L2 here): the pool posts more
/// as receives find it empty (see [`Pool`]). With 64 (1 MiB), the kernel's copy into them still
/// took twice the share of the server's time at one connection (`perf`: `_copy_to_iter` 5.0–5.5 %
/// against 2.8–3.0 % with 16).
const POSTED: u16 = 16;
pub(crate) const BUFFER_SIZE: u32 = 16 * 1024;
/// Send buffers a shard keeps for reuse (each grows to what one send takes, at most 256 KiB).
const SPARE_SEND_BUFFERS: usize = 64;

thread_local! {
    /// The runtime and shard whose loop this thread runs (runtime 0: none).
    static ON: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// The runtime and shard index of the loop running on this thread, if any.
pub(crate) fn current() -> (usize, usize) {
    ON.get()
}

/// What the shard's thread shares with the rest of the process.
pub(crate) struct Shard {
    runtime: usize,
    index: usize,
    pub(crate) pool: Pool,
    requests: Mutex<Vec<Request>>,
    runnable: Mutex<VecDeque<Arc<Task>>>,
    timers: Mutex<BinaryHeap<Due>>,
    /// Set while the loop may be waiting in the kernel: another thread must ring the bell.
    sleeping: AtomicBool,
    bell: UnixStream,
    /// Send buffers not in use: a connection holds one only while it has bytes to send, and
    /// no send allocates once the shard is warm.
    send_buffers: Mutex<Vec<Vec<u8>>>,
    /// Sources whose receive stopped for want of buffers.
    starved: Mutex<VecDeque<Arc<Source>>>,
    any_starved: AtomicBool,
    /// Sources holding filled buffers: each turn, those the kit has left unread for two turns
    /// give them back ([`Source::sweep`]).
    holders: Mutex<Vec<Arc<Source>>>,
    /// Loop turns so far.
    turn: AtomicU64,
}

impl Shard {
    /// Start shard `index` of runtime `runtime` on a thread of its own; fails with the reason
    /// the ring could not be set up.
    pub(crate) fn start(runtime: usize, index: usize) -> io::Result<Arc<Shard>> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("tendril-uring-{index}"))
            .spawn(move || {
                let setup = (|| {
                    let mut ring = Ring::new(RING_ENTRIES)?;
                    let pool = ring.pool(0, BUFFERS, BUFFER_SIZE, POSTED)?;
                    let (bell, clapper) = UnixStream::pair()?;
                    bell.set_nonblocking(true)?;
                    clapper.set_nonblocking(true)?;
                    let shard = Arc::new(Shard {
                        runtime,
                        index,
                        pool,
                        requests: Mutex::default(),
                        runnable: Mutex::default(),
                        timers: Mutex::default(),
                        sleeping: AtomicBool::new(false),
                        bell,
                        send_buffers: Mutex::default(),
                        starved: Mutex::default(),
                        any_starved: AtomicBool::new(false),
                        holders: Mutex::default(),
                        turn: AtomicU64::new(0),
                    });
                    Ok::<_, io::Error>((shard, ring, clapper))
                })();
                match setup {
                    Ok((shard, ring, clapper)) => {
                        let _ = tx.send(Ok(shard.clone()));
                        shard.run(ring, clapper);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("the shard's thread ended at start")))
    }

    /// `true` on this shard's own thread.
    fn on_loop(&self) -> bool {
        ON.get() == (self.runtime, self.index)
    }

    /// Make sure the loop looks at its queues soon: ring the bell if it may be asleep.
    fn notify(&self) {
        if !self.on_loop() && self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = (&self.bell).write(&[1]); // a full socket is a bell already ringing
        }
    }

    /// Queue `request` for the loop to submit.
    pub(crate) fn request(&self, request: Request) {
        lock(&self.requests).push(request);
        self.notify();
    }

    /// Run `task` on this shard.
    pub(crate) fn spawn(self: &Arc<Self>, task: BoxFuture<'static, ()>) {
        let task = Arc::new(Task {
            future: Mutex::new(Some(task)),
            queued: AtomicBool::new(false),
            shard: Arc::downgrade(self),
        });
        ArcWake::wake_by_ref(&task);
    }

    /// A timer on this shard.
    pub(crate) fn timer(self: &Arc<Self>) -> Box<dyn Timer> {
        Box::new(UringTimer {
            slot: Arc::default(),
            shard: self.clone(),
        })
    }

    /// An empty send buffer.
    pub(crate) fn send_buffer(&self) -> Vec<u8> {
        lock(&self.send_buffers).pop().unwrap_or_default()
    }

    /// A send buffer no longer in use.
    pub(crate) fn give_send_buffer(&self, mut buf: Vec<u8>) {
        let mut spare = lock(&self.send_buffers);
        if spare.len() < SPARE_SEND_BUFFERS && buf.capacity() > 0 {
            buf.clear();
            spare.push(buf);
        }
    }

    /// `source` ran out of receive buffers: re-arm it when some come back.
    pub(crate) fn starve(&self, source: Arc<Source>) {
        self.pool.starved();
        lock(&self.starved).push_back(source);
        self.any_starved.store(true, Ordering::Release);
    }

    /// Buffers came back: re-arm as many starved sources as there are free buffers, the
    /// longest starved first (one that starves again joins the end of the line).
    pub(crate) fn buffers_returned(&self) {
        if !self.any_starved.load(Ordering::Acquire) {
            return;
        }
        let fed: Vec<Arc<Source>> = {
            let mut starved = lock(&self.starved);
            let n = self.pool.free().min(starved.len());
            let fed = starved.drain(..n).collect();
            self.any_starved
                .store(!starved.is_empty(), Ordering::Release);
            fed
        };
        fed.into_iter().for_each(|source| source.fed());
    }

    fn run(self: Arc<Self>, mut ring: Ring<Op>, clapper: UnixStream) {
        ON.set((self.runtime, self.index));
        let mut requests = Vec::new();
        let ring_bell = |ring: &mut Ring<Op>, clapper: &UnixStream| {
            if let Err(e) = ring.poll(
                std::os::fd::AsFd::as_fd(clapper),
                libc::POLLIN,
                true,
                Op::Bell,
            ) {
                tracing::error!(error = %e, "the shard cannot listen for its bell");
            }
        };
        ring_bell(&mut ring, &clapper);
        loop {
            let queued = lock(&self.runnable).len();
            for _ in 0..queued {
                let Some(task) = self.next_task() else { break };
                task.run();
            }
            let next = self.fire_due(Instant::now());
            std::mem::swap(&mut *lock(&self.requests), &mut requests);
            for request in requests.drain(..) {
                request.submit(&mut ring);
            }
            self.sleeping.store(true, Ordering::SeqCst);
            let idle = lock(&self.runnable).is_empty() && lock(&self.requests).is_empty();
            let timeout = next.map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = ring.submit(idle, timeout) {
                tracing::error!(error = %e, "io_uring_enter failed");
            }
            self.sleeping.store(false, Ordering::SeqCst);
            ring.complete(|ring, completion: Completion<Op>| {
                if let Op::Bell = completion.owner {
                    let mut sink = [0u8; 64];
                    while matches!((&clapper).read(&mut sink), Ok(n) if n > 0) {}
                    if completion.last {
                        ring_bell(ring, &clapper);
                    }
                } else {
                    completion.owner.clone().complete(ring, completion);
                }
            });
            self.sweep(&mut ring);
            // Receives that ran dry in this turn may have missed the buffers that came back in
            // it (a connection that stops reading gives back all it held at once).
            self.buffers_returned();
        }
    }

    /// The loop turn this is.
    pub(crate) fn turn(&self) -> u64 {
        self.turn.load(Ordering::Relaxed)
    }

    /// `source` holds filled buffers now (it was holding none).
    pub(crate) fn holds(&self, source: Arc<Source>) {
        lock(&self.holders).push(source);
    }

    /// End a loop turn: the sources whose buffers the kit has not read for two turns give them
    /// back.
    fn sweep(&self, ring: &mut Ring<Op>) {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) + 1;
        let mut holders = std::mem::take(&mut *lock(&self.holders));
        holders.retain(|source| source.sweep(ring, turn));
        lock(&self.holders).append(&mut holders);
    }

    /// The next task to run. (Not a `while let` on the lock: a task that wakes itself would
    /// wait for the guard forever.)
    fn next_task(&self) -> Option<Arc<Task>> {
        lock(&self.runnable).pop_front()
    }

    /// Wake the timers whose deadline has passed; the earliest one still waiting.
    fn fire_due(&self, now: Instant) -> Option<Instant> {
        loop {
            let due = {
                let mut heap = lock(&self.timers);
                match heap.peek() {
                    Some(due) if due.at <= now => heap.pop(),
                    Some(due) => return Some(due.at),
                    None => return None,
                }
            };
            let Some(slot) = due.and_then(|due| due.slot.upgrade().map(|s| (due.at, s))) else {
                continue;
            };
            let (at, slot) = slot;
            let mut state = lock(&slot);
            if state.scheduled != Some(at) {
                continue; // moved earlier since; that entry is the live one
            }
            state.scheduled = None;
            match state.at {
                Some(deadline) if deadline <= now => {
                    if let Some(waker) = state.waker.take() {
                        drop(state);
                        waker.wake();
                    }
                }
                Some(deadline) => {
                    // Moved later since: wait again.
                    state.scheduled = Some(deadline);
                    drop(state);
                    lock(&self.timers).push(Due {
                        at: deadline,
                        slot: Arc::downgrade(&slot),
                    });
                }
                None => {}
            }
        }
    }
}

/// A task: its future, and whether it is queued to run.
struct Task {
    future: Mutex<Option<BoxFuture<'static, ()>>>,
    queued: AtomicBool,
    shard: Weak<Shard>,
}

impl Task {
    fn run(self: Arc<Self>) {
        self.queued.store(false, Ordering::Release);
        let mut slot = lock(&self.future);
        let Some(future) = slot.as_mut() else { return };
        let waker = waker_ref(&self);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        if !matches!(polled, Ok(Poll::Pending)) {
            *slot = None;
        }
    }
}

impl ArcWake for Task {
    fn wake_by_ref(task: &Arc<Self>) {
        if task.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(shard) = task.shard.upgrade() {
            lock(&shard.runnable).push_back(task.clone());
            shard.notify();
        }
    }
}

/// A timer's state: its deadline, the instant the heap has it under, the task waiting.
#[derive(Default)]
struct SlotState {
    at: Option<Instant>,
    scheduled: Option<Instant>,
    waker: Option<Waker>,
}

type Slot = Mutex<SlotState>;

/// A timer in the shard's heap. A timer has at most one live entry, under `scheduled`: a
/// deadline that moves later keeps it and is looked at again when it comes due, so a
/// connection that pushes its idle timeout on every read costs no heap operation.
struct Due {
    at: Instant,
    slot: Weak<Slot>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// The earliest first (`BinaryHeap` is a max-heap).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at)
    }
}

struct UringTimer {
    slot: Arc<Slot>,
    shard: Arc<Shard>,
}

impl Timer for UringTimer {
    fn reset(&mut self, at: Instant) {
        let push = {
            let mut state = lock(&self.slot);
            state.at = Some(at);
            let earlier = state.scheduled.is_none_or(|s| at < s);
            if earlier {
                state.scheduled = Some(at);
            }
            earlier
        };
        if push {
            lock(&self.shard.timers).push(Due {
                at,
                slot: Arc::downgrade(&self.slot),
            });
            self.shard.notify(); // the loop may be waiting past `at`
        }
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.slot);
        match state.at {
            Some(at) if at <= Instant::now() => Poll::Ready(()),
            _ => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
