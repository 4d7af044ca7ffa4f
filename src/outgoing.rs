//! The outgoing byte queue that `streamify` writes into.

use alloc::collections::VecDeque;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bodies at least this long are queued as `Bytes` instead of being copied.
///
/// Below it a copy into the contiguous tail is cheaper than another `iovec` in the write.
/// Measured with `send_frames` in `benches/framers.rs` (encode, then a vectored write into a
/// `Vec`): copying wins at 512 B and 1 KiB, queueing by reference from 2 KiB on.
pub const COPY_THRESHOLD: usize = 2048;

/// Spare room kept in the tail when it is split off (in front of a body queued by reference, or
/// taken whole as a datagram), so the small writes after it share one buffer instead of each
/// needing a new one.
const TAIL_HEADROOM: usize = 4096;

/// The piece [`Outgoing::put_slice_without`] checks and copies at a time: well inside L1.
const FUSED_PIECE: usize = 4096;

/// Below this much spare room the tail gets [`TAIL_HEADROOM`] more before it is split.
const MIN_SPARE: usize = 64;

/// Bytes waiting to be written, in order: a queue of shared [`Bytes`] chunks followed by a
/// contiguous tail for small writes.
///
/// Framers append with [`put_slice`](Self::put_slice) (copied into the tail) and
/// [`put_bytes`](Self::put_bytes) (large bodies are queued without copying). A writer drains it
/// through [`bytes::Buf`]: [`chunk`](Buf::chunk) or, with `std`,
/// [`chunks_vectored`](Buf::chunks_vectored) for a vectored write, then
/// [`advance`](Buf::advance) by what the socket took.
///
/// ```
/// use bytes::{Buf, Bytes};
/// use tendril_core::Outgoing;
///
/// let mut out = Outgoing::new();
/// out.put_slice(b"5:");
/// out.put_bytes(Bytes::from(vec![b'x'; 10_000])); // queued, not copied
/// out.put_slice(b",");
/// assert_eq!(out.remaining(), 10_003);
/// assert_eq!(out.chunk(), b"5:");
/// out.advance(2);
/// assert_eq!(out.chunk().len(), 10_000);
/// ```
#[derive(Debug, Default)]
pub struct Outgoing {
    queue: VecDeque<Bytes>,
    tail: BytesMut,
    /// Bytes in `queue` (the tail counts its own): a small write touches the tail only.
    queued: usize,
}

impl Outgoing {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    #[inline]
    pub fn len(&self) -> usize {
        self.queued + self.tail.len()
    }

    /// `true` when nothing waits to be written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append a copy of `data`.
    #[inline]
    pub fn put_slice(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
    }

    /// Append one byte.
    #[inline]
    pub fn put_u8(&mut self, byte: u8) {
        self.tail.put_u8(byte);
    }

    /// Append `data`; from [`COPY_THRESHOLD`] bytes on it is queued by reference, not copied.
    #[inline]
    pub fn put_bytes(&mut self, data: Bytes) {
        if data.len() < COPY_THRESHOLD {
            self.put_slice(&data);
        } else {
            self.queue_shared(data);
        }
    }

    /// Append `head ++ body ++ foot`: one copy into the tail for a small body, else `body` is
    /// queued by reference between the copied `head` and `foot`.
    ///
    /// The copy is the borrowed path's ([`put_framed_slice`](Self::put_framed_slice)), inlined;
    /// the rest is out of line.
    #[inline(always)]
    pub(crate) fn put_framed(&mut self, head: &[u8], body: Bytes, foot: &[u8]) {
        if body.len() < COPY_THRESHOLD {
            self.put_framed_slice(head, &body, foot);
        } else {
            self.put_framed_shared(head, body, foot);
        }
    }

    /// [`put_framed`](Self::put_framed) of a body queued by reference.
    #[inline(never)]
    fn put_framed_shared(&mut self, head: &[u8], body: Bytes, foot: &[u8]) {
        self.put_slice(head);
        self.queue_shared(body);
        self.put_slice(foot);
    }

    /// Append `head ++ body ++ foot`, all copied. Each piece is one `extend_from_slice` (its
    /// own capacity check, cheaper than a `reserve` of the total in front of them); a head or
    /// foot of constant length, as the framers' are, is written with a store, not a `memcpy`.
    #[inline(always)]
    pub(crate) fn put_framed_slice(&mut self, head: &[u8], body: &[u8], foot: &[u8]) {
        if !head.is_empty() {
            self.tail.extend_from_slice(head);
        }
        self.tail.extend_from_slice(body);
        if !foot.is_empty() {
            self.tail.extend_from_slice(foot);
        }
    }

    /// Append a copy of `body` unless it contains `byte`: `false`, and nothing appended, if it
    /// does. The check and the copy go through the body together, [`FUSED_PIECE`] bytes at a
    /// time, so a long body is read from memory once and copied from L1, not scanned whole and
    /// then read again for the copy. (Copying first and checking the copy is slower.)
    #[inline(never)]
    pub(crate) fn put_slice_without(&mut self, body: &[u8], byte: u8) -> bool {
        let start = self.tail.len();
        self.tail.reserve(body.len());
        for piece in body.chunks(FUSED_PIECE) {
            if memchr::memchr(byte, piece).is_some() {
                self.tail.truncate(start);
                return false;
            }
            self.tail.extend_from_slice(piece);
        }
        true
    }

    /// Queue `data` by reference behind what the tail holds.
    fn queue_shared(&mut self, data: Bytes) {
        if !self.tail.is_empty() {
            self.ensure_spare();
            let tail = self.tail.split().freeze();
            self.queued += tail.len();
            self.queue.push_back(tail);
        }
        self.queued += data.len();
        self.queue.push_back(data);
    }

    /// Before the tail is split off: make sure it has room left for later writes, so they share
    /// one buffer (reclaimed in place when nothing else holds it).
    fn ensure_spare(&mut self) {
        if self.tail.capacity() - self.tail.len() < MIN_SPARE {
            self.tail.reserve(TAIL_HEADROOM);
        }
    }

    /// Number of separate chunks (one `iovec` each in a vectored write).
    pub fn chunk_count(&self) -> usize {
        self.queue.len() + usize::from(!self.tail.is_empty())
    }

    /// Drop everything queued.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.tail.clear();
        self.queued = 0;
    }

    /// Take everything queued as one contiguous buffer (copies only when it is in several chunks).
    pub fn take_all(&mut self) -> Bytes {
        let len = self.len();
        match (self.queue.len(), self.tail.is_empty()) {
            // Nothing queued: no buffer is reserved for what might come (a closed connection
            // keeps holding nothing).
            (0, true) => Bytes::new(),
            (0, false) => {
                // Room for what comes next (e.g. the next datagram) in the same buffer, so
                // datagrams still waiting to be sent do not cost an allocation each.
                self.ensure_spare();
                self.tail.split().freeze()
            }
            (1, true) => {
                self.queued = 0;
                self.queue.pop_front().unwrap_or_default()
            }
            _ => self.copy_to_bytes(len),
        }
    }

    /// Heap bytes held (the tail's capacity and the queue's slots; queued `Bytes` are shared and
    /// not counted).
    pub fn capacity(&self) -> usize {
        self.tail.capacity() + self.queue.capacity() * core::mem::size_of::<Bytes>()
    }

    /// Give memory back once the queue is empty (for idle connections).
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.queue = VecDeque::new();
            self.tail = BytesMut::new();
        }
    }
}

/// A frame body on its way into an [`Outgoing`]: owned [`Bytes`] (queued by reference from
/// [`COPY_THRESHOLD`] bytes on) or a borrowed slice (always copied). Each framer writes one
/// encoder, generic over it, for both [`Framer::streamify`](crate::Framer::streamify) and
/// [`Framer::streamify_slice`](crate::Framer::streamify_slice).
pub(crate) trait FrameBody: core::ops::Deref<Target = [u8]> + Sized {
    /// Whether the body is always copied (a borrowed slice), not queued by reference.
    const COPIED: bool;
    /// Append the body.
    fn put_into(self, out: &mut Outgoing);
    /// Append `head ++ body ++ foot`.
    fn put_framed_into(self, head: &[u8], foot: &[u8], out: &mut Outgoing);
    /// The body from `at` on.
    fn after(self, at: usize) -> Self;
}

impl FrameBody for Bytes {
    const COPIED: bool = false;

    #[inline(always)]
    fn put_into(self, out: &mut Outgoing) {
        out.put_bytes(self);
    }

    #[inline(always)]
    fn put_framed_into(self, head: &[u8], foot: &[u8], out: &mut Outgoing) {
        out.put_framed(head, self, foot);
    }

    #[inline(always)]
    fn after(self, at: usize) -> Self {
        self.slice(at..)
    }
}

impl FrameBody for &[u8] {
    const COPIED: bool = true;

    #[inline(always)]
    fn put_into(self, out: &mut Outgoing) {
        out.put_slice(self);
    }

    #[inline(always)]
    fn put_framed_into(self, head: &[u8], foot: &[u8], out: &mut Outgoing) {
        out.put_framed_slice(head, self, foot);
    }

    #[inline(always)]
    fn after(self, at: usize) -> Self {
        &self[at..]
    }
}

impl Buf for Outgoing {
    #[inline]
    fn remaining(&self) -> usize {
        self.len()
    }

    fn chunk(&self) -> &[u8] {
        match self.queue.front() {
            Some(front) => front,
            None => &self.tail,
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.len(),
            "advance past the end of the outgoing queue"
        );
        while cnt > 0 {
            match self.queue.front_mut() {
                Some(front) if front.len() <= cnt => {
                    cnt -= front.len();
                    self.queued -= front.len();
                    self.queue.pop_front();
                }
                Some(front) => {
                    front.advance(cnt);
                    self.queued -= cnt;
                    return;
                }
                None => {
                    self.tail.advance(cnt);
                    return;
                }
            }
        }
    }

    #[cfg(feature = "std")]
    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        let chunks = self
            .queue
            .iter()
            .map(|b| &b[..])
            .chain(core::iter::once(&self.tail[..]))
            .filter(|c| !c.is_empty());
        for (slot, chunk) in dst.iter_mut().zip(chunks) {
            *slot = std::io::IoSlice::new(chunk);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_bodies_are_queued_in_order_between_small_writes() {
        let mut out = Outgoing::new();
        out.put_slice(b"ab");
        let body = Bytes::from(vec![7u8; COPY_THRESHOLD]);
        let ptr = body.as_ptr();
        out.put_bytes(body);
        out.put_u8(b'c');
        assert_eq!(out.chunk_count(), 3);
        assert_eq!(out.chunk(), b"ab");
        out.advance(2);
        assert_eq!(out.chunk().as_ptr(), ptr, "the body was copied");
        out.advance(COPY_THRESHOLD - 1);
        assert_eq!(out.chunk(), &[7]);
        out.advance(1);
        assert_eq!(out.chunk(), b"c");
        out.advance(1);
        assert!(out.is_empty());
    }

    #[test]
    fn small_bodies_are_copied_into_the_tail() {
        let mut out = Outgoing::new();
        out.put_bytes(Bytes::from_static(b"hi"));
        out.put_slice(b"!");
        assert_eq!(out.chunk_count(), 1);
        assert_eq!(out.take_all(), &b"hi!"[..]);
    }

    #[cfg(feature = "std")]
    #[test]
    fn vectored_chunks_cover_everything() {
        let mut out = Outgoing::new();
        out.put_slice(b"head");
        out.put_bytes(Bytes::from(vec![1u8; COPY_THRESHOLD + 44]));
        out.put_slice(b"tail");
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let n = out.chunks_vectored(&mut slices);
        assert_eq!(n, 3);
        let total: usize = slices[..n].iter().map(|s| s.len()).sum();
        assert_eq!(total, out.len());
    }

    #[test]
    fn taking_from_an_empty_queue_reserves_nothing() {
        let mut out = Outgoing::new();
        assert!(out.take_all().is_empty());
        assert_eq!(
            out.capacity(),
            0,
            "a closed or idle connection holds no buffer"
        );
        out.put_slice(b"x");
        assert_eq!(out.take_all(), &b"x"[..]);
        assert!(out.capacity() > 0, "room kept for the next datagram");
    }
}
