//! A `tokio_util` codec as a Tendril framer.

use std::error::Error;
use std::fmt;
use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use tendril_core::{FrameError, Framer, Outgoing};
use tokio_util::codec::{Decoder, Encoder};

/// Makes the fresh codec that [`CodecFramer::reset`](Framer::reset) puts in.
type Factory<C> = Box<dyn FnMut() -> C + Send>;

/// A `tokio_util` codec (a [`Decoder`] that is also an [`Encoder`]) as a Tendril [`Framer`], so
/// an existing codec — your own, `LinesCodec`, `LengthDelimitedCodec` — plugs into a `Tendril`,
/// its framer switching and its drivers.
///
/// Frames are `T`, by default the decoder's `Item`: [`frameify`](Framer::frameify) is
/// [`decode`](Decoder::decode) (its item converted with `Into<T>`),
/// [`frameify_eof`](Framer::frameify_eof) is [`decode_eof`](Decoder::decode_eof) and
/// [`streamify`](Framer::streamify) is [`Encoder::<T>::encode`](Encoder::encode). Many codecs
/// decode `BytesMut` and encode `Bytes` (`LengthDelimitedCodec`, `BytesCodec`):
/// [`CodecFramer::bytes`] takes their frames as `Bytes`, the frame type of Tendril's own framers.
/// A codec that only decodes (or, like `AnyDelimiterCodec`, encodes another type than it
/// decodes) goes in a [`DecoderOnly`](crate::DecoderOnly).
///
/// Where the contracts differ:
///
/// - **Errors** become [`FrameError::Custom`], with the codec's message and the codec's error
///   as its `source` (to downcast). They are never recoverable, so a `Tendril` closes on them
///   (`CloseReason::Frame`), also on those a codec means to recover from, like `LinesCodec`'s
///   `MaxLineLengthExceeded`: use the native framer's discard mode (`Line::discard_oversized`)
///   for that.
/// - **End of input** follows the codec: `decode_eof`'s default fails on any leftover byte
///   with "bytes remaining on stream" where a Tendril framer would say
///   [`FrameError::Truncated`], and `LengthDelimitedCodec` ends cleanly when the input stops
///   right after a length field (it has taken the field off the buffer already).
/// - **Reset.** A codec has no reset, but keeps scan state: `LinesCodec` and
///   `AnyDelimiterCodec` remember how far they searched (a stale offset over a buffer another
///   framer has since consumed can even panic), `LengthDelimitedCodec` the length it read.
///   Tendril resets a framer when it is switched in, and a datagram's framer after each
///   datagram; [`reset`](Framer::reset) then puts in a fresh codec: a copy of the codec as it
///   was given ([`new`](Self::new), [`bytes`](Self::bytes)), or a new one from the factory
///   ([`with_factory`](Self::with_factory)). Changes made through [`get_mut`](Self::get_mut) last
///   until then.
/// - **Bytes held back.** Tendril's framers leave every unframed byte in the buffer; a codec
///   may not: `LengthDelimitedCodec` takes a frame's length field off the buffer before the
///   body has arrived. Switch framers right after a frame, not in the middle of one, or the
///   reset drops that field. And a `Tendril`'s frame timeout (`Config::frame_timeout`), which
///   looks at the buffer, does not see a frame of which only the field has arrived (the idle
///   timeout still does).
///
/// Sending encodes into a buffer kept for the framer's life and hands the bytes to the
/// `Outgoing` without another copy from [`tendril_core::COPY_THRESHOLD`] bytes on.
///
/// ```
/// use core::time::Duration;
/// use tendril_codec::CodecFramer;
/// use tendril_core::{AppError, Application, Proto, Tendril};
/// use tokio_util::codec::LinesCodec;
///
/// /// Answers every line with its length.
/// struct Count;
///
/// impl Application<String> for Count {
///     fn recv_frame(&mut self, t: &mut Tendril<String>, line: String) -> Result<(), AppError> {
///         t.send_frame(line.len().to_string())?;
///         Ok(())
///     }
/// }
///
/// let mut t = Tendril::new(
///     Proto::TCP,
///     CodecFramer::new(LinesCodec::new()),
///     CodecFramer::new(LinesCodec::new()),
/// );
/// t.handle_data(Duration::ZERO, b"hello\r\nto you\npart");
/// assert_eq!(t.poll_frame().as_deref(), Some("hello"));
/// t.dispatch(&mut Count); // the rest of what is buffered: "to you"
/// assert_eq!(t.outgoing().take_all(), "6\n");
/// assert_eq!(t.buffered(), b"part");
/// ```
pub struct CodecFramer<C, T = <C as Decoder>::Item> {
    codec: C,
    fresh: Factory<C>,
    /// Where the codec encodes; kept so its allocation is reused.
    scratch: BytesMut,
    /// `fn(T) -> T`: invariant in `T`, and `Send` and `Sync` whatever `T` is.
    frame: PhantomData<fn(T) -> T>,
}

impl<C> CodecFramer<C>
where
    C: Decoder + Clone + Send + 'static,
{
    /// `codec` as a framer of its decoded items; [`reset`](Framer::reset) puts back a copy of
    /// `codec` as it is now.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tendril_codec::CodecFramer;
    /// use tendril_core::Framer;
    /// use tokio_util::codec::LinesCodec;
    ///
    /// let mut framer = CodecFramer::new(LinesCodec::new_with_max_length(80));
    /// let mut buf = BytesMut::from("HELO there\r\n");
    /// let line: String = framer.frameify(&mut buf).unwrap().unwrap();
    /// assert_eq!(line, "HELO there");
    /// ```
    pub fn new(codec: C) -> Self {
        let pristine = codec.clone();
        Self::from_parts(codec, Box::new(move || pristine.clone()))
    }
}

impl<C> CodecFramer<C, Bytes>
where
    C: Decoder + Clone + Send + 'static,
{
    /// `codec` as a framer of `Bytes`, for a codec whose items convert into `Bytes` and which
    /// encodes `Bytes` (`LengthDelimitedCodec`, `BytesCodec`, most byte codecs): the frame type
    /// of Tendril's own framers, so it can be switched with them. Reset as in [`new`](Self::new).
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use tendril_codec::CodecFramer;
    /// use tendril_core::{Framer, Outgoing};
    /// use tokio_util::codec::LengthDelimitedCodec;
    ///
    /// let mut framer = CodecFramer::bytes(LengthDelimitedCodec::new());
    /// let mut out = Outgoing::new();
    /// framer.streamify(Bytes::from("abc"), &mut out).unwrap();
    /// let wire = out.take_all();
    /// assert_eq!(wire, b"\0\0\0\x03abc"[..]);
    /// let frame: Bytes = framer.frameify(&mut BytesMut::from(&wire[..])).unwrap().unwrap();
    /// assert_eq!(frame, "abc");
    /// ```
    pub fn bytes(codec: C) -> Self {
        CodecFramer::new(codec).frame_type()
    }
}

impl<C: Decoder> CodecFramer<C> {
    /// A framer over `factory()`'s codec; [`reset`](Framer::reset) calls `factory` again. For
    /// codecs that are not `Clone`, or that are to start from a configuration of your choice.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tendril_codec::CodecFramer;
    /// use tendril_core::Framer;
    /// use tokio_util::codec::LinesCodec;
    ///
    /// let mut framer = CodecFramer::with_factory(|| LinesCodec::new_with_max_length(8));
    /// assert!(framer.frameify(&mut BytesMut::from("far too long")).is_err());
    /// framer.reset(); // a new codec from the factory
    /// assert_eq!(framer.frameify(&mut BytesMut::from("ok\n")).unwrap().unwrap(), "ok");
    /// ```
    pub fn with_factory<F>(mut factory: F) -> Self
    where
        F: FnMut() -> C + Send + 'static,
    {
        Self::from_parts(factory(), Box::new(factory))
    }
}

impl<C, T> CodecFramer<C, T> {
    fn from_parts(codec: C, fresh: Factory<C>) -> Self {
        CodecFramer {
            codec,
            fresh,
            scratch: BytesMut::new(),
            frame: PhantomData,
        }
    }

    /// The same framer with frames of type `U`: the codec's items are converted with
    /// `Into<U>`, and the codec must encode `U` (`Encoder<U>`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tendril_codec::CodecFramer;
    /// use tokio_util::codec::BytesCodec;
    ///
    /// let framer: CodecFramer<BytesCodec, Bytes> =
    ///     CodecFramer::with_factory(BytesCodec::new).frame_type();
    /// # let _ = framer;
    /// ```
    pub fn frame_type<U>(self) -> CodecFramer<C, U> {
        CodecFramer {
            codec: self.codec,
            fresh: self.fresh,
            scratch: self.scratch,
            frame: PhantomData,
        }
    }

    /// The codec.
    ///
    /// ```
    /// use tendril_codec::CodecFramer;
    /// use tokio_util::codec::LinesCodec;
    ///
    /// let framer = CodecFramer::new(LinesCodec::new_with_max_length(80));
    /// assert_eq!(framer.get_ref().max_length(), 80);
    /// ```
    pub fn get_ref(&self) -> &C {
        &self.codec
    }

    /// The codec, mutably. What is changed here lasts until the next
    /// [`reset`](Framer::reset) (a framer switch), which puts in a fresh codec.
    ///
    /// ```
    /// use tendril_codec::CodecFramer;
    /// use tokio_util::codec::LengthDelimitedCodec;
    ///
    /// let mut framer = CodecFramer::bytes(LengthDelimitedCodec::new());
    /// framer.get_mut().set_max_frame_length(1024);
    /// assert_eq!(framer.get_ref().max_frame_length(), 1024);
    /// ```
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.codec
    }

    /// The codec, as it is now.
    ///
    /// ```
    /// use tendril_codec::CodecFramer;
    /// use tokio_util::codec::LinesCodec;
    ///
    /// let codec: LinesCodec = CodecFramer::new(LinesCodec::new()).into_inner();
    /// # let _ = codec;
    /// ```
    pub fn into_inner(self) -> C {
        self.codec
    }
}

impl<C: fmt::Debug, T> fmt::Debug for CodecFramer<C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecFramer")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<C, T> Framer for CodecFramer<C, T>
where
    C: Decoder + Encoder<T>,
    C::Item: Into<T>,
    <C as Decoder>::Error: Into<Box<dyn Error + Send + Sync>>,
    <C as Encoder<T>>::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Frame = T;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<T>, FrameError> {
        match self.codec.decode(buf) {
            Ok(item) => Ok(item.map(Into::into)),
            Err(e) => Err(FrameError::custom(e)),
        }
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<T>, FrameError> {
        match self.codec.decode_eof(buf) {
            Ok(item) => Ok(item.map(Into::into)),
            Err(e) => Err(FrameError::custom(e)),
        }
    }

    fn streamify(&mut self, frame: T, out: &mut Outgoing) -> Result<(), FrameError> {
        if let Err(e) = self.codec.encode(frame, &mut self.scratch) {
            // `streamify` writes nothing when it fails; the codec may have written part.
            self.scratch.clear();
            return Err(FrameError::custom(e));
        }
        out.put_bytes(self.scratch.split().freeze());
        Ok(())
    }

    fn reset(&mut self) {
        self.codec = (self.fresh)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::{AnyDelimiterCodec, LengthDelimitedCodec, LinesCodec};

    #[test]
    fn a_switched_in_lines_codec_searches_from_the_start_again() {
        let mut framer = CodecFramer::new(LinesCodec::new());
        let mut buf = BytesMut::from("partial");
        assert_eq!(framer.frameify(&mut buf).unwrap(), None);
        // Another framer takes bytes off the front; a stale scan offset (7) would now point
        // past the buffer's end.
        let _ = buf.split_to(5);
        buf.extend_from_slice(b"\n");
        framer.reset();
        assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "al");
    }

    #[test]
    fn reset_keeps_the_configuration_it_was_given() {
        let mut framer = CodecFramer::new(LinesCodec::new_with_max_length(3));
        framer.reset();
        assert_eq!(framer.get_ref().max_length(), 3);
    }

    #[test]
    fn a_codec_error_keeps_its_message_and_can_be_downcast() {
        let mut framer = CodecFramer::new(LinesCodec::new_with_max_length(3));
        let err = framer.frameify(&mut BytesMut::from("abcdef")).unwrap_err();
        assert_eq!(err.to_string(), "max line length exceeded");
        assert!(!err.is_recoverable());
        let source = err.source().unwrap();
        assert!(matches!(
            source.downcast_ref(),
            Some(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded)
        ));
    }

    #[test]
    fn bytes_remaining_at_eof_is_the_codecs_own_error() {
        let mut framer = CodecFramer::bytes(LengthDelimitedCodec::new());
        let err = framer
            .frameify_eof(&mut BytesMut::from(&b"\0\0"[..]))
            .unwrap_err();
        assert_eq!(err.to_string(), "bytes remaining on stream");
    }

    #[test]
    fn a_failed_encode_queues_nothing() {
        let mut framer = CodecFramer::bytes(
            LengthDelimitedCodec::builder()
                .max_frame_length(2)
                .new_codec(),
        );
        let mut out = Outgoing::new();
        assert!(framer.streamify(Bytes::from("abc"), &mut out).is_err());
        assert!(out.is_empty());
        framer.streamify(Bytes::from("ab"), &mut out).unwrap();
        assert_eq!(out.take_all(), b"\0\0\0\x02ab"[..]);
    }

    #[test]
    fn large_encoded_frames_are_queued_without_another_copy() {
        let mut framer = CodecFramer::bytes(tokio_util::codec::BytesCodec::new());
        let mut out = Outgoing::new();
        framer
            .streamify(Bytes::from(vec![1u8; 5000]), &mut out)
            .unwrap();
        assert_eq!(out.len(), 5000);
        assert_eq!(out.chunk_count(), 1);
    }

    #[test]
    fn the_debug_form_shows_the_codec() {
        let framer = CodecFramer::new(AnyDelimiterCodec::new(b",".to_vec(), b",".to_vec()));
        assert!(format!("{framer:?}").contains("AnyDelimiterCodec"));
    }
}
