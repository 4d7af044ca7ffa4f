//! Framers: bytes to frames (`frameify`) and frames to bytes (`streamify`).
//!
//! A connection keeps one receive buffer and pulls frames off its front one at a time, so an
//! application can replace the receive framer after any frame and the very next buffered byte
//! goes through the new framer. Framers never keep unconsumed bytes of their own: at most scan
//! offsets and small state, cleared by [`Framer::reset`].
//!
//! | framer | wire format |
//! | --- | --- |
//! | [`Identity`] | each chunk of input (a read, a datagram) is one frame |
//! | [`Chunk`] | fixed-size records of `n` bytes |
//! | [`Line`] | `\n`-terminated lines, optional `\r` stripping |
//! | [`Delimiter`] | frames ended by any byte string |
//! | [`LengthPrefixed`] | a 1/2/4/8-byte or varint length field, then the body |
//! | [`Netstring`] | `len:data,` |
//! | [`Stuffing`] | byte stuffing between begin and end markers |
//! | [`Cobs`] | Consistent Overhead Byte Stuffing, `0x00`-delimited (optionally ZPE) |

use alloc::boxed::Box;
use bytes::{Bytes, BytesMut};

use crate::{FrameError, Outgoing};

mod adapter;
mod chunk;
mod cobs;
mod delimiter;
mod identity;
mod length;
mod line;
mod netstring;
mod slices;
mod stuffing;

pub use adapter::Map;
pub use chunk::Chunk;
pub use cobs::Cobs;
pub use delimiter::Delimiter;
pub use identity::Identity;
pub use length::{LengthField, LengthPrefixed};
pub use line::Line;
pub use netstring::Netstring;
pub use slices::{Slice, SliceFramer};
pub use stuffing::Stuffing;

/// The most a framer reserves ahead for an announced frame in one go.
pub(crate) const RESERVE_STEP: usize = 1 << 20;

/// A boxed framer, for switching between framers of different types at run time.
pub type BoxFramer<F> = Box<dyn Framer<Frame = F> + Send>;

/// Turns a byte stream into frames and frames into bytes.
///
/// Implementations take **at most one frame per call** off the front of the buffer they are
/// given and leave every other byte where it is. They must never panic and never loop forever,
/// whatever the input; bad input is a [`FrameError`].
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Framer, Line, Outgoing};
///
/// let mut framer = Line::crlf();
/// let mut buf = BytesMut::from(&b"HELO there\r\nQUIT\r\npartial"[..]);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "HELO there");
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "QUIT");
/// assert_eq!(framer.frameify(&mut buf).unwrap(), None); // waits for the rest
/// assert_eq!(buf, "partial");
///
/// let mut out = Outgoing::new();
/// framer.streamify("250 OK".into(), &mut out).unwrap();
/// assert_eq!(out.take_all(), "250 OK\r\n");
/// ```
pub trait Framer {
    /// What one frame is: `bytes::Bytes` for the built-in framers, or the application's own type
    /// through [`Framer::map`].
    type Frame;

    /// Take at most one frame off the front of `buf`.
    ///
    /// `Ok(None)` means "need more bytes": everything not yet framed stays in `buf`.
    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, FrameError>;

    /// The input ended (EOF on a stream, the end of one datagram): take the next frame out of
    /// what is left. Call it until it returns `Ok(None)`. Bytes that cannot form a frame are an
    /// error ([`FrameError::Truncated`]) unless the format says otherwise.
    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, FrameError>;

    /// Append the wire form of `frame` to `out`.
    fn streamify(&mut self, frame: Self::Frame, out: &mut Outgoing) -> Result<(), FrameError>;

    /// Append the wire form of a frame given as borrowed bytes, copied into `out`: for a reply
    /// formatted into a stack buffer, with no [`Bytes`] to mint. The wire form is the same as
    /// [`streamify`](Self::streamify)'s, and so are the errors.
    ///
    /// The built-in framers encode straight from the slice. The default, for framers of
    /// [`Bytes`]-like frames that do not override it, copies the slice into a new frame.
    ///
    /// ```
    /// use bytes::Buf;
    /// use tendril_core::{Framer, Line, Outgoing};
    ///
    /// let mut reply = [0u8; 16];
    /// let n = {
    ///     use std::io::Write;
    ///     let mut cursor = &mut reply[..];
    ///     write!(cursor, "250 OK {}", 42).unwrap();
    ///     16 - cursor.len()
    /// };
    /// let mut out = Outgoing::new();
    /// Line::crlf().streamify_slice(&reply[..n], &mut out).unwrap();
    /// assert_eq!(out.chunk(), b"250 OK 42\r\n");
    /// ```
    fn streamify_slice(&mut self, frame: &[u8], out: &mut Outgoing) -> Result<(), FrameError>
    where
        Self::Frame: From<Bytes>,
    {
        self.streamify(Bytes::copy_from_slice(frame).into(), out)
    }

    /// Forget scan offsets and partial-frame state. Called when this framer is switched in.
    fn reset(&mut self) {}

    /// Convert frames to and from the application's own type.
    ///
    /// `decode` runs on each received frame, `encode` on each frame to send; their errors are
    /// [`FrameError`]s (see [`FrameError::custom`]).
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use tendril_core::{FrameError, Framer, LengthPrefixed, Outgoing};
    ///
    /// // u16 numbers, each in a one-byte-length-prefixed frame.
    /// let mut framer = LengthPrefixed::u8().map(
    ///     |frame: Bytes| {
    ///         let raw: [u8; 2] = frame[..].try_into().map_err(|_| FrameError::custom("need 2 bytes"))?;
    ///         Ok(u16::from_be_bytes(raw))
    ///     },
    ///     |n: u16| Ok(Bytes::copy_from_slice(&n.to_be_bytes())),
    /// );
    /// let mut out = Outgoing::new();
    /// framer.streamify(513, &mut out).unwrap();
    /// let mut buf = BytesMut::from(&out.take_all()[..]);
    /// assert_eq!(framer.frameify(&mut buf).unwrap(), Some(513));
    /// ```
    fn map<T, D, E>(self, decode: D, encode: E) -> Map<Self, D, E>
    where
        Self: Sized,
        D: FnMut(Self::Frame) -> Result<T, FrameError>,
        E: FnMut(T) -> Result<Self::Frame, FrameError>,
    {
        Map::new(self, decode, encode)
    }

    /// Box this framer, so framers of different types can stand in one place.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tendril_core::{BoxFramer, Chunk, Framer, Line};
    ///
    /// let mut recv: BoxFramer<Bytes> = Line::crlf().boxed();
    /// recv = Chunk::new(5).boxed(); // e.g. after SMTP's BDAT 5
    /// # let _ = recv;
    /// ```
    fn boxed(self) -> BoxFramer<Self::Frame>
    where
        Self: Sized + Send + 'static,
    {
        Box::new(self)
    }
}

impl<F: Framer + ?Sized> Framer for Box<F> {
    type Frame = F::Frame;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, FrameError> {
        (**self).frameify(buf)
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, FrameError> {
        (**self).frameify_eof(buf)
    }

    fn streamify(&mut self, frame: Self::Frame, out: &mut Outgoing) -> Result<(), FrameError> {
        (**self).streamify(frame, out)
    }

    fn streamify_slice(&mut self, frame: &[u8], out: &mut Outgoing) -> Result<(), FrameError>
    where
        Self::Frame: From<Bytes>,
    {
        (**self).streamify_slice(frame, out)
    }

    fn reset(&mut self) {
        (**self).reset()
    }
}

/// Whether `hay` contains `byte`, for the send-side checks of the terminated framers.
///
/// Up to [`SHORT_SCAN`] bytes are compared in blocks of sixteen (`[u8; 16]`s compared bytewise
/// and or-ed together, which the compiler turns into SSE2 compares on x86-64), with no loop:
/// two blocks, the second one overlapping the first, for 16 to 32 bytes and four for 33 to 64.
/// 4 to 15 bytes are two overlapping halves of a block, 1 to 3 bytes three single compares.
/// Cheaper than a call into `memchr`'s run-time dispatch, which takes over above
/// (`encode_frames/line_borrowed` in `benches/framers.rs`).
#[inline(always)]
pub(crate) fn contains_byte(hay: &[u8], byte: u8) -> bool {
    if hay.len() > SHORT_SCAN {
        memchr::memchr(byte, hay).is_some()
    } else {
        contains_short(hay, byte)
    }
}

/// [`contains_byte`] of at most [`SHORT_SCAN`] bytes.
#[inline(always)]
pub(crate) fn contains_short(hay: &[u8], byte: u8) -> bool {
    let n = hay.len();
    debug_assert!(n <= SHORT_SCAN);
    // 16 to 64 bytes first, with one compare (`n - 16` wraps for shorter ones).
    if n >= 16 {
        let last = n - 16;
        let mut found = or16(eq16(&hay[..16], byte), eq16(&hay[last..], byte));
        if n > 32 {
            found = or16(
                found,
                or16(eq16(&hay[16..], byte), eq16(&hay[last.min(32)..], byte)),
            );
        }
        any16(found)
    } else if n >= 8 {
        let mut w = [0; 16];
        w[..8].copy_from_slice(&hay[..8]);
        w[8..].copy_from_slice(&hay[n - 8..]);
        any16(eq16(&w, byte))
    } else if n >= 4 {
        let mut w = [0; 8];
        w[..4].copy_from_slice(&hay[..4]);
        w[4..].copy_from_slice(&hay[n - 4..]);
        w.iter().fold(0u8, |m, &b| m | u8::from(b == byte)) != 0
    } else if n > 0 {
        (hay[0] == byte) | (hay[n / 2] == byte) | (hay[n - 1] == byte)
    } else {
        false
    }
}

/// `0xff` where one of the first 16 bytes of `hay` (which has at least 16) is `byte`, else `0`.
#[inline(always)]
fn eq16(hay: &[u8], byte: u8) -> [u8; 16] {
    let mut w = [0; 16];
    w.copy_from_slice(&hay[..16]);
    w.map(|b| if b == byte { 0xff } else { 0 })
}

/// Bytewise `a | b`.
#[inline(always)]
fn or16(a: [u8; 16], b: [u8; 16]) -> [u8; 16] {
    let mut r = [0; 16];
    for i in 0..16 {
        r[i] = a[i] | b[i];
    }
    r
}

/// Whether any byte is nonzero.
#[inline(always)]
fn any16(a: [u8; 16]) -> bool {
    a.iter().fold(0, |m, &b| m | b) != 0
}

/// Up to this many bytes [`contains_byte`] scans without `memchr`.
pub(crate) const SHORT_SCAN: usize = 64;

/// The end-of-input rule shared by the strict framers: a frame if one is complete, nothing if
/// the buffer is empty, otherwise the input was cut inside a frame.
pub(crate) fn strict_eof<F: Framer + ?Sized>(
    framer: &mut F,
    buf: &mut BytesMut,
    what: &'static str,
) -> Result<Option<F::Frame>, FrameError> {
    match framer.frameify(buf)? {
        Some(frame) => Ok(Some(frame)),
        None if buf.is_empty() => Ok(None),
        None => Err(FrameError::Truncated {
            what,
            buffered: buf.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::contains_byte;
    use alloc::vec;

    #[test]
    fn contains_byte_finds_the_byte_at_every_place_of_every_short_length() {
        for len in 0..=SHORT_SCAN_TESTED {
            let hay = vec![b'x'; len];
            assert!(!contains_byte(&hay, b'\n'), "len {len}: none");
            for at in 0..len {
                let mut hay = hay.clone();
                hay[at] = b'\n';
                assert!(contains_byte(&hay, b'\n'), "len {len}, at {at}");
                // Bytes next to the pattern in value (a borrow in the word arithmetic) do not
                // count as it.
                hay[at] = b'\n' + 1;
                assert!(
                    !contains_byte(&hay, b'\n'),
                    "len {len}, at {at}: a neighbour"
                );
                hay[at] = b'\n' - 1;
                assert!(
                    !contains_byte(&hay, b'\n'),
                    "len {len}, at {at}: a neighbour"
                );
            }
        }
        assert!(contains_byte(&[0, 0x80, 0xff], 0xff));
        assert!(!contains_byte(&[0x01; 9], 0x00));
        assert!(contains_byte(
            &[0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0],
            0
        ));
    }

    /// Past the SWAR path too, into `memchr`.
    const SHORT_SCAN_TESTED: usize = super::SHORT_SCAN + 17;
}
