//! A Tendril framer as a `tokio_util` codec.

use std::fmt;

use bytes::{BufMut, BytesMut};
use tendril_core::{FrameError, Framer, Outgoing};
use tokio_util::codec::{Decoder, Encoder};

use crate::CodecError;

/// A Tendril receive framer and send framer as a `tokio_util` [`Decoder`] and [`Encoder`], for
/// `Framed`, `FramedRead` and `FramedWrite`.
///
/// [`decode`](Decoder::decode) is the receive framer's [`frameify`](Framer::frameify),
/// [`decode_eof`](Decoder::decode_eof) its [`frameify_eof`](Framer::frameify_eof), and
/// [`encode`](Encoder::encode) the send framer's [`streamify`](Framer::streamify), so a
/// `Framed<TcpStream, FramerCodec<_, _>>` speaks COBS, netstrings, byte stuffing, varint length
/// prefixes, or any other Tendril framer, with the framer's limits and discard modes.
///
/// Where the two contracts differ:
///
/// - **End of input.** `Decoder::decode_eof`'s default fails on any leftover byte
///   ("bytes remaining on stream"); here the framer's own rule applies: `Line` and `Delimiter`
///   return an unterminated last frame, `Stuffing` drops junk outside frames, the strict formats
///   fail with [`FrameError::Truncated`].
/// - **Skipped frames.** A framer in discard-oversized mode skips an oversized frame and says so
///   with a recoverable error ([`FrameError::is_recoverable`]). `Framed` ends its stream at the
///   first error (it yields the error, then `None`, and only goes on after the socket is
///   readable again), so by default this codec does not return those errors: it goes on to the
///   next frame, counts the skip ([`skipped`](Self::skipped)) and keeps the latest one
///   ([`take_skipped`](Self::take_skipped)). [`report_skipped`](Self::report_skipped) returns
///   them instead, for callers that drive `decode` themselves. Every other error ends the stream,
///   as it closes a `Tendril`.
/// - **Switching framers.** As in a `Tendril`, the framers can be replaced between any two
///   frames ([`set_recv_framer`](Self::set_recv_framer), through `Framed::codec_mut`): the bytes
///   `Framed` has buffered go through the new framer. With boxed framers
///   (`FramerCodec<BoxFramer<Bytes>>`) the new one can be of another type.
///
/// Encoding goes through one `Outgoing` kept for the codec's life and is copied once, straight
/// into `Framed`'s write buffer.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use tendril_codec::FramerCodec;
/// use tendril_core::Cobs;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// // What `Framed::new(stream, FramerCodec::new(Cobs::new()))` does with each frame.
/// let mut codec = FramerCodec::new(Cobs::new());
/// let mut wire = BytesMut::new();
/// codec.encode(Bytes::from_static(&[0x11, 0x00, 0x22]), &mut wire).unwrap();
/// assert_eq!(wire, [0x02, 0x11, 0x02, 0x22, 0x00][..]);
/// assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), [0x11, 0x00, 0x22][..]);
/// ```
pub struct FramerCodec<R, S = R> {
    recv: R,
    send: S,
    /// Reused for every frame sent, so encoding allocates only when it grows.
    out: Outgoing,
    report_skipped: bool,
    skipped: u64,
    last_skipped: Option<FrameError>,
}

impl<F: Framer + Clone> FramerCodec<F, F> {
    /// A codec that receives and sends with `framer` (one copy for each direction, so the
    /// receive side's scan state is its own).
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::Line;
    /// use tokio_util::codec::{Decoder, Encoder};
    ///
    /// let mut codec = FramerCodec::new(Line::crlf());
    /// let mut buf = BytesMut::from("EHLO a\r\n");
    /// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "EHLO a");
    /// codec.encode(Bytes::from("250 OK"), &mut buf).unwrap();
    /// assert_eq!(buf, "250 OK\r\n");
    /// ```
    pub fn new(framer: F) -> Self {
        Self::with_framers(framer.clone(), framer)
    }
}

impl<R, S> FramerCodec<R, S> {
    /// A codec that receives with `recv` and sends with `send`, which may be of different
    /// types and frame types. Only `recv` is used by `FramedRead`, only `send` by `FramedWrite`.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::{LengthPrefixed, Line};
    /// use tokio_util::codec::{Decoder, Encoder};
    ///
    /// // Requests are lines, replies are u16-length-prefixed.
    /// let mut codec = FramerCodec::with_framers(Line::lf(), LengthPrefixed::u16_be());
    /// let mut buf = BytesMut::from("get\n");
    /// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "get");
    /// codec.encode(Bytes::from("ok"), &mut buf).unwrap();
    /// assert_eq!(buf, b"\x00\x02ok"[..]);
    /// ```
    pub fn with_framers(recv: R, send: S) -> Self {
        FramerCodec {
            recv,
            send,
            out: Outgoing::new(),
            report_skipped: false,
            skipped: 0,
            last_skipped: None,
        }
    }

    /// Return skipped oversized frames from `decode` as errors (recoverable ones:
    /// [`CodecError::is_recoverable`]) instead of going on to the next frame. Off by default,
    /// since `Framed` ends its stream at the first error.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::Line;
    /// use tokio_util::codec::Decoder;
    ///
    /// let line = Line::lf().max_length(3).discard_oversized(true);
    /// let mut codec = FramerCodec::new(line).report_skipped(true);
    /// let mut buf = BytesMut::from("much too long\nok\n");
    /// assert!(codec.decode(&mut buf).unwrap_err().is_recoverable());
    /// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "ok");
    /// ```
    pub fn report_skipped(mut self, on: bool) -> Self {
        self.report_skipped = on;
        self
    }

    /// How many frames the receive framer skipped (oversized, in discard mode) and `decode`
    /// went past without an error.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::Line;
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut codec = FramerCodec::new(Line::lf().max_length(3).discard_oversized(true));
    /// let mut buf = BytesMut::from("much too long\nok\n");
    /// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "ok");
    /// assert_eq!(codec.skipped(), 1);
    /// ```
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The latest skip not taken yet, as the framer reported it (a [`FrameError`] with
    /// [`is_recoverable`](FrameError::is_recoverable)); only the latest is kept, so a peer cannot
    /// make the codec hold more.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::Line;
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut codec = FramerCodec::new(Line::lf().max_length(3).discard_oversized(true));
    /// let mut buf = BytesMut::from("much too long\nok\n");
    /// codec.decode(&mut buf).unwrap();
    /// let skip = codec.take_skipped().unwrap();
    /// assert_eq!(skip.to_string(), "line longer than 3 bytes; skipped to the next frame");
    /// assert!(codec.take_skipped().is_none());
    /// ```
    pub fn take_skipped(&mut self) -> Option<FrameError> {
        self.last_skipped.take()
    }

    /// The receive framer.
    ///
    /// ```
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::Chunk;
    ///
    /// let codec = FramerCodec::new(Chunk::new(5).piecewise(true));
    /// assert_eq!(codec.recv_framer().remaining(), 5);
    /// ```
    pub fn recv_framer(&self) -> &R {
        &self.recv
    }

    /// The receive framer, mutably (e.g. `map`'s [`get_mut`](tendril_core::Map::get_mut)).
    ///
    /// ```
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::Line;
    ///
    /// let mut codec = FramerCodec::new(Line::crlf());
    /// let _line: &mut Line = codec.recv_framer_mut();
    /// ```
    pub fn recv_framer_mut(&mut self) -> &mut R {
        &mut self.recv
    }

    /// The send framer.
    ///
    /// ```
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::{LengthField, LengthPrefixed, Line};
    ///
    /// let codec = FramerCodec::with_framers(Line::crlf(), LengthPrefixed::varint());
    /// assert_eq!(codec.send_framer().field(), LengthField::Varint);
    /// ```
    pub fn send_framer(&self) -> &S {
        &self.send
    }

    /// The send framer, mutably.
    ///
    /// ```
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::Netstring;
    ///
    /// let mut codec = FramerCodec::new(Netstring::new());
    /// let _send: &mut Netstring = codec.send_framer_mut();
    /// ```
    pub fn send_framer_mut(&mut self) -> &mut S {
        &mut self.send
    }

    /// The two framers, receive then send.
    ///
    /// ```
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::{Identity, Line};
    ///
    /// let (_recv, _send): (Line, Identity) =
    ///     FramerCodec::with_framers(Line::crlf(), Identity::new()).into_framers();
    /// ```
    pub fn into_framers(self) -> (R, S) {
        (self.recv, self.send)
    }

    fn note_skipped(&mut self, e: FrameError) {
        self.skipped += 1;
        self.last_skipped = Some(e);
    }
}

impl<R: Framer, S> FramerCodec<R, S> {
    /// Replace the receive framer between two frames, as `Tendril::set_recv_framer` does: the
    /// new one is [`reset`](Framer::reset) and every byte still buffered goes through it.
    /// Returns the old one. Call it through `Framed::codec_mut`, right after the frame that
    /// announces the switch.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::{BoxFramer, Chunk, Framer, Line};
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut codec: FramerCodec<BoxFramer<Bytes>> =
    ///     FramerCodec::with_framers(Line::crlf().boxed(), Line::crlf().boxed());
    /// let mut buf = BytesMut::from("BDAT 5\r\n12345QUIT\r\n");
    /// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "BDAT 5");
    /// let line = codec.set_recv_framer(Chunk::new(5).boxed());
    /// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "12345");
    /// codec.set_recv_framer(line);
    /// assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "QUIT");
    /// ```
    pub fn set_recv_framer(&mut self, mut framer: R) -> R {
        framer.reset();
        std::mem::replace(&mut self.recv, framer)
    }
}

impl<R, S: Framer> FramerCodec<R, S> {
    /// Replace the send framer: frames encoded from now on go through `framer` (reset first).
    /// Returns the old one.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use tendril_codec::FramerCodec;
    /// use tendril_core::Line;
    /// use tokio_util::codec::Encoder;
    ///
    /// let mut codec = FramerCodec::new(Line::crlf());
    /// codec.set_send_framer(Line::lf());
    /// let mut buf = BytesMut::new();
    /// codec.encode(Bytes::from("bare"), &mut buf).unwrap();
    /// assert_eq!(buf, "bare\n");
    /// ```
    pub fn set_send_framer(&mut self, mut framer: S) -> S {
        framer.reset();
        std::mem::replace(&mut self.send, framer)
    }
}

impl<R: Clone, S: Clone> Clone for FramerCodec<R, S> {
    /// A copy of both framers and the skip policy; the skip count and the latest skip start
    /// afresh.
    fn clone(&self) -> Self {
        Self::with_framers(self.recv.clone(), self.send.clone()).report_skipped(self.report_skipped)
    }
}

impl<R, S> fmt::Debug for FramerCodec<R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Without the framers, so boxed ones (which are not `Debug`) can be shown too.
        f.debug_struct("FramerCodec")
            .field("report_skipped", &self.report_skipped)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl<R: Framer, S> Decoder for FramerCodec<R, S> {
    type Item = R::Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<R::Frame>, CodecError> {
        // A recoverable error means the framer skipped a whole frame, so this loop makes
        // progress on every turn (the `Framer` contract: no call loops forever).
        loop {
            match self.recv.frameify(src) {
                Err(e) if e.is_recoverable() && !self.report_skipped => self.note_skipped(e),
                result => return result.map_err(CodecError::Frame),
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<R::Frame>, CodecError> {
        // The framer's end-of-input rule, not tokio-util's "bytes remaining on stream".
        loop {
            match self.recv.frameify_eof(buf) {
                Err(e) if e.is_recoverable() && !self.report_skipped => self.note_skipped(e),
                result => return result.map_err(CodecError::Frame),
            }
        }
    }
}

impl<R, S: Framer> Encoder<S::Frame> for FramerCodec<R, S> {
    type Error = CodecError;

    fn encode(&mut self, item: S::Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let result = self.send.streamify(item, &mut self.out);
        if result.is_ok() {
            // Straight from the queue (its small writes and any body queued by reference) into
            // `dst`: one copy, no `take_all` in between.
            dst.reserve(self.out.len());
            dst.put(&mut self.out);
        }
        // A framer writes nothing when it refuses a frame; should one not, nothing of the
        // refused frame may reach the next one.
        self.out.clear();
        result.map_err(CodecError::Frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tendril_core::{Chunk, Cobs, LengthPrefixed, Line, Netstring, Stuffing};

    #[test]
    fn an_unterminated_last_line_is_a_frame_at_eof_not_bytes_remaining() {
        let mut codec = FramerCodec::new(Line::crlf());
        let mut buf = BytesMut::from("QUIT");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.decode_eof(&mut buf).unwrap().unwrap(), "QUIT");
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn a_netstring_cut_by_eof_is_truncated() {
        let mut codec = FramerCodec::new(Netstring::new());
        let mut buf = BytesMut::from("5:hel");
        let err = codec.decode_eof(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            CodecError::Frame(FrameError::Truncated { buffered: 5, .. })
        ));
    }

    #[test]
    fn junk_outside_stuffed_frames_is_not_an_error_at_eof() {
        let mut codec = FramerCodec::new(Stuffing::default());
        let mut buf = BytesMut::from("line noise");
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn a_skip_at_eof_is_counted_and_the_stream_ends_cleanly() {
        let mut codec = FramerCodec::new(Cobs::new().max_length(2).discard_oversized(true));
        let mut buf = BytesMut::from(&[0x05, 1, 2, 3, 4][..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert_eq!(codec.skipped(), 1);
        assert!(codec.take_skipped().unwrap().is_recoverable());
    }

    #[test]
    fn skips_in_a_row_are_all_passed_over_in_one_decode() {
        let mut codec = FramerCodec::new(Line::lf().max_length(1).discard_oversized(true));
        let mut buf = BytesMut::from("aaa\nbbb\nccc\nd\n");
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "d");
        assert_eq!(codec.skipped(), 3);
    }

    #[test]
    fn a_refused_frame_leaves_the_write_buffer_as_it_was() {
        let mut codec = FramerCodec::new(Chunk::new(3));
        let mut dst = BytesMut::from("old");
        let err = codec.encode(Bytes::from("four"), &mut dst).unwrap_err();
        assert!(matches!(
            err,
            CodecError::Frame(FrameError::Unencodable { .. })
        ));
        assert_eq!(dst, "old");
        codec.encode(Bytes::from("abc"), &mut dst).unwrap();
        assert_eq!(dst, "oldabc");
    }

    #[test]
    fn a_large_body_queued_by_reference_reaches_the_write_buffer_whole() {
        let mut codec = FramerCodec::new(LengthPrefixed::u32_be());
        let body = Bytes::from(vec![7u8; 10_000]);
        let mut dst = BytesMut::new();
        codec.encode(body.clone(), &mut dst).unwrap();
        assert_eq!(&dst[..4], &10_000u32.to_be_bytes());
        assert_eq!(&dst[4..], &body[..]);
        assert_eq!(codec.decode(&mut dst).unwrap().unwrap(), body);
    }

    #[test]
    fn a_clone_starts_with_no_skips() {
        let mut codec = FramerCodec::new(Line::lf().max_length(1).discard_oversized(true));
        codec.decode(&mut BytesMut::from("long\n")).unwrap();
        assert_eq!(codec.skipped(), 1);
        let copy = codec.clone();
        assert_eq!(copy.skipped(), 0);
        assert!(format!("{copy:?}").starts_with("FramerCodec"));
    }
}
