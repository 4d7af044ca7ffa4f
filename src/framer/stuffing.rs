use alloc::vec::Vec;
use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem::Finder;

use crate::outgoing::FrameBody;
use crate::{ConfigError, FrameError, Framer, Outgoing};

/// The Python original's byte-stuffing framer.
///
/// Wire format: `prefix ++ begin`, the frame with every occurrence of `prefix` (left to right,
/// not overlapping) replaced by `prefix ++ nop`, then `prefix ++ end`. The defaults are the
/// original's: prefix `FF FF FF FF`, begin `FF`, end `FE`, nop `00`.
///
/// Bytes before a start marker are discarded: that is how the stream resynchronises. A second
/// start marker inside a frame stays part of the frame, as in the original.
///
/// Limits: frames of at most [`max_length`](Self::max_length) bytes, 64 KiB by default, checked
/// while the frame is still being received; over it [`FrameError::TooLong`], or with
/// [`discard_oversized`](Self::discard_oversized) the frame is dropped up to its end marker and
/// decoding resumes at the next start marker. Junk outside frames is dropped as it arrives, so it never piles up
/// (the original kept it without limit). Frames are unstuffed in place.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Framer, Outgoing, Stuffing};
///
/// let mut framer = Stuffing::new(b"zzz", b'z', b'w', b'a').unwrap();
/// let mut out = Outgoing::new();
/// framer.streamify("a zzzz b".into(), &mut out).unwrap();
/// let wire = out.take_all();
/// assert_eq!(wire, "zzzza zzzaz bzzzw");
///
/// let mut buf = BytesMut::from(&b"junk"[..]);
/// buf.extend_from_slice(&wire);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "a zzzz b");
/// ```
#[derive(Debug, Clone)]
pub struct Stuffing {
    prefix: Finder<'static>,
    start: Finder<'static>,
    end: Finder<'static>,
    nop: u8,
    max: usize,
    discard: bool,
    in_frame: bool,
    /// Dropping an oversized frame up to its end marker.
    discarding: bool,
    scanned: usize,
}

impl Stuffing {
    /// The default maximum frame length, 64 KiB.
    pub const DEFAULT_MAX: usize = 64 * 1024;

    /// A stuffing framer with the given markers.
    ///
    /// `begin`, `end` and `nop` must be distinct and `prefix` must not be empty. So that a frame
    /// can never be mistaken for its end marker, `end` and `nop` must not occur in `prefix` (the
    /// original did not check this; its defaults and documented examples satisfy it).
    pub fn new(prefix: &[u8], begin: u8, end: u8, nop: u8) -> Result<Self, ConfigError> {
        if prefix.is_empty() {
            return Err(ConfigError::new("the prefix must not be empty"));
        }
        if begin == end {
            return Err(ConfigError::new("begin and end must be distinct"));
        }
        if nop == begin || nop == end {
            return Err(ConfigError::new("nop must be distinct from begin and end"));
        }
        if prefix.contains(&end) || prefix.contains(&nop) {
            return Err(ConfigError::new("end and nop must not occur in the prefix"));
        }
        let marker = |byte: u8| {
            let mut m = Vec::with_capacity(prefix.len() + 1);
            m.extend_from_slice(prefix);
            m.push(byte);
            Finder::new(&m).into_owned()
        };
        Ok(Stuffing {
            prefix: Finder::new(prefix).into_owned(),
            start: marker(begin),
            end: marker(end),
            nop,
            max: Self::DEFAULT_MAX,
            discard: false,
            in_frame: false,
            discarding: false,
            scanned: 0,
        })
    }

    /// The maximum frame length (unstuffed).
    pub fn max_length(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Drop oversized frames and resume at the next start marker instead of failing the stream.
    pub fn discard_oversized(mut self, on: bool) -> Self {
        self.discard = on;
        self
    }

    fn marker_len(&self) -> usize {
        self.prefix.needle().len() + 1
    }

    /// The most stuffed bytes a frame of `max` bytes can take: each prefix may gain a nop.
    fn max_stuffed(&self) -> usize {
        self.max
            .saturating_add(self.max / self.prefix.needle().len())
    }

    fn too_long(&self, resynced: bool) -> FrameError {
        FrameError::TooLong {
            what: "stuffed frame",
            max: self.max,
            announced: None,
            resynced,
        }
    }

    /// Turn every `prefix ++ nop` back into `prefix`, in place.
    fn unstuff(&self, frame: &mut BytesMut) {
        let plen = self.prefix.needle().len();
        let (mut read, mut write) = (0, 0);
        while let Some(at) = self.prefix.find(&frame[read..]) {
            let after = read + at + plen;
            frame.copy_within(read..after, write);
            write += after - read;
            read = after;
            if frame.get(read) == Some(&self.nop) {
                read += 1;
            }
        }
        let rest = frame.len() - read;
        frame.copy_within(read.., write);
        frame.truncate(write + rest);
    }
}

impl Default for Stuffing {
    fn default() -> Self {
        Stuffing::new(&[0xff; 4], 0xff, 0xfe, 0x00).unwrap_or_else(|_| unreachable!())
    }
}

impl Framer for Stuffing {
    type Frame = Bytes;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let carry = self.marker_len() - 1;
        if self.discarding {
            // Reported when the skipped frame has ended, so the application answers it in order.
            let Some(at) = self.end.find(buf) else {
                buf.advance(buf.len().saturating_sub(carry));
                return Ok(None);
            };
            buf.advance(at + self.marker_len());
            self.discarding = false;
            return Err(self.too_long(true));
        }
        if !self.in_frame {
            match self.start.find(buf) {
                Some(at) => {
                    buf.advance(at + self.marker_len());
                    self.in_frame = true;
                    self.scanned = 0;
                }
                None => {
                    buf.advance(buf.len().saturating_sub(carry));
                    return Ok(None);
                }
            }
        }
        let Some(found) = self.end.find(&buf[self.scanned..]) else {
            self.scanned = buf.len().saturating_sub(carry);
            if buf.len() > self.max_stuffed().saturating_add(carry) {
                if !self.discard {
                    return Err(self.too_long(false));
                }
                // Drop the frame up to its end marker, as if it had arrived whole.
                buf.advance(buf.len() - carry);
                self.in_frame = false;
                self.discarding = true;
                self.scanned = 0;
            }
            return Ok(None);
        };
        let at = self.scanned + found;
        let mut frame = buf.split_to(at);
        buf.advance(self.marker_len());
        self.in_frame = false;
        self.scanned = 0;
        self.unstuff(&mut frame);
        if frame.len() > self.max {
            return Err(self.too_long(self.discard));
        }
        Ok(Some(frame.freeze()))
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.frameify(buf)? {
            return Ok(Some(frame));
        }
        let in_frame = core::mem::replace(&mut self.in_frame, false);
        let discarding = core::mem::take(&mut self.discarding);
        self.scanned = 0;
        let buffered = buf.len();
        buf.clear();
        if discarding {
            // The input ended inside the frame being skipped.
            return Err(self.too_long(true));
        }
        if in_frame {
            return Err(FrameError::Truncated {
                what: "stuffed frame",
                buffered,
            });
        }
        // Junk outside a frame is not a frame.
        Ok(None)
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
        self.in_frame = false;
        self.discarding = false;
        self.scanned = 0;
    }
}

impl Stuffing {
    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        if frame.len() > self.max {
            return Err(self.too_long(false));
        }
        let prefix = self.prefix.needle();
        out.put_slice(self.start.needle());
        let mut rest = &frame[..];
        while let Some(at) = self.prefix.find(rest) {
            let after = at + prefix.len();
            out.put_slice(&rest[..after]);
            out.put_u8(self.nop);
            rest = &rest[after..];
        }
        if rest.len() == frame.len() {
            // Nothing to stuff: the body goes out as it is.
            frame.put_into(out);
        } else {
            out.put_slice(rest);
        }
        out.put_slice(self.end.needle());
        Ok(())
    }
}
