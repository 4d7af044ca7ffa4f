use alloc::boxed::Box;
use alloc::vec::Vec;
use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem::Finder;

use super::slices::{Slice, SliceFramer};
use crate::outgoing::FrameBody;
use crate::{ConfigError, FrameError, Framer, Outgoing};

/// Frames ended by a byte string, e.g. `\r\n.\r\n` for an SMTP message body.
///
/// Wire format: `frame ++ delimiter`. The delimiter is stripped from received frames unless
/// [`keep_delimiter`](Self::keep_delimiter) is on. Searching uses `memchr::memmem` and never
/// rescans bytes already searched.
///
/// Limits: frames (without the delimiter) of at most [`max_length`](Self::max_length) bytes,
/// 64 KiB by default. Over it: [`FrameError::TooLong`], or with
/// [`discard_oversized`](Self::discard_oversized) the frame is skipped up to the next delimiter
/// and decoding goes on (the error says `resynced` and comes once the skipped frame has
/// ended, so replies stay in order). At the end of input the last, unterminated
/// frame is returned as a frame (like `tokio_util`'s `AnyDelimiterCodec`). `streamify` refuses a
/// frame that contains the delimiter, since it would arrive as two.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Delimiter, Framer};
///
/// let mut framer = Delimiter::new(b"\r\n.\r\n").unwrap();
/// let mut buf = BytesMut::from(&b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n"[..]);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "Subject: hi\r\n\r\nbody");
/// assert_eq!(buf, "QUIT\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct Delimiter {
    finder: Finder<'static>,
    /// Each `k` (0 < k < delimiter length) for which the delimiter's last `len - k` bytes equal
    /// its first `len - k` bytes: a body ending with the delimiter's first `k` bytes would put a
    /// delimiter `k` bytes before the real one (`\r\n.` before `\r\n.\r\n`).
    overlaps: Box<[usize]>,
    /// The delimiter when it is one byte, for the send side's short path.
    byte: Option<u8>,
    keep: bool,
    scanner: Scanner,
}

impl Delimiter {
    /// The default maximum frame length, 64 KiB.
    pub const DEFAULT_MAX: usize = 64 * 1024;

    /// Frames ended by `delimiter`, which must not be empty.
    pub fn new(delimiter: &[u8]) -> Result<Self, ConfigError> {
        if delimiter.is_empty() {
            return Err(ConfigError::new("the delimiter must not be empty"));
        }
        let overlaps: Vec<usize> = (1..delimiter.len())
            .filter(|&k| delimiter[k..] == delimiter[..delimiter.len() - k])
            .collect();
        Ok(Delimiter {
            finder: Finder::new(delimiter).into_owned(),
            overlaps: overlaps.into_boxed_slice(),
            byte: match delimiter {
                [byte] => Some(*byte),
                _ => None,
            },
            keep: false,
            scanner: Scanner::new(Self::DEFAULT_MAX),
        })
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        self.finder.needle()
    }

    /// Keep the delimiter at the end of each received frame (and accept frames that already end
    /// with it on the send side).
    pub fn keep_delimiter(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// The maximum frame length, without the delimiter.
    pub fn max_length(mut self, max: usize) -> Self {
        self.scanner.max = max;
        self
    }

    /// Skip oversized frames up to the next delimiter instead of failing the stream.
    pub fn discard_oversized(mut self, on: bool) -> Self {
        self.scanner.discard = on;
        self
    }
}

impl SliceFramer for Delimiter {
    fn next_slice(&mut self, buf: &[u8]) -> Result<Option<Slice>, FrameError> {
        let finder = &self.finder;
        let rule = Terminator {
            what: "delimited frame",
            len: finder.needle().len(),
            strip_cr: false,
            keep: self.keep,
        };
        self.scanner.next_slice(buf, &rule, |hay| finder.find(hay))
    }
}

impl Framer for Delimiter {
    type Frame = Bytes;

    // Inlined, as `Line`'s: a caller holding a `Delimiter` (not a boxed framer) gets the frame
    // in registers rather than through memory (see `Scanner::next`).
    #[inline]
    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let finder = &self.finder;
        let rule = Terminator {
            what: "delimited frame",
            len: finder.needle().len(),
            strip_cr: false,
            keep: self.keep,
        };
        self.scanner.next(buf, &rule, |hay| finder.find(hay))
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.frameify(buf)? {
            return Ok(Some(frame));
        }
        self.scanner.eof(buf, "delimited frame", false)
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

impl Delimiter {
    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        match self.byte {
            Some(byte) => self.encode_byte(byte, frame, out),
            None => self.encode_string(frame, out),
        }
    }

    /// [`encode`](Self::encode) for a one-byte delimiter: no overlaps to check, and the
    /// delimiter is written with a store.
    #[inline]
    fn encode_byte<B: FrameBody>(
        &self,
        byte: u8,
        frame: B,
        out: &mut Outgoing,
    ) -> Result<(), FrameError> {
        let terminated = self.keep && frame.last() == Some(&byte);
        let body = &frame[..frame.len() - usize::from(terminated)];
        if body.len() > super::SHORT_SCAN {
            return self.encode_byte_long(byte, terminated, frame, out);
        }
        if super::contains_short(body, byte) {
            return Err(self.unencodable());
        }
        if body.len() > self.scanner.max {
            return Err(self.too_long());
        }
        if terminated {
            frame.put_into(out);
        } else {
            frame.put_framed_into(&[], &[byte], out);
        }
        Ok(())
    }

    /// [`encode_byte`](Self::encode_byte) of a frame whose body is over
    /// [`SHORT_SCAN`](super::SHORT_SCAN) bytes: out of line, since it calls `memchr` anyway. A
    /// copied one (borrowed, or owned below [`COPY_THRESHOLD`](crate::outgoing::COPY_THRESHOLD))
    /// is checked while it is copied ([`Outgoing::put_slice_without`]).
    #[inline(never)]
    fn encode_byte_long<B: FrameBody>(
        &self,
        byte: u8,
        terminated: bool,
        frame: B,
        out: &mut Outgoing,
    ) -> Result<(), FrameError> {
        let body = &frame[..frame.len() - usize::from(terminated)];
        let n = body.len();
        if !terminated
            && n <= self.scanner.max
            && (B::COPIED || n < crate::outgoing::COPY_THRESHOLD)
        {
            if !out.put_slice_without(body, byte) {
                return Err(self.unencodable());
            }
            out.put_u8(byte);
            return Ok(());
        }
        if super::contains_byte(body, byte) {
            return Err(self.unencodable());
        }
        if n > self.scanner.max {
            return Err(self.too_long());
        }
        if terminated {
            frame.put_into(out);
        } else {
            frame.put_framed_into(&[], &[byte], out);
        }
        Ok(())
    }

    /// The refusal of a frame that holds the delimiter.
    fn unencodable(&self) -> FrameError {
        FrameError::Unencodable {
            what: "delimited frame",
            reason: "it contains the delimiter and would arrive as two frames",
        }
    }

    /// The refusal of a frame over the limit.
    fn too_long(&self) -> FrameError {
        FrameError::TooLong {
            what: "delimited frame",
            max: self.scanner.max,
            announced: None,
            resynced: false,
        }
    }

    /// [`encode`](Self::encode) for a delimiter of two bytes or more.
    #[inline]
    fn encode_string<B: FrameBody>(&self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        let delimiter = self.finder.needle();
        let body = match self.keep {
            true => frame.strip_suffix(delimiter).unwrap_or(&frame),
            false => &frame[..],
        };
        let body_len = body.len();
        // The delimiter must first appear right after the body: not inside it, and not where the
        // body's end and the delimiter overlap.
        let inside = self.finder.find(body).is_some();
        let straddling = self
            .overlaps
            .iter()
            .any(|&k| body.ends_with(&delimiter[..k]));
        if inside || straddling {
            return Err(self.unencodable());
        }
        if body_len > self.scanner.max {
            return Err(self.too_long());
        }
        if body_len == frame.len() {
            frame.put_framed_into(&[], delimiter, out);
        } else {
            // The frame already ends with the delimiter (`keep_delimiter`).
            frame.put_into(out);
        }
        Ok(())
    }
}

/// How a terminated frame ends.
pub(crate) struct Terminator {
    pub what: &'static str,
    /// Length of the terminator.
    pub len: usize,
    /// Strip one `\r` before the terminator.
    pub strip_cr: bool,
    /// Keep the terminator in the frame.
    pub keep: bool,
}

/// Scan state shared by the framers whose frames end at a terminator (`Line`, `Delimiter`): a
/// limit, the discard-oversized policy, and how far the buffer has been searched already.
/// What [`Scanner::locate`] found.
enum Located {
    /// No terminator yet, and what is buffered may still become a frame.
    Pending,
    /// A frame whose body is `body` bytes and which ends (terminator included) at `end`.
    Frame { body: usize, end: usize },
    /// The frame is over the limit; `end` is where it ends if its terminator has arrived.
    TooLong { end: Option<usize> },
}

#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    pub max: usize,
    pub discard: bool,
    scanned: usize,
    discarding: bool,
}

impl Scanner {
    pub fn new(max: usize) -> Self {
        Scanner {
            max,
            discard: false,
            scanned: 0,
            discarding: false,
        }
    }

    pub fn reset(&mut self) {
        self.scanned = 0;
        self.discarding = false;
    }

    fn too_long(&self, what: &'static str, resynced: bool) -> FrameError {
        FrameError::TooLong {
            what,
            max: self.max,
            announced: None,
            resynced,
        }
    }

    /// Where the next terminated frame ends in `buf`, past what earlier calls scanned; `find`
    /// returns where the terminator starts in a slice. Shared by [`next`](Self::next) and
    /// [`next_slice`](Self::next_slice); the discard mode is theirs to apply.
    #[inline(always)]
    fn locate(
        &mut self,
        buf: &[u8],
        rule: &Terminator,
        find: &impl Fn(&[u8]) -> Option<usize>,
    ) -> Located {
        let carry = rule.len - 1;
        // A caller of `next_slice` may pass fewer bytes than it did before.
        let from = if self.scanned <= buf.len() {
            self.scanned
        } else {
            0
        };
        let Some(found) = find(&buf[from..]) else {
            self.scanned = buf.len().saturating_sub(carry);
            return if buf.len() > self.max.saturating_add(carry + usize::from(rule.strip_cr)) {
                Located::TooLong { end: None }
            } else {
                Located::Pending
            };
        };
        let pos = from + found;
        self.scanned = 0;
        let body = if rule.strip_cr && pos > 0 && buf[pos - 1] == b'\r' {
            pos - 1
        } else {
            pos
        };
        let end = pos + rule.len;
        if body > self.max {
            Located::TooLong { end: Some(end) }
        } else {
            Located::Frame { body, end }
        }
    }

    /// The next terminated frame; `find` returns where the terminator starts in a slice.
    ///
    /// Meant to be inlined into the caller of the framer's `frameify` (`#[inline]` for `Line` and
    /// `Delimiter`), with only the common outcomes here: a whole frame, or not yet one. Behind a
    /// call the frame comes back through memory, as the caller's `Result`, and the caller copies
    /// it out with 16-byte loads of what were 8-byte stores, which the CPU cannot forward: it
    /// waits for the stores to reach the cache (in a loop over 64 B lines, the same `split_to`
    /// and `freeze` take 19 ns per frame behind a call and 8 ns inlined). For the same reason the
    /// rare paths, out of line, answer in registers ([`next_rare`](Self::next_rare)), not with a
    /// `Result`.
    #[inline(always)]
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        rule: &Terminator,
        find: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<Option<Bytes>, FrameError> {
        let rare = if self.discarding {
            self.next_rare(buf, rule, find, None)
        } else {
            match self.locate(buf, rule, &find) {
                Located::Pending => return Ok(None),
                Located::Frame { body, end } => {
                    let mut frame = buf.split_to(end);
                    if !rule.keep {
                        frame.truncate(body);
                    }
                    return Ok(Some(frame.freeze()));
                }
                Located::TooLong { end } => self.next_rare(buf, rule, find, Some(end)),
            }
        };
        match rare {
            None => Ok(None),
            Some(resynced) => Err(self.too_long(rule.what, resynced)),
        }
    }

    /// [`next`](Self::next) while skipping an oversized frame, or once one was found
    /// (`too_long`: where it ends, if its terminator has arrived). `Some(resynced)` stands for
    /// [`FrameError::TooLong`], `None` for "need more bytes".
    #[inline(never)]
    #[cold]
    fn next_rare(
        &mut self,
        buf: &mut BytesMut,
        rule: &Terminator,
        find: impl Fn(&[u8]) -> Option<usize>,
        too_long: Option<Option<usize>>,
    ) -> Option<bool> {
        let carry = rule.len - 1;
        match too_long {
            None => {
                // Discarding. Reported when the skipped frame has ended, so the application
                // answers it in order.
                let Some(pos) = find(buf) else {
                    buf.advance(buf.len().saturating_sub(carry));
                    return None;
                };
                buf.advance(pos + rule.len);
                self.discarding = false;
                Some(true)
            }
            Some(None) => {
                if !self.discard {
                    return Some(false);
                }
                buf.advance(buf.len() - carry);
                self.scanned = 0;
                self.discarding = true;
                None
            }
            Some(Some(end)) => {
                if self.discard {
                    buf.advance(end);
                }
                Some(self.discard)
            }
        }
    }

    /// [`Scanner::next`] in place: the frame's range and the bytes it spans. There is no discard
    /// mode here: an oversized frame is an error.
    pub fn next_slice(
        &mut self,
        buf: &[u8],
        rule: &Terminator,
        find: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<Option<Slice>, FrameError> {
        match self.locate(buf, rule, &find) {
            Located::Pending => Ok(None),
            Located::TooLong { end } => {
                if end.is_none() {
                    self.scanned = 0;
                }
                Err(self.too_long(rule.what, false))
            }
            Located::Frame { body, end } => Ok(Some(Slice {
                frame: 0..if rule.keep { end } else { body },
                consumed: end,
            })),
        }
    }

    /// At the end of input: what is left is the last, unterminated frame.
    pub fn eof(
        &mut self,
        buf: &mut BytesMut,
        what: &'static str,
        strip_cr: bool,
    ) -> Result<Option<Bytes>, FrameError> {
        self.scanned = 0;
        if self.discarding {
            // The input ended inside the frame being skipped.
            self.discarding = false;
            buf.clear();
            return Err(self.too_long(what, true));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let mut frame = buf.split();
        if strip_cr && frame.last() == Some(&b'\r') {
            frame.truncate(frame.len() - 1);
        }
        if frame.len() > self.max {
            return Err(self.too_long(what, false));
        }
        Ok(Some(frame.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A long frame with a one-byte delimiter is checked while it is copied: sent whole, or
    /// refused with nothing queued, wherever the delimiter is.
    #[test]
    fn a_long_frame_is_sent_whole_or_not_at_all() {
        for len in [65, 4096, 4097, 9000] {
            let mut framer = Delimiter::new(b"\0").unwrap();
            let mut out = Outgoing::new();
            let frame = alloc::vec![b'x'; len];
            for at in [0, len / 2, 4096.min(len - 1), len - 1] {
                let mut bad = frame.clone();
                bad[at] = 0;
                assert!(
                    framer.streamify_slice(&bad, &mut out).is_err(),
                    "{len} {at}"
                );
                assert!(out.is_empty(), "{len} {at}");
            }
            framer.streamify_slice(&frame, &mut out).unwrap();
            let sent = out.take_all();
            assert_eq!(sent.len(), len + 1);
            assert_eq!(sent[len], 0);
        }
    }

    /// Where `needle` first occurs in `hay`, by brute force.
    fn first(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn text(len: core::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(&b"ab\r\n."[..]), len)
    }

    proptest! {
        #[test]
        fn a_frame_is_sent_exactly_when_its_delimiter_would_first_appear_after_it(
            delimiter in text(1..5),
            frame in text(0..12),
            keep in any::<bool>(),
        ) {
            let mut framer = Delimiter::new(&delimiter).unwrap().keep_delimiter(keep);
            let body = match frame.strip_suffix(&delimiter[..]) {
                Some(body) if keep => body,
                _ => &frame[..],
            };
            let mut wire = body.to_vec();
            wire.extend_from_slice(&delimiter);
            let expected = first(&wire, &delimiter) == Some(body.len());
            let mut out = Outgoing::new();
            let sent = framer.streamify(Bytes::from(frame.clone()), &mut out);
            prop_assert_eq!(sent.is_ok(), expected, "{:?}", sent);
            if expected {
                prop_assert_eq!(&out.take_all()[..], &wire[..]);
            }
        }
    }
}
