use bytes::{Buf, Bytes, BytesMut};

use crate::outgoing::FrameBody;
use crate::{FrameError, Framer, Outgoing};

/// Consistent Overhead Byte Stuffing (Cheshire and Baker), each frame followed by a `0x00`
/// delimiter; optionally the zero-pair-elimination variant (COBS/ZPE) of the Python original.
///
/// Wire format, standard: code bytes `0x01..=0xFE` carry `code - 1` data bytes followed by a
/// zero, `0xFF` carries 254 data bytes and no zero; the final implied zero is dropped. ZPE:
/// `0x01..=0xDF` carry `code - 1` bytes and a zero, `0xE0` carries 223 bytes and no zero,
/// `0xE1..=0xFF` carry `code - 0xE1` bytes and two zeros. `streamify` writes the canonical
/// encoding (a final full block gets no extra `01` code, unlike the original); `frameify` also
/// accepts the original's form. An empty segment (`00 00`) is an empty frame.
///
/// Limits: frames of at most [`max_length`](Self::max_length) decoded bytes, 64 KiB by default;
/// over it [`FrameError::TooLong`], or with [`discard_oversized`](Self::discard_oversized) the
/// frame is dropped up to the next `0x00` and decoding goes on (the `resynced` error comes once
/// the dropped frame has ended). A code byte that runs past the
/// delimiter is [`FrameError::CobsOverrun`] (the original silently returned a short frame).
/// Standard frames are decoded in place; ZPE frames are decoded in place unless zero pairs make
/// the frame longer than its encoding so far.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Cobs, Framer, Outgoing};
///
/// let mut framer = Cobs::new();
/// let mut out = Outgoing::new();
/// framer.streamify(vec![0x11, 0x22, 0x00, 0x33].into(), &mut out).unwrap();
/// let wire = out.take_all();
/// assert_eq!(wire, [0x03, 0x11, 0x22, 0x02, 0x33, 0x00][..]);
///
/// let mut buf = BytesMut::from(&wire[..]);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), [0x11, 0x22, 0x00, 0x33][..]);
///
/// let mut bad = BytesMut::from(&[0x05, b'a', b'b', 0x00][..]);
/// assert_eq!(
///     framer.frameify(&mut bad).unwrap_err().to_string(),
///     "COBS code 0x05 runs past the delimiter (2 bytes were left)"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Cobs {
    zpe: bool,
    max: usize,
    discard: bool,
    scanned: usize,
    discarding: bool,
}

/// What one code byte means: data bytes that follow it, zeros after them.
#[derive(Clone, Copy)]
struct Block {
    data: usize,
    zeros: usize,
}

impl Cobs {
    /// The default maximum frame length, 64 KiB.
    pub const DEFAULT_MAX: usize = 64 * 1024;

    /// Standard COBS.
    pub fn new() -> Self {
        Cobs {
            zpe: false,
            max: Self::DEFAULT_MAX,
            discard: false,
            scanned: 0,
            discarding: false,
        }
    }

    /// COBS with zero-pair elimination.
    pub fn zpe() -> Self {
        Cobs {
            zpe: true,
            ..Self::new()
        }
    }

    /// The maximum decoded frame length.
    pub fn max_length(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Drop oversized frames up to the next `0x00` instead of failing the stream.
    pub fn discard_oversized(mut self, on: bool) -> Self {
        self.discard = on;
        self
    }

    /// The data bytes of a full block (a block without a zero).
    fn full(&self) -> usize {
        if self.zpe {
            223
        } else {
            254
        }
    }

    fn block(&self, code: u8) -> Block {
        let code = usize::from(code);
        match (self.zpe, code) {
            (false, 0xff) | (true, 0xe0) => Block {
                data: code - 1,
                zeros: 0,
            },
            (true, 0xe1..) => Block {
                data: code - 0xe1,
                zeros: 2,
            },
            _ => Block {
                data: code - 1,
                zeros: 1,
            },
        }
    }

    /// The encoded length of a frame of `max` bytes: the bound while scanning for the delimiter.
    fn max_encoded(&self) -> usize {
        self.max.saturating_add(self.max / self.full() + 1)
    }

    fn too_long(&self, resynced: bool) -> FrameError {
        FrameError::TooLong {
            what: "COBS frame",
            max: self.max,
            announced: None,
            resynced,
        }
    }

    /// Validate `enc` and return its decoded length, and whether it decodes in place.
    fn measure(&self, enc: &[u8]) -> Result<(usize, bool), FrameError> {
        let (mut read, mut out, mut in_place) = (0, 0, true);
        while read < enc.len() {
            let code = enc[read];
            let block = self.block(code);
            read += 1;
            let left = enc.len() - read;
            if block.data > left {
                return Err(FrameError::CobsOverrun { code, left });
            }
            read += block.data;
            out += block.data;
            if read < enc.len() {
                out += block.zeros;
            } else {
                out += block.zeros.saturating_sub(1);
            }
            // The next code byte (at `read`) must not be overwritten before it is read.
            in_place &= out <= read;
        }
        Ok((out, in_place))
    }

    /// Decode `enc` into `dst`, which may be `enc` itself when `measure` said so.
    fn decode_into(&self, enc: &[u8], dst: &mut [u8]) {
        let (mut read, mut write) = (0, 0);
        while read < enc.len() {
            let block = self.block(enc[read]);
            read += 1;
            dst[write..write + block.data].copy_from_slice(&enc[read..read + block.data]);
            read += block.data;
            write += block.data;
            let zeros = if read < enc.len() {
                block.zeros
            } else {
                block.zeros.saturating_sub(1)
            };
            dst[write..write + zeros].fill(0);
            write += zeros;
        }
    }

    fn decode_in_place(&self, frame: &mut BytesMut) {
        let (mut read, mut write) = (0, 0);
        while read < frame.len() {
            let block = self.block(frame[read]);
            read += 1;
            frame.copy_within(read..read + block.data, write);
            read += block.data;
            write += block.data;
            let zeros = if read < frame.len() {
                block.zeros
            } else {
                block.zeros.saturating_sub(1)
            };
            frame[write..write + zeros].fill(0);
            write += zeros;
        }
        frame.truncate(write);
    }
}

impl Default for Cobs {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer for Cobs {
    type Frame = Bytes;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if self.discarding {
            // Reported when the skipped frame has ended, so the application answers it in order.
            let Some(at) = memchr::memchr(0, buf) else {
                buf.clear();
                return Ok(None);
            };
            buf.advance(at + 1);
            self.discarding = false;
            return Err(self.too_long(true));
        }
        let Some(found) = memchr::memchr(0, &buf[self.scanned..]) else {
            self.scanned = buf.len();
            if buf.len() > self.max_encoded() {
                if !self.discard {
                    return Err(self.too_long(false));
                }
                buf.clear();
                self.scanned = 0;
                self.discarding = true;
            }
            return Ok(None);
        };
        let at = self.scanned + found;
        self.scanned = 0;
        let mut frame = buf.split_to(at);
        buf.advance(1);
        // Checked before the contents, so a long frame is skipped the same way whether its
        // delimiter arrived with it or later.
        if frame.len() > self.max_encoded() {
            return Err(self.too_long(self.discard));
        }
        let (len, in_place) = self.measure(&frame)?;
        if len > self.max {
            return Err(self.too_long(self.discard));
        }
        if in_place {
            self.decode_in_place(&mut frame);
            return Ok(Some(frame.freeze()));
        }
        let mut decoded = BytesMut::zeroed(len);
        self.decode_into(&frame, &mut decoded);
        Ok(Some(decoded.freeze()))
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.frameify(buf)? {
            return Ok(Some(frame));
        }
        self.scanned = 0;
        if core::mem::take(&mut self.discarding) {
            // The input ended inside the frame being skipped.
            buf.clear();
            return Err(self.too_long(true));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        Err(FrameError::Truncated {
            what: "COBS frame",
            buffered: buf.len(),
        })
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
        self.scanned = 0;
        self.discarding = false;
    }
}

impl Cobs {
    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        if frame.len() > self.max {
            return Err(self.too_long(false));
        }
        // The frame plus an implied final zero, as segments each ended by a zero.
        let full = self.full();
        let mut rest = &frame[..];
        loop {
            let zero = memchr::memchr(0, rest);
            let whole = &rest[..zero.unwrap_or(rest.len())];
            let mut segment = whole;
            while segment.len() >= full {
                out.put_u8(if self.zpe { 0xe0 } else { 0xff });
                out.put_slice(&segment[..full]);
                segment = &segment[full..];
            }
            let Some(zero) = zero else {
                // Canonical: a last segment of whole full blocks needs no code for the implied
                // zero (the original wrote an extra 01).
                if !segment.is_empty() || whole.is_empty() {
                    out.put_u8(segment.len() as u8 + 1);
                    out.put_slice(segment);
                }
                break;
            };
            rest = &rest[zero + 1..];
            // ZPE: a short segment followed by an empty one (a second zero, real or implied)
            // becomes one pair code.
            if self.zpe && segment.len() <= 30 && rest.first().is_none_or(|&b| b == 0) {
                out.put_u8(0xe1 + segment.len() as u8);
                out.put_slice(segment);
                if rest.is_empty() {
                    break;
                }
                rest = &rest[1..];
            } else {
                out.put_u8(segment.len() as u8 + 1);
                out.put_slice(segment);
            }
        }
        out.put_u8(0);
        Ok(())
    }
}
