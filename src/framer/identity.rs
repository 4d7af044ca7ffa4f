use bytes::{Bytes, BytesMut};

use super::slices::{Slice, SliceFramer};
use crate::outgoing::FrameBody;
use crate::{FrameError, Framer, Outgoing};

/// Each chunk of input is one frame: whatever one read or one datagram brought.
///
/// Wire format: none; `streamify` writes the frame unchanged. Empty input gives no frame (the
/// Python original delivered empty frames on switches and for empty datagrams). A buffer longer
/// than the maximum (default 64 KiB, above any UDP datagram) comes out in pieces of at most that
/// many bytes. Never fails on input.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Framer, Identity};
///
/// let mut framer = Identity::new();
/// let mut buf = BytesMut::from(&b"anything at all"[..]);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "anything at all");
/// assert_eq!(framer.frameify(&mut buf).unwrap(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Identity {
    max: usize,
}

impl Identity {
    /// The default maximum frame length, 64 KiB.
    pub const DEFAULT_MAX: usize = 64 * 1024;

    /// An identity framer with the default maximum.
    pub fn new() -> Self {
        Identity {
            max: Self::DEFAULT_MAX,
        }
    }

    /// Split buffered input into frames of at most `max` bytes (at least 1).
    pub fn max_length(mut self, max: usize) -> Self {
        self.max = max.max(1);
        self
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}

impl SliceFramer for Identity {
    fn next_slice(&mut self, buf: &[u8]) -> Result<Option<Slice>, FrameError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let n = buf.len().min(self.max);
        Ok(Some(Slice {
            frame: 0..n,
            consumed: n,
        }))
    }
}

impl Framer for Identity {
    type Frame = Bytes;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let n = buf.len().min(self.max);
        Ok(Some(buf.split_to(n).freeze()))
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        self.frameify(buf)
    }

    #[inline]
    fn streamify(&mut self, frame: Bytes, out: &mut Outgoing) -> Result<(), FrameError> {
        self.encode(frame, out)
    }

    #[inline]
    fn streamify_slice(&mut self, frame: &[u8], out: &mut Outgoing) -> Result<(), FrameError> {
        self.encode(frame, out)
    }
}

impl Identity {
    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        frame.put_into(out);
        Ok(())
    }
}
