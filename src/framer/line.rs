use bytes::{Bytes, BytesMut};

use super::delimiter::{Scanner, Terminator};
use super::slices::{Slice, SliceFramer};
use crate::outgoing::FrameBody;
use crate::{FrameError, Framer, Outgoing};

/// Lines ended by `\n`; in CRLF mode one `\r` before the `\n` is stripped and `\r\n` is sent.
///
/// Wire format: `line ++ "\r\n"` (CRLF mode, the default as in the Python original's
/// `LineFramer`) or `line ++ "\n"`. Empty lines are frames, in both modes (the original raised
/// on a bare `\n`).
///
/// Limits: lines (without the terminator) of at most [`max_length`](Self::max_length) bytes,
/// 8 KiB by default; over it [`FrameError::TooLong`], or with
/// [`discard_oversized`](Self::discard_oversized) the line is skipped up to the next `\n` and
/// decoding goes on (the error, marked `resynced`, comes once the skipped line has
/// ended, so replies stay in order). At the end of input an unterminated last line is returned as a frame (like
/// `tokio_util`'s `LinesCodec`). `streamify` refuses a frame that contains `\n`.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Framer, Line, Outgoing};
///
/// let mut framer = Line::crlf();
/// let mut buf = BytesMut::from(&b"EHLO a\r\n\r\nbare lf\n"[..]);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "EHLO a");
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "");
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "bare lf");
///
/// let mut out = Outgoing::new();
/// assert!(framer.streamify("two\nlines".into(), &mut out).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Line {
    crlf: bool,
    scanner: Scanner,
}

impl Line {
    /// The default maximum line length, 8 KiB.
    pub const DEFAULT_MAX: usize = 8 * 1024;

    /// CRLF mode: strip one `\r` before each `\n`, send `\r\n`.
    pub fn crlf() -> Self {
        Line {
            crlf: true,
            scanner: Scanner::new(Self::DEFAULT_MAX),
        }
    }

    /// LF mode: lines end at `\n`, nothing is stripped, `\n` is sent.
    pub fn lf() -> Self {
        Line {
            crlf: false,
            ..Self::crlf()
        }
    }

    /// The maximum line length, without the terminator.
    pub fn max_length(mut self, max: usize) -> Self {
        self.scanner.max = max;
        self
    }

    /// Skip oversized lines up to the next `\n` instead of failing the stream.
    pub fn discard_oversized(mut self, on: bool) -> Self {
        self.scanner.discard = on;
        self
    }

    fn terminator(&self) -> Terminator {
        Terminator {
            what: "line",
            len: 1,
            strip_cr: self.crlf,
            keep: false,
        }
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::crlf()
    }
}

impl SliceFramer for Line {
    fn next_slice(&mut self, buf: &[u8]) -> Result<Option<Slice>, FrameError> {
        let rule = self.terminator();
        self.scanner
            .next_slice(buf, &rule, |hay| memchr::memchr(b'\n', hay))
    }
}

impl Framer for Line {
    type Frame = Bytes;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let rule = self.terminator();
        self.scanner
            .next(buf, &rule, |hay| memchr::memchr(b'\n', hay))
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.frameify(buf)? {
            return Ok(Some(frame));
        }
        self.scanner.eof(buf, "line", self.crlf)
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
        self.scanner.reset();
    }
}

impl Line {
    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        if super::contains_byte(&frame, b'\n') {
            return Err(FrameError::Unencodable {
                what: "line",
                reason: "it contains '\\n' and would arrive as two lines",
            });
        }
        if frame.len() > self.scanner.max {
            return Err(FrameError::TooLong {
                what: "line",
                max: self.scanner.max,
                announced: None,
                resynced: false,
            });
        }
        // Two calls with constant terminators: each is written with one store, not a `memcpy`
        // of a length known only at run time (as when called through a boxed framer).
        if self.crlf {
            frame.put_framed_into(&[], b"\r\n", out);
        } else {
            frame.put_framed_into(&[], b"\n", out);
        }
        Ok(())
    }
}
