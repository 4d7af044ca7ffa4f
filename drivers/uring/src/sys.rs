//! Everything `unsafe` in the driver, in one place: the ring's submissions, the buffers the
//! kernel receives into, and the descriptors it hands back.
//!
//! The rule that makes the rest safe: **whatever a submission points to is owned by the ring
//! until its last completion.** Each operation in flight holds its `owner` (the socket's
//! source, which owns the descriptor, so the descriptor cannot close and be reused under it)
//! and, for a send, the bytes being sent. Received bytes land in a [`Pool`] whose memory is
//! never freed; a buffer the kernel filled is a [`Chunk`], which is not `Clone`, and goes back
//! to the kernel only by value.
#![allow(unsafe_code)]

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One operation in flight: who asked for it, and the bytes a send points to.
struct InFlight<T> {
    owner: Option<T>,
    buf: Option<Vec<u8>>,
}

/// A completion, with what its operation owned. `last` is `false` while a multishot
/// operation goes on; the owner comes back (by value) only with the last completion.
pub(crate) struct Completion<T> {
    pub owner: T,
    pub result: i32,
    pub flags: u32,
    pub last: bool,
    /// The bytes of a send, given back for reuse.
    pub buf: Option<Vec<u8>>,
}

/// An io_uring instance and the operations in flight on it, keyed by their `user_data`.
pub(crate) struct Ring<T> {
    uring: IoUring,
    ops: Slab<InFlight<T>>,
}

impl<T> Ring<T> {
    /// A ring of `entries` submissions. It is made on the thread that submits to it: that
    /// lets the kernel skip its locking (`SINGLE_ISSUER`) and run completions only when this
    /// thread asks for them (`DEFER_TASKRUN`, Linux 6.1), with a flag that says when some are
    /// waiting (`TASKRUN_FLAG`), so that a busy loop turn collects them without waiting and an
    /// idle-free turn with nothing to submit needs no system call; older kernels get a plain
    /// ring.
    pub(crate) fn new(entries: u32) -> io::Result<Ring<T>> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(entries * 4)
            .build(entries)
            .or_else(|_| IoUring::builder().setup_cqsize(entries * 4).build(entries))?;
        Ok(Ring {
            uring,
            ops: Slab::with_capacity(1024),
        })
    }

    /// Queue `entry` for `owner`, submitting what is queued first if the queue is full.
    ///
    /// # Safety
    /// Whatever `entry` points to must stay valid until its last completion: the owner or
    /// `buf` (both kept in the ring until then) must own it.
    unsafe fn push(
        &mut self,
        entry: squeue::Entry,
        owner: Option<T>,
        buf: Option<Vec<u8>>,
    ) -> io::Result<u64> {
        let key = self.ops.insert(InFlight { owner, buf }) as u64;
        let entry = entry.user_data(key);
        // SAFETY: the caller promises the entry's memory lives until completion.
        while unsafe { self.uring.submission().push(&entry) }.is_err() {
            if let Err(e) = self.uring.submit() {
                self.ops.remove(key as usize);
                return Err(e);
            }
        }
        Ok(key)
    }

    /// A multishot receive into buffers of `pool`: a completion for each buffer filled, until
    /// it is cancelled or the pool runs dry.
    pub(crate) fn recv_multi(
        &mut self,
        fd: BorrowedFd<'_>,
        pool: &Pool,
        owner: T,
    ) -> io::Result<u64> {
        let entry = opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), pool.group).build();
        // SAFETY: a receive into a provided buffer points to no memory of ours but the pool's,
        // which is never freed.
        unsafe { self.push(entry, Some(owner), None) }
    }

    /// A receive into one buffer of `pool`, picked by the kernel when data is there.
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>, pool: &Pool, owner: T) -> io::Result<u64> {
        let entry = opcode::Recv::new(types::Fd(fd.as_raw_fd()), std::ptr::null_mut(), pool.size)
            .buf_group(pool.group)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT);
        // SAFETY: a receive into a provided buffer points to no memory of ours but the pool's,
        // which is never freed.
        unsafe { self.push(entry, Some(owner), None) }
    }

    /// A multishot accept; each completion's result is a new descriptor.
    pub(crate) fn accept_multi(&mut self, fd: BorrowedFd<'_>, owner: T) -> io::Result<u64> {
        let entry = opcode::AcceptMulti::new(types::Fd(fd.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build();
        // SAFETY: points to no memory.
        unsafe { self.push(entry, Some(owner), None) }
    }

    /// A one-shot poll for `events` (`libc::POLLIN`, …).
    pub(crate) fn poll(
        &mut self,
        fd: BorrowedFd<'_>,
        events: i16,
        multi: bool,
        owner: T,
    ) -> io::Result<u64> {
        let entry = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), events as u32)
            .multi(multi)
            .build();
        // SAFETY: points to no memory.
        unsafe { self.push(entry, Some(owner), None) }
    }

    /// Send `buf[from..]` (the ring keeps `buf` until the completion gives it back).
    pub(crate) fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: Vec<u8>,
        from: usize,
        owner: T,
    ) -> io::Result<u64> {
        let rest = &buf[from.min(buf.len())..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(types::Fd(fd.as_raw_fd()), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        // SAFETY: `buf` moves into the ring with the entry; a `Vec`'s heap block does not move
        // with it, and is dropped or given back only with the completion.
        unsafe { self.push(entry, Some(owner), Some(buf)) }
    }

    /// Cancel the operation `target` (its completions end with `ECANCELED`).
    pub(crate) fn cancel(&mut self, target: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target).build();
        // SAFETY: points to no memory.
        unsafe { self.push(entry, None, None) }.map(drop)
    }

    /// Submit what is queued, and wait for at least one completion if `wait` (no longer than
    /// `timeout`).
    pub(crate) fn submit(&mut self, wait: bool, timeout: Option<Duration>) -> io::Result<()> {
        let (submitter, mut queue, _) = self.uring.split();
        queue.sync();
        let result = match (wait, timeout) {
            // Nothing to hand in and no completions waiting in the kernel: no system call.
            (false, _) if queue.is_empty() && !queue.taskrun() && !queue.cq_overflow() => Ok(0),
            // The submitter asks for the waiting completions (`GETEVENTS`) when the flag is up.
            (false, _) => submitter.submit(),
            (true, None) => submitter.submit_and_wait(1),
            (true, Some(timeout)) => {
                let ts = types::Timespec::from(timeout);
                submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Hand each completion to `each`, which may queue more operations; an operation's last
    /// completion gives back what it held.
    pub(crate) fn complete(&mut self, mut each: impl FnMut(&mut Self, Completion<T>))
    where
        T: Clone,
    {
        loop {
            // One completion at a time: `each` may submit, which needs the ring.
            let Some(cqe) = self.uring.completion().next() else {
                break;
            };
            let key = cqe.user_data() as usize;
            let last = !cqueue::more(cqe.flags());
            let (owner, buf) = if last {
                match self.ops.try_remove(key) {
                    Some(op) => (op.owner, op.buf),
                    None => continue,
                }
            } else {
                // A multishot operation goes on: its owner stays, a clone is lent.
                (self.ops.get(key).and_then(|op| op.owner.clone()), None)
            };
            if let Some(owner) = owner {
                let (result, flags) = (cqe.result(), cqe.flags());
                each(
                    self,
                    Completion {
                        owner,
                        result,
                        flags,
                        last,
                        buf,
                    },
                );
            }
        }
    }

    /// Register `count` receive buffers of `size` bytes each as buffer group `group`.
    pub(crate) fn pool(
        &mut self,
        group: u16,
        count: u16,
        size: u32,
        posted: u16,
    ) -> io::Result<Pool> {
        Pool::register(&self.uring, group, count, size, posted)
    }
}

/// The kernel's view of one provided buffer (`struct io_uring_buf`); the first entry's `resv`
/// is the ring's tail.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// Receive buffers the kernel picks from as data arrives (a provided-buffer ring): idle
/// connections hold none.
///
/// The ring is first in, first out, so the kernel fills every buffer posted in it in turn: with
/// all of them posted, a shard writes through `count * size` bytes (16 MiB) before it reuses a
/// buffer, and each receive lands in memory that has left the cache. So only `posted` buffers
/// are in the ring at a time (at first a few, a fraction of L2), the rest wait in a stack, and
/// a buffer given back goes to the ring when it is short, to the stack otherwise; the ring is
/// refilled from the top of the stack, where the most recently used buffers are. A receive
/// that finds the ring empty doubles the number posted ([`Pool::starved`]), up to all of them.
pub(crate) struct Pool {
    group: u16,
    size: u32,
    count: u16,
    /// `count * size` bytes, never freed.
    base: *mut u8,
    /// `count` entries, page-aligned, never freed.
    ring: *mut RingEntry,
    /// The ring's tail and the buffers not in it (the ring is written only under this lock).
    /// Every buffer is posted, on the stack, or held (filled by the kernel and not given back).
    posting: Mutex<Posting>,
}

/// Which buffers are in the ring.
struct Posting {
    /// The tail we publish.
    tail: u16,
    /// Buffers in the ring (the kernel may fill them).
    posted: usize,
    /// How many the ring should hold.
    target: usize,
    /// Buffers out of the ring and not held, the most recently given back on top.
    stack: Vec<u16>,
}

// SAFETY: the memory behind the pointers is never freed; a buffer's bytes are read only by the
// holder of its `Chunk` (one at a time, as a `Chunk` is not `Clone`), and the ring is written
// only under `tail`'s lock.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

/// A buffer the kernel filled: `len` bytes of buffer `bid`, of which `off` have been read.
#[derive(Debug)]
#[cfg_attr(test, derive(PartialEq))]
pub(crate) struct Chunk {
    bid: u16,
    len: u32,
    off: u32,
}

impl Chunk {
    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        (self.len - self.off) as usize
    }

    /// Mark `n` more bytes read.
    pub(crate) fn consume(&mut self, n: usize) {
        self.off += n as u32;
    }
}

impl Pool {
    /// `count` buffers of `size` bytes, `posted` of them in the ring at first.
    fn register(
        uring: &IoUring,
        group: u16,
        count: u16,
        size: u32,
        posted: u16,
    ) -> io::Result<Pool> {
        assert!(
            count.is_power_of_two(),
            "a buffer ring's size is a power of two"
        );
        let layout = std::alloc::Layout::from_size_align(
            count as usize * std::mem::size_of::<RingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: the layout's size is not zero. The block is zeroed (the tail starts at 0)
        // and never freed: the kernel may read it for as long as the ring lives.
        let ring = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<RingEntry>();
        if ring.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let base =
            Box::leak(vec![0u8; count as usize * size as usize].into_boxed_slice()).as_mut_ptr();
        // SAFETY: `ring` holds `count` entries and is never freed.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, count, group, 0)
        }?;
        let pool = Pool {
            group,
            size,
            count,
            base,
            ring,
            posting: Mutex::new(Posting {
                tail: 0,
                posted: 0,
                target: posted.clamp(1, count) as usize,
                stack: (0..count).rev().collect(),
            }),
        };
        pool.top_up(&mut pool.posting());
        Ok(pool)
    }

    /// The chunk a receive completion with `flags` filled with `len` bytes.
    pub(crate) fn chunk(&self, flags: u32, len: u32) -> Option<Chunk> {
        let bid = cqueue::buffer_select(flags)?;
        if bid >= self.count {
            return None;
        }
        let mut posting = self.posting();
        posting.posted = posting.posted.saturating_sub(1);
        self.top_up(&mut posting);
        Some(Chunk {
            bid,
            len: len.min(self.size),
            off: 0,
        })
    }

    /// Buffers not held: in the ring, or waiting to go there.
    pub(crate) fn free(&self) -> usize {
        let posting = self.posting();
        posting.posted + posting.stack.len()
    }

    /// The bytes of `chunk` not read yet.
    pub(crate) fn bytes<'a>(&'a self, chunk: &'a Chunk) -> &'a [u8] {
        let start = chunk.bid as usize * self.size as usize + chunk.off as usize;
        // SAFETY: the kernel wrote `len <= size` bytes of buffer `bid` before it posted the
        // completion, and writes it no more until the buffer is given back, which takes the
        // chunk by value.
        unsafe { std::slice::from_raw_parts(self.base.add(start), chunk.remaining()) }
    }

    /// Give `chunk`'s buffer back: to the ring if it is short, else to the top of the stack.
    pub(crate) fn recycle(&self, chunk: Chunk) {
        let mut posting = self.posting();
        posting.stack.push(chunk.bid);
        self.top_up(&mut posting);
    }

    /// A receive found the ring empty: post twice as many buffers from now on (up to all).
    pub(crate) fn starved(&self) {
        let mut posting = self.posting();
        posting.target = (posting.target * 2).min(self.count as usize);
        self.top_up(&mut posting);
    }

    fn posting(&self) -> std::sync::MutexGuard<'_, Posting> {
        self.posting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Post buffers from the top of the stack until the ring holds its target.
    fn top_up(&self, posting: &mut Posting) {
        while posting.posted < posting.target {
            let Some(bid) = posting.stack.pop() else {
                break;
            };
            self.post(posting, bid);
        }
    }

    fn post(&self, posting: &mut Posting, bid: u16) {
        let index = (posting.tail & (self.count - 1)) as usize;
        // SAFETY: `index < count`. The kernel holds at most `count` buffers and each buffer is
        // in the ring once, so the slot at the tail is not one it is reading; the fields are
        // written through raw pointers, as entry 0's `resv` (the tail) is read by the kernel.
        unsafe {
            let entry = self.ring.add(index);
            std::ptr::addr_of_mut!((*entry).addr)
                .write(self.base.add(bid as usize * self.size as usize) as u64);
            std::ptr::addr_of_mut!((*entry).len).write(self.size);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        posting.tail = posting.tail.wrapping_add(1);
        posting.posted += 1;
        // SAFETY: the tail is the `resv` field of entry 0, a `u16` aligned to 2 in a live,
        // page-aligned block; the kernel reads it with acquire ordering.
        let published = unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*self.ring).resv)) };
        published.store(posting.tail, Ordering::Release);
    }
}

/// The descriptor an accept completion returned.
pub(crate) fn accepted_fd(result: i32) -> OwnedFd {
    // SAFETY: a non-negative accept result is a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(result) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    /// A ring and a pool of `count` buffers of 4 KiB, `posted` of them in the ring, or `None`
    /// (with the reason printed) where io_uring is unavailable.
    fn pool(count: u16, posted: u16) -> Option<(Ring<()>, Pool)> {
        if let Err(e) = crate::available() {
            eprintln!("skipped: {e}");
            return None;
        }
        let mut ring = Ring::new(64).unwrap();
        let pool = ring.pool(0, count, 4096, posted).unwrap();
        Some((ring, pool))
    }

    /// One receive on each of `from`, submitted together: their buffers, or their errors.
    fn receive(ring: &mut Ring<()>, pool: &Pool, from: &[&UnixStream]) -> Vec<Result<Chunk, i32>> {
        for socket in from {
            ring.recv(socket.as_fd(), pool, ()).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < from.len() {
            ring.submit(true, None).unwrap();
            ring.complete(|_, done| {
                got.push(
                    pool.chunk(done.flags, done.result.max(0) as u32)
                        .ok_or(-done.result),
                );
            });
        }
        got
    }

    #[test]
    fn receives_given_back_at_once_reuse_the_few_posted_buffers_not_the_whole_pool() {
        let Some((mut ring, pool)) = pool(64, 4) else {
            return;
        };
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut used = std::collections::BTreeSet::new();
        for i in 0..32u8 {
            a.write_all(&[i; 100]).unwrap();
            let chunk = receive(&mut ring, &pool, &[&b]).remove(0).unwrap();
            assert_eq!(pool.bytes(&chunk), [i; 100]);
            used.insert(chunk.bid);
            pool.recycle(chunk);
        }
        // The four posted and the one being read; with all 64 posted, the ring would have
        // handed out 32 different buffers.
        assert!(used.len() <= 5, "buffers used: {used:?}");
    }

    #[test]
    fn a_receive_that_finds_the_ring_empty_doubles_the_buffers_posted() {
        let Some((mut ring, pool)) = pool(8, 1) else {
            return;
        };
        let (mut a, b) = UnixStream::pair().unwrap();
        let (mut c, d) = UnixStream::pair().unwrap();
        a.write_all(b"one").unwrap();
        c.write_all(b"two").unwrap();
        // Two receives at once, one buffer in the ring: the second finds it empty.
        let got = receive(&mut ring, &pool, &[&b, &d]);
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(got.contains(&Err(libc::ENOBUFS)), "{got:?}");
        pool.starved();
        assert_eq!(pool.posting().target, 2);
        a.write_all(b"three").unwrap();
        let again = receive(&mut ring, &pool, &[&b, &d]);
        assert!(again.iter().all(|r| r.is_ok()), "{again:?}");
    }
}
