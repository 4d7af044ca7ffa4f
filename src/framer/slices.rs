//! Borrowed frames: reading frames where they lie in the receive buffer.

use core::ops::Range;

use bytes::{Buf, BytesMut};

use crate::{FrameError, Framer};

/// Where the next frame lies in a buffer: [`SliceFramer::next_slice`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The frame's bytes, as a range of the buffer.
    pub frame: Range<usize>,
    /// How many bytes of the buffer the frame spans with its framing (e.g. the line and its
    /// `\r\n`): where the next frame starts.
    pub consumed: usize,
}

/// A framer whose frames are runs of their input's bytes, so they can be read in place: no
/// owned frame is made, no reference count is touched, and the buffer is advanced once for all
/// the frames it held.
///
/// That is the fast path for parsers that do not keep their frames (most line protocols):
/// [`for_each_slice`](Self::for_each_slice) takes two to three times the frames per second of
/// [`Framer::frameify`] on short frames (`decode_frames/line_slices` in `benches/framers.rs`).
/// The frames are the ones `frameify` would return, with the same limits and errors, except that
/// the discard-oversized mode of [`Line`](crate::Line) and [`Delimiter`](crate::Delimiter) does not apply: an oversized frame is
/// an error here. Framers that rewrite bytes to decode (COBS, byte stuffing) do not implement it.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Line, SliceFramer};
///
/// let mut framer = Line::crlf();
/// let mut buf = BytesMut::from(&b"EHLO a\r\nMAIL FROM:<x>\r\nRCPT"[..]);
/// let mut verbs = Vec::new();
/// let n = framer
///     .for_each_slice(&mut buf, |line| verbs.push(line.split(|&b| b == b' ').next().unwrap().to_vec()))
///     .unwrap();
/// assert_eq!(n, 2);
/// assert_eq!(verbs, [b"EHLO".to_vec(), b"MAIL".to_vec()]);
/// assert_eq!(&buf[..], b"RCPT"); // the unfinished line stays buffered
/// ```
pub trait SliceFramer: Framer {
    /// The next whole frame at the start of `buf`, or `None` while none is complete.
    ///
    /// After a frame, call again with the bytes from [`Slice::consumed`] on; after `None`, with
    /// the same bytes and whatever arrived since (the framer may remember how far it looked).
    fn next_slice(&mut self, buf: &[u8]) -> Result<Option<Slice>, FrameError>;

    /// Hand every whole frame in `buf` to `f`, in order, then drop them from `buf` at once.
    /// Returns how many there were. After an error the frames before it have been handed over
    /// and dropped.
    fn for_each_slice<F>(&mut self, buf: &mut BytesMut, mut f: F) -> Result<usize, FrameError>
    where
        Self: Sized,
        F: FnMut(&[u8]),
    {
        let mut at = 0;
        let mut frames = 0;
        let result = loop {
            match self.next_slice(&buf[at..]) {
                Ok(Some(Slice { frame, consumed })) => {
                    f(&buf[at + frame.start..at + frame.end]);
                    at += consumed;
                    frames += 1;
                }
                Ok(None) => break Ok(frames),
                Err(e) => break Err(e),
            }
        };
        buf.advance(at);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chunk, Delimiter, Identity, Line};
    use bytes::Bytes;
    use proptest::prelude::*;

    /// Every frame `frameify` takes from `wire` fed in `cuts`, and the error that ended it.
    fn owned<F: Framer<Frame = Bytes>>(
        mut framer: F,
        wire: &[u8],
        cuts: &[usize],
    ) -> (Vec<Vec<u8>>, Option<String>) {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut fed = 0;
        for end in cuts.iter().copied().chain([wire.len()]) {
            let end = end.clamp(fed, wire.len());
            buf.extend_from_slice(&wire[fed..end]);
            fed = end;
            loop {
                match framer.frameify(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame.to_vec()),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e.to_string())),
                }
            }
        }
        (frames, None)
    }

    /// The same through `for_each_slice`.
    fn borrowed<F: SliceFramer>(
        mut framer: F,
        wire: &[u8],
        cuts: &[usize],
    ) -> (Vec<Vec<u8>>, Option<String>) {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut fed = 0;
        for end in cuts.iter().copied().chain([wire.len()]) {
            let end = end.clamp(fed, wire.len());
            buf.extend_from_slice(&wire[fed..end]);
            fed = end;
            if let Err(e) = framer.for_each_slice(&mut buf, |f| frames.push(f.to_vec())) {
                return (frames, Some(e.to_string()));
            }
        }
        (frames, None)
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(&b"ab\r\n;;."[..]), 0..200)
    }

    fn cuts() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0..200usize, 0..12).prop_map(|mut c| {
            c.sort_unstable();
            c
        })
    }

    proptest! {
        #[test]
        fn slices_are_the_frames_frameify_takes(
            wire in text(),
            cuts in cuts(),
            max in 0..12usize,
            crlf in any::<bool>(),
            keep in any::<bool>(),
            chunk in 1..9usize,
        ) {
            let line = || if crlf { Line::crlf() } else { Line::lf() }.max_length(max);
            prop_assert_eq!(borrowed(line(), &wire, &cuts), owned(line(), &wire, &cuts));
            let delimiter = || Delimiter::new(b";;").unwrap().keep_delimiter(keep).max_length(max);
            prop_assert_eq!(borrowed(delimiter(), &wire, &cuts), owned(delimiter(), &wire, &cuts));
            let identity = || Identity::new().max_length(max.max(1));
            prop_assert_eq!(borrowed(identity(), &wire, &cuts), owned(identity(), &wire, &cuts));
            prop_assert_eq!(borrowed(Chunk::new(chunk), &wire, &cuts), owned(Chunk::new(chunk), &wire, &cuts));
            let piecewise = || Chunk::new(chunk).piecewise(true);
            prop_assert_eq!(borrowed(piecewise(), &wire, &cuts), owned(piecewise(), &wire, &cuts));
        }
    }

    #[test]
    fn a_shorter_buffer_than_last_time_is_scanned_from_its_start() {
        let mut line = Line::lf();
        assert_eq!(line.next_slice(b"abcdef").unwrap(), None);
        assert_eq!(
            line.next_slice(b"a\n").unwrap(),
            Some(Slice {
                frame: 0..1,
                consumed: 2
            })
        );
    }
}
