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

    // Inlined, so that a caller holding a `Line` (not a boxed framer) gets the frame in
    // registers rather than through memory (see `Scanner::next`).
    #[inline]
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
    /// The refusal of a line with a `\n` inside.
    fn unencodable() -> FrameError {
        FrameError::Unencodable {
            what: "line",
            reason: "it contains '\\n' and would arrive as two lines",
        }
    }

    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        let (max, crlf) = (self.scanner.max, self.crlf);
        if frame.len() > super::SHORT_SCAN {
            return Self::encode_long(max, crlf, frame, out);
        }
        if super::contains_short(&frame, b'\n') {
            return Err(Self::unencodable());
        }
        Self::encode_checked(max, crlf, frame, out)
    }

    /// [`encode`](Self::encode) of a line longer than [`SHORT_SCAN`](super::SHORT_SCAN): out
    /// of line, since it calls `memchr` anyway. A line that is copied (borrowed, or below
    /// [`COPY_THRESHOLD`](crate::outgoing::COPY_THRESHOLD)) is checked while it is copied
    /// ([`Outgoing::put_slice_without`]). Given the settings, not the
    /// framer, so that a caller's loop over frames can keep them in registers.
    #[inline(never)]
    fn encode_long<B: FrameBody>(
        max: usize,
        crlf: bool,
        frame: B,
        out: &mut Outgoing,
    ) -> Result<(), FrameError> {
        if frame.len() > max {
            // A `\n` inside is the first refusal, as for a line within the limit.
            if memchr::memchr(b'\n', &frame).is_some() {
                return Err(Self::unencodable());
            }
            return Err(Self::too_long(max));
        }
        if B::COPIED || frame.len() < crate::outgoing::COPY_THRESHOLD {
            if !out.put_slice_without(&frame, b'\n') {
                return Err(Self::unencodable());
            }
            out.put_slice(if crlf { b"\r\n" } else { b"\n" });
            return Ok(());
        }
        if memchr::memchr(b'\n', &frame).is_some() {
            return Err(Self::unencodable());
        }
        Self::encode_checked(max, crlf, frame, out)
    }

    /// The refusal of a line over `max`.
    fn too_long(max: usize) -> FrameError {
        FrameError::TooLong {
            what: "line",
            max,
            announced: None,
            resynced: false,
        }
    }

    /// The rest of [`encode`](Self::encode), once `frame` is known to hold no `\n`.
    #[inline(always)]
    fn encode_checked<B: FrameBody>(
        max: usize,
        crlf: bool,
        frame: B,
        out: &mut Outgoing,
    ) -> Result<(), FrameError> {
        if frame.len() > max {
            return Err(Self::too_long(max));
        }
        // Two calls with constant terminators: each is written with one store, not a `memcpy`
        // of a length known only at run time (as when called through a boxed framer).
        if crlf {
            frame.put_framed_into(&[], b"\r\n", out);
        } else {
            frame.put_framed_into(&[], b"\n", out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use bytes::Buf;

    /// Long lines take the out-of-line path; borrowed ones are checked piece by piece as they are
    /// copied. A `\n` anywhere, in any piece, refuses the line and leaves the queue as it was.
    #[test]
    fn a_long_line_is_sent_whole_or_not_at_all() {
        for len in [65, 1000, 4095, 4096, 4097, 10_000, 70_000] {
            let line = vec![b'x'; len];
            for owned in [false, true] {
                let mut framer = Line::crlf().max_length(1 << 20);
                let mut out = Outgoing::new();
                out.put_slice(b"before\r\n");
                let send = |framer: &mut Line, frame: &[u8], out: &mut Outgoing| match owned {
                    true => framer.streamify(Bytes::copy_from_slice(frame), out),
                    false => framer.streamify_slice(frame, out),
                };
                for at in [0, 1, len / 2, 4095, 4096, len - 1] {
                    if at >= len {
                        continue;
                    }
                    let mut bad = line.clone();
                    bad[at] = b'\n';
                    let err = send(&mut framer, &bad, &mut out).unwrap_err();
                    assert!(matches!(err, FrameError::Unencodable { .. }), "{len} {at}");
                    assert_eq!(out.len(), 8, "len {len}, \\n at {at}: nothing queued");
                }
                send(&mut framer, &line, &mut out).unwrap();
                let mut all = out.copy_to_bytes(out.remaining()).to_vec();
                assert_eq!(&all[..8], b"before\r\n");
                assert_eq!(&all[all.len() - 2..], b"\r\n");
                all.truncate(all.len() - 2);
                assert_eq!(&all[8..], &line[..], "len {len}");
            }
        }
    }

    /// Over the limit and holding a `\n`: the `\n` is the refusal, as for a short line.
    #[test]
    fn a_long_line_over_the_limit_with_a_newline_is_unencodable() {
        let mut framer = Line::lf().max_length(100);
        let mut out = Outgoing::new();
        let mut line = vec![b'x'; 200];
        assert!(matches!(
            framer.streamify_slice(&line, &mut out),
            Err(FrameError::TooLong { max: 100, .. })
        ));
        line[150] = b'\n';
        assert!(matches!(
            framer.streamify_slice(&line, &mut out),
            Err(FrameError::Unencodable { .. })
        ));
        assert!(out.is_empty());
    }
}
