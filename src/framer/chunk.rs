use bytes::{Bytes, BytesMut};

use super::slices::{Slice, SliceFramer};
use super::strict_eof;
use crate::outgoing::FrameBody;
use crate::{FrameError, Framer, Outgoing};

/// Fixed-size records: every frame is exactly `n` bytes.
///
/// Wire format: the records back to back; `streamify` writes the frame unchanged and refuses a
/// frame of another length. Input that ends inside a record is [`FrameError::Truncated`].
///
/// In **piecewise** mode (the Python original's `ChunkFramer`) each frame is whatever part of
/// the current record has arrived, so a large record streams through without being buffered;
/// [`Chunk::remaining`] says how much of the record is still to come, and a record never spans
/// two frames. `streamify` then accepts frames of any length.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Chunk, Framer};
///
/// let mut framer = Chunk::new(5);
/// let mut buf = BytesMut::from(&b"1234567890abc"[..]);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "12345");
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "67890");
/// assert_eq!(framer.frameify(&mut buf).unwrap(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Chunk {
    len: usize,
    piecewise: bool,
    remaining: usize,
}

impl Chunk {
    /// Records of `len` bytes.
    ///
    /// # Panics
    /// If `len` is zero (a record must hold at least one byte).
    pub fn new(len: usize) -> Self {
        assert!(
            len > 0,
            "Chunk::new(0): a record must hold at least one byte"
        );
        Chunk {
            len,
            piecewise: false,
            remaining: len,
        }
    }

    /// Deliver each record in pieces as they arrive instead of whole.
    pub fn piecewise(mut self, on: bool) -> Self {
        self.piecewise = on;
        self
    }

    /// The record length.
    pub fn record_len(&self) -> usize {
        self.len
    }

    /// Bytes of the current record not yet delivered (piecewise mode); `len()` between records.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// How many of `available` buffered bytes the next frame takes (0: none yet); in piecewise
    /// mode, counts them off the current record.
    #[inline]
    fn take(&mut self, available: usize) -> usize {
        if !self.piecewise {
            return if available < self.len { 0 } else { self.len };
        }
        let n = available.min(self.remaining);
        self.remaining -= n;
        if self.remaining == 0 {
            self.remaining = self.len;
        }
        n
    }
}

impl SliceFramer for Chunk {
    fn next_slice(&mut self, buf: &[u8]) -> Result<Option<Slice>, FrameError> {
        let n = self.take(buf.len());
        Ok((n > 0).then_some(Slice {
            frame: 0..n,
            consumed: n,
        }))
    }
}

impl Framer for Chunk {
    type Frame = Bytes;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let n = self.take(buf.len());
        Ok((n > 0).then(|| buf.split_to(n).freeze()))
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if self.piecewise {
            let frame = self.frameify(buf)?;
            if frame.is_none() && self.remaining != self.len {
                let buffered = self.len - self.remaining;
                self.remaining = self.len;
                return Err(FrameError::Truncated {
                    what: "chunk",
                    buffered,
                });
            }
            return Ok(frame);
        }
        strict_eof(self, buf, "chunk")
    }

    #[inline]
    fn streamify(&mut self, frame: Bytes, out: &mut Outgoing) -> Result<(), FrameError> {
        self.encode(frame, out)
    }

    #[inline]
    fn streamify_slice(&mut self, frame: &[u8], out: &mut Outgoing) -> Result<(), FrameError> {
        self.encode(frame, out)
    }

    fn reset(&mut self) {
        self.remaining = self.len;
    }
}

impl Chunk {
    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        if !self.piecewise && frame.len() != self.len {
            return Err(FrameError::Unencodable {
                what: "chunk",
                reason: "its length differs from the record length",
            });
        }
        frame.put_into(out);
        Ok(())
    }
}
